//! A Prometheus 3.x server, played from answers it really gave: the
//! `/api/v1/status/buildinfo` (3.7.3), `/api/v1/status/config` and
//! `/api/v1/rules` answers of demo.prometheus.io that Prometheus keeps as
//! its OpenAPI response examples (`web/api/v1/openapi_examples.go`,
//! `statusBuildInfoResponseExamples`, `statusConfigResponseExamples`,
//! `rulesResponseExamples`; copied into tests/fixtures/prometheus-3.7.3-*).
//! No 3.x binary is packaged for this machine, so these answers are how
//! the provider meets a 3.x server: its version gates, the global
//! evaluation interval filled into a group, `for` in seconds, and group
//! labels that come back merged into the rules.

mod common;

use std::path::Path;

use axum::routing::get;
use axum::Router;
use common::*;
use plumb_model::loopback::LoopbackServer;
use plumb_model::{Action, Provider, Severity};
use plumb_prometheus::build;
use serde_json::json;
use tempfile::TempDir;

const BUILDINFO: &str = include_str!("fixtures/prometheus-3.7.3-buildinfo.json");
const CONFIG: &str = include_str!("fixtures/prometheus-3.7.3-config.json");
const RULES: &str = include_str!("fixtures/prometheus-3.7.3-rules.json");

/// The Watchdog group as the file on disk says it (`rule_files:
/// /etc/prometheus/rules/*.yml`): no interval (the server reports its
/// global 15s), `for: 10m` (reported as 600).
const DESCRIPTION: &str = "This is an alert meant to ensure that the entire alerting pipeline is functional. This alert is always firing, therefore it should always be firing in Alertmanager and always fire against a receiver. There are integrations with various notification mechanisms that send a notification when this alert is not firing. For example the \"DeadMansSnitch\" integration in PagerDuty.";

fn watchdog_file(group_extra: &str, rule_labels: &str, for_: &str) -> String {
    format!(
        "groups:\n- name: ansible managed alert rules\n{group_extra}  rules:\n  - alert: Watchdog\n    expr: vector(1)\n    for: {for_}\n{rule_labels}    annotations:\n      description: '{}'\n      summary: Ensure entire alerting pipeline is functional\n",
        DESCRIPTION.replace('\'', "''")
    )
}

async fn recorded_server() -> LoopbackServer {
    let app = Router::new()
        .route("/api/v1/status/buildinfo", get(|| async { BUILDINFO }))
        .route("/api/v1/status/config", get(|| async { CONFIG }))
        .route("/api/v1/rules", get(|| async { RULES }));
    LoopbackServer::start("recorded prometheus 3.7.3", app).await.unwrap()
}

async fn audit(file: &str) -> (Vec<Change>, plumb_model::Live) {
    let server = recorded_server().await;
    let url = format!("http://{}", server.addr());
    let root = TempDir::new().unwrap();
    write(&root.path().join("rules"), "ansible_managed.yml", file);
    let p = build(&json!({"url": url, "retries": 0}), Path::new(".")).unwrap();
    let desired = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    (plan(&p, &desired, &live), live)
}

#[tokio::test]
async fn the_file_as_written_is_in_sync_with_what_3_7_reports() {
    let (changes, live) = audit(&watchdog_file("", "    labels:\n      severity: warning\n", "10m")).await;
    assert!(changes.is_empty(), "{changes:#?}");
    assert!(live.findings.is_empty(), "{:?}", live.findings);
    // The live group is mapped back to the Git file by its path.
    assert!(
        live.resources
            .iter()
            .any(|r| r.id == "rule/ansible_managed.yml/ansible managed alert rules/Watchdog"),
        "{:?}",
        live.resources.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn group_labels_are_accepted_by_3_7_and_compare_with_the_merged_rule_labels() {
    // The same rule, its severity moved to the group (a 3.0 feature): the
    // server merges it into the rule, so the answer is the same.
    let (changes, live) = audit(&watchdog_file("  labels:\n    severity: warning\n", "", "600s")).await;
    assert!(changes.is_empty(), "{changes:#?}");
    assert!(
        live.findings.is_empty(),
        "3.7.3 takes group labels: {:?}",
        live.findings
    );
}

#[tokio::test]
async fn query_offset_is_reported_as_not_auditable_never_as_drift() {
    let (changes, live) = audit(&watchdog_file(
        "  query_offset: 1m\n",
        "    labels:\n      severity: warning\n",
        "10m",
    ))
    .await;
    assert!(changes.is_empty(), "{changes:#?}");
    assert_eq!(live.findings.len(), 1, "{:?}", live.findings);
    assert_eq!(live.findings[0].severity, Severity::Info);
    assert!(
        live.findings[0].message.contains("not auditable through this API"),
        "{}",
        live.findings[0].message
    );
}

#[tokio::test]
async fn a_changed_duration_or_label_against_the_recorded_answer_is_drift() {
    let (changes, _) = audit(&watchdog_file("", "    labels:\n      severity: warning\n", "5m")).await;
    let ids: Vec<(&str, Action)> = changes.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert_eq!(
        ids,
        [(
            "rule/ansible_managed.yml/ansible managed alert rules/Watchdog",
            Action::Update
        )]
    );
    let (changes, _) = audit(&watchdog_file("", "    labels:\n      severity: none\n", "10m")).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].action, Action::Update);
    // An explicit interval other than the global one is drift too.
    let (changes, _) = audit(&watchdog_file(
        "  interval: 1m\n",
        "    labels:\n      severity: warning\n",
        "10m",
    ))
    .await;
    let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["group/ansible_managed.yml/ansible managed alert rules"],
        "{changes:#?}"
    );
}
