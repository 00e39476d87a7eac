//! The provider against a real Prometheus (Debian's 2.42 at
//! /usr/bin/prometheus), started per test on a free loopback port with
//! `--web.enable-lifecycle`, a temporary rules directory and storage path.
//! Each test skips, saying so, only when the binary is missing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use plumb_model::{Action, Provider, ProviderError};
use plumb_prometheus::{build, prometheus::file_name, PrometheusProvider};
use serde_json::json;
use tempfile::TempDir;

/// Git's spelling: parentheses, odd whitespace, `60m`, matchers in another
/// order, a recording rule, two alerts of one name told apart by severity.
const GIT: &str = r#"groups:
  - name: node
    rules:
      - alert: InstanceDown
        expr: (  up{job="node", env="prod"} ) == 0
        for: 60m
        labels:
          team: infra
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is down"
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: DiskFull
        expr: node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.10
        labels: {severity: warning}
      - alert: DiskFull
        expr: node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05
        for: 5m
        labels: {severity: critical}
"#;

/// The same rules as the server has them, spelled otherwise.
const ON_SERVER: &str = r#"groups:
- name: node
  rules:
  - alert: InstanceDown
    expr: up{env="prod",job="node"} == 0
    for: 1h
    labels: {severity: page, team: infra}
    annotations: {summary: "{{ $labels.instance }} is down"}
  - record: job:up:sum
    expr: sum(up) by (job)
  - alert: DiskFull
    expr: node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1
    for: 0s
    labels: {severity: warning}
  - alert: DiskFull
    expr: (node_filesystem_avail_bytes / node_filesystem_size_bytes) < 5e-2
    for: 300s
    labels: {severity: critical}
"#;

fn git_tree(files: &[(&str, &str)]) -> TempDir {
    let root = TempDir::new().unwrap();
    for (rel, text) in files {
        write(&root.path().join("rules"), rel, text);
    }
    root
}

fn provider_for(prom: &Prom) -> PrometheusProvider {
    build(
        &json!({"url": prom.url, "rules_dir": prom.rules_dir, "retries": 0}),
        Path::new("."),
    )
    .unwrap()
}

async fn audit(p: &PrometheusProvider, root: &Path) -> (Vec<Change>, plumb_model::Live) {
    let desired = p.desired(root, &root.join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    (plan(p, &desired, &live), live)
}

#[tokio::test]
async fn in_sync_when_server_spells_rules_differently() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[(&file_name("node/alerts.yml"), ON_SERVER)]).await;
    let root = git_tree(&[("node/alerts.yml", GIT)]);
    let p = provider_for(&prom);
    let (changes, live) = audit(&p, root.path()).await;
    assert!(changes.is_empty(), "expected no drift, got {changes:#?}");
    let ids: Vec<&str> = live.resources.iter().map(|r| r.id.as_str()).collect();
    assert!(
        ids.contains(&"rule/node/alerts.yml/node/DiskFull{severity=critical}"),
        "{ids:?}"
    );
    assert!(ids.contains(&"group/node/alerts.yml/node"), "{ids:?}");
    assert!(live.findings.is_empty(), "{:?}", live.findings);
}

#[tokio::test]
async fn edited_threshold_is_drift_and_reconcile_brings_it_back() {
    if !have_prometheus() {
        return;
    }
    let edited = ON_SERVER.replace("< 5e-2", "< 0.01");
    let prom = start_prometheus(&[(&file_name("node/alerts.yml"), &edited)]).await;
    let root = git_tree(&[("node/alerts.yml", GIT)]);
    let p = provider_for(&prom);
    let (changes, _) = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let c = &changes[0];
    assert_eq!(c.id, "rule/node/alerts.yml/node/DiskFull{severity=critical}");
    assert_eq!(c.action, Action::Update);
    // Both expressions show: Git's as written, the server's as it prints it.
    assert_eq!(
        c.desired.as_ref().unwrap()["expr"],
        "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05"
    );
    assert_eq!(
        c.live.as_ref().unwrap()["expr"],
        "(node_filesystem_avail_bytes / node_filesystem_size_bytes) < 0.01"
    );

    let results = p
        .apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap();
    assert!(
        results.iter().all(|r| r.outcome == plumb_model::Outcome::Applied),
        "{results:?}"
    );
    // Verified through the API: the server now evaluates 0.05.
    let body: serde_json::Value = reqwest::get(format!("{}/api/v1/rules", prom.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queries: Vec<String> = body["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["query"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.iter().any(|q| q.contains("< 0.05")), "{queries:?}");
    assert!(!queries.iter().any(|q| q.contains("0.01")), "{queries:?}");
    let (after, _) = audit(&p, root.path()).await;
    assert!(after.is_empty(), "{after:#?}");
}

#[tokio::test]
async fn create_delete_and_reorder_through_rules_dir() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[]).await;
    let root = git_tree(&[
        ("node/alerts.yml", GIT),
        (
            "extra.yml",
            "groups:\n- name: x\n  interval: 30s\n  rules:\n  - record: a:b\n    expr: vector(1)\n",
        ),
    ]);
    let p = provider_for(&prom);
    let (changes, _) = audit(&p, root.path()).await;
    assert!(changes.iter().all(|c| c.action == Action::Create), "{changes:#?}");
    assert_eq!(changes.len(), 2 + 4 + 1);
    p.apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap();
    assert!(audit(&p, root.path()).await.0.is_empty());

    // Reordering rules in Git is drift (evaluation order) on the group.
    let reordered = GIT.replacen("      - record: job:up:sum\n        expr: sum by (job) (up)\n", "", 1)
        + "      - record: job:up:sum\n        expr: sum by (job) (up)\n";
    write(&root.path().join("rules"), "node/alerts.yml", &reordered);
    std::fs::remove_file(root.path().join("rules/extra.yml")).unwrap();
    let (changes, _) = audit(&p, root.path()).await;
    let summary: Vec<(String, Action)> = changes.iter().map(|c| (c.id.clone(), c.action)).collect();
    assert_eq!(
        summary,
        vec![
            ("group/extra.yml/x".to_string(), Action::Delete),
            ("group/node/alerts.yml/node".to_string(), Action::Update),
            ("rule/extra.yml/x/a:b".to_string(), Action::Delete),
        ]
    );
    p.apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap();
    assert!(audit(&p, root.path()).await.0.is_empty());
    assert!(!prom.rules_dir.join("extra.yml").exists());
}

#[tokio::test]
async fn rejected_reload_restores_previous_files() {
    if !have_prometheus() {
        return;
    }
    let name = file_name("node/alerts.yml");
    let prom = start_prometheus(&[(&name, ON_SERVER)]).await;
    // `toDuration` is a template function of newer Prometheus releases, so
    // plumb's offline check accepts it; Debian's 2.42 refuses it on reload
    // (`function "toDuration" not defined`, checked with its promtool).
    let broken = GIT.replace(
        "{{ $labels.instance }} is down",
        "{{ $labels.instance }} for {{ 60 | toDuration }}",
    );
    let root = git_tree(&[("node/alerts.yml", &broken)]);
    let p = provider_for(&prom);
    let (changes, _) = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let err = p
        .apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("POST {}/-/reload", prom.url)), "{text}");
    assert!(text.contains("restored"), "{text}");
    assert_eq!(std::fs::read_to_string(prom.rules_dir.join(&name)).unwrap(), ON_SERVER);
    let leftovers: Vec<_> = std::fs::read_dir(&prom.rules_dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    // The server is healthy again with the previous rules.
    let info: serde_json::Value = reqwest::get(format!("{}/api/v1/status/runtimeinfo", prom.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["reloadConfigSuccess"], true);
}

#[tokio::test]
async fn prometheus_down_names_the_url_and_other_targets_run() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[(&file_name("node/alerts.yml"), ON_SERVER)]).await;
    let root = git_tree(&[("node/alerts.yml", GIT)]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = build(
        &json!({"url": format!("http://127.0.0.1:{port}"), "retries": 1}),
        Path::new("."),
    )
    .unwrap();
    let desired = down.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap();
    let started = Instant::now();
    let err = down.live(&desired, &ctx()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Api { status: None, .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("http://127.0.0.1:{port}/api/v1/")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The healthy target is unaffected.
    assert!(audit(&provider_for(&prom), root.path()).await.0.is_empty());
}

#[tokio::test]
async fn failing_rule_evaluation_is_a_finding() {
    if !have_prometheus() {
        return;
    }
    // Duplicate series on the left of a one-to-one match: a runtime error.
    let text = r#"groups:
- name: broken
  interval: 1s
  rules:
  - record: dup:sum
    expr: (vector(1) or label_replace(vector(1), "x", "y", "", "")) + on() vector(1)
"#;
    let prom = start_prometheus(&[("broken.yml", text)]).await;
    let root = git_tree(&[("broken.yml", text)]);
    let p = provider_for(&prom);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (changes, live) = audit(&p, root.path()).await;
        assert!(changes.is_empty(), "{changes:#?}");
        if let Some(f) = live.findings.first() {
            assert_eq!(f.id, "rule/broken.yml/broken/dup:sum");
            assert!(f.message.contains("health=err"), "{}", f.message);
            assert!(
                f.message.contains("many-to-one matching must be explicit"),
                "{}",
                f.message
            );
            break;
        }
        assert!(Instant::now() < deadline, "no health=err finding within 20s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn group_labels_against_2_42_are_a_finding_and_refused_on_apply() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[]).await;
    let text =
        "groups:\n- name: g\n  labels: {team: a}\n  query_offset: 1m\n  rules:\n  - alert: A\n    expr: up == 0\n";
    let root = git_tree(&[("g.yml", text)]);
    let p = provider_for(&prom);
    let desired = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    let messages: Vec<&str> = live.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("group labels need Prometheus >= 3.0.0"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("query_offset needs Prometheus >= 2.53.0"),
        "{messages:?}"
    );
    let changes = plan(&p, &desired, &live);
    let err = p
        .apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Refused(_)), "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(std::fs::read_dir(&prom.rules_dir).unwrap().count(), 0);
}

#[tokio::test]
async fn import_writes_files_promtool_accepts_and_plans_clean() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[(&file_name("node/alerts.yml"), ON_SERVER)]).await;
    let p = provider_for(&prom);
    let live = p.live(&plumb_model::Desired::default(), &ctx()).await.unwrap();
    let out = TempDir::new().unwrap();
    let files = p.import(&live, &out.path().join("rules"), &ctx()).await.unwrap();
    assert_eq!(files, vec![out.path().join("rules/node/alerts.yml")]);
    if Path::new(PROMTOOL).exists() {
        let check = std::process::Command::new(PROMTOOL)
            .arg("check")
            .arg("rules")
            .args(&files)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    }
    let (changes, _) = audit(&p, out.path()).await;
    assert!(changes.is_empty(), "{changes:#?}");
}

/// Clears the immutable flag again, so the temporary directory can go.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Writing the rule files fails part-way (the second file is immutable,
/// `chattr +i`, so even root cannot replace it): the error names what was
/// written before the failure and what was not attempted, and the written
/// file is restored (removed, as it was new).
#[tokio::test]
async fn a_write_failing_part_way_is_reported_and_restored() {
    if !have_prometheus() {
        return;
    }
    let prom = start_prometheus(&[(&file_name("b.yml"), "groups: []\n")]).await;
    let b = prom.rules_dir.join(file_name("b.yml"));
    let locked = std::process::Command::new("chattr").arg("+i").arg(&b).status();
    if !locked.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: chattr +i is not available on this file system");
        return;
    }
    let _guard = Immutable(b.clone());
    let root = git_tree(&[("a.yml", GIT), ("b.yml", GIT), ("c.yml", GIT)]);
    let p = provider_for(&prom);
    let (changes, _) = audit(&p, root.path()).await;
    assert!(changes.iter().all(|c| c.action == Action::Create));
    let err = p
        .apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap_err();
    let text = err.to_string();
    let a = prom.rules_dir.join(file_name("a.yml"));
    let c = prom.rules_dir.join(file_name("c.yml"));
    assert!(text.contains(&b.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("written before the failure: {}", a.display())),
        "{text}"
    );
    assert!(text.contains(&format!("not attempted: {}", c.display())), "{text}");
    assert!(text.contains("the previous rule files were restored"), "{text}");
    assert!(!a.exists(), "the new file was removed again");
    assert!(!c.exists());
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "groups: []\n");
}
