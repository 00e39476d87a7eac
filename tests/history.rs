//! The audit history: records, their chain and signed digests, heartbeats,
//! retention, verification that names every tampering, and reports over a
//! fabricated history with known incidents.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, Utc};
use common::{at, config, plan, Tamper as _};
use plumb::history::digest::DigestReason;
use plumb::history::local::LocalStore;
use plumb::history::record::Extras;
use plumb::history::verify::{self, ProblemKind};
use plumb::history::{self, report, History, Record, RecordKind, Store};
use plumb_model::Action;

async fn record_all(dir: &Path, plans: &[Plan]) -> LocalStore {
    let config = config(dir);
    let history = History::open(&config).await.unwrap();
    for p in plans {
        let outcome = history.record(p, &BTreeMap::new()).await;
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    }
    history.write_digests(&["app".into()], DigestReason::Run).await;
    LocalStore::new(&dir.join("history"))
}

use plumb::plan::Plan;

async fn records(store: &LocalStore) -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for key in store.list("app/records/").await.unwrap() {
        let r: Record = serde_json::from_slice(&store.get(&key).await.unwrap()).unwrap();
        out.push((key, r));
    }
    out
}

async fn verify_local(dir: &Path) -> verify::Verdict {
    let config = config(dir);
    let store = LocalStore::new(&dir.join("history"));
    let targets = history::targets_in(&store).await.unwrap();
    verify::verify(&store, &targets, &common::options(&config, &store))
        .await
        .unwrap()
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
    assert_eq!(recs[0].0, "app/records/000000000001.json");
    assert_eq!(recs.iter().map(|(_, r)| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(recs[0].1.previous, None);
    for pair in recs.windows(2) {
        let bytes = store.get(&pair[0].0).await.unwrap();
        assert_eq!(
            pair[1].1.previous.as_deref(),
            Some(plumb::mask::sha256_hex(&bytes).as_str())
        );
    }
    let verdict = verify_local(dir.path()).await;
    assert!(verdict.intact, "{}", verify::text(&verdict));
    assert_eq!((verdict.records_read, verdict.digests_read), (4, 1));
    assert_eq!(verdict.targets[0].vouched_through_seq, 4);
}

#[tokio::test]
async fn records_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store.put_new("app/x.json", b"{}").await.unwrap();
    assert_eq!(store.get_opt("app/y.json").await.unwrap(), None);
    let err = store.put_new("app/x.json", b"{\"other\": 1}").await.unwrap_err();
    assert!(matches!(err, history::HistoryError::Exists { .. }), "{err}");
    assert_eq!(store.get("app/x.json").await.unwrap(), b"{}");
}

/// Every tampering of a history made as `plan --record` makes it is named
/// with its target, key and kind, and the untouched target stays intact.
#[tokio::test]
async fn verify_names_every_tampering_of_a_local_history() {
    for scenario in common::SCENARIOS {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let history = History::open(&config).await.unwrap();
        common::six_runs(&history).await;
        let intact = verify_local(dir.path()).await;
        assert!(intact.intact, "{}", verify::text(&intact));
        let (key, kind) = common::tamper(scenario, &common::LocalTamper(dir.path().join("history"))).await;
        common::assert_named(scenario, &verify_local(dir.path()).await, &key, kind);
    }
}

/// Verification goes on past the first problem: two broken places in one
/// chain and one in another target are all named, and every record is read
/// once.
#[tokio::test]
async fn verify_checks_everything_past_the_first_break() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&config(dir.path())).await.unwrap();
    common::six_runs(&history).await;
    let tamper = common::LocalTamper(dir.path().join("history"));
    common::tamper("oldest record deleted", &tamper).await;
    common::tamper("newest record edited", &tamper).await;
    tamper.delete(&common::record_key("other", 4)).await;
    let verdict = verify_local(dir.path()).await;
    let named: Vec<(String, ProblemKind)> = verdict
        .targets
        .iter()
        .flat_map(|t| t.problems.iter().map(|p| (p.key.clone(), p.kind)))
        .collect();
    for expected in [
        (common::record_key("app", 1), ProblemKind::Removed),
        (common::record_key("app", 6), ProblemKind::Altered),
        (common::record_key("other", 4), ProblemKind::Removed),
    ] {
        assert!(named.contains(&expected), "{expected:?} not in {named:?}");
    }
    assert_eq!(verdict.records_read, 12 - 2);
    assert_eq!(verdict.digests_read, 12);
}

/// Temporary files a crash leaves in the store are never read as records.
#[tokio::test]
async fn litter_from_a_crashed_write_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&config(dir.path())).await.unwrap();
    common::six_runs(&history).await;
    let litter = dir.path().join("history/app/records/.tmpAbC123");
    std::fs::write(&litter, b"{\"half\": ").unwrap();
    let verdict = verify_local(dir.path()).await;
    assert!(verdict.intact, "{}", verify::text(&verdict));
    let history = History::open(&config(dir.path())).await.unwrap();
    let outcome = history
        .record(&plan(&Utc::now().to_rfc3339(), 0, &[], "c"), &BTreeMap::new())
        .await;
    assert_eq!(outcome.written, [common::record_key("app", 7)]);
}

/// A key rotation is announced under the old key: an auditor holding only
/// the old public key still verifies digests the new key signs.
#[tokio::test]
async fn a_rotated_key_is_trusted_through_its_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let history = History::open(&config).await.unwrap();
    common::six_runs(&history).await;
    let old = history::signing::load_existing(&config.state_dir)
        .unwrap()
        .unwrap()
        .public();
    let new = history.rotate_key().await.unwrap();
    common::six_runs(&history).await;
    let store = LocalStore::new(&dir.path().join("history"));
    let mut options = common::options(&config, &store);
    options.trusted = vec![old.clone()];
    let targets = history::targets_in(&store).await.unwrap();
    let verdict = verify::verify(&store, &targets, &options).await.unwrap();
    assert!(verdict.intact, "{}", verify::text(&verdict));
    assert!(verdict.trusted_keys.contains(&new.id()), "{:?}", verdict.trusted_keys);
    // A key nobody announced is refused, and named.
    let stranger = history::signing::load_or_create(tempfile::tempdir().unwrap().path())
        .unwrap()
        .public();
    options.trusted = vec![stranger];
    let verdict = verify::verify(&store, &targets, &options).await.unwrap();
    assert!(!verdict.intact);
    let text = verify::text(&verdict);
    assert!(text.contains(&format!("signed by {}", old.id())), "{text}");
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
    let recorder = History::open(&config).await.unwrap();
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
async fn a_lost_or_stale_head_hint_is_checked_against_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = record_all(dir.path(), &[plan("2026-11-01T10:00:00Z", 0, &[], "c")]).await;
    std::fs::remove_dir_all(dir.path().join("state/history-heads")).unwrap();
    record_all(dir.path(), &[plan("2026-11-01T10:05:00Z", 0, &[], "c")]).await;
    // A hint from the past (another process wrote since): the write of the
    // stale position fails, and the record goes on top of the newest.
    let hints = history::chain::hints_dir(&dir.path().join("state"), &store);
    let hint_file = hints.join("app.record.json");
    let fresh = std::fs::read(&hint_file).unwrap();
    record_all(dir.path(), &[plan("2026-11-01T10:10:00Z", 0, &[], "c")]).await;
    std::fs::write(&hint_file, fresh).unwrap();
    record_all(dir.path(), &[plan("2026-11-01T10:15:00Z", 2, &["user/a"], "c")]).await;
    let recs = records(&store).await;
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[1].1.kind, RecordKind::Heartbeat);
    let verdict = verify_local(dir.path()).await;
    assert!(verdict.intact, "{}", verify::text(&verdict));
}

#[tokio::test]
async fn retention_removes_whole_old_digests_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_history(dir.path(), "{ dir: ./history, keep: 90d }");
    let history = History::open(&config).await.unwrap();
    let now = Utc::now();
    let history_dir = dir.path().join("history");
    // Three old runs, each sealed by a digest, then a recent one.
    for (days, code) in [(100, 0), (99, 2), (98, 0)] {
        let when = (now - Duration::days(days)).to_rfc3339();
        let ids: &[&str] = if code == 2 { &["user/a"] } else { &[] };
        history.record(&plan(&when, code, ids, "c"), &BTreeMap::new()).await;
        history.write_digests(&["app".into()], DigestReason::Run).await;
        // Make the digest as old as its record, as if written back then.
        let store = LocalStore::new(&history_dir);
        let key = store.list("app/digests/").await.unwrap().pop().unwrap();
        backdate_digest(&config, &history_dir.join(&key), now - Duration::days(days));
    }
    history
        .record(
            &plan(&(now - Duration::days(1)).to_rfc3339(), 0, &[], "c"),
            &BTreeMap::new(),
        )
        .await;
    let history = History::open(&config).await.unwrap();
    history.write_digests(&["app".into()], DigestReason::Run).await;

    let removed = history::local::prune(&history_dir, std::time::Duration::from_secs(90 * 86_400)).unwrap();
    // The three old digests and their records; the newest digest stays.
    assert_eq!(removed, 3);
    let store = LocalStore::new(&history_dir);
    let verdict = verify::verify(&store, &["app".into()], &common::options(&config, &store))
        .await
        .unwrap();
    assert!(verdict.intact, "{}", verify::text(&verdict));
    assert_eq!(verdict.targets[0].retained_from_seq, Some(4));
    // Without retention configured, the same gap is a removal.
    let mut strict = common::options(&config, &store);
    strict.keep = None;
    let verdict = verify::verify(&store, &["app".into()], &strict).await.unwrap();
    assert!(!verdict.intact);
}

/// Re-signs a digest with an older `written_at` (the test holds the key).
fn backdate_digest(config: &plumb::config::Config, path: &Path, when: chrono::DateTime<Utc>) {
    let opened = history::digest::Opened::parse(&std::fs::read(path).unwrap()).unwrap();
    let mut digest = opened.digest;
    digest.written_at = when;
    let keyring = history::signing::load_existing(&config.state_dir).unwrap().unwrap();
    let (bytes, _) = digest.seal(&keyring).unwrap();
    std::fs::write(path, bytes).unwrap();
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
    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, history::HistoryError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_opt(key).await
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
    // Two summaries, the 24 records of the open day and the newest digest,
    // not 72 records.
    assert_eq!(counting.gets.load(std::sync::atomic::Ordering::SeqCst), 2 + 24 + 1);
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

/// A day whose first records another process wrote is summarised from the
/// store, whole; a day this process wrote itself from memory. Both agree.
#[tokio::test]
async fn a_day_joined_late_is_summarised_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<Plan> = (0..5)
        .map(|h| plan(&format!("2026-11-01T{h:02}:00:00Z"), 0, &[], "c"))
        .collect();
    let rest: Vec<Plan> = (5..10)
        .map(|h| {
            plan(
                &format!("2026-11-01T{h:02}:00:00Z"),
                if h == 7 { 2 } else { 0 },
                if h == 7 { &["user/a"] } else { &[] },
                "c",
            )
        })
        .chain([plan("2026-11-02T00:00:00Z", 0, &[], "c")])
        .collect();
    record_all(dir.path(), &first).await;
    let store = record_all(dir.path(), &rest).await;
    let bytes = store.get("_summaries/app/2026/11/01.json").await.unwrap();
    let summary: history::record::DaySummary = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(summary.keys.len(), 10, "{:?}", summary.keys);
    assert_eq!(summary.keys[0], common::record_key("app", 1));
    assert_eq!(summary.observations.iter().filter(|o| o.exit_code == 2).count(), 1);
}
