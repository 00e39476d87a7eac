//! The provider against the simulator: in-sync audits cost list requests
//! only, drift is found with its path and field manager and confirmed by a
//! server-side dry run (never a write), unmanaged objects and the system's
//! own, apply and prune, import, TLS, and every fault the issue names.

use std::time::Duration;

use plumb_kubernetes::sim::{Deny, Fault, Sim, SimConfig, SimTls};
use plumb_kubernetes::{build, KubernetesProvider};
use plumb_model::{Action, ApplyChange, Authority, ConfirmedBy, Ctx, Outcome, Provider};
use serde_json::{json, Value};

mod common;
use common::{plan, Change};

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
  selector:
    matchLabels: {app: cart}
  template:
    metadata:
      labels: {app: cart}
    spec:
      containers:
      - name: web
        image: example/cart:1.4
        ports:
        - containerPort: 8080
        resources:
          limits: {cpu: 1000m, memory: 1024Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: shop
spec:
  selector: {app: cart}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cart-config
  namespace: shop
data:
  LOG_LEVEL: info
---
apiVersion: v1
kind: Secret
metadata:
  name: cart-db
  namespace: shop
stringData:
  password: hunter2-very-secret
"#;

struct Setup {
    sim: Sim,
    dir: tempfile::TempDir,
    provider: KubernetesProvider,
    ctx: Ctx,
}

async fn setup_with(config: SimConfig, ca: Option<&str>, manifests: &str) -> Setup {
    let sim = Sim::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("desired")).unwrap();
    std::fs::write(dir.path().join("desired/app.yaml"), manifests).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml(ca)).unwrap();
    let provider = build(&json!({"kubeconfig": "kubeconfig", "context": "sim"}), dir.path()).unwrap();
    let mut ctx = Ctx::new("prod", dir.path().join("cache"));
    ctx.timeout = Duration::from_secs(5);
    Setup {
        sim,
        dir,
        provider,
        ctx,
    }
}

async fn setup() -> Setup {
    let s = setup_with(SimConfig::default(), None, MANIFESTS).await;
    seed(&s);
    s
}

/// Applies the manifests as `kubectl apply --server-side` would.
fn seed(s: &Setup) {
    for doc in serde_yaml_ng::Deserializer::from_str(MANIFESTS) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        s.sim.apply(v).unwrap();
    }
}

fn desired_dir(s: &Setup) -> std::path::PathBuf {
    s.dir.path().join("desired")
}

#[tokio::test]
async fn in_sync_cluster_costs_list_requests_only() {
    let s = setup().await;
    s.sim.clear_requests();
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let shown: Vec<_> = changes.iter().map(|c| (&c.id, c.action, &c.paths)).collect();
    assert!(changes.is_empty(), "{shown:?}");
    let requests = s.sim.requests();
    assert!(requests.iter().all(|r| r.method == "GET"), "{requests:?}");
    // discovery of 2 group-versions + one list per kind (4 namespaced kinds
    // in one namespace, Namespace cluster-wide).
    assert_eq!(requests.len(), 2 + 5, "{requests:?}");
    assert!(requests.iter().filter(|r| r.query.contains("limit=500")).count() == 5);
}

#[tokio::test]
async fn hand_edits_are_found_with_path_and_manager_and_confirmed_by_dry_run() {
    let s = setup().await;
    s.sim
        .edit("apps/v1", "Deployment", Some("shop"), "cart", "kubectl-set", |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/cart:1.5");
        })
        .unwrap();
    s.sim
        .edit("v1", "ConfigMap", Some("shop"), "cart-config", "kubectl-label", |o| {
            o["metadata"]["labels"] = json!({"hand": "made"});
        })
        .unwrap();
    s.sim.clear_requests();
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let deploy = changes
        .iter()
        .find(|c| c.id == "apps/v1/Deployment/shop/cart")
        .expect("deployment drift");
    assert_eq!(deploy.paths, vec!["/spec/template/spec/containers[name=web]/image"]);
    assert_eq!(deploy.changed_by.as_ref().map(|c| c.who.as_str()), Some("kubectl-set"));
    assert!(deploy.changed_by.as_ref().unwrap().when.is_some());
    assert_eq!(deploy.confirmed_by, Some(ConfirmedBy::DryRun));
    let cm = changes
        .iter()
        .find(|c| c.id == "core/v1/ConfigMap/shop/cart-config")
        .expect("label drift");
    assert_eq!(cm.paths, vec!["/metadata/labels"]);
    assert_eq!(cm.changed_by.as_ref().map(|c| c.who.as_str()), Some("kubectl-label"));
    // A hand-added field is never cleared by a dry run, and needs none.
    assert_eq!(cm.confirmed_by, Some(ConfirmedBy::Offline));
    let requests = s.sim.requests();
    assert!(
        !requests.iter().any(|r| r.is_write()),
        "a plan never writes: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.method == "PATCH" && r.dry_run),
        "{requests:?}"
    );
}

#[tokio::test]
async fn refused_dry_run_leaves_the_change_unconfirmed() {
    let s = setup().await;
    s.sim
        .edit("apps/v1", "Deployment", Some("shop"), "cart", "kubectl-edit", |o| {
            o["spec"]["replicas"] = json!(9);
        })
        .unwrap();
    s.sim.deny(Deny {
        verb: Some("patch".into()),
        ..Default::default()
    });
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let deploy = changes.iter().find(|c| c.id == "apps/v1/Deployment/shop/cart").unwrap();
    assert_eq!(deploy.paths, vec!["/spec/replicas"]);
    assert_eq!(deploy.confirmed_by, Some(ConfirmedBy::Unconfirmed));
}

#[tokio::test]
async fn unmanaged_objects_but_not_the_systems_own() {
    let s = setup().await;
    s.sim
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray", "namespace": "shop"}, "data": {"a": "b"}}))
        .unwrap();
    s.sim
        .apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "someone-elses"}, "rules": []}))
        .unwrap();
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let unmanaged: Vec<&str> = changes
        .iter()
        .filter(|c| c.action == Action::Unmanaged)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        unmanaged,
        vec!["core/v1/ConfigMap/shop/stray"],
        "kube-root-ca.crt and default SA stay out"
    );
}

#[tokio::test]
async fn deleted_object_plans_create_and_apply_converges() {
    let s = setup().await;
    s.sim.delete("v1", "ConfigMap", Some("shop"), "cart-config").unwrap();
    s.sim
        .edit("apps/v1", "Deployment", Some("shop"), "cart", "kubectl-set", |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/cart:bad");
        })
        .unwrap();
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let actions: Vec<(&str, Action)> = changes.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert!(
        actions.contains(&("core/v1/ConfigMap/shop/cart-config", Action::Create)),
        "{actions:?}"
    );
    let batch: Vec<ApplyChange> = changes
        .iter()
        .map(|c| ApplyChange {
            id: c.id.clone(),
            action: c.action,
            desired: c.desired.clone(),
            live: c.live.clone(),
        })
        .collect();
    // Without force the image conflict with kubectl-set is reported, not forced.
    let results = s.provider.apply(&batch, &s.ctx).await.unwrap();
    let deploy = results.iter().find(|r| r.id == "apps/v1/Deployment/shop/cart").unwrap();
    match &deploy.outcome {
        Outcome::Failed(m) => assert!(m.contains("409") && m.contains("force_conflicts"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut forced = s.ctx.clone();
    forced.guards.insert("force_conflicts".into(), json!(true));
    let results = s.provider.apply(&batch, &forced).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let after = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let shown: Vec<_> = after.iter().map(|c| (&c.id, c.action, &c.paths)).collect();
    assert!(after.is_empty(), "plan after apply: {shown:?}");
    let cm = s.sim.get("v1", "ConfigMap", Some("shop"), "cart-config").unwrap();
    assert_eq!(cm["metadata"]["labels"]["plumb.dev/target"], "prod");
}

fn batch_of(changes: &[Change]) -> Vec<ApplyChange> {
    changes
        .iter()
        .map(|c| ApplyChange {
            id: c.id.clone(),
            action: c.action,
            desired: c.desired.clone(),
            live: c.live.clone(),
        })
        .collect()
}

/// A cluster plumb applied itself (field manager `plumb`, with its
/// mark), where `kubectl edit` then added a label, a container port and an
/// env var.
async fn plumb_applied_then_hand_added() -> Setup {
    let s = setup_with(SimConfig::default(), None, MANIFESTS).await;
    for doc in serde_yaml_ng::Deserializer::from_str(MANIFESTS) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        v["metadata"]["labels"]["plumb.dev/target"] = json!("prod");
        s.sim.apply_as(v, "plumb", false).unwrap();
    }
    hand_add(&s);
    s
}

fn hand_add(s: &Setup) {
    s.sim
        .edit("apps/v1", "Deployment", Some("shop"), "cart", "kubectl-edit", |o| {
            o["metadata"]["labels"]["hand"] = json!("made");
            let c = &mut o["spec"]["template"]["spec"]["containers"][0];
            c["ports"]
                .as_array_mut()
                .unwrap()
                .push(json!({"containerPort": 9090, "protocol": "TCP"}));
            c["env"] = json!([{"name": "DEBUG", "value": "1"}]);
        })
        .unwrap();
}

const HAND_ADDED: [&str; 3] = [
    "/metadata/labels/hand",
    "/spec/template/spec/containers[name=web]/env",
    "/spec/template/spec/containers[name=web]/ports[containerPort=9090,protocol=TCP]",
];

#[tokio::test]
async fn apply_removes_hand_added_label_port_and_env_so_the_next_plan_is_empty() {
    let s = plumb_applied_then_hand_added().await;
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    assert_eq!(
        changes.len(),
        1,
        "{:?}",
        changes.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    assert_eq!(changes[0].paths, HAND_ADDED);
    assert_eq!(
        changes[0].changed_by.as_ref().map(|c| c.who.as_str()),
        Some("kubectl-edit")
    );
    s.sim.clear_requests();
    // No force_conflicts: removing fields Git does not set is no conflict.
    let results = s.provider.apply(&batch_of(&changes), &s.ctx).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let writes: Vec<String> = s
        .sim
        .requests()
        .iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {}?{} {}", r.method, r.path, r.query, r.status))
        .collect();
    assert_eq!(
        writes,
        vec![
            "PATCH /apis/apps/v1/namespaces/shop/deployments/cart?fieldManager=plumb 200",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/cart?fieldManager=plumb 200",
        ],
        "one server-side apply, one JSON patch removing the hand-added fields"
    );
    let live = s.sim.get("apps/v1", "Deployment", Some("shop"), "cart").unwrap();
    assert!(live["metadata"]["labels"].get("hand").is_none(), "{live}");
    let c = &live["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"].as_array().unwrap().len(), 1, "{c}");
    assert!(
        c.get("env").is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
        "{c}"
    );
    assert!(
        !live["metadata"]["managedFields"].to_string().contains("kubectl-edit"),
        "kubectl-edit owns nothing any more"
    );
    let after = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let shown: Vec<_> = after.iter().map(|c| (&c.id, c.action, &c.paths)).collect();
    assert!(after.is_empty(), "plan after apply: {shown:?}");
}

#[tokio::test]
async fn a_write_between_apply_and_removal_is_read_again_and_removed_too() {
    let s = plumb_applied_then_hand_added().await;
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    s.sim.race("application/json-patch+json", "kubectl-label", |o| {
        o["metadata"]["labels"]["late"] = json!("comer");
    });
    s.sim.clear_requests();
    let results = s.provider.apply(&batch_of(&changes), &s.ctx).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let statuses: Vec<(String, u16)> = s.sim.requests().iter().map(|r| (r.method.clone(), r.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("PATCH".to_string(), 200),
            ("PATCH".to_string(), 422),
            ("GET".to_string(), 200),
            ("PATCH".to_string(), 200)
        ],
        "the stale test fails whole, plumb reads again and removes"
    );
    let live = s.sim.get("apps/v1", "Deployment", Some("shop"), "cart").unwrap();
    assert!(live["metadata"]["labels"].get("late").is_none(), "{live}");
    assert!(plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap().is_empty());
}

#[tokio::test]
async fn removal_refused_is_a_failure_naming_request_status_and_fields() {
    let s = plumb_applied_then_hand_added().await;
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    // Every removal attempt meets a fresh concurrent write.
    for i in 0..3 {
        s.sim.race("application/json-patch+json", "kubectl-label", move |o| {
            o["metadata"]["labels"][format!("w{i}")] = json!("x");
        });
    }
    let results = s.provider.apply(&batch_of(&changes), &s.ctx).await.unwrap();
    match &results[0].outcome {
        Outcome::Failed(m) => {
            assert!(m.contains("PATCH http://127.0.0.1:"), "{m}");
            assert!(m.contains("/deployments/cart"), "{m}");
            assert!(m.contains("422"), "{m}");
            assert!(m.contains("/metadata/labels/hand"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn kept_field_managers_keep_their_fields() {
    let s = plumb_applied_then_hand_added().await;
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let mut ctx = s.ctx.clone();
    ctx.guards.insert("keep_field_managers".into(), json!(["kubectl-edit"]));
    let results = s.provider.apply(&batch_of(&changes), &ctx).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let after = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].paths, HAND_ADDED, "still drift, still shown");
}

#[tokio::test]
async fn only_marked_objects_are_pruned() {
    let s = setup().await;
    s.sim
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "old", "namespace": "shop", "labels": {"plumb.dev/target": "prod"}}, "data": {"a": "b"}}))
        .unwrap();
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let old = changes.iter().find(|c| c.id == "core/v1/ConfigMap/shop/old").unwrap();
    assert_eq!(old.action, Action::Delete);
    let batch = vec![ApplyChange {
        id: old.id.clone(),
        action: Action::Delete,
        desired: None,
        live: old.live.clone(),
    }];
    let results = s.provider.apply(&batch, &s.ctx).await.unwrap();
    assert_eq!(results[0].outcome, Outcome::Applied);
    assert!(s.sim.get("v1", "ConfigMap", Some("shop"), "old").is_err());
    // An unmarked live object handed in as a delete is refused.
    let mut foreign = old.live.clone().unwrap();
    foreign.authority = Authority::Foreign;
    let results = s
        .provider
        .apply(
            &[ApplyChange {
                id: foreign.id.clone(),
                action: Action::Delete,
                desired: None,
                live: Some(foreign),
            }],
            &s.ctx,
        )
        .await
        .unwrap();
    assert!(matches!(results[0].outcome, Outcome::Refused(_)));
}

#[tokio::test]
async fn import_then_plan_is_empty() {
    let s = setup().await;
    let out = tempfile::tempdir().unwrap();
    let connection = json!({"kubeconfig": s.dir.path().join("kubeconfig"), "namespaces": ["shop"]});
    let importer = build(&connection, s.dir.path()).unwrap();
    let live = importer.live(&Default::default(), &s.ctx).await.unwrap();
    let files = importer.import(&live, out.path(), &s.ctx).await.unwrap();
    assert!(
        files.iter().any(|f| f.ends_with("shop/deployment-cart.yaml")),
        "{files:?}"
    );
    let text = std::fs::read_to_string(out.path().join("shop/deployment-cart.yaml")).unwrap();
    for server_field in [
        "uid",
        "resourceVersion",
        "managedFields",
        "status",
        "terminationMessagePath",
        "clusterIP",
    ] {
        assert!(!text.contains(server_field), "{server_field} in {text}");
    }
    let changes = plan(&importer, out.path(), &s.ctx).await.unwrap();
    let shown: Vec<_> = changes.iter().map(|c| (&c.id, c.action, &c.paths)).collect();
    assert!(changes.is_empty(), "{shown:?}");
}

#[tokio::test]
async fn secret_values_stay_masked_and_out_of_errors() {
    let s = setup().await;
    let desired = s.provider.desired(&desired_dir(&s), &desired_dir(&s), &s.ctx).unwrap();
    let live = s.provider.live(&desired, &s.ctx).await.unwrap();
    let secret = live.resources.iter().find(|r| r.kind == "Secret").unwrap();
    assert!(matches!(&secret.sensitive, plumb_model::Sensitivity::Paths(p) if p.contains(&"/data/*".to_string())));
    let d = desired.resources.iter().find(|r| r.kind == "Secret").unwrap();
    assert!(matches!(&d.sensitive, plumb_model::Sensitivity::Paths(p) if p.contains(&"/stringData/*".to_string())));
    assert!(!secret.body_json().contains("last-applied"));
}

#[tokio::test]
async fn transient_500s_are_retried_then_reported_with_the_request() {
    let s = setup().await;
    s.sim.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/configmaps".into(),
        status: 500,
        times: 2,
        delay: None,
    });
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    assert!(changes.is_empty());
    s.sim.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/configmaps".into(),
        status: 503,
        times: 100,
        delay: None,
    });
    let err = plan(&s.provider, &desired_dir(&s), &s.ctx)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("GET http://127.0.0.1:") && err.contains("/api/v1/namespaces/shop/configmaps?limit=500"),
        "{err}"
    );
    assert!(err.contains("HTTP 503"), "{err}");
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let mut s = setup().await;
    s.ctx.timeout = Duration::from_millis(300);
    let provider = build(&json!({"kubeconfig": "kubeconfig"}), s.dir.path()).unwrap();
    s.sim.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/services".into(),
        status: 0,
        times: 100,
        delay: Some(Duration::from_secs(30)),
    });
    let started = std::time::Instant::now();
    let err = plan(&provider, &desired_dir(&s), &s.ctx)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("/services") && err.contains("no answer"), "{err}");
}

#[tokio::test]
async fn forbidden_list_names_verb_resource_and_namespace() {
    let s = setup().await;
    s.sim.deny(Deny {
        verb: Some("list".into()),
        resource: Some("secrets".into()),
        namespace: Some("shop".into()),
        ..Default::default()
    });
    let err = plan(&s.provider, &desired_dir(&s), &s.ctx)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(
        err.contains("cannot list secrets") && err.contains("namespace shop"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_kind_names_kind_and_file() {
    let s = setup_with(
        SimConfig::default(),
        None,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shop}\n",
    )
    .await;
    let err = plan(&s.provider, &desired_dir(&s), &s.ctx)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("example.com/v1 Widget") && err.contains("app.yaml:1"),
        "{err}"
    );
}

#[tokio::test]
async fn crd_and_its_objects_plan_as_create() {
    let manifests = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: shop}
spec: {size: 3}
"#;
    let s = setup_with(SimConfig::default(), None, manifests).await;
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    let mut creates: Vec<&str> = changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .map(|c| c.id.as_str())
        .collect();
    creates.sort();
    assert_eq!(
        creates,
        vec![
            "apiextensions.k8s.io/v1/CustomResourceDefinition/widgets.example.com",
            "example.com/v1/Widget/shop/w"
        ]
    );
}

#[tokio::test]
async fn unreachable_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
                      users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )
    .unwrap();
    let p = build(&json!({"kubeconfig": "kubeconfig"}), dir.path()).unwrap();
    let mut ctx = Ctx::new("t", dir.path());
    ctx.timeout = Duration::from_secs(2);
    let desired = p.desired(dir.path(), dir.path(), &ctx).unwrap();
    let err = p.live(&desired, &ctx).await.err().unwrap().to_string();
    assert!(err.contains("GET http://127.0.0.1:1/api/v1"), "{err}");
}

/// A CA and a server certificate for 127.0.0.1, PEM.
fn test_ca() -> (String, SimTls) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        ca.pem(),
        SimTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

#[tokio::test]
async fn tls_with_the_right_ca_and_a_token_works_and_a_wrong_ca_fails() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca, tls) = test_ca();
    let config = SimConfig {
        tls: Some(tls),
        token: Some("s3cr3t-token".into()),
    };
    let s = setup_with(config.clone(), Some(&ca), MANIFESTS).await;
    seed(&s);
    let changes = plan(&s.provider, &desired_dir(&s), &s.ctx).await.unwrap();
    assert!(changes.is_empty());

    let (other_ca, _) = test_ca();
    std::fs::write(s.dir.path().join("wrong"), s.sim.kubeconfig_yaml(Some(&other_ca))).unwrap();
    let p = build(&json!({"kubeconfig": "wrong"}), s.dir.path()).unwrap();
    let err = plan(&p, &desired_dir(&s), &s.ctx).await.err().unwrap().to_string();
    assert!(err.contains("https://127.0.0.1:"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-token"), "{err}");
}

/// Benchmark (issue 3): 10,000 objects over 6 kinds and 20 namespaces on the
/// simulator; API requests and wall time per audit, in sync and with 1% drift.
/// `cargo test -p plumb-kubernetes --release --test provider_live -- --ignored --nocapture bench_`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench_ten_thousand_objects() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired");
    std::fs::create_dir_all(&desired).unwrap();
    let mut text = String::new();
    let mut count = 0;
    for ns in 0..20 {
        let ns = format!("ns-{ns:02}");
        sim.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap();
        for i in 0..83 {
            let objs = [
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns}, "data": {"k": format!("v{i}")}}),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s-{i}"), "namespace": ns}, "stringData": {"p": "x"}}),
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}"), "namespace": ns}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": ns}, "spec": {"selector": {"app": format!("a{i}")}, "ports": [{"port": 80}]}}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d-{i}"), "namespace": ns},
                    "spec": {"selector": {"matchLabels": {"app": format!("a{i}")}}, "template": {"metadata": {"labels": {"app": format!("a{i}")}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": format!("r-{i}"), "namespace": ns},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ];
            for o in objs {
                sim.apply(o.clone()).unwrap();
                text.push_str("---\n");
                text.push_str(&serde_yaml_ng::to_string(&o).unwrap());
                count += 1;
            }
        }
    }
    std::fs::write(desired.join("all.yaml"), text).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml(None)).unwrap();
    let provider = build(&json!({"kubeconfig": "kubeconfig"}), dir.path()).unwrap();
    let mut ctx = Ctx::new("bench", dir.path().join("cache"));
    ctx.timeout = Duration::from_secs(60);
    for drift in [false, true] {
        if drift {
            for ns in 0..20 {
                for i in 0..5 {
                    sim.edit(
                        "v1",
                        "ConfigMap",
                        Some(&format!("ns-{ns:02}")),
                        &format!("cm-{i}"),
                        "kubectl-edit",
                        |o| {
                            o["data"]["k"] = json!("changed");
                        },
                    )
                    .unwrap();
                }
            }
        }
        sim.clear_requests();
        let started = std::time::Instant::now();
        let changes = plan(&provider, &desired, &ctx).await.unwrap();
        let elapsed = started.elapsed();
        let requests = sim.requests();
        println!(
            "objects={count} drift={drift} changes={} requests={} (dry-run {}) wall={:.2}s",
            changes.len(),
            requests.len(),
            requests.iter().filter(|r| r.dry_run).count(),
            elapsed.as_secs_f64()
        );
        if !drift {
            assert!(changes.is_empty());
        } else {
            assert_eq!(changes.len(), 100);
        }
    }
}
