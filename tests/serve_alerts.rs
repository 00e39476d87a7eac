//! The shipped alert rules under real promtool (`check rules` and the unit
//! tests in alerts/tests/), the Alertmanager routing example under amtool,
//! and plumb's direct push (src/alert.rs) against stand-in Alertmanager
//! peers: every peer gets every alert, transient failures are retried,
//! re-sends keep `startsAt`, a target back in sync resolves, and a failing
//! peer is named without its credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use plumb::alert::{firing, Alert, Alerter};
use plumb::config::Config;
use plumb::plan::{Change, TargetPlan};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/test.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

#[test]
fn shipped_rules_pass_promtool_check_and_unit_tests() {
    let alerts = root().join("alerts");
    let text = run("promtool", &["check", "rules", "plumb.rules.yaml"], &alerts);
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
    let tests: Vec<String> = std::fs::read_dir(alerts.join("tests"))
        .unwrap()
        .flatten()
        .map(|e| format!("tests/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert!(!tests.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let text = run("promtool", &args, &alerts);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_issue_alert_is_shipped() {
    let text = std::fs::read_to_string(root().join("alerts/plumb.rules.yaml")).unwrap();
    for name in [
        "PlumbDrift",
        "PlumbAuditFailing",
        "PlumbAuditsStale",
        "PlumbReconcileFailing",
        "PlumbSourceStale",
        "PlumbAcknowledgementExpiring",
        "PlumbAbsent",
    ] {
        assert!(text.contains(&format!("alert: {name}")), "{name} missing");
    }
    assert!(text.contains("absent(up{job=\"plumb\""));
}

#[test]
fn promtool_unit_tests_can_fail() {
    // A copy of the tests against a rule with a longer `for`: promtool must
    // say FAILED, or the suite above proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(root().join("alerts/plumb.rules.yaml"))
        .unwrap()
        .replacen("for: 30m", "for: 90m", 1);
    std::fs::write(dir.path().join("plumb.rules.yaml"), rules).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::copy(
        root().join("alerts/tests/plumb.rules.test.yaml"),
        dir.path().join("tests/t.yaml"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "tests/t.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("FAILED") && text.contains("PlumbDrift"), "{text}");
}

#[test]
fn routing_example_routes_by_team() {
    let alerts = root().join("alerts");
    run(
        "amtool",
        &["check-config", "alertmanager-routing.example.yaml"],
        &alerts,
    );
    let route = |labels: &[&str]| {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alertmanager-routing.example.yaml",
        ];
        args.extend_from_slice(labels);
        run("amtool", &args, &alerts)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(route(&["alertname=PlumbDrift", "team=payments"]), "payments");
    assert_eq!(route(&["alertname=PlumbDrift", "team=observability"]), "observability");
    assert_eq!(route(&["alertname=PlumbDrift"]), "platform");
}

/// A stand-in Alertmanager peer: records every POST body; answers the
/// statuses in `script` first, then 200.
#[derive(Clone, Default)]
struct Peer {
    received: Arc<Mutex<Vec<Vec<Alert>>>>,
    script: Arc<Mutex<Vec<StatusCode>>>,
}

async fn receive(State(peer): State<Peer>, Json(alerts): Json<Vec<Alert>>) -> StatusCode {
    let scripted = {
        let mut s = peer.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    };
    match scripted {
        Some(status) => status,
        None => {
            peer.received.lock().unwrap().push(alerts);
            StatusCode::OK
        }
    }
}

async fn start_peer(script: Vec<StatusCode>) -> (String, Peer) {
    let peer = Peer {
        script: Arc::new(Mutex::new(script)),
        ..Peer::default()
    };
    let app = Router::new()
        .route("/api/v2/alerts", post(receive))
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, peer)
}

fn target() -> plumb::config::TargetSpec {
    let config = Config::parse(
        Path::new("/tmp/plumb.yaml"),
        "source: { dir: . }\ntargets:\n  - name: shop\n    provider: kubernetes\n    labels: { team: payments }\n",
    )
    .unwrap();
    config.targets[0].clone()
}

fn plan(exit_code: i32, ids: &[&str]) -> TargetPlan {
    let mut p = TargetPlan::failed("shop", "kubernetes", "live API: GET https://k8s/api: 503".into());
    p.exit_code = exit_code;
    if exit_code != 1 {
        p.error = None;
    }
    p.changes = ids
        .iter()
        .map(|id| {
            serde_json::from_value::<Change>(serde_json::json!({
                "id": id, "kind": "Deployment", "action": "update", "diff": "", "paths": [],
            }))
            .unwrap()
        })
        .collect();
    p.summary.update = ids.len();
    p
}

#[test]
fn firing_carries_labels_annotations_and_link() {
    let now = Utc::now();
    let alerts = firing(
        &target(),
        &plan(2, &["apps/v1/Deployment/shop/cart"]),
        "http://plumb:9469/",
        now,
    );
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    let labels: BTreeMap<&str, &str> = a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("alertname", "PlumbDrift"),
            ("target", "shop"),
            ("provider", "kubernetes"),
            ("severity", "warning"),
            ("team", "payments"),
        ])
    );
    assert_eq!(a.annotations["drifted"], "apps/v1/Deployment/shop/cart");
    assert_eq!(a.annotations["status_page"], "http://plumb:9469/#shop");
    assert_eq!(a.generator_url, "http://plumb:9469/#shop");
    assert!(a.ends_at > now, "a firing alert ends in the future");

    let failing = firing(&target(), &plan(1, &[]), "http://plumb:9469", now);
    assert_eq!(failing[0].name(), "PlumbAuditFailing");
    assert!(failing[0].annotations["error"].contains("503"));
    assert!(firing(&target(), &plan(0, &[]), "http://plumb:9469", now).is_empty());

    // Many drifted ids: the annotation stays short.
    let many: Vec<String> = (0..50).map(|i| format!("cm/{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let big = firing(&target(), &plan(2, &refs), "http://p", now);
    assert!(big[0].annotations["drifted"].ends_with("… and 30 more"));
}

#[tokio::test]
async fn pushes_to_every_peer_retries_keeps_start_and_resolves() {
    plumb::install_crypto_provider();
    // Peer b fails twice with 503 first: retried, then accepted.
    let (a_url, a) = start_peer(vec![]).await;
    let (b_url, b) = start_peer(vec![StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY]).await;
    let alerter = Alerter::new(&[a_url, format!("{b_url}/api/v2/alerts")]).unwrap();
    let spec = target();

    let t0 = Utc::now();
    let batch = alerter.update("shop", firing(&spec, &plan(2, &["x"]), "http://p", t0), t0);
    assert!(alerter.send(&batch).await.is_empty());
    for peer in [&a, &b] {
        let got = peer.received.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "each peer gets the alert exactly once");
        assert_eq!(got[0][0].name(), "PlumbDrift");
    }

    // Still drifting later: re-sent with the first startsAt.
    let t1 = t0 + chrono::Duration::seconds(30);
    let batch = alerter.update("shop", firing(&spec, &plan(2, &["x"]), "http://p", t1), t1);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].starts_at, t0);
    assert!(batch[0].ends_at > t1);
    let refreshed = alerter.refresh(&["shop"], t1);
    assert_eq!(refreshed.len(), 1);

    // Now failing instead: PlumbAuditFailing fires, PlumbDrift resolves.
    let t2 = t1 + chrono::Duration::seconds(30);
    let batch = alerter.update("shop", firing(&spec, &plan(1, &[]), "http://p", t2), t2);
    let names: Vec<(&str, bool)> = batch.iter().map(|a| (a.name(), a.ends_at == t2)).collect();
    assert_eq!(names, vec![("PlumbAuditFailing", false), ("PlumbDrift", true)]);

    // Back in sync: the failing alert resolves with endsAt = now.
    let t3 = t2 + chrono::Duration::seconds(30);
    let batch = alerter.update("shop", firing(&spec, &plan(0, &[]), "http://p", t3), t3);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].name(), "PlumbAuditFailing");
    assert_eq!(batch[0].ends_at, t3);
    assert!(alerter.send(&batch).await.is_empty());
    assert!(alerter.active().is_empty());
    let last = a.received.lock().unwrap().last().unwrap().clone();
    assert_eq!(last[0].ends_at.timestamp(), t3.timestamp(), "peer a saw the resolution");

    // A removed target's alerts resolve on the periodic refresh.
    let batch = alerter.update("shop", firing(&spec, &plan(2, &["x"]), "http://p", t3), t3);
    assert_eq!(batch.len(), 1);
    let gone = alerter.refresh(&[], t3);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].ends_at, t3);
    assert!(alerter.active().is_empty());
}

#[tokio::test]
async fn a_failing_peer_is_named_without_credentials_and_others_still_get_alerts() {
    plumb::install_crypto_provider();
    let (good_url, good) = start_peer(vec![]).await;
    // 400 is not transient: one attempt, then the error.
    let (bad_url, _bad) = start_peer(vec![StatusCode::BAD_REQUEST]).await;
    let with_creds = bad_url.replace("http://", "http://admin:s3cret@");
    // A port nothing listens on: connect errors, retried, then reported.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    };
    let alerter = Alerter::new(&[good_url, with_creds, closed.clone()]).unwrap();
    let now = Utc::now();
    let batch = alerter.update("shop", firing(&target(), &plan(2, &["x"]), "http://p", now), now);
    let errors: Vec<String> = alerter.send(&batch).await.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let bad = errors.iter().find(|e| e.contains("400")).unwrap();
    assert!(bad.starts_with("POST http://127.0.0.1:"), "{bad}");
    assert!(
        bad.contains("/api/v2/alerts") && bad.contains("after 1 attempt"),
        "{bad}"
    );
    assert!(
        !errors.iter().any(|e| e.contains("s3cret") || e.contains("admin")),
        "{errors:?}"
    );
    let refused = errors.iter().find(|e| e.contains(&closed)).unwrap();
    assert!(
        refused.contains("cannot connect") && refused.contains("after 4 attempt"),
        "{refused}"
    );
    assert_eq!(good.received.lock().unwrap().len(), 1);
}

#[test]
fn acknowledgement_expiry_gauge_feeds_the_expiring_alert() {
    let config = Config::parse(
        Path::new("/tmp/plumb.yaml"),
        "source: { dir: . }\ntargets:\n  - name: shop\n    provider: kubernetes\n    timezone: Europe/Berlin\n    labels: { team: payments }\n",
    )
    .unwrap();
    let mut target = plan(0, &[]);
    target.acknowledged = serde_json::from_value(serde_json::json!([
        {"id": "apps/v1/Deployment/shop/cart", "paths": ["/spec/replicas"], "reason": "HPA", "until": "2030-01-31", "status": "in_force"},
        {"id": "apps/v1/Deployment/shop/cart", "paths": ["/spec/x"], "reason": "other", "until": "2030-01-15", "status": "in_force"},
    ]))
    .unwrap();
    let now = Utc::now();
    let full = plumb::plan::Plan {
        format_version: 1,
        plumb_version: "test".into(),
        source: Default::default(),
        started_at: now,
        finished_at: now,
        exit_code: 0,
        targets: vec![target],
        seal: None,
    };
    let text = plumb::metrics::gauges(&config, &full, &Default::default()).unwrap();
    // The end of 2030-01-31 in Berlin (UTC+1 in winter): the later rule wins.
    let line = text
        .lines()
        .find(|l| l.starts_with("plumb_acknowledgement_expiry_timestamp_seconds{"))
        .unwrap_or_else(|| panic!("no expiry series:\n{text}"));
    assert_eq!(
        line,
        "plumb_acknowledgement_expiry_timestamp_seconds{id=\"apps/v1/Deployment/shop/cart\",target=\"shop\",team=\"payments\"} 1896130800"
    );
}
