//! Helpers the root test files share: plans made to order, configs, and
//! the tampering an attacker with write access to a history store can do
//! (on a local directory or on S3), with the problem `report --verify`
//! must name for each.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use plumb::history::digest::DigestReason;
use plumb::history::verify::{self, ProblemKind, Verdict};
use plumb::history::History;
use plumb::plan::{Change, Plan, Summary, TargetPlan};
use plumb::source::SourceInfo;
use plumb_model::{Action, ChangedBy};

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A config with a directory source, `state_dir: ./state` and `history`
/// as given (YAML flow text), and targets `app` and `other`.
pub fn config_with_history(dir: &Path, history: &str) -> plumb::config::Config {
    let text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory: {history}\ntargets:\n  - name: app\n    provider: exec\n  - name: other\n    provider: exec\n"
    );
    std::fs::create_dir_all(dir.join("desired")).unwrap();
    std::fs::write(dir.join("plumb.yaml"), text).unwrap();
    plumb::config::Config::load(&dir.join("plumb.yaml")).unwrap()
}

pub fn config(dir: &Path) -> plumb::config::Config {
    config_with_history(dir, "{ dir: ./history }")
}

/// A plan of `target` at `when`: exit code 0, 1 or 2, with `ids` drifting.
pub fn plan_of(target: &str, when: &str, exit_code: i32, ids: &[&str], commit: &str) -> Plan {
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
    let mut t = TargetPlan::failed(target, "exec", String::new());
    t.error = (exit_code == 1).then(|| "live state: command failed".to_string());
    t.exit_code = exit_code;
    t.summary = Summary {
        update: ids.len(),
        ..Default::default()
    };
    t.changes = changes;
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
        targets: vec![t],
        seal: None,
    }
}

pub fn plan(when: &str, exit_code: i32, ids: &[&str], commit: &str) -> Plan {
    plan_of("app", when, exit_code, ids, commit)
}

/// Six runs of `app` and `other` as `plan --record` makes them: each run
/// records both targets and ends with a signed digest for each.
pub async fn six_runs(history: &History) {
    let now = Utc::now();
    for run in 0..6 {
        let when = (now - chrono::Duration::minutes(60 - run * 10)).to_rfc3339();
        for target in ["app", "other"] {
            let code = if run % 3 == 1 { 2 } else { 0 };
            let ids: &[&str] = if code == 2 { &["user/a"] } else { &[] };
            let outcome = history
                .record(&plan_of(target, &when, code, ids, "c1"), &BTreeMap::new())
                .await;
            assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
        }
        let failed = history
            .write_digests(&["app".into(), "other".into()], DigestReason::Run)
            .await;
        assert!(failed.is_empty(), "{failed:?}");
    }
}

/// What someone who can write the store (but not read `state_dir`) can do.
#[async_trait::async_trait]
pub trait Tamper: Sync {
    async fn read(&self, key: &str) -> Vec<u8>;
    /// Overwrites or creates the object.
    async fn write(&self, key: &str, bytes: &[u8]);
    async fn delete(&self, key: &str);
}

pub struct LocalTamper(pub PathBuf);

#[async_trait::async_trait]
impl Tamper for LocalTamper {
    async fn read(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.0.join(key)).unwrap()
    }
    async fn write(&self, key: &str, bytes: &[u8]) {
        let path = self.0.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    async fn delete(&self, key: &str) {
        std::fs::remove_file(self.0.join(key)).unwrap();
    }
}

pub fn record_key(target: &str, seq: u64) -> String {
    plumb::history::record::record_key(target, seq)
}

pub fn digest_key(target: &str, seq: u64) -> String {
    plumb::history::record::digest_key(target, seq)
}

/// Rewrites a record's JSON with `edit` and returns the new bytes.
fn edit_record(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

/// Every tampering of the evidence issue, by name.
pub const SCENARIOS: &[&str] = &[
    "newest record deleted",
    "oldest record deleted",
    "newest record edited",
    "middle record edited, later links recomputed",
    "digest deleted",
    "newest digest deleted",
    "digest edited",
    "two records swapped",
    "record of another target copied in",
];

/// Does `scenario` to a six-run history and returns the key and kind of
/// the problem verify must name.
pub async fn tamper(scenario: &str, store: &dyn Tamper) -> (String, ProblemKind) {
    match scenario {
        "newest record deleted" => {
            store.delete(&record_key("app", 6)).await;
            (record_key("app", 6), ProblemKind::Removed)
        }
        "oldest record deleted" => {
            store.delete(&record_key("app", 1)).await;
            (record_key("app", 1), ProblemKind::Removed)
        }
        "newest record edited" => {
            let bytes = store.read(&record_key("app", 6)).await;
            let edited = edit_record(&bytes, |v| v["exit_code"] = 0.into());
            store.write(&record_key("app", 6), &edited).await;
            (record_key("app", 6), ProblemKind::Altered)
        }
        "middle record edited, later links recomputed" => {
            // Plain SHA-256 is no secret: recompute every later `previous`.
            let mut previous: Option<String> = None;
            for seq in 3..=6 {
                let key = record_key("app", seq);
                let bytes = store.read(&key).await;
                let edited = edit_record(&bytes, |v| {
                    if seq == 3 {
                        v["exit_code"] = 0.into();
                    }
                    if let Some(hash) = &previous {
                        v["previous"] = serde_json::Value::String(hash.clone());
                    }
                });
                previous = Some(plumb::mask::sha256_hex(&edited));
                store.write(&key, &edited).await;
            }
            (record_key("app", 3), ProblemKind::Altered)
        }
        "digest deleted" => {
            store.delete(&digest_key("app", 3)).await;
            (digest_key("app", 3), ProblemKind::Removed)
        }
        "newest digest deleted" => {
            store.delete(&digest_key("app", 6)).await;
            (digest_key("app", 6), ProblemKind::Removed)
        }
        "digest edited" => {
            let bytes = store.read(&digest_key("app", 4)).await;
            let text = String::from_utf8(bytes).unwrap();
            // Claim a different hash for the record the digest lists.
            let edited = text.replacen("sha256\\\":\\\"", "sha256\\\":\\\"00", 1);
            assert_ne!(edited, text, "the digest lists a record hash");
            store.write(&digest_key("app", 4), edited.as_bytes()).await;
            (digest_key("app", 4), ProblemKind::Altered)
        }
        "two records swapped" => {
            let (a, b) = (
                store.read(&record_key("app", 2)).await,
                store.read(&record_key("app", 3)).await,
            );
            store.write(&record_key("app", 2), &b).await;
            store.write(&record_key("app", 3), &a).await;
            (record_key("app", 2), ProblemKind::OutOfOrder)
        }
        "record of another target copied in" => {
            let bytes = store.read(&record_key("other", 2)).await;
            store.write(&record_key("app", 7), &bytes).await;
            (record_key("app", 7), ProblemKind::Inserted)
        }
        other => panic!("no scenario {other}"),
    }
}

/// Verify options as `report --verify` builds them on the installation.
pub fn options(config: &plumb::config::Config, store: &dyn plumb::history::Store) -> verify::Options {
    let keyring = plumb::history::signing::load_existing(&config.state_dir)
        .unwrap()
        .unwrap();
    verify::Options {
        trusted: keyring.all_public(),
        trust: "this installation's keys".into(),
        keep: config.history.keep,
        hints: Some(plumb::history::chain::hints_dir(&config.state_dir, store)),
        now: Utc::now(),
    }
}

/// Asserts that `verdict` is broken and names `key` with `kind` for `app`,
/// and that `other` is still intact.
pub fn assert_named(scenario: &str, verdict: &Verdict, key: &str, kind: ProblemKind) {
    assert!(!verdict.intact, "{scenario}: verify passed:\n{}", verify::text(verdict));
    let app = verdict.targets.iter().find(|t| t.target == "app").unwrap();
    assert!(
        app.problems.iter().any(|p| p.key == key && p.kind == kind),
        "{scenario}: expected {key} {kind:?}, got:\n{}",
        verify::text(verdict)
    );
    let other = verdict.targets.iter().find(|t| t.target == "other").unwrap();
    assert!(
        other.problems.is_empty(),
        "{scenario}: other target:\n{}",
        verify::text(verdict)
    );
}
