//! The audit history: evidence for compliance reports that cannot fork or
//! be quietly trimmed (docs/history.md).
//!
//! Per target there is a chain of records (one per audit: what was audited,
//! what was found, the acknowledgements and suspension in force, what
//! reconcile did), each at a key that is a function of its position `seq`
//! and naming the hash of the record before it; and a chain of signed
//! digests that list the records since the previous digest, CloudTrail
//! style. Stores are write-once (a local directory, or S3 with
//! `If-None-Match: *`), so two writers that extend the same head collide on
//! one key and the loser re-reads the head. What lives where:
//!
//! - `record`: the record itself and the keys of records, digests, summaries;
//! - `chain`: [`History`], which appends records and digests;
//! - `digest`: the signed digest format;
//! - `signing`: the installation's Ed25519 keys;
//! - `verify`: `report --verify`;
//! - `report`: compliance reports; `local`, `s3`: the stores.

pub mod chain;
pub mod digest;
pub mod local;
pub mod record;
pub mod report;
pub mod s3;
pub mod signing;
pub mod verify;

use std::path::PathBuf;

use async_trait::async_trait;

pub use chain::{History, RecordOutcome};
pub use record::{Record, RecordKind};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {store}: {message}")]
    Store {
        store: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("history record {key}: {message}")]
    Record { key: String, message: String },
    #[error("history object {key} exists already; objects are never overwritten")]
    Exists { key: String },
    #[error("history signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
}

impl HistoryError {
    /// A store failure that keeps its cause for `{:#}` and logs.
    pub fn store(
        store: impl Into<String>,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> HistoryError {
        HistoryError::Store {
            store: store.into(),
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A store failure with no underlying error value.
    pub fn store_message(store: impl Into<String>, message: impl Into<String>) -> HistoryError {
        HistoryError::Store {
            store: store.into(),
            message: message.into(),
            source: None,
        }
    }
}

/// Where records live. Keys are `/`-separated and relative to the store's
/// prefix.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes a new object; fails with [`HistoryError::Exists`] rather than
    /// overwrite one. This is the only primitive that keeps a chain from
    /// forking, so every store must make it atomic.
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError>;
    /// The object, or None when there is none at `key` (any other failure
    /// is an error: "not found" must never be guessed from an outage).
    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, HistoryError>;
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
        None => Err(HistoryError::store_message(
            "history",
            "neither history.dir nor history.s3 is configured",
        )),
    }
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

/// Records the targets of `plan` with the evidence their runs carry: policy
/// digest, the suspension in force and what reconcile did.
pub async fn record_runs(
    history: &History,
    plan: &crate::plan::Plan,
    runs: &[crate::audit::TargetRun],
    reconciled: &std::collections::BTreeMap<String, Vec<plumb_model::ChangeResult>>,
) -> RecordOutcome {
    let extras: std::collections::BTreeMap<String, record::Extras> = runs
        .iter()
        .map(|run| {
            let extra = record::Extras {
                policy_digest: run.policy.digest.clone(),
                suspended: run.policy.suspended(chrono::Utc::now(), run.timezone).cloned(),
                reconciled: reconciled.get(&run.spec.name).cloned().unwrap_or_default(),
            };
            (run.spec.name.clone(), extra)
        })
        .collect();
    history.record(plan, &extras).await
}

/// Local retention (`history.keep` with `history.dir`); on S3 a lifecycle
/// rule does it. A failure is logged: retention never fails an audit.
pub fn apply_retention(config: &Config) {
    if let (Some(keep), Some(dir)) = (config.history.keep, &config.history.dir) {
        if let Err(e) = local::prune(dir, keep) {
            tracing::warn!(error = %e, "history retention failed");
        }
    }
}
