//! The audit history: one record per target per audit, kept as evidence for
//! compliance reports. A record carries what was audited (commit, plumb
//! version, config and policy digests), what was found, the
//! acknowledgements and suspension in force, what reconcile did, and the
//! hash of the target's previous record, so that a removed or altered record
//! breaks a chain that `plumb report --verify` checks. A full record is
//! written when the outcome changed, a small heartbeat otherwise. Records
//! are written once and never overwritten (S3 Object Lock friendly); the
//! store is a local directory or S3. History never holds caches: the head of
//! each chain is remembered in `state_dir` and found again by listing when
//! that is lost.

pub mod local;
pub mod record;
pub mod report;
pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use record::{Record, RecordKind};

use crate::config::Config;
use crate::plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {store}: {message}")]
    Store { store: String, message: String },
    #[error("history record {key}: {message}")]
    Record { key: String, message: String },
    #[error("history record {key} exists already; records are never overwritten")]
    Exists { key: String },
}

/// Where records live. Keys are `/`-separated and relative to the store's
/// prefix; `list` returns them sorted, so a target's records come out in
/// time order.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes a new object; fails with [`HistoryError::Exists`] rather than
    /// overwrite one.
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError>;
    /// Every key below `prefix` (which ends in `/`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, HistoryError>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// Opens the store the configuration names.
pub async fn open(config: &Config) -> Result<Box<dyn Store>, HistoryError> {
    if let Some(dir) = &config.history.dir {
        return Ok(Box::new(local::LocalStore::new(dir)));
    }
    match &config.history.s3 {
        Some(spec) => Ok(Box::new(s3::S3Store::connect(spec).await?)),
        None => Err(HistoryError::Store {
            store: "history".into(),
            message: "neither history.dir nor history.s3 is configured".into(),
        }),
    }
}

/// The last record of each target's chain, remembered between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Heads {
    #[serde(default)]
    targets: BTreeMap<String, Head>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Head {
    key: String,
    hash: String,
    state_digest: String,
}

/// Writes records for plans and keeps each target's chain.
pub struct Recorder<'a> {
    store: &'a dyn Store,
    state_dir: PathBuf,
    config_digest: String,
    /// How often a write is tried before it is given up and counted.
    pub attempts: u32,
}

/// What one recording did, for logs and the failure counter.
#[derive(Debug, Default)]
pub struct RecordOutcome {
    pub written: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl<'a> Recorder<'a> {
    pub fn new(store: &'a dyn Store, config: &Config) -> Recorder<'a> {
        Recorder {
            store,
            state_dir: config.state_dir.clone(),
            config_digest: crate::mask::sha256_hex(config.text.as_bytes()),
            attempts: 3,
        }
    }

    fn heads_file(&self) -> PathBuf {
        self.state_dir.join("history-heads.json")
    }

    fn load_heads(&self) -> Heads {
        std::fs::read(self.heads_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_heads(&self, heads: &Heads) {
        let text = serde_json::to_string_pretty(heads).unwrap_or_default();
        if let Err(e) = std::fs::create_dir_all(&self.state_dir)
            .and_then(|_| crate::metrics::write_atomically(&self.heads_file(), &text))
        {
            tracing::warn!(error = %e, "could not remember history heads; the next run finds them by listing");
        }
    }

    /// The head of `target`'s chain: remembered, or found by listing.
    async fn head(&self, heads: &Heads, target: &str) -> Result<Option<Head>, HistoryError> {
        if let Some(head) = heads.targets.get(target) {
            return Ok(Some(head.clone()));
        }
        let keys = self.store.list(&format!("{target}/")).await?;
        let Some(last) = keys.last() else {
            return Ok(None);
        };
        let bytes = self.store.get(last).await?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| HistoryError::Record {
            key: last.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(Head {
            key: last.clone(),
            hash: crate::mask::sha256_hex(&bytes),
            state_digest: record.state_digest,
        }))
    }

    /// Records every target of `plan`. `extras` adds per-target evidence
    /// (policy digest, suspension, reconcile results). A failure is retried,
    /// then reported in the outcome; it never fails the audit.
    pub async fn record(&self, plan: &Plan, extras: &BTreeMap<String, record::Extras>) -> RecordOutcome {
        let mut heads = self.load_heads();
        let mut outcome = RecordOutcome::default();
        for target in &plan.targets {
            let empty = record::Extras::default();
            let extra = extras.get(&target.name).unwrap_or(&empty);
            match self.record_target(&mut heads, plan, target, extra).await {
                Ok(key) => outcome.written.push(key),
                Err(e) => {
                    tracing::error!(target = %target.name, error = %e, "history write failed");
                    outcome.failed.push((target.name.clone(), e.to_string()));
                }
            }
        }
        self.save_heads(&heads);
        outcome
    }

    async fn record_target(
        &self,
        heads: &mut Heads,
        plan: &Plan,
        target: &crate::plan::TargetPlan,
        extra: &record::Extras,
    ) -> Result<String, HistoryError> {
        let head = self.head(heads, &target.name).await?;
        let record = Record::build(
            plan,
            target,
            extra,
            &self.config_digest,
            head.as_ref().map(|h| (h.hash.as_str(), h.state_digest.as_str())),
        );
        let bytes = serde_json::to_vec(&record).map_err(|e| HistoryError::Record {
            key: target.name.clone(),
            message: e.to_string(),
        })?;
        let key = record.key();
        let mut delay = Duration::from_millis(200);
        let mut last_error = None;
        for attempt in 1..=self.attempts.max(1) {
            match self.store.put_new(&key, &bytes).await {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e @ HistoryError::Exists { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, key = %key, error = %e, "history write failed, retrying");
                    last_error = Some(e);
                    if attempt < self.attempts {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        let closed_day = head
            .as_ref()
            .and_then(|h| record::day_of_key(&h.key))
            .filter(|day| Some(day) != record::day_of_key(&key).as_ref());
        if let Some(day) = closed_day {
            if let Err(e) = self.summarise_day(&target.name, &day).await {
                tracing::warn!(target = %target.name, day, error = %e, "day summary not written; reports read that day's records instead");
            }
        }
        heads.targets.insert(
            target.name.clone(),
            Head {
                key: key.clone(),
                hash: crate::mask::sha256_hex(&bytes),
                state_digest: record.state_digest.clone(),
            },
        );
        Ok(key)
    }
}

impl Recorder<'_> {
    /// Writes the summary of a closed day of `target` (once; an existing
    /// summary is left as it is).
    pub async fn summarise_day(&self, target: &str, day: &str) -> Result<(), HistoryError> {
        let keys = self.store.list(&format!("{target}/{day}/")).await?;
        let mut observations = Vec::with_capacity(keys.len());
        for key in &keys {
            let bytes = self.store.get(key).await?;
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| HistoryError::Record {
                key: key.clone(),
                message: e.to_string(),
            })?;
            observations.push(record::Observation::from(&record));
        }
        let summary = record::DaySummary {
            format_version: record::RECORD_FORMAT,
            target: target.to_string(),
            day: day.to_string(),
            keys,
            observations,
        };
        let bytes = serde_json::to_vec(&summary).map_err(|e| HistoryError::Record {
            key: day.to_string(),
            message: e.to_string(),
        })?;
        match self.store.put_new(&record::summary_key(target, day), &bytes).await {
            Ok(()) | Err(HistoryError::Exists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A break in a target's chain, as `--verify` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub target: String,
    pub key: String,
    pub message: String,
}

/// Checks every target's chain: each record must name the hash of the
/// record before it. `anchors` gives, per target, the hash the first record
/// found must name (retention's checkpoint); without one the chain is
/// checked from its first record on. Returns how many records were read and
/// the first broken link of each broken chain.
pub async fn verify(
    store: &dyn Store,
    targets: &[String],
    anchors: &BTreeMap<String, String>,
) -> Result<(usize, Vec<BrokenLink>), HistoryError> {
    let mut checked = 0;
    let mut broken = Vec::new();
    for target in targets {
        let keys = store.list(&format!("{target}/")).await?;
        let mut previous: Option<(String, String)> = None;
        for key in keys {
            let bytes = store.get(&key).await?;
            checked += 1;
            let record: Record = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    broken.push(BrokenLink {
                        target: target.clone(),
                        key: key.clone(),
                        message: format!("not a readable record: {e}"),
                    });
                    break;
                }
            };
            let problem = match (&previous, &record.previous) {
                (Some((_, hash)), Some(claimed)) if hash == claimed => None,
                (Some((prev_key, hash)), Some(claimed)) => Some(format!(
                    "names {claimed} as the hash of the record before it, but that record, {prev_key}, hashes to {hash}: a record between them was removed, or one of them was altered"
                )),
                (Some((prev_key, _)), None) => Some(format!("starts a new chain although {prev_key} comes before it")),
                (None, claimed) => match (anchors.get(target), claimed) {
                    (Some(anchor), Some(claimed)) if anchor != claimed => Some(format!(
                        "names {claimed} as the hash of the record before it, but retention's checkpoint says the last removed record hashes to {anchor}"
                    )),
                    (Some(_), None) => Some("starts a new chain although retention removed records before it".to_string()),
                    _ => None,
                },
            };
            if let Some(message) = problem {
                broken.push(BrokenLink {
                    target: target.clone(),
                    key: key.clone(),
                    message,
                });
                break;
            }
            previous = Some((key, crate::mask::sha256_hex(&bytes)));
        }
    }
    Ok((checked, broken))
}

/// Names of the targets that have records in the store (directory names
/// below the prefix), for reports over targets no longer configured.
pub async fn targets_in(store: &dyn Store) -> Result<Vec<String>, HistoryError> {
    let keys = store.list("").await?;
    let mut names: Vec<String> = keys
        .iter()
        .filter_map(|k| k.split('/').next())
        .filter(|s| !s.is_empty() && !s.starts_with('_'))
        .map(str::to_string)
        .collect();
    names.dedup();
    Ok(names)
}

/// Removes records older than `keep` from a local store.
pub fn prune_local(dir: &Path, keep: Duration) -> std::io::Result<usize> {
    local::prune(dir, keep)
}
