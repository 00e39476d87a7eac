//! Mimir-only group keys kept through read → compare → write, Loki's ruler
//! (LogQL, `/loki/api/v1/rules`), and ruler writes that fail part-way —
//! all against the simulator (`sim`).

mod common;

use std::path::Path;

use common::*;
use plumb_model::{Action, Outcome, Provider};
use plumb_prometheus::{build, rules, sim::Simulator, PrometheusProvider, RulerFlavour};
use serde_json::json;
use tempfile::TempDir;

const FEDERATED: &str = r#"groups:
- name: federated
  interval: 60s
  source_tenants: [team-b, team-a]
  evaluation_delay: 2m
  align_evaluation_time_on_interval: true
  rules:
  - record: all:up:sum
    expr: sum(up)
  - alert: NothingUp
    expr: all:up:sum == 0
    for: 5m
    annotations: {summary: "{{ $value | humanize }} targets up"}
"#;

const LOKI: &str = r#"groups:
- name: logs
  interval: 1m
  rules:
  - alert: HighPercentageError
    expr: |
      sum(rate({app="foo", env="production"} |= "error" [5m])) by (job)
        /
      sum(rate({app="foo", env="production"}[5m])) by (job)
        > 0.05
    for: 10m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.job }} logs errors"}
  - record: nginx:requests:rate1m
    expr: sum by (instance) (count_over_time({app="nginx"} [1m]))
"#;

fn tree(rel: &str, text: &str) -> TempDir {
    let root = TempDir::new().unwrap();
    write(root.path(), &format!("rules/{rel}"), text);
    root
}

fn ruler(sim: &Simulator, flavour: &str) -> PrometheusProvider {
    build(
        &json!({"ruler_url": sim.url(), "tenant": "t1", "retries": 0, "ruler_flavour": flavour}),
        Path::new("."),
    )
    .unwrap()
}

async fn audit(p: &PrometheusProvider, root: &Path) -> Vec<Change> {
    let desired = p.desired(root, &root.join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    plan(p, &desired, &live)
}

async fn apply(p: &PrometheusProvider, changes: &[Change]) -> Vec<plumb_model::ChangeResult> {
    p.apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap()
}

// ------------------------------------------------------------ Mimir keys

#[tokio::test]
async fn mimir_group_keys_survive_a_round_trip_and_are_compared() {
    init();
    let root = tree("fed.yaml", FEDERATED);
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    // Stored as Mimir stores it: `60s` comes back as `1m`, `2m` stays.
    let stored = &sim.groups("t1")["fed"][0];
    assert_eq!(stored.interval.as_deref(), Some("1m"));
    assert_eq!(stored.source_tenants, vec!["team-b", "team-a"]);
    assert_eq!(stored.evaluation_delay.as_deref(), Some("2m"));
    assert!(stored.align_evaluation_time_on_interval);
    let p = ruler(&sim, "mimir");
    assert!(
        audit(&p, root.path()).await.is_empty(),
        "respelled durations are not drift"
    );

    // Someone changes the tenants on the ruler: drift on the group.
    let mut changed = stored.clone();
    changed.source_tenants = vec!["team-a".into(), "team-c".into()];
    sim.set_group("t1", "fed", changed.clone());
    let changes = audit(&p, root.path()).await;
    let ids: Vec<(&str, Action)> = changes.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert_eq!(ids, vec![("group/fed/federated", Action::Update)]);
    assert_eq!(
        changes[0].live.as_ref().unwrap()["source_tenants"],
        json!(["team-a", "team-c"])
    );
    apply(&p, &changes).await;
    assert_eq!(sim.groups("t1")["fed"][0].source_tenants, vec!["team-b", "team-a"]);

    // The same tenants in another order are not drift (a set in Mimir).
    changed.source_tenants = vec!["team-a".into(), "team-b".into()];
    sim.set_group("t1", "fed", changed);
    assert!(audit(&p, root.path()).await.is_empty());

    // A rule-only change never drops the Mimir keys when the group is
    // written back (overlay starts from what the ruler has).
    assert!(sim.edit_expr("t1", "fed", "federated", "all:up:sum", "sum(up) * 2"));
    let changes = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].id, "rule/fed/federated/all:up:sum");
    let results = apply(&p, &changes).await;
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let after = &sim.groups("t1")["fed"][0];
    assert_eq!(after.rules[0].expr, "sum(up)");
    assert_eq!(after.evaluation_delay.as_deref(), Some("2m"));
    assert!(after.align_evaluation_time_on_interval);
    assert!(!after.source_tenants.is_empty());
    assert!(audit(&p, root.path()).await.is_empty());
}

#[tokio::test]
async fn a_zero_offset_is_dropped_by_mimir_and_is_not_drift() {
    init();
    let text = "groups:\n- name: g\n  query_offset: 0s\n  rules:\n  - record: a:b\n    expr: sum(up)\n";
    let root = tree("ns.yaml", text);
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    assert_eq!(sim.groups("t1")["ns"][0].query_offset, None, "ToProto keeps only > 0");
    assert!(audit(&ruler(&sim, "mimir"), root.path()).await.is_empty());
}

#[test]
fn mimir_keys_in_a_prometheus_rule_file_are_an_error_with_file_and_line() {
    let root = tree("fed.yaml", FEDERATED);
    let p = build(&json!({"url": "http://127.0.0.1:9"}), Path::new(".")).unwrap();
    let err = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("rules/fed.yaml:2:"), "{text}");
    assert!(text.contains("Mimir/Cortex ruler key"), "{text}");
}

#[test]
fn bad_mimir_key_values_are_errors() {
    for (bad, needle) in [
        ("  source_tenants: team-a\n", "source_tenants: expected a list"),
        ("  evaluation_delay: 5 minutes\n", "evaluation_delay"),
        (
            "  align_evaluation_time_on_interval: sometimes\n",
            "expected true or false",
        ),
    ] {
        let text = format!("groups:\n- name: g\n{bad}  rules:\n  - record: a:b\n    expr: up\n");
        let err = rules::parse_rule_file_as("ns", &text, rules::Dialect::Mimir).unwrap_err();
        assert!(err.to_string().contains(needle), "{bad}: {err}");
    }
}

// ------------------------------------------------------------------ Loki

#[tokio::test]
async fn loki_ruler_in_sync_drift_and_reconcile() {
    init();
    let root = tree("team/logs.yaml", LOKI);
    let sim = Simulator::start_as(RulerFlavour::Loki).await.unwrap();
    // Seeded with the same rules spelled differently (one line each).
    let respelled = LOKI.replace(
        "|\n      sum(rate({app=\"foo\", env=\"production\"} |= \"error\" [5m])) by (job)\n        /\n      sum(rate({app=\"foo\", env=\"production\"}[5m])) by (job)\n        > 0.05\n",
        "'sum(rate( {app=\"foo\", env=\"production\"} |= \"error\" [5m] )) by (job) / sum(rate({app=\"foo\", env=\"production\"}[5m])) by (job) > 0.05'\n",
    );
    assert_ne!(respelled, LOKI);
    for g in rules::parse_rule_file_as("x", &respelled, rules::Dialect::Loki).unwrap() {
        sim.set_group("t1", "team/logs", g);
    }
    let p = ruler(&sim, "loki");
    assert!(audit(&p, root.path()).await.is_empty(), "whitespace is not drift");

    // A changed string inside the pipeline is drift (strings are kept exactly).
    assert!(sim.edit_expr(
        "t1",
        "team/logs",
        "logs",
        "nginx:requests:rate1m",
        "sum by (instance) (count_over_time({app=\"nginx\"} |= \"GET\" [1m]))"
    ));
    let changes = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].id, "rule/team/logs/logs/nginx:requests:rate1m");
    assert_eq!(changes[0].action, Action::Update);
    let results = apply(&p, &changes).await;
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    assert!(audit(&p, root.path()).await.is_empty());

    // An empty tenant: everything is created through Loki's paths.
    let p2 = build(
        &json!({"ruler_url": sim.url(), "tenant": "t2", "retries": 0, "ruler_flavour": "loki"}),
        Path::new("."),
    )
    .unwrap();
    let changes = audit(&p2, root.path()).await;
    assert!(changes.iter().all(|c| c.action == Action::Create) && changes.len() == 3);
    apply(&p2, &changes).await;
    assert!(audit(&p2, root.path()).await.is_empty());
}

#[tokio::test]
async fn loki_health_findings_come_from_its_prometheus_state_endpoint() {
    init();
    let root = tree("logs.yaml", LOKI);
    let sim = Simulator::start_seeded_as(&root.path().join("rules"), "t1", RulerFlavour::Loki)
        .await
        .unwrap();
    sim.fail_rule("t1", "logs", "logs", "nginx:requests:rate1m", "max entries limit");
    let p = ruler(&sim, "loki");
    let desired = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    assert_eq!(live.findings.len(), 1, "{:?}", live.findings);
    assert!(live.findings[0].message.contains("max entries limit"));
}

#[test]
fn loki_desired_state_errors_name_file_and_line() {
    let p = build(
        &json!({"ruler_url": "http://127.0.0.1:9", "ruler_flavour": "loki"}),
        Path::new("."),
    )
    .unwrap();
    for (text, needle) in [
        (
            "groups:\n- name: g\n  source_tenants: [a]\n  rules:\n  - record: a:b\n    expr: 'count_over_time({a=\"b\"}[1m])'\n",
            "not kept by Loki's ruler",
        ),
        (
            "groups:\n- name: g\n  rules:\n  - record: a:b\n    expr: 'count_over_time({a=\"b\"}[1m]'\n",
            "unclosed '('",
        ),
    ] {
        let root = tree("l.yaml", text);
        let err = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("rules/l.yaml:"), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    // LogQL is not PromQL: a log pipeline loads fine for Loki.
    let root = tree("l.yaml", LOKI);
    assert!(p.desired(root.path(), &root.path().join("rules"), &ctx()).is_ok());
}

#[tokio::test]
async fn loki_simulator_answers_as_loki_documents() {
    init();
    let sim = Simulator::start_as(RulerFlavour::Loki).await.unwrap();
    let c = reqwest::Client::new();
    let base = format!("{}/loki/api/v1/rules", sim.url());
    assert_eq!(c.get(&base).send().await.unwrap().status(), 401);
    let r = c.get(&base).header("X-Scope-OrgID", "t").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "no rule groups found\n");
    // Mimir's path is not Loki's.
    let r = c
        .get(format!("{}/prometheus/config/v1/rules", sim.url()))
        .header("X-Scope-OrgID", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Keys Loki does not store are dropped, not refused.
    let r = c
        .post(format!("{base}/ns"))
        .header("X-Scope-OrgID", "t")
        .body("name: g\nsource_tenants: [x]\nrules:\n- record: a:b\n  expr: 'count_over_time({a=\"b\"}[1m])'\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let listed: serde_json::Value = serde_yaml_ng::from_str(
        &c.get(&base)
            .header("X-Scope-OrgID", "t")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["ns"][0]["name"], "g");
    assert!(listed["ns"][0].get("source_tenants").is_none());
    // A broken expression is a 400 with the reason.
    let r = c
        .post(format!("{base}/ns"))
        .header("X-Scope-OrgID", "t")
        .body("name: g\nrules:\n- record: a:b\n  expr: 'count_over_time({a=\"b\"}[1m]'\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unclosed"));
    let r = c
        .delete(format!("{base}/ns/g"))
        .header("X-Scope-OrgID", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

// ------------------------------------------------- writes failing part-way

#[tokio::test]
async fn a_ruler_write_failing_part_way_is_reported_and_undone() {
    init();
    let text = "groups:\n- name: a\n  rules:\n  - record: a:x\n    expr: sum(up)\n- name: b\n  rules:\n  - record: b:x\n    expr: sum(up)\n- name: c\n  rules:\n  - record: c:x\n    expr: sum(up)\n";
    let root = TempDir::new().unwrap();
    write(root.path(), "rules/first.yaml", text);
    write(root.path(), "rules/second.yaml", text);
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    // Drift in every group of both namespaces, and a hand-made group.
    for ns in ["first", "second"] {
        for g in ["a", "b", "c"] {
            assert!(sim.edit_expr("t1", ns, g, &format!("{g}:x"), "sum(up) * 10"));
        }
    }
    let extra = rules::parse_group_text(
        "x",
        "name: z\nrules:\n- record: z:x\n  expr: up\n",
        rules::Dialect::Mimir,
    )
    .unwrap();
    sim.set_group("t1", "first", extra);
    let before = sim.groups("t1");
    sim.fail_writes("first", "b");
    let p = ruler(&sim, "mimir");
    let changes = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 8, "{changes:#?}");
    let results = apply(&p, &changes).await;
    let failed: Vec<&str> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 5, "every change of namespace `first` failed: {results:?}");
    let message = failed[0];
    assert!(
        message.contains(&format!("POST {}/prometheus/config/v1/rules/first", sim.url())),
        "{message}"
    );
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("while update first/b"), "{message}");
    assert!(
        message.contains("written before the failure: update first/a"),
        "{message}"
    );
    assert!(message.contains("all of them were restored"), "{message}");
    assert!(
        message.contains("not attempted: update first/c, delete first/z"),
        "{message}"
    );
    assert!(
        message.contains("namespaces written before this one: none"),
        "{message}"
    );
    // `first` is exactly as it was; `second` was reconciled.
    let after = sim.groups("t1");
    assert_eq!(after["first"], before["first"]);
    assert!(after["second"].iter().all(|g| g.rules[0].expr == "sum(up)"));
    let applied = results.iter().filter(|r| r.outcome == Outcome::Applied).count();
    assert_eq!(applied, 3);
}

#[tokio::test]
async fn created_groups_are_deleted_again_when_a_later_create_fails() {
    init();
    let text = "groups:\n- name: a\n  rules:\n  - record: a:x\n    expr: sum(up)\n- name: b\n  rules:\n  - record: b:x\n    expr: sum(up)\n";
    let root = tree("ns.yaml", text);
    let sim = Simulator::start().await.unwrap();
    sim.fail_writes("ns", "b");
    let p = ruler(&sim, "mimir");
    let changes = audit(&p, root.path()).await;
    let results = apply(&p, &changes).await;
    let Outcome::Failed(message) = &results[0].outcome else {
        panic!("{results:?}")
    };
    assert!(message.contains("while create ns/b"), "{message}");
    assert!(message.contains("written before the failure: create ns/a"), "{message}");
    assert!(message.contains("all of them were restored"), "{message}");
    assert!(
        !sim.groups("t1").contains_key("ns"),
        "the created group was deleted again"
    );
}
