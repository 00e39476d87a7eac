//! The ruler backend against the Mimir ruler simulator (`sim`), and the
//! simulator itself against Mimir's documented answers.

mod common;

use std::path::Path;

use common::*;
use plumb_model::{Action, Outcome, Provider, ProviderError};
use plumb_prometheus::{build, rules, sim::Simulator, PrometheusProvider};
use serde_json::json;
use tempfile::TempDir;

const TEAM_A: &str = r#"groups:
- name: api
  interval: 30s
  rules:
  - alert: HighErrorRate
    expr: sum(rate(http_errors_total[5m])) by (service) > 10
    for: 10m
    labels: {severity: warning}
  - alert: HighErrorRate
    expr: sum(rate(http_errors_total[5m])) by (service) > 50
    for: 5m
    labels: {severity: critical}
  - record: service:errors:rate5m
    expr: sum by (service) (rate(http_errors_total[5m]))
"#;

fn tree() -> TempDir {
    let root = TempDir::new().unwrap();
    write(root.path(), "rules/team-a/alerts.yaml", TEAM_A);
    root
}

fn provider(sim: &Simulator, tenant: Option<&str>) -> PrometheusProvider {
    let mut c = json!({"ruler_url": sim.url(), "retries": 0});
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    build(&c, Path::new(".")).unwrap()
}

async fn audit(p: &PrometheusProvider, root: &Path) -> (Vec<Change>, plumb_model::Live) {
    let desired = p.desired(root, &root.join("rules"), &ctx()).unwrap();
    let live = p.live(&desired, &ctx()).await.unwrap();
    (plan(p, &desired, &live), live)
}

#[tokio::test]
async fn seeded_ruler_is_in_sync_and_ids_use_the_namespace() {
    init();
    let root = tree();
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    let p = provider(&sim, Some("t1"));
    let (changes, live) = audit(&p, root.path()).await;
    assert!(changes.is_empty(), "{changes:#?}");
    let ids: Vec<&str> = live.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "group/team-a/alerts/api",
            "rule/team-a/alerts/api/HighErrorRate{severity=warning}",
            "rule/team-a/alerts/api/HighErrorRate{severity=critical}",
            "rule/team-a/alerts/api/service:errors:rate5m",
        ]
    );
}

#[tokio::test]
async fn drift_on_the_ruler_is_found_and_reconciled() {
    init();
    let root = tree();
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    assert!(sim.edit_expr(
        "t1",
        "team-a/alerts",
        "api",
        "service:errors:rate5m",
        "sum(rate(http_errors_total[1m])) by (service)"
    ));
    let hand_made = rules::parse_group_text(
        "x",
        "name: by-hand\nrules:\n- alert: X\n  expr: vector(1)\n",
        rules::Dialect::Prometheus,
    )
    .unwrap();
    sim.set_group("t1", "team-a/alerts", hand_made);
    let p = provider(&sim, Some("t1"));
    let (changes, _) = audit(&p, root.path()).await;
    let summary: Vec<(&str, Action)> = changes.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert_eq!(
        summary,
        vec![
            ("group/team-a/alerts/by-hand", Action::Delete),
            ("rule/team-a/alerts/api/service:errors:rate5m", Action::Update),
            ("rule/team-a/alerts/by-hand/X", Action::Delete),
        ]
    );
    let results = p
        .apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    assert!(audit(&p, root.path()).await.0.is_empty());
    assert_eq!(sim.groups("t1")["team-a/alerts"].len(), 1);
}

#[tokio::test]
async fn empty_tenant_means_everything_is_created() {
    init();
    let root = tree();
    let sim = Simulator::start().await.unwrap();
    let p = provider(&sim, Some("t2"));
    let (changes, _) = audit(&p, root.path()).await;
    assert_eq!(changes.len(), 4);
    assert!(changes.iter().all(|c| c.action == Action::Create));
    p.apply(&changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(), &ctx())
        .await
        .unwrap();
    assert!(audit(&p, root.path()).await.0.is_empty());
    // Another tenant sees none of it.
    assert!(sim.groups("t1").is_empty());
}

#[tokio::test]
async fn missing_tenant_is_an_error_naming_request_and_status() {
    init();
    let root = tree();
    let sim = Simulator::start().await.unwrap();
    let p = provider(&sim, None);
    let desired = p.desired(root.path(), &root.path().join("rules"), &ctx()).unwrap();
    let err = p.live(&desired, &ctx()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Api { status: Some(401), .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("GET {}/prometheus/config/v1/rules", sim.url())),
        "{text}"
    );
    assert!(text.contains("no org id"), "{text}");
}

#[tokio::test]
async fn failing_rules_on_the_ruler_are_findings() {
    init();
    let root = tree();
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    sim.fail_rule("t1", "team-a/alerts", "api", "service:errors:rate5m", "query timed out");
    let p = provider(&sim, Some("t1"));
    let (changes, live) = audit(&p, root.path()).await;
    assert!(changes.is_empty());
    assert_eq!(live.findings.len(), 1, "{:?}", live.findings);
    assert_eq!(live.findings[0].id, "rule/team-a/alerts/api/service:errors:rate5m");
    assert!(live.findings[0].message.contains("query timed out"));
}

#[tokio::test]
async fn import_from_the_ruler_round_trips() {
    init();
    let root = tree();
    let sim = Simulator::start_seeded(&root.path().join("rules"), "t1").await.unwrap();
    let p = provider(&sim, Some("t1"));
    let live = p.live(&plumb_model::Desired::default(), &ctx()).await.unwrap();
    let out = TempDir::new().unwrap();
    let files = p.import(&live, &out.path().join("rules"), &ctx()).await.unwrap();
    assert_eq!(files, vec![out.path().join("rules/team-a/alerts.yaml")]);
    if Path::new(PROMTOOL).exists() {
        let check = std::process::Command::new(PROMTOOL)
            .args(["check", "rules"])
            .args(&files)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    }
    assert!(audit(&p, out.path()).await.0.is_empty());
}

#[tokio::test]
async fn simulator_answers_as_mimir_documents() {
    init();
    let sim = Simulator::start().await.unwrap();
    let c = reqwest::Client::new();
    let base = format!("{}/prometheus/config/v1/rules", sim.url());
    let r = c.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(&base).header("X-Scope-OrgID", "t").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "no rule groups found\n");
    let r = c
        .post(format!("{base}/ns%2Fone"))
        .header("X-Scope-OrgID", "t")
        .body("name: g\nrules:\n- record: a:b\n  expr: sum(up\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("could not parse expression"));
    let r = c
        .post(format!("{base}/ns%2Fone"))
        .header("X-Scope-OrgID", "t")
        .body("name: [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "unable to decoded rule group\n");
    let r = c
        .post(format!("{base}/ns%2Fone"))
        .header("X-Scope-OrgID", "t")
        .body("name: g\nrules:\n- record: a:b\n  expr: sum(up)\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "success");
    let r = c.get(&base).header("X-Scope-OrgID", "t").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/yaml");
    let listed: serde_json::Value = serde_yaml_ng::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(listed["ns/one"][0]["rules"][0]["record"], "a:b");
    let r = c
        .delete(format!("{base}/ns%2Fone/nope"))
        .header("X-Scope-OrgID", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .delete(format!("{base}/ns%2Fone/g"))
        .header("X-Scope-OrgID", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .delete(format!("{base}/ns%2Fone"))
        .header("X-Scope-OrgID", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
