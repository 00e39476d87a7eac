//! The simulator's HTTP API: discovery, pagination, server-side apply with
//! dry run, conflicts and managed fields, metav1 Status errors, faults,
//! 401/403, CRDs, watch and TLS.

use std::time::Duration;

use plumb_kubernetes::sim::{Deny, Fault, Sim, SimConfig, SimTls};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain-HTTP request; returns status, headers (lower-cased text) and body.
async fn call(
    sim: &Sim,
    method: &str,
    path: &str,
    ctype: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String, Value) {
    let addr = sim.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test/1.0\r\nContent-Type: {ctype}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_lowercase(), v)
}

async fn get(sim: &Sim, path: &str) -> (u16, Value) {
    let (s, _, v) = call(sim, "GET", path, "application/json", "", None).await;
    (s, v)
}

async fn apply(sim: &Sim, path: &str, obj: &Value, query: &str) -> (u16, Value) {
    let (s, _, v) = call(
        sim,
        "PATCH",
        &format!("{path}?{query}"),
        "application/apply-patch+yaml",
        &obj.to_string(),
        None,
    )
    .await;
    (s, v)
}

fn deployment(image: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cart", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "cart"}},
            "template": {"metadata": {"labels": {"app": "cart"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/cart";

#[tokio::test]
async fn discovery_lists_groups_and_resources() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (s, v) = get(&sim, "/api").await;
    assert_eq!((s, v["versions"][0].as_str()), (200, Some("v1")));
    let (_, v) = get(&sim, "/apis").await;
    assert!(v["groups"].as_array().unwrap().iter().any(|g| g["name"] == "apps"));
    let (_, v) = get(&sim, "/apis/apps/v1").await;
    let d = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments")
        .unwrap()
        .clone();
    assert_eq!(
        (d["kind"].as_str(), d["namespaced"].as_bool()),
        (Some("Deployment"), Some(true))
    );
    let (s, v) = get(&sim, "/apis/nope.example.com/v1").await;
    assert_eq!((s, v["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn list_paginates_with_continue_and_selectors() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    for i in 0..7 {
        let tier = if i % 2 == 0 { "a" } else { "b" };
        sim.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}"), "namespace": "default", "labels": {"tier": tier}}, "data": {"i": i.to_string()}})).unwrap();
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10);
        let (s, v) = get(
            &sim,
            &format!("/api/v1/namespaces/default/configmaps?limit=3&labelSelector=tier%20in%20(a,b)&continue={cont}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["kind"], "ConfigMapList");
        for i in v["items"].as_array().unwrap() {
            assert!(i.get("kind").is_none(), "built-in list items carry no kind");
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match v["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("cm{i}")).collect::<Vec<_>>());
    let (_, v) = get(&sim, "/api/v1/namespaces/default/configmaps?limit=2").await;
    assert_eq!(v["metadata"]["remainingItemCount"], 6, "7 cm + kube-root-ca.crt");
    let (_, v) = get(&sim, "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Db").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let (_, v) = get(
        &sim,
        "/api/v1/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt",
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 4, "one per bootstrap namespace");
    let (s, v) = get(&sim, "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage").await;
    assert_eq!((s, v["reason"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test]
async fn server_side_apply_dry_run_conflicts_and_managed_fields() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (s, created) = apply(&sim, DEPLOY, &deployment("nginx:1.27", 2), "fieldManager=plumb").await;
    assert_eq!(s, 201.min(s).max(200), "{created}");
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10, "defaulted");
    assert_eq!(created["metadata"]["generation"], 1);
    let rv = created["metadata"]["resourceVersion"].clone();

    // a dry run returns the would-be object and changes nothing
    sim.clear_requests();
    let (s, dry) = apply(
        &sim,
        DEPLOY,
        &deployment("nginx:1.28", 2),
        "fieldManager=plumb&dryRun=All",
    )
    .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
    let (_, now) = get(&sim, DEPLOY).await;
    assert_eq!(now["metadata"]["resourceVersion"], rv);
    assert_eq!(now["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    let recs = sim.requests();
    assert!(recs[0].dry_run && !recs[0].is_write() && recs[0].method == "PATCH");

    // a hand edit (Update operation) takes ownership of the changed field only
    sim.edit("apps/v1", "Deployment", Some("default"), "cart", "kubectl-set", |o| {
        o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:evil");
    })
    .unwrap();
    let (_, now) = get(&sim, DEPLOY).await;
    let mf = now["metadata"]["managedFields"].as_array().unwrap();
    let set = mf.iter().find(|e| e["manager"] == "kubectl-set").unwrap();
    assert_eq!(set["operation"], "Update");
    assert_eq!(
        set["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}}}})
    );
    assert_eq!(now["metadata"]["generation"], 2);

    // applying the old image as plumb conflicts, with the real wording
    let (s, e) = apply(
        &sim,
        DEPLOY,
        &deployment("nginx:1.27", 2),
        "fieldManager=plumb&dryRun=All",
    )
    .await;
    assert_eq!((s, e["reason"].as_str()), (409, Some("Conflict")), "{e}");
    assert_eq!(
        e["message"],
        r#"Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="web"].image"#
    );
    assert_eq!(e["details"]["causes"][0]["type"], "FieldManagerConflict");
    // forced dry run succeeds and still writes nothing
    let (s, _) = apply(
        &sim,
        DEPLOY,
        &deployment("nginx:1.27", 2),
        "fieldManager=plumb&dryRun=All&force=true",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        get(&sim, DEPLOY).await.1["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:evil"
    );
    // forced for real: plumb takes the field back, kubectl-set loses it
    let (s, v) = apply(
        &sim,
        DEPLOY,
        &deployment("nginx:1.27", 2),
        "fieldManager=plumb&force=true",
    )
    .await;
    assert_eq!(s, 200);
    assert!(v["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["manager"] != "kubectl-set"));

    // a field the applier stops sending is removed; a re-apply of the same
    // config does not bump resourceVersion
    let mut less = deployment("nginx:1.27", 2);
    less["metadata"]["labels"] = json!({"team": "a"});
    let (_, v) = apply(&sim, DEPLOY, &less, "fieldManager=plumb").await;
    assert_eq!(v["metadata"]["labels"]["team"], "a");
    let (_, v) = apply(&sim, DEPLOY, &deployment("nginx:1.27", 2), "fieldManager=plumb").await;
    assert!(v["metadata"].get("labels").and_then(|l| l.get("team")).is_none(), "{v}");
    let (_, again) = apply(&sim, DEPLOY, &deployment("nginx:1.27", 2), "fieldManager=plumb").await;
    assert_eq!(again["metadata"]["resourceVersion"], v["metadata"]["resourceVersion"]);

    // apply without a field manager is refused
    let (s, _) = apply(&sim, DEPLOY, &deployment("nginx:1.27", 2), "").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn status_errors_have_real_reasons() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (s, v) = get(&sim, "/apis/apps/v1/namespaces/default/deployments/nope").await;
    assert_eq!(
        (s, v["message"].as_str()),
        (404, Some(r#"deployments.apps "nope" not found"#))
    );
    assert_eq!(
        v["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}});
    let (s, _, _) = call(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm.to_string(),
        None,
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, v) = call(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm.to_string(),
        None,
    )
    .await;
    assert_eq!(
        (s, v["reason"].as_str(), v["message"].as_str()),
        (409, Some("AlreadyExists"), Some(r#"configmaps "x" already exists"#))
    );
    let (s, _, v) = call(
        &sim,
        "POST",
        "/api/v1/namespaces/ghost/configmaps",
        "application/json",
        &cm.to_string(),
        None,
    )
    .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (404, Some(r#"namespaces "ghost" not found"#))
    );
    let mut bad = deployment("", 1);
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    let (s, v) = apply(&sim, DEPLOY, &bad, "fieldManager=plumb").await;
    assert_eq!((s, v["reason"].as_str()), (422, Some("Invalid")), "{v}");
    assert_eq!(
        v["message"],
        r#"Deployment.apps "cart" is invalid: spec.template.spec.containers[0].image: Required value"#
    );
    // stale resourceVersion on update
    let mut stale = cm.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (s, _, v) = call(
        &sim,
        "PUT",
        "/api/v1/namespaces/default/configmaps/x",
        "application/json",
        &stale.to_string(),
        None,
    )
    .await;
    assert_eq!((s, v["reason"].as_str()), (409, Some("Conflict")));
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with(r#"Operation cannot be fulfilled on configmaps "x""#));
}

#[tokio::test]
async fn faults_forbidden_and_unauthorized() {
    let sim = Sim::start(SimConfig {
        tls: None,
        token: Some("s3cret".into()),
    })
    .await
    .unwrap();
    let (s, _, v) = call(&sim, "GET", "/api/v1/namespaces", "application/json", "", None).await;
    assert_eq!((s, v["reason"].as_str()), (401, Some("Unauthorized")));
    let tok = Some("s3cret");
    sim.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/configmaps".into(),
        status: 500,
        times: 1,
        delay: None,
    });
    let path = "/api/v1/namespaces/default/configmaps";
    let (s, _, v) = call(&sim, "GET", path, "application/json", "", tok).await;
    assert_eq!((s, v["reason"].as_str()), (500, Some("InternalError")));
    let (s, _, _) = call(&sim, "GET", path, "application/json", "", tok).await;
    assert_eq!(s, 200, "the fault fired once");
    sim.inject(Fault {
        method: None,
        path_contains: "/configmaps".into(),
        status: 429,
        times: 1,
        delay: None,
    });
    let (s, head, _) = call(&sim, "GET", path, "application/json", "", tok).await;
    assert_eq!(s, 429);
    assert!(head.contains("retry-after: 1"), "{head}");
    sim.inject(Fault {
        method: None,
        path_contains: "/configmaps".into(),
        status: 0,
        times: 1,
        delay: Some(Duration::from_millis(300)),
    });
    let started = std::time::Instant::now();
    let (s, _, _) = call(&sim, "GET", path, "application/json", "", tok).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.set_user("alice");
    sim.deny(Deny {
        verb: Some("list".into()),
        resource: Some("deployments".into()),
        ..Default::default()
    });
    let (s, _, v) = call(
        &sim,
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments",
        "application/json",
        "",
        tok,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        v["message"],
        r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" in the namespace "shop""#
    );
    let (s, _, _) = call(
        &sim,
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments/x",
        "application/json",
        "",
        tok,
    )
    .await;
    assert_eq!(s, 404, "get is still allowed");
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 500, 200, 429, 200, 403, 404]);
}

#[tokio::test]
async fn crd_makes_its_kind_servable() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (s, _) = get(&sim, "/apis/example.com/v1/namespaces/default/widgets").await;
    assert_eq!(s, 404);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (s, v) = apply(
        &sim,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        &crd,
        "fieldManager=plumb",
    )
    .await;
    assert_eq!(s, 201.min(s).max(200), "{v}");
    assert_eq!(v["spec"]["names"]["singular"], "widget");
    assert_eq!(v["status"]["conditions"][1]["type"], "Established");
    let (_, d) = get(&sim, "/apis/example.com/v1").await;
    assert_eq!(d["resources"][0]["kind"], "Widget");
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3, "tags": ["a"]}});
    let (s, _) = apply(
        &sim,
        "/apis/example.com/v1/namespaces/default/widgets/w1",
        &w,
        "fieldManager=plumb",
    )
    .await;
    assert!(s == 200 || s == 201);
    let (_, l) = get(&sim, "/apis/example.com/v1/namespaces/default/widgets").await;
    assert_eq!(
        l["items"][0]["kind"], "Widget",
        "custom resource list items keep their kind"
    );
    assert_eq!(l["items"][0]["metadata"]["generation"], 1);
}

#[tokio::test]
async fn watch_streams_events() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (_, list) = get(&sim, "/api/v1/namespaces/default/configmaps").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let addr = sim.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // wait until the response head arrives, so the watch is registered
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    sim.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "default"}}))
        .unwrap();
    let read = async {
        while !got.contains("\"ADDED\"") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended early: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("event within 5s");
    assert!(got.contains(r#""name":"w""#), "{got}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn ca_and_cert() -> (String, SimTls) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        ca.pem(),
        SimTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

async fn kube_client(sim: &Sim, ca: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig_yaml(Some(ca))).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test]
async fn tls_with_the_right_ca_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca, tls) = ca_and_cert();
    let sim = Sim::start(SimConfig {
        tls: Some(tls),
        token: Some("t0k".into()),
    })
    .await
    .unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let client = kube_client(&sim, &ca).await;
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    let (other_ca, _) = ca_and_cert();
    let client = kube_client(&sim, &other_ca).await;
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let err = api.list(&Default::default()).await.unwrap_err();
    let mut chain = err.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(e) = src {
        chain.push_str(&format!(": {e}"));
        src = e.source();
    }
    assert!(
        chain.contains("UnknownIssuer") || chain.to_lowercase().contains("certificate"),
        "{chain}"
    );
    sim.shutdown().await;
}

/// RFC 6902 JSON patch as kube-apiserver runs it (handlers/patch.go
/// `applyJSPatch`): a `test` that fails refuses the whole patch with 422
/// Invalid and the fixed generic message; `remove` takes the field out of
/// every manager's set, and a manager left with nothing is dropped
/// (structured-merge-diff `Updater.update`); more than 10000 operations is
/// 413.
#[tokio::test]
async fn json_patch_test_guard_and_remove_ownership() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let path = "/apis/apps/v1/namespaces/default/deployments/cart";
    let (s, _) = apply(&sim, path, &deployment("nginx:1", 1), "fieldManager=plumb").await;
    assert!(s == 200 || s == 201, "{s}");
    sim.edit("apps/v1", "Deployment", Some("default"), "cart", "kubectl-label", |o| {
        o["metadata"]["labels"] = json!({"hand": "made"});
    })
    .unwrap();
    let (_, before) = get(&sim, path).await;
    let rv = before["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let managers = |o: &Value| -> Vec<String> {
        o["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(managers(&before).contains(&"kubectl-label".to_string()));

    // A stale resourceVersion: the whole patch is refused, nothing changes.
    let stale = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                       {"op": "remove", "path": "/metadata/labels/hand"}]);
    let (s, _, v) = call(
        &sim,
        "PATCH",
        &format!("{path}?fieldManager=plumb"),
        "application/json-patch+json",
        &stale.to_string(),
        None,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(
        v["message"],
        "the server rejected our request due to an error in our request"
    );
    let (_, same) = get(&sim, path).await;
    assert_eq!(same["metadata"]["resourceVersion"], rv);
    assert_eq!(same["metadata"]["labels"]["hand"], "made");

    // Removing a path that is not there is the same 422.
    let missing = json!([{"op": "remove", "path": "/metadata/labels/nope"}]);
    let (s, _, _) = call(
        &sim,
        "PATCH",
        path,
        "application/json-patch+json",
        &missing.to_string(),
        None,
    )
    .await;
    assert_eq!(s, 422);

    // The current resourceVersion: removed, and kubectl-label owns nothing more.
    let good = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                      {"op": "remove", "path": "/metadata/labels/hand"}]);
    let (s, _, after) = call(
        &sim,
        "PATCH",
        &format!("{path}?fieldManager=plumb"),
        "application/json-patch+json",
        &good.to_string(),
        None,
    )
    .await;
    assert_eq!(s, 200, "{after}");
    assert!(after["metadata"]["labels"].get("hand").is_none());
    assert_ne!(after["metadata"]["resourceVersion"], rv);
    let names = managers(&after);
    assert!(!names.contains(&"kubectl-label".to_string()), "{names:?}");
    assert_eq!(
        names,
        vec!["plumb".to_string()],
        "a removal alone gives plumb no Update entry"
    );

    let too_many: Vec<Value> = (0..10001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Deployment"}))
        .collect();
    let (s, _, v) = call(
        &sim,
        "PATCH",
        path,
        "application/json-patch+json",
        &Value::Array(too_many).to_string(),
        None,
    )
    .await;
    assert_eq!(s, 413, "{v}");
}

/// kube-apiserver answers 201 Created when a server-side apply creates the
/// object and 200 when it updates it (handlers/patch.go `wasCreated`).
#[tokio::test]
async fn server_side_apply_answers_201_on_create_and_200_on_update() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = RawClient;
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps/created?fieldManager=plumb",
        sim.url()
    );
    let body = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "created"}, "data": {"a": "1"}}"#;
    let first = client.patch(&url, body).await;
    assert_eq!(first, 201);
    let second = client.patch(&url, body).await;
    assert_eq!(second, 200);
}

/// A minimal HTTP/1.1 client over a TcpStream (the crate has no HTTP client
/// dependency for tests): sends one PATCH with the apply content type and
/// returns the status code.
struct RawClient;

impl RawClient {
    async fn patch(&self, url: &str, body: &str) -> u16 {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let request = format!(
            "PATCH /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/apply-patch+yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
