//! The simulator at benchmark size: 10,000 objects over 6 kinds and 20
//! namespaces. Run: `cargo test -p plumb-kubernetes --test sim_scale -- --ignored --nocapture`
//! (add `--release` for the figures in BENCHMARKS.md).

use std::time::Instant;

use plumb_kubernetes::sim::{Sim, SimConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn object(kind: usize, ns: &str, i: usize) -> Value {
    let name = format!("obj-{i}");
    match kind {
        0 => {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": i.to_string()}})
        }
        1 => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": {"k": "v"}})
        }
        2 => json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        3 => json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
        4 => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}),
        _ => {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        }
    }
}

async fn get(sim: &Sim, path: &str) -> Value {
    let addr = sim.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_objects() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let started = Instant::now();
    for n in 0..20 {
        sim.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}}))
            .unwrap();
    }
    for i in 0..10_000 {
        sim.apply(object(i % 6, &format!("ns-{}", (i / 6) % 20), i)).unwrap();
    }
    let seeded = started.elapsed();
    let plurals = [
        "/api/v1/namespaces/{}/configmaps",
        "/api/v1/namespaces/{}/secrets",
        "/api/v1/namespaces/{}/serviceaccounts",
        "/api/v1/namespaces/{}/services",
        "/apis/apps/v1/namespaces/{}/deployments",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/roles",
    ];
    sim.clear_requests();
    let started = Instant::now();
    let mut items = 0;
    for n in 0..20 {
        for p in plurals {
            let base = p.replace("{}", &format!("ns-{n}"));
            let mut cont = String::new();
            loop {
                let v = get(&sim, &format!("{base}?limit=500&continue={cont}")).await;
                items += v["items"].as_array().unwrap().len();
                match v["metadata"]["continue"].as_str() {
                    Some(c) => cont = c.to_string(),
                    None => break,
                }
            }
        }
    }
    let listed = started.elapsed();
    let requests = sim.requests().len();
    println!(
        "seeded {} objects in {seeded:?}; listed {items} items with {requests} requests in {listed:?}",
        sim.object_count()
    );
    assert!(items >= 10_000);
    assert_eq!(requests, 120, "one page per kind and namespace at limit=500");
}
