//! Fidelity: the real `kubectl` on this machine drives the simulator
//! (server-side apply, get -o json, diff --server-side, delete) and what it
//! sees must match what the simulator stored.

use std::path::Path;
use std::process::Command;

use plumb_kubernetes::sim::{Sim, SimConfig};
use serde_json::Value;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: shop
  labels: {app: cart}
spec:
  replicas: 2
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        resources: {limits: {cpu: 1000m, memory: 1024Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: fast}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_diff_delete() {
    // The fidelity check is the point of this test: without kubectl it fails.
    assert!(
        Command::new("kubectl").arg("version").arg("--client").output().is_ok(),
        "kubectl is needed to check the simulator against the real client"
    );
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml(None)).unwrap();
    let mdir = dir.path().join("m");
    std::fs::create_dir(&mdir).unwrap();
    std::fs::write(mdir.join("all.yaml"), MANIFESTS).unwrap();
    let m = mdir.to_str().unwrap();

    let (code, out, err) = kubectl(&kc, &["apply", "--server-side", "--validate=false", "-f", m]);
    assert_eq!(code, 0, "apply: {out}\n{err}");
    assert!(out.contains("deployment.apps/cart serverside-applied"), "{out}");

    let stored = sim.get("apps/v1", "Deployment", Some("shop"), "cart").unwrap();
    let (code, out, err) = kubectl(
        &kc,
        &[
            "get",
            "deployment",
            "cart",
            "-n",
            "shop",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    assert_eq!(code, 0, "get: {err}");
    let seen: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(seen, stored, "kubectl sees what the simulator stored");
    assert_eq!(
        seen.pointer("/spec/template/spec/containers/0/resources/limits/cpu"),
        Some(&Value::from("1"))
    );
    assert_eq!(
        seen.pointer("/spec/template/spec/containers/0/resources/limits/memory"),
        Some(&Value::from("1Gi"))
    );
    assert_eq!(
        seen.pointer("/metadata/managedFields/0/manager"),
        Some(&Value::from("kubectl"))
    );
    assert_eq!(
        seen.pointer("/metadata/managedFields/0/operation"),
        Some(&Value::from("Apply"))
    );

    // list through kubectl, paginated by kubectl's own chunking (limit=500)
    let (code, out, _) = kubectl(&kc, &["get", "configmaps", "-A", "-o", "json", "--chunk-size", "2"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"settings") && names.contains(&"kube-root-ca.crt"),
        "{names:?}"
    );
    assert!(
        sim.requests().iter().any(|r| r.query.contains("continue=")),
        "kubectl followed continue tokens"
    );

    // in sync: diff is empty (exit 0); it uses dry-run server-side apply
    sim.clear_requests();
    let (code, out, err) = kubectl(&kc, &["diff", "--server-side", "-f", m]);
    assert_eq!(code, 0, "diff in sync: {out}\n{err}");
    assert!(sim.requests().iter().all(|r| !r.is_write()), "diff never writes");
    assert!(sim.requests().iter().any(|r| r.dry_run && r.method == "PATCH"));

    // drift by hand: kubectl diff sees it
    sim.edit("v1", "ConfigMap", Some("shop"), "settings", "kubectl-edit", |o| {
        o["data"]["mode"] = "slow".into()
    })
    .unwrap();
    let (code, out, _) = kubectl(&kc, &["diff", "--server-side", "--force-conflicts", "-f", m]);
    assert_eq!(code, 1, "diff shows drift: {out}");
    assert!(out.contains("-  mode: slow") && out.contains("+  mode: fast"), "{out}");

    // apply without force conflicts with kubectl-edit, with the real message
    let (code, _, err) = kubectl(&kc, &["apply", "--server-side", "--validate=false", "-f", m]);
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"conflict with "kubectl-edit" using v1: .data.mode"#),
        "{err}"
    );

    let (code, out, err) = kubectl(&kc, &["delete", "deployment", "cart", "-n", "shop"]);
    assert_eq!(code, 0, "delete: {out}\n{err}");
    assert!(out.contains(r#"deployment.apps "cart" deleted"#), "{out}");
    assert!(sim.get("apps/v1", "Deployment", Some("shop"), "cart").is_err());
    let (code, _, err) = kubectl(&kc, &["get", "deployment", "cart", "-n", "shop"]);
    assert_ne!(code, 0);
    assert!(err.contains(r#"deployments.apps "cart" not found"#), "{err}");
    // deleting the namespace takes what is in it (at once, in the simulator)
    let (code, _, err) = kubectl(&kc, &["delete", "namespace", "shop"]);
    assert_eq!(code, 0, "{err}");
    assert!(sim.get("v1", "ConfigMap", Some("shop"), "settings").is_err());
}
