//! deploy/: the kustomize base renders with `kubectl kustomize`, has what
//! the issue asks (one replica, Recreate, probes, 0.0.0.0, read-only audit
//! role), its PrometheusRule is alerts/plumb.rules.yaml word for word, and
//! plumb's own Kubernetes provider plans the rendering against its API
//! server simulator (seeded with only the Prometheus Operator's CRDs) as
//! creates only, with no error. The systemd unit passes
//! `systemd-analyze verify` where that exists.
//!
//! Regenerate the PrometheusRule after editing alerts/:
//!   PLUMB_UPDATE_DEPLOY=1 cargo test -p plumb --test deploy prometheusrule

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render() -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join("deploy/kubernetes"))
        .output()
        .expect("kubectl (scripts/test.sh's machine has it)");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendering"))
}

/// The PrometheusRule that alerts/plumb.rules.yaml makes.
fn expected_prometheusrule() -> String {
    let rules: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root().join("alerts/plumb.rules.yaml")).unwrap()).unwrap();
    let groups = serde_yaml_ng::to_string(&rules["groups"]).unwrap();
    let mut out = String::from(
        "# GENERATED from alerts/plumb.rules.yaml by tests/deploy.rs — do not edit;\n\
         # run `PLUMB_UPDATE_DEPLOY=1 cargo test -p plumb --test deploy prometheusrule`.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: plumb\nspec:\n  groups:\n",
    );
    for line in groups.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn prometheusrule_is_in_step_with_alerts() {
    let path = root().join("deploy/kubernetes/prometheusrule.yaml");
    let expected = expected_prometheusrule();
    if std::env::var_os("PLUMB_UPDATE_DEPLOY").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of step with alerts/plumb.rules.yaml; regenerate it with \
         PLUMB_UPDATE_DEPLOY=1 cargo test -p plumb --test deploy prometheusrule",
        path.display()
    );
    // And the rendering carries the same rules as promtool checks.
    let objects = render();
    let rule = find(&objects, "PrometheusRule", "plumb");
    let shipped: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root().join("alerts/plumb.rules.yaml")).unwrap()).unwrap();
    assert_eq!(rule["spec"]["groups"], shipped["groups"]);
}

#[test]
fn kustomize_base_renders_what_the_issue_asks() {
    let objects = render();
    let deployment = find(&objects, "Deployment", "plumb");
    assert_eq!(deployment["metadata"]["namespace"], "plumb");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "plumb");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");

    let config = find(&objects, "ConfigMap", "plumb-config");
    let plumb_yaml = config["data"]["plumb.yaml"].as_str().unwrap();
    assert!(plumb_yaml.contains("listen: 0.0.0.0:9469"), "{plumb_yaml}");
    // The shipped config is a valid plumb.yaml.
    plumb::config::Config::parse(Path::new("/etc/plumb/plumb.yaml"), plumb_yaml).unwrap();

    let service = find(&objects, "Service", "plumb");
    assert_eq!(service["spec"]["ports"][0]["port"], 9469);
    find(&objects, "ServiceAccount", "plumb");
    find(&objects, "ServiceMonitor", "plumb");

    // Audit mode is read-only: no write verb anywhere in the base.
    let role = find(&objects, "ClusterRole", "plumb-audit");
    for rule in role["rules"].as_sequence().unwrap() {
        for verb in rule["verbs"].as_sequence().unwrap() {
            let v = verb.as_str().unwrap();
            assert!(matches!(v, "get" | "list" | "watch"), "audit role grants {v}");
        }
    }
    assert!(
        !objects.iter().any(|o| o["metadata"]["name"] == "plumb-reconcile"),
        "the write role is opt-in"
    );
    // The opt-in write role exists and can patch (server-side apply).
    let write = std::fs::read_to_string(root().join("deploy/kubernetes/rbac-reconcile.yaml")).unwrap();
    assert!(write.contains("patch") && write.contains("kind: ClusterRole"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumb_plans_the_base_against_its_kubernetes_simulator_as_creates_only() {
    plumb::install_crypto_provider();
    let sim = plumb_kubernetes::sim::Sim::start(plumb_kubernetes::sim::SimConfig::default())
        .await
        .unwrap();
    // The API server knows the Prometheus Operator's kinds, as a cluster
    // running the operator does; nothing else is there.
    let crd_dir = root().join("tests/deploy_fixtures");
    for file in [
        "0servicemonitorCustomResourceDefinition.yaml",
        "0prometheusruleCustomResourceDefinition.yaml",
    ] {
        let text = std::fs::read_to_string(crd_dir.join(file)).unwrap();
        let crd: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        sim.apply(crd).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig.yaml"), sim.kubeconfig_yaml(None)).unwrap();
    std::fs::write(
        dir.path().join("plumb.yaml"),
        format!(
            "source: {{ dir: {} }}\nstate_dir: ./state\ntargets:\n  - name: deploy\n    provider: kubernetes\n    path: kubernetes\n    connection: {{ kubeconfig: ./kubeconfig.yaml }}\n",
            root().join("deploy").display()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let config = dir.path().join("plumb.yaml");
        move || {
            Command::new(env!("CARGO_BIN_EXE_plumb"))
                .args(["plan", "--format", "json", "-c"])
                .arg(config)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected drift (creates):\n{stdout}\n{stderr}"
    );
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let target = &plan["targets"][0];
    assert!(target["error"].is_null(), "{}", target["error"]);
    let changes = target["changes"].as_array().unwrap();
    let actions: Vec<&str> = changes.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert!(actions.iter().all(|a| *a == "create"), "{actions:?}");
    let mut ids: Vec<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    ids.sort();
    for expected in [
        "apps/v1/Deployment/plumb/plumb",
        "monitoring.coreos.com/v1/PrometheusRule/plumb/plumb",
        "monitoring.coreos.com/v1/ServiceMonitor/plumb/plumb",
        "rbac.authorization.k8s.io/v1/ClusterRole/plumb-audit",
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding/plumb-audit",
        "core/v1/ConfigMap/plumb/plumb-config",
        "core/v1/Namespace/plumb",
        "core/v1/Service/plumb/plumb",
        "core/v1/ServiceAccount/plumb/plumb",
    ] {
        assert!(ids.contains(&expected), "{expected} missing from {ids:?}");
    }
    let findings = target["findings"].as_array().unwrap();
    assert!(!findings.iter().any(|f| f["severity"] == "critical"), "{findings:?}");
    sim.shutdown().await;
}

#[test]
fn systemd_unit_and_containerfile_are_sound() {
    let unit = root().join("deploy/systemd/plumb.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/plumb serve -c /etc/plumb/plumb.yaml"));
    assert!(text.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The binary is not installed here; anything else is a real error.
        let real: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/plumb") && !l.trim().is_empty())
            .filter(|l| !l.contains("Failed to prepare filename") && !l.contains("Unit configuration has fatal error"))
            .filter(|l| !l.contains("System has not been booted with systemd"))
            .collect();
        assert!(real.is_empty(), "systemd-analyze verify: {stderr}");
    }

    // The image: multi-stage, slim runtime, non-root. (No container engine
    // runs here, so it is checked statically.)
    let image = std::fs::read_to_string(root().join("deploy/Containerfile")).unwrap();
    let froms: Vec<&str> = image.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS build"));
    assert!(froms[1].contains("slim"), "{froms:?}");
    let user = image.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(image.contains("COPY --from=build"));
    assert!(image.contains("EXPOSE 9469"));
}
