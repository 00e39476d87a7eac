//! The plan engine alone, in one process: 100,000 in-sync documents of about
//! 2 KB of nested JSON plus 1,000 drifted ones, planned by the same engine
//! `plumb plan` uses. Prints documents per second and peak RSS (VmHWM)
//! against the size of the input JSON. See BENCHMARKS.md.
//!
//! `cargo bench --bench engine` — live documents are the same text as the
//! desired ones (a provider that canonicalises what it reads).
//! `cargo bench --bench engine -- --status` — every live document also
//! carries a `status` block the provider's normalisation removes, so every
//! pair is parsed, normalised and compared structurally.
//! Counts: `-- 20000 200` (in sync, drifted).

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use plumb::mask::Masker;
use plumb::plan::{plan_target, Planning};
use plumb::policy::CompiledPolicy;
use plumb_model::{ApplyChange, ChangeResult, Ctx, Desired, ListKey, Live, Pair, Provider, ProviderError, Resource};
use serde_json::{json, Value};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bench;

/// What the API server adds on its own, as Kubernetes does.
fn status_block(i: usize) -> Value {
    json!({"observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
           "conditions": [{"type": "Available", "status": "True", "reason": format!("MinimumReplicasAvailable-{i}")}]})
}

#[async_trait]
impl Provider for Bench {
    fn list_keys(&self) -> Vec<ListKey> {
        vec![
            ListKey::new("*", "**/containers", &["name"]),
            ListKey::new("*", "**/containers/ports", &["containerPort", "protocol"]),
            ListKey::new("*", "**/containers/env", &["name"]),
        ]
    }
    fn normalize(&self, pair: Pair<'_>) {
        if let Some(live) = pair.live.and_then(Value::as_object_mut) {
            live.remove("status");
        }
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
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                            "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 20, "failureThreshold": 3},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/service"}, {"name": "tmp", "mountPath": "/tmp"}],
                            "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                        },
                        {"name": "proxy", "image": "registry.example.com/proxy:2.4.1", "args": ["--listen=:15001", "--upstream=127.0.0.1:8080"]}
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": format!("service-{i}-config")}}, {"name": "tmp", "emptyDir": {}}],
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backend", "effect": "NoSchedule"}]
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let with_status = std::env::args().any(|a| a == "--status");
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
        if with_status {
            live_body["status"] = status_block(i);
        }
        input_bytes += body.to_string().len() + live_body.to_string().len();
        desired.push(Resource::new(id.clone(), "Deployment", body));
        live.push(Resource::new(id, "Deployment", live_body));
    }
    let rss_before = peak_rss_bytes().unwrap_or(0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let policy = CompiledPolicy::audit_only();
    let masker = Masker::with_key(b"benchmark-key-benchmark-key-0000");
    let ctx = Ctx::new("bench", std::env::temp_dir());
    let started = Instant::now();
    let outcome = runtime
        .block_on(plan_target(
            &Planning {
                target: "bench",
                provider_name: "bench",
                provider: &Bench,
                policy: &policy,
                masker: &masker,
                ctx: &ctx,
                now: chrono::Utc::now(),
            },
            Desired {
                resources: desired,
                findings: Vec::new(),
            },
            Live {
                resources: live,
                findings: Vec::new(),
            },
        ))
        .map_err(|e| format!("plan: {e}"))?;
    let elapsed = started.elapsed();
    let peak = peak_rss_bytes().unwrap_or(0);
    assert_eq!(outcome.plan.summary.in_sync, in_sync);
    assert_eq!(outcome.plan.summary.update, drifted);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "mode:                 {}",
        if with_status {
            "live carries status (every pair parsed and normalised)"
        } else {
            "live text equals desired text where in sync"
        }
    );
    println!("documents:            {total} ({in_sync} in sync, {drifted} drifted)");
    println!(
        "input JSON:           {:.1} MiB (desired + live, {:.0} bytes per document)",
        mib(input_bytes as u64),
        input_bytes as f64 / (2.0 * total as f64)
    );
    println!("plan time:            {:.3} s", elapsed.as_secs_f64());
    println!("documents per second: {:.0}", total as f64 / elapsed.as_secs_f64());
    println!(
        "peak RSS:             {:.1} MiB ({:.2}x input JSON); {:.1} MiB before planning",
        mib(peak),
        peak as f64 / input_bytes as f64,
        mib(rss_before)
    );
    Ok(())
}
