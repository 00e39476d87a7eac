//! The plan engine alone, in one process: 100,000 in-sync documents of about
//! 2 KB of nested JSON plus 1,000 drifted ones, planned by the same engine
//! `plumb plan` uses. Prints documents per second and peak RSS (VmHWM)
//! against the size of the input JSON. Run: `cargo bench --bench engine`
//! (optionally `-- 20000 200` for other counts). See BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use plumb::mask::Masker;
use plumb::plan::plan_target;
use plumb::policy::CompiledPolicy;
use plumb_model::{ApplyChange, ChangeResult, Ctx, Desired, ListKey, Live, Provider, ProviderError, Resource};
use serde_json::{json, Value};

struct Bench;

#[async_trait]
impl Provider for Bench {
    fn list_keys(&self) -> Vec<ListKey> {
        vec![
            ListKey::new("*", "**/containers", &["name"]),
            ListKey::new("*", "**/containers/ports", &["containerPort", "protocol"]),
            ListKey::new("*", "**/containers/env", &["name"]),
        ]
    }
    fn desired(&self, _: &Path, _: &Path, _: &Ctx) -> Result<Desired, ProviderError> {
        Ok(Desired::default())
    }
    async fn live(&self, _: &Desired, _: &Ctx) -> Result<Live, ProviderError> {
        Ok(Live::default())
    }
    async fn apply(&self, _: &[ApplyChange], _: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        Ok(Vec::new())
    }
    async fn import(&self, _: &Live, _: &Path, _: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A Deployment-shaped document of about 2 KB.
fn document(i: usize) -> Value {
    let env: Vec<Value> = (0..8)
        .map(|e| json!({"name": format!("SETTING_{e}"), "value": format!("value-{i}-{e}")}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": format!("service-{i}"),
            "namespace": format!("team-{}", i % 50),
            "labels": {"app": format!("service-{i}"), "tier": "backend", "team": format!("team-{}", i % 50)},
            "annotations": {"owner": "platform@example.com", "runbook": format!("https://runbooks.example.com/service-{i}")}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": format!("service-{i}")}},
            "template": {
                "metadata": {"labels": {"app": format!("service-{i}"), "tier": "backend"}},
                "spec": {
                    "serviceAccountName": format!("service-{i}"),
                    "containers": [
                        {
                            "name": "app",
                            "image": format!("registry.example.com/service-{i}:1.{}.0", i % 20),
                            "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}, {"containerPort": 9090, "protocol": "TCP", "name": "metrics"}],
                            "env": env,
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
                        },
                        {"name": "proxy", "image": "registry.example.com/proxy:2.4.1", "args": ["--listen=:15001", "--upstream=127.0.0.1:8080"]}
                    ]
                }
            }
        }
    })
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let in_sync = args.first().copied().unwrap_or(100_000);
    let drifted = args.get(1).copied().unwrap_or(1_000);
    let total = in_sync + drifted;

    let mut input_bytes = 0usize;
    let mut desired = Vec::with_capacity(total);
    let mut live = Vec::with_capacity(total);
    for i in 0..total {
        let body = document(i);
        let id = format!("apps/v1/Deployment/team-{}/service-{i}", i % 50);
        let mut live_body = body.clone();
        if i >= in_sync {
            live_body["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example.com/hotfix:0");
        }
        input_bytes += body.to_string().len() + live_body.to_string().len();
        desired.push(Resource::new(id.clone(), "Deployment", body));
        live.push(Resource::new(id, "Deployment", live_body));
    }
    let rss_before = peak_rss_bytes().unwrap_or(0);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let policy = CompiledPolicy::audit_only();
    let masker = Masker::with_key(b"benchmark-key-benchmark-key-0000");
    let ctx = Ctx::new("bench", std::env::temp_dir());
    let started = Instant::now();
    let outcome = runtime
        .block_on(plan_target(
            "bench",
            "bench",
            &Bench,
            Desired { resources: desired, findings: Vec::new() },
            Live { resources: live, findings: Vec::new() },
            &policy,
            &masker,
            &ctx,
            chrono::Utc::now(),
        ))
        .expect("plan");
    let elapsed = started.elapsed();
    let peak = peak_rss_bytes().unwrap_or(0);
    assert_eq!(outcome.plan.summary.in_sync, in_sync);
    assert_eq!(outcome.plan.summary.update, drifted);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("documents:            {total} ({in_sync} in sync, {drifted} drifted)");
    println!("input JSON:           {:.1} MiB (desired + live, {:.0} bytes per document)", mib(input_bytes as u64), input_bytes as f64 / (2.0 * total as f64));
    println!("plan time:            {:.3} s", elapsed.as_secs_f64());
    println!("documents per second: {:.0}", total as f64 / elapsed.as_secs_f64());
    println!("peak RSS:             {:.1} MiB ({:.2}x input JSON); {:.1} MiB before planning", mib(peak), peak as f64 / input_bytes as f64, mib(rss_before));
}
