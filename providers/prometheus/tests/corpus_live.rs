//! The real corpus (2,113 rules) and a synthetic 5,000 rules in 500 groups
//! loaded into a real Prometheus, audited end to end: Prometheus re-prints
//! every expression and duration, and plumb must still find no drift.
//!
//! The `#[ignore]`d `bench_*` tests print the figures for BENCHMARKS.md:
//! `cargo test --release -p plumb-prometheus --test corpus_live -- --ignored --nocapture --test-threads 1`

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use plumb_model::{Desired, Provider};
use plumb_prometheus::{build, prometheus::file_name, PrometheusProvider};
use serde_json::json;
use tempfile::TempDir;

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/prometheus-rules");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: corpus not found at {}", dir.display());
        None
    }
}

/// The corpus as Prometheus would be given it: each file under its
/// plumb name, a `PrometheusRule` reduced to its `spec` (as the operator
/// writes it).
fn server_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in plumb_model::files::walk(dir, &["yml", "yaml"]).unwrap() {
        let rel = path.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if text.contains("kind: PrometheusRule") {
            let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
            let mut spec = doc["spec"].clone();
            for g in spec["groups"].as_array_mut().unwrap() {
                g.as_object_mut().unwrap().remove("partial_response_strategy");
            }
            serde_yaml_ng::to_string(&spec).unwrap()
        } else {
            text
        };
        out.push((file_name(&rel), text));
    }
    out
}

fn synthetic(root: &Path, groups: usize, per_group: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for f in 0..groups / 10 {
        let mut text = String::from("groups:\n");
        for g in 0..10 {
            text.push_str(&format!("- name: group-{f}-{g}\n  interval: 30s\n  rules:\n"));
            for r in 0..per_group {
                if r % 2 == 0 {
                    text.push_str(&format!(
                        "  - alert: Alert{r}\n    expr: sum by (job, instance) (rate(http_requests_total{{code=~\"5..\", job=\"svc{g}\"}}[5m])) / sum by (job, instance) (rate(http_requests_total{{job=\"svc{g}\"}}[5m])) > 0.{r}\n    for: 10m\n    labels: {{severity: warning, team: t{f}}}\n    annotations: {{summary: \"{{{{ $labels.instance }}}} error rate high\"}}\n"
                    ));
                } else {
                    text.push_str(&format!(
                        "  - record: job:requests:rate5m_{r}\n    expr: sum by (job) (rate(http_requests_total{{job=\"svc{g}\"}}[5m]))\n"
                    ));
                }
            }
        }
        let rel = format!("team-{f}/rules.yml");
        write(&root.join("rules"), &rel, &text);
        files.push((file_name(&rel), text));
    }
    files
}

fn provider_for(prom: &Prom) -> PrometheusProvider {
    build(&json!({"url": prom.url, "rules_dir": prom.rules_dir}), Path::new(".")).unwrap()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Loads, audits, and returns (rules, audit seconds, parse+compare seconds).
async fn run(root: &Path, dir: &Path, files: &[(String, String)]) -> Option<(usize, f64, f64)> {
    if !have_prometheus() {
        return None;
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let prom = start_prometheus(&refs).await;
    let p = provider_for(&prom);
    let started = Instant::now();
    let desired = p.desired(root, dir, &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    let changes = plan(&p, &desired, &live);
    let audit = started.elapsed().as_secs_f64();
    assert!(
        changes.is_empty(),
        "{} changes, first: {:#?}",
        changes.len(),
        changes.first()
    );
    assert!(live.findings.is_empty(), "{:?}", live.findings.first());
    let rules = desired.resources.iter().filter(|r| r.kind != "group").count();
    let started = Instant::now();
    let desired: Desired = p.desired(root, dir, &ctx()).unwrap();
    let again = plan(&p, &desired, &live);
    let compare = started.elapsed().as_secs_f64();
    assert!(again.is_empty());
    Some((rules, audit, compare))
}

#[tokio::test]
async fn corpus_is_in_sync_against_real_prometheus() {
    let Some(dir) = corpus() else { return };
    if let Some((rules, _, _)) = run(&dir, &dir, &server_files(&dir)).await {
        assert_eq!(rules, 2113);
    }
}

#[tokio::test]
#[ignore]
async fn bench_corpus() {
    let Some(dir) = corpus() else { return };
    if let Some((rules, audit, compare)) = run(&dir, &dir, &server_files(&dir)).await {
        println!(
            "corpus: {rules} rules; audit against real Prometheus {:.0} ms; parse+compare {:.0} ms; peak RSS {} MiB",
            audit * 1000.0,
            compare * 1000.0,
            vm_hwm_kib() / 1024
        );
    }
}

#[tokio::test]
#[ignore]
async fn bench_synthetic_5000_rules_in_500_groups() {
    let root = TempDir::new().unwrap();
    let files = synthetic(root.path(), 500, 10);
    if let Some((rules, audit, compare)) = run(root.path(), &root.path().join("rules"), &files).await {
        assert_eq!(rules, 5000);
        println!(
            "synthetic: {rules} rules in 500 groups; audit against real Prometheus {:.0} ms; parse+compare {:.0} ms; peak RSS {} MiB",
            audit * 1000.0,
            compare * 1000.0,
            vm_hwm_kib() / 1024
        );
    }
}
