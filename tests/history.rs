//! The audit history: records and their chain, heartbeats, retention, and
//! reports over a fabricated history with known incidents.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use plumb::history::local::LocalStore;
use plumb::history::record::Extras;
use plumb::history::{self, report, Record, RecordKind, Recorder, Store};
use plumb::plan::{Change, Plan, Summary, TargetPlan};
use plumb::source::SourceInfo;
use plumb_model::{Action, ChangedBy};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn config(dir: &Path) -> plumb::config::Config {
    let text = "source: { dir: ./desired }\nstate_dir: ./state\nhistory: { dir: ./history }\ntargets:\n  - name: app\n    provider: exec\n";
    std::fs::create_dir_all(dir.join("desired")).unwrap();
    std::fs::write(dir.join("plumb.yaml"), text).unwrap();
    plumb::config::Config::load(&dir.join("plumb.yaml")).unwrap()
}

/// A plan of target `app` at `when`: exit code 0, 1 or 2, with `ids` drifting.
fn plan(when: &str, exit_code: i32, ids: &[&str], commit: &str) -> Plan {
    let changes: Vec<Change> = ids
        .iter()
        .map(|id| Change {
            id: id.to_string(),
            kind: "user".into(),
            action: Action::Update,
            diff: format!("-a\n+b {id}\n"),
            paths: vec!["/role".into()],
            changed_by: Some(ChangedBy {
                who: "mallory".into(),
                when: None,
            }),
            confirmed_by: None,
            origin: None,
            desired_digest: None,
            live_digest: None,
            live_version: None,
        })
        .collect();
    let mut target = TargetPlan::failed("app", "exec", String::new());
    target.error = (exit_code == 1).then(|| "live state: command failed".to_string());
    target.exit_code = exit_code;
    target.summary = Summary {
        update: ids.len(),
        ..Default::default()
    };
    target.changes = changes;
    Plan {
        format_version: 1,
        plumb_version: "test".into(),
        source: SourceInfo {
            url: "repo".into(),
            reference: Some("main".into()),
            commit: Some(commit.into()),
            ..Default::default()
        },
        started_at: at(when),
        finished_at: at(when),
        exit_code,
        targets: vec![target],
    }
}

async fn record_all(dir: &Path, plans: &[Plan]) -> LocalStore {
    let config = config(dir);
    let store = LocalStore::new(&dir.join("history"));
    let recorder = Recorder::new(&store, &config);
    for p in plans {
        let outcome = recorder.record(p, &BTreeMap::new()).await;
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    }
    store
}

async fn records(store: &LocalStore) -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for key in store.list("app/").await.unwrap() {
        let r: Record = serde_json::from_slice(&store.get(&key).await.unwrap()).unwrap();
        out.push((key, r));
    }
    out
}

#[tokio::test]
async fn full_records_on_change_heartbeats_otherwise_and_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = record_all(
        dir.path(),
        &[
            plan("2026-11-01T10:00:00Z", 0, &[], "c1"),
            plan("2026-11-01T10:05:00Z", 0, &[], "c1"),
            plan("2026-11-01T10:10:00Z", 2, &["user/a"], "c1"),
            plan("2026-11-01T10:15:00Z", 2, &["user/a"], "c2"),
        ],
    )
    .await;
    let recs = records(&store).await;
    let kinds: Vec<RecordKind> = recs.iter().map(|(_, r)| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::Full,
            RecordKind::Heartbeat,
            RecordKind::Full,
            RecordKind::Heartbeat
        ]
    );
    assert!(recs[1].1.plan.is_none() && recs[2].1.plan.is_some());
    assert_eq!(recs[0].0, "app/2026/11/01/20261101T100000.000000Z-c1.json");
    assert_eq!(recs[0].1.previous, None);
    for pair in recs.windows(2) {
        let bytes = store.get(&pair[0].0).await.unwrap();
        assert_eq!(
            pair[1].1.previous.as_deref(),
            Some(plumb::mask::sha256_hex(&bytes).as_str())
        );
    }
    let (checked, broken) = history::verify(&store, &["app".into()], &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!((checked, broken.len()), (4, 0));
}

#[tokio::test]
async fn records_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store.put_new("app/x.json", b"{}").await.unwrap();
    let err = store.put_new("app/x.json", b"{\"other\": 1}").await.unwrap_err();
    assert!(matches!(err, history::HistoryError::Exists { .. }), "{err}");
    assert_eq!(store.get("app/x.json").await.unwrap(), b"{}");
}

#[tokio::test]
async fn verify_names_the_first_broken_link_for_a_removed_or_altered_record() {
    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<Plan> = (0..5)
        .map(|i| {
            plan(
                &format!("2026-11-01T10:0{i}:00Z"),
                if i % 2 == 0 { 0 } else { 2 },
                if i % 2 == 0 { &[] } else { &["user/a"] },
                "c",
            )
        })
        .collect();
    let store = record_all(dir.path(), &plans).await;
    let recs = records(&store).await;

    // Remove the third record: the fourth names a hash nothing has.
    let history_dir = dir.path().join("history");
    std::fs::remove_file(history_dir.join(&recs[2].0)).unwrap();
    let (_, broken) = history::verify(&store, &["app".into()], &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].key, recs[3].0);
    assert!(broken[0].message.contains(&recs[1].0), "{}", broken[0].message);

    // Alter the first record instead (restore the removed one first).
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = record_all(dir2.path(), &plans).await;
    let recs2 = records(&store2).await;
    let path = dir2.path().join("history").join(&recs2[0].0);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"exit_code\":0", "\"exit_code\":2");
    std::fs::write(&path, text).unwrap();
    let (_, broken) = history::verify(&store2, &["app".into()], &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(broken[0].key, recs2[1].0, "the record after the altered one breaks");
}

#[tokio::test]
async fn a_report_over_known_incidents_has_exact_durations_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    // 10:00 in sync; 10:10 drift (user/a) at c1; 10:20 drift (user/a, user/b);
    // 10:30 error; 10:40 in sync at c2 (incident 1: 30 minutes);
    // 12:00 drift again (gap 10:40+1h .. 12:00 unknown), open until the end.
    let store = record_all(
        dir.path(),
        &[
            plan("2026-11-01T10:00:00Z", 0, &[], "c1"),
            plan("2026-11-01T10:10:00Z", 2, &["user/a"], "c1"),
            plan("2026-11-01T10:20:00Z", 2, &["user/a", "user/b"], "c1"),
            plan("2026-11-01T10:30:00Z", 1, &[], "c1"),
            plan("2026-11-01T10:40:00Z", 0, &[], "c2"),
            plan("2026-11-01T12:00:00Z", 2, &["user/c"], "c3"),
        ],
    )
    .await;
    let since = at("2026-11-01T10:00:00Z");
    let until = at("2026-11-01T13:00:00Z");
    let r = report::build(&store, &["app".into()], since, until, Duration::hours(1))
        .await
        .unwrap();
    let t = &r.targets[0];
    assert_eq!(t.audits, 6);
    assert_eq!(t.failed_audits, 1);
    assert_eq!(t.incidents.len(), 1);
    let first = &t.incidents[0];
    assert_eq!(first.first_seen, at("2026-11-01T10:10:00Z"));
    assert_eq!(first.resolved, Some(at("2026-11-01T10:40:00Z")));
    assert_eq!(first.duration_seconds, 30 * 60);
    assert_eq!(first.resources, ["user/a", "user/b"]);
    assert_eq!(
        (first.commit_at_start.as_deref(), first.commit_at_end.as_deref()),
        (Some("c1"), Some("c2"))
    );
    assert_eq!(first.changed_by, ["mallory"]);
    let open = t.open_drift.as_ref().expect("drift still open");
    assert_eq!(open.first_seen, at("2026-11-01T12:00:00Z"));
    assert_eq!(open.duration_seconds, 3600);
    // Shares of the 3 hours: in sync 10:00-10:10 and 10:40-11:40 (70 min),
    // drift 10:10-10:30 and 12:00-13:00 (80 min), error 10:30-10:40 (10 min),
    // unknown 11:40-12:00 (20 min).
    let minutes = |share: f64| (share * 180.0).round() as i64;
    assert_eq!(minutes(t.shares.in_sync), 70);
    assert_eq!(minutes(t.shares.drift), 80);
    assert_eq!(minutes(t.shares.error), 10);
    assert_eq!(minutes(t.shares.unknown), 20);

    let md = report::markdown(&r);
    assert!(
        md.contains("| app | exec | 6 | 1 | 38.9% | 44.4% | 5.6% | 11.1% | 1 | since 2026-11-01 12:00 | 0 |"),
        "{md}"
    );
    let html = report::html(&r);
    assert!(html.contains("<svg") && html.matches("<rect").count() >= 5, "{html}");
    // Self-contained: nothing loaded from elsewhere.
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("href="),
        "{html}"
    );
    let json: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(json["targets"][0]["incidents"][0]["duration_seconds"], 1800);
}

#[tokio::test]
async fn reconcile_results_make_a_full_record_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let store = LocalStore::new(&dir.path().join("history"));
    let recorder = Recorder::new(&store, &config);
    let p = plan("2026-11-01T10:00:00Z", 2, &["user/a"], "c");
    recorder.record(&p, &BTreeMap::new()).await;
    let mut extras = BTreeMap::new();
    extras.insert(
        "app".to_string(),
        Extras {
            reconciled: vec![plumb_model::ChangeResult {
                id: "user/a".into(),
                action: Action::Update,
                outcome: plumb_model::Outcome::Applied,
            }],
            ..Default::default()
        },
    );
    let p2 = plan("2026-11-01T10:01:00Z", 2, &["user/a"], "c");
    recorder.record(&p2, &extras).await;
    let recs = records(&store).await;
    assert_eq!(recs[1].1.kind, RecordKind::Full);
    let r = report::build(
        &store,
        &["app".into()],
        at("2026-11-01T00:00:00Z"),
        at("2026-11-02T00:00:00Z"),
        Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(r.targets[0].reconciles_applied, 1);
}

#[tokio::test]
async fn a_lost_head_is_found_again_by_listing() {
    let dir = tempfile::tempdir().unwrap();
    let store = record_all(dir.path(), &[plan("2026-11-01T10:00:00Z", 0, &[], "c")]).await;
    std::fs::remove_file(dir.path().join("state/history-heads.json")).unwrap();
    record_all(dir.path(), &[plan("2026-11-01T10:05:00Z", 0, &[], "c")]).await;
    let recs = records(&store).await;
    assert_eq!(recs[1].1.kind, RecordKind::Heartbeat);
    let (_, broken) = history::verify(&store, &["app".into()], &BTreeMap::new())
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
}

#[tokio::test]
async fn retention_leaves_a_checkpoint_that_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let old = (now - Duration::days(100)).to_rfc3339();
    let older_drift = (now - Duration::days(99)).to_rfc3339();
    let recent = (now - Duration::days(1)).to_rfc3339();
    let store = record_all(
        dir.path(),
        &[
            plan(&old, 0, &[], "c"),
            plan(&older_drift, 2, &["user/a"], "c"),
            plan(&recent, 0, &[], "c"),
        ],
    )
    .await;
    let history_dir = dir.path().join("history");
    let removed = history::prune_local(&history_dir, std::time::Duration::from_secs(90 * 86_400)).unwrap();
    assert!(removed >= 1);
    assert_eq!(store.list("app/").await.unwrap().len(), 1);
    // Both old days had closed and been summarised; their summaries go too.
    assert!(store.list("_summaries/app/").await.unwrap().is_empty());
    let mut anchors = BTreeMap::new();
    anchors.insert(
        "app".to_string(),
        history::local::checkpoint_hash(&history_dir, "app").unwrap(),
    );
    let (_, broken) = history::verify(&store, &["app".into()], &anchors).await.unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    anchors.insert("app".to_string(), "0".repeat(64));
    let (_, broken) = history::verify(&store, &["app".into()], &anchors).await.unwrap();
    assert_eq!(broken.len(), 1);
}

/// Counts reads, to show what summaries save.
struct Counting<'a> {
    inner: &'a LocalStore,
    gets: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Counting<'_> {
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), history::HistoryError> {
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, history::HistoryError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, history::HistoryError> {
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[tokio::test]
async fn closed_days_are_summarised_and_reports_read_one_object_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut plans = Vec::new();
    for day in 1..=3 {
        for hour in 0..24 {
            let code = if day == 2 && (10..14).contains(&hour) { 2 } else { 0 };
            let ids: &[&str] = if code == 2 { &["user/a"] } else { &[] };
            plans.push(plan(&format!("2026-11-0{day}T{hour:02}:00:00Z"), code, ids, "c"));
        }
    }
    let store = record_all(dir.path(), &plans).await;
    // Days 1 and 2 closed when the first record of the next day came.
    let summaries = store.list("_summaries/app/").await.unwrap();
    assert_eq!(
        summaries,
        ["_summaries/app/2026/11/01.json", "_summaries/app/2026/11/02.json"]
    );
    assert_eq!(history::targets_in(&store).await.unwrap(), ["app"]);

    let counting = Counting {
        inner: &store,
        gets: Default::default(),
    };
    let since = at("2026-11-01T00:00:00Z");
    let until = at("2026-11-04T00:00:00Z");
    let r = report::build(&counting, &["app".into()], since, until, Duration::hours(2))
        .await
        .unwrap();
    // Two summaries and the 24 records of the open day, not 72 records.
    assert_eq!(counting.gets.load(std::sync::atomic::Ordering::SeqCst), 2 + 24);
    let t = &r.targets[0];
    assert_eq!(t.audits, 72);
    assert_eq!(t.incidents.len(), 1);
    assert_eq!(t.incidents[0].duration_seconds, 4 * 3600);
    assert_eq!(t.incidents[0].resources, ["user/a"]);
    // The same report read record by record agrees.
    let direct: Vec<history::record::Observation> = records(&store).await.iter().map(|(_, r)| r.into()).collect();
    let by_records = report::target_report("app", &direct, since, until, Duration::hours(2));
    assert_eq!(by_records.incidents.len(), 1);
    assert_eq!(by_records.audits, t.audits);
    assert!((by_records.shares.in_sync - t.shares.in_sync).abs() < 1e-9);
}
