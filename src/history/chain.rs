//! Appending to the history: one writer per chain at a time.
//!
//! Within a process, each target's chain sits behind its own async mutex
//! (recordings of different targets never wait for each other). Across
//! processes and machines, the store decides: record `seq` lives at a key
//! that depends on `seq` alone and is written with the store's write-once
//! rule, so when two writers extend the same head one of them gets
//! [`HistoryError::Exists`], reads the newer head from the store and
//! builds its record again on top of it. The heads remembered in
//! `state_dir` are hints: a hint is checked against the store before use,
//! and a stale one costs a retry, never a fork. A crash at any instant
//! leaves either no new object or a whole one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::digest::{Digest, DigestReason, Entry, Opened, DIGEST_FORMAT};
use super::record::{self, digest_key, record_key, seq_of_key, Extras, Record};
use super::signing::{self, Keyring};
use super::{HistoryError, Store};
use crate::config::Config;
use crate::plan::{Plan, TargetPlan};

/// How often one append may lose a race before it gives up: far more than
/// the writers a deployment runs, so it only ends a livelock.
const MAX_RACES: u32 = 64;

/// How many of a day's observations a chain keeps in memory for its
/// summary: a day of five-minute audits; more frequent audits are
/// summarised from the store.
const MAX_DAY_LOG: usize = 300;

/// The newest record of a chain, as far as this process knows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordHead {
    pub seq: u64,
    pub sha256: String,
    pub state_digest: String,
    pub recorded_at: DateTime<Utc>,
}

/// The newest digest of a chain, as far as this process knows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DigestHead {
    pub seq: u64,
    pub signature: String,
    pub written_at: DateTime<Utc>,
    pub last_record_seq: u64,
    pub last_record_sha256: Option<String>,
}

#[derive(Default)]
struct TargetChain {
    /// None: not looked up yet in this process.
    record_head: Option<Option<RecordHead>>,
    digest_head: Option<Option<DigestHead>>,
    /// Records this process wrote that no digest vouches for yet, so a
    /// digest lists the hash of the bytes written, not of what the store
    /// holds by then.
    written: BTreeMap<u64, Entry>,
    /// The current day's observations, when this process wrote every
    /// record of that day: its summary then needs no reads.
    day: Option<DayLog>,
}

struct DayLog {
    day: String,
    keys: Vec<String>,
    observations: Vec<record::Observation>,
}

/// What one recording did, for logs and the failure counter.
#[derive(Debug, Default)]
pub struct RecordOutcome {
    pub written: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// The history of one installation: its store, its signing key and the
/// chains it appends to. `serve` keeps one for its lifetime; commands open
/// one per run.
pub struct History {
    store: Box<dyn Store>,
    state_dir: PathBuf,
    hints: PathBuf,
    config_digest: String,
    digest_every: Duration,
    /// How often a failing write is tried before it is given up.
    pub attempts: u32,
    chains: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<TargetChain>>>>,
}

/// The default of `history.digest_every`.
pub const DEFAULT_DIGEST_EVERY: Duration = Duration::from_secs(3600);

/// Where the hints for `store` live: per store, so pointing plumb at
/// another store never makes it trust heads it remembered of the first.
pub fn hints_dir(state_dir: &Path, store: &dyn Store) -> PathBuf {
    let id = crate::mask::sha256_hex(store.describe().as_bytes());
    state_dir.join("history-heads").join(&id[..16])
}

fn read_hint<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The record head this installation last wrote or saw for `target`.
pub fn record_hint(hints: &Path, target: &str) -> Option<RecordHead> {
    read_hint(&hints.join(format!("{target}.record.json")))
}

/// The digest head this installation last wrote or saw for `target`.
pub fn digest_hint(hints: &Path, target: &str) -> Option<DigestHead> {
    read_hint(&hints.join(format!("{target}.digest.json")))
}

/// Writes a hint whole or not at all (a temporary file renamed), without
/// waiting for the disk: a hint lost in a power cut costs one look-up.
fn save_hint<T: Serialize>(path: &Path, value: &T) {
    let saved = serde_json::to_string(value)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.persist(path).map(|_| ()).map_err(|e| e.error)
        });
    if let Err(e) = saved {
        tracing::debug!(path = %path.display(), error = %e, "history head hint not saved; the next run asks the store");
    }
}

fn record_head_of(seq: u64, bytes: &[u8]) -> RecordHead {
    // An unreadable head is still the head: the next record names its hash
    // (verify reports the damage), and a full record follows.
    let parsed: Option<Record> = serde_json::from_slice(bytes).ok();
    RecordHead {
        seq,
        sha256: crate::mask::sha256_hex(bytes),
        state_digest: parsed.as_ref().map(|r| r.state_digest.clone()).unwrap_or_default(),
        recorded_at: parsed.map(|r| r.recorded_at).unwrap_or_else(Utc::now),
    }
}

fn digest_head_of(key: &str, bytes: &[u8]) -> Result<DigestHead, HistoryError> {
    let opened = Opened::parse(bytes).map_err(|message| HistoryError::Record {
        key: key.to_string(),
        message: format!("{message}; digests stop until it is repaired or removed"),
    })?;
    Ok(DigestHead {
        seq: opened.digest.seq,
        signature: opened.envelope.signature,
        written_at: opened.digest.written_at,
        last_record_seq: opened.digest.last_record_seq,
        last_record_sha256: opened.digest.last_record_sha256,
    })
}

impl History {
    /// Opens the configured store and the installation's signing key
    /// (created on first use).
    pub async fn open(config: &Config) -> Result<History, HistoryError> {
        let store = super::open(config).await?;
        History::with_store(store, config)
    }

    pub fn with_store(store: Box<dyn Store>, config: &Config) -> Result<History, HistoryError> {
        // Fail early, not at the first digest, when the key cannot be made.
        signing::load_or_create(&config.state_dir)?;
        let hints = hints_dir(&config.state_dir, store.as_ref());
        Ok(History {
            store,
            state_dir: config.state_dir.clone(),
            hints,
            config_digest: crate::mask::sha256_hex(config.text.as_bytes()),
            digest_every: config.history.digest_every.unwrap_or(DEFAULT_DIGEST_EVERY),
            attempts: 3,
            chains: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn chain(&self, target: &str) -> Arc<tokio::sync::Mutex<TargetChain>> {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        chains.entry(target.to_string()).or_default().clone()
    }

    /// Records every target of `plan`. `extras` adds per-target evidence
    /// (policy digest, suspension, reconcile results). A failure is retried,
    /// then reported in the outcome; it never fails the audit.
    pub async fn record(&self, plan: &Plan, extras: &BTreeMap<String, Extras>) -> RecordOutcome {
        let mut outcome = RecordOutcome::default();
        for target in &plan.targets {
            let empty = Extras::default();
            let extra = extras.get(&target.name).unwrap_or(&empty);
            match self.append(plan, target, extra).await {
                Ok(key) => outcome.written.push(key),
                Err(e) => {
                    tracing::error!(target = %target.name, error = %e, "history write failed");
                    outcome.failed.push((target.name.clone(), e.to_string()));
                }
            }
        }
        outcome
    }

    async fn append(&self, plan: &Plan, target: &TargetPlan, extra: &Extras) -> Result<String, HistoryError> {
        let chain = self.chain(&target.name);
        let mut chain = chain.lock().await;
        for _ in 0..MAX_RACES {
            let head = self.record_head(&mut chain, &target.name).await?;
            let seq = head.as_ref().map_or(1, |h| h.seq + 1);
            let record = Record::build(
                plan,
                target,
                extra,
                &self.config_digest,
                seq,
                head.as_ref().map(|h| (h.sha256.as_str(), h.state_digest.as_str())),
            );
            let bytes = serde_json::to_vec(&record).map_err(|e| HistoryError::Record {
                key: target.name.clone(),
                message: e.to_string(),
            })?;
            let key = record.key();
            match self.put_with_retries(&key, &bytes).await {
                Ok(()) => {}
                Err(HistoryError::Exists { .. }) => {
                    // Another writer extended this head first: build on its
                    // record (and this process no longer saw the whole day).
                    tracing::debug!(target = %target.name, seq, "history head moved; building on the newer one");
                    let newer = self.walk_records_forward(&target.name, head).await?;
                    chain.record_head = Some(newer);
                    chain.day = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let new_head = RecordHead {
                seq,
                sha256: crate::mask::sha256_hex(&bytes),
                state_digest: record.state_digest.clone(),
                recorded_at: record.recorded_at,
            };
            chain.written.insert(
                seq,
                Entry {
                    seq,
                    key: key.clone(),
                    sha256: new_head.sha256.clone(),
                    recorded_at: record.recorded_at,
                },
            );
            save_hint(&self.hints.join(format!("{}.record.json", target.name)), &new_head);
            chain.record_head = Some(Some(new_head));
            let today = record::day_of(record.recorded_at);
            let day_changed = head.as_ref().is_none_or(|h| record::day_of(h.recorded_at) != today);
            if let Some(previous) = head.filter(|h| record::day_of(h.recorded_at) != today) {
                let day = record::day_of(previous.recorded_at);
                let known = chain.day.take().filter(|log| log.day == day);
                if let Err(e) = self.summarise_day(&target.name, &day, previous.seq, known).await {
                    tracing::warn!(target = %target.name, day, error = %e, "day summary not written; reports read that day's records instead");
                }
            }
            // A new day starts a log of it; a day this process joined late
            // (its earlier records written elsewhere) keeps none.
            if day_changed {
                chain.day = Some(DayLog {
                    day: today.clone(),
                    keys: Vec::new(),
                    observations: Vec::new(),
                });
            }
            if let Some(log) = chain.day.as_mut().filter(|log| log.day == today) {
                log.keys.push(key.clone());
                log.observations.push(record::Observation::from(&record));
            }
            // Memory stays bounded: a busier day is summarised from the store.
            if chain.day.as_ref().is_some_and(|log| log.keys.len() > MAX_DAY_LOG) {
                chain.day = None;
            }
            return Ok(key);
        }
        Err(HistoryError::store_message(
            self.store.describe(),
            format!(
                "gave up recording {} after losing {MAX_RACES} races for the head of its chain",
                target.name
            ),
        ))
    }

    async fn put_with_retries(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        let mut delay = Duration::from_millis(200);
        let attempts = self.attempts.max(1);
        for attempt in 1..=attempts {
            match self.store.put_new(key, bytes).await {
                Ok(()) => return Ok(()),
                Err(e @ HistoryError::Exists { .. }) => return Err(e),
                Err(e) if attempt == attempts => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, key = %key, error = %e, "history write failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Err(HistoryError::store_message(
            self.store.describe(),
            format!("{key}: not written"),
        ))
    }

    /// The head of `target`'s record chain: known in this process, or the
    /// remembered hint if the store still has that record, or found by
    /// listing.
    async fn record_head(&self, chain: &mut TargetChain, target: &str) -> Result<Option<RecordHead>, HistoryError> {
        if let Some(head) = &chain.record_head {
            return Ok(head.clone());
        }
        let head = match record_hint(&self.hints, target) {
            Some(hint) => match self.store.get_opt(&record_key(target, hint.seq)).await? {
                Some(bytes) => Some(record_head_of(hint.seq, &bytes)),
                None => self.listed_record_head(target).await?,
            },
            None => self.listed_record_head(target).await?,
        };
        chain.record_head = Some(head.clone());
        Ok(head)
    }

    async fn listed_record_head(&self, target: &str) -> Result<Option<RecordHead>, HistoryError> {
        let keys = self.store.list(&format!("{target}/records/")).await?;
        let Some(seq) = keys.iter().filter_map(|k| seq_of_key(k)).max() else {
            return Ok(None);
        };
        let bytes = self.store.get(&record_key(target, seq)).await?;
        Ok(Some(record_head_of(seq, &bytes)))
    }

    /// Follows the chain past `from` while the store has a next record.
    async fn walk_records_forward(
        &self,
        target: &str,
        from: Option<RecordHead>,
    ) -> Result<Option<RecordHead>, HistoryError> {
        let mut head = from;
        loop {
            let next = head.as_ref().map_or(1, |h| h.seq + 1);
            match self.store.get_opt(&record_key(target, next)).await? {
                Some(bytes) => head = Some(record_head_of(next, &bytes)),
                None => return Ok(head),
            }
        }
    }

    /// Writes the summary of a closed day of `target` (once; an existing
    /// summary is left as it is): from `known` when this process wrote the
    /// whole day, else reading back from the day's last record.
    async fn summarise_day(
        &self,
        target: &str,
        day: &str,
        last_seq: u64,
        known: Option<DayLog>,
    ) -> Result<(), HistoryError> {
        if let Some(log) = known {
            return self.put_summary(target, day, log.keys, log.observations).await;
        }
        let mut records = Vec::new();
        let mut seq = last_seq;
        while seq > 0 {
            let key = record_key(target, seq);
            let Some(bytes) = self.store.get_opt(&key).await? else {
                break;
            };
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| HistoryError::Record {
                key: key.clone(),
                message: e.to_string(),
            })?;
            if record::day_of(record.recorded_at) != day {
                break;
            }
            records.push((key, record::Observation::from(&record)));
            seq -= 1;
        }
        records.reverse();
        let (keys, observations) = records.into_iter().unzip();
        self.put_summary(target, day, keys, observations).await
    }

    async fn put_summary(
        &self,
        target: &str,
        day: &str,
        keys: Vec<String>,
        observations: Vec<record::Observation>,
    ) -> Result<(), HistoryError> {
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

    /// The head of `target`'s digest chain (same rules as records).
    async fn digest_head(&self, chain: &mut TargetChain, target: &str) -> Result<Option<DigestHead>, HistoryError> {
        if let Some(head) = &chain.digest_head {
            return Ok(head.clone());
        }
        let from_hint = match digest_hint(&self.hints, target) {
            Some(hint) => {
                let key = digest_key(target, hint.seq);
                match self.store.get_opt(&key).await? {
                    Some(bytes) => Some(digest_head_of(&key, &bytes)?),
                    None => None,
                }
            }
            None => None,
        };
        let head = match from_hint {
            Some(head) => Some(head),
            None => {
                let keys = self.store.list(&format!("{target}/digests/")).await?;
                match keys.iter().filter_map(|k| seq_of_key(k)).max() {
                    Some(seq) => {
                        let key = digest_key(target, seq);
                        Some(digest_head_of(&key, &self.store.get(&key).await?)?)
                    }
                    None => None,
                }
            }
        };
        chain.digest_head = Some(head.clone());
        Ok(head)
    }

    async fn walk_digests_forward(
        &self,
        target: &str,
        from: Option<DigestHead>,
    ) -> Result<Option<DigestHead>, HistoryError> {
        let mut head = from;
        loop {
            let key = digest_key(target, head.as_ref().map_or(1, |h| h.seq + 1));
            match self.store.get_opt(&key).await? {
                Some(bytes) => head = Some(digest_head_of(&key, &bytes)?),
                None => return Ok(head),
            }
        }
    }

    /// Whether `target`'s newest digest is older than `history.digest_every`
    /// (or it has none).
    pub async fn digest_due(&self, target: &str) -> Result<bool, HistoryError> {
        let chain = self.chain(target);
        let mut chain = chain.lock().await;
        let head = self.digest_head(&mut chain, target).await?;
        let every = chrono::Duration::from_std(self.digest_every).unwrap_or(chrono::Duration::MAX);
        Ok(head.is_none_or(|h| h.written_at + every <= Utc::now()))
    }

    /// Writes one signed digest for `target` that lists every record since
    /// its previous digest (none is fine: an idle target shows as idle).
    /// Returns the digest's key.
    pub async fn write_digest(&self, target: &str, reason: DigestReason) -> Result<String, HistoryError> {
        let keyring = signing::load_or_create(&self.state_dir)?;
        self.write_digest_signed(target, reason, &keyring, None).await
    }

    /// Writes a digest for each of `targets`; failures are logged and
    /// returned, never fatal.
    pub async fn write_digests(&self, targets: &[String], reason: DigestReason) -> Vec<(String, HistoryError)> {
        let mut failed = Vec::new();
        for target in targets {
            if let Err(e) = self.write_digest(target, reason).await {
                tracing::error!(target = %target, error = %e, "history digest not written");
                failed.push((target.clone(), e));
            }
        }
        failed
    }

    async fn write_digest_signed(
        &self,
        target: &str,
        reason: DigestReason,
        keyring: &Keyring,
        next_signer: Option<&signing::PublicKey>,
    ) -> Result<String, HistoryError> {
        let chain = self.chain(target);
        let mut chain = chain.lock().await;
        for _ in 0..MAX_RACES {
            let previous = self.digest_head(&mut chain, target).await?;
            let known = self.record_head(&mut chain, target).await?;
            let head = self.walk_records_forward(target, known).await?;
            chain.record_head = Some(head.clone());
            let from = previous.as_ref().map_or(0, |d| d.last_record_seq);
            let through = head.as_ref().map_or(0, |h| h.seq);
            let mut entries = Vec::new();
            for seq in from + 1..=through {
                if let Some(entry) = chain.written.get(&seq) {
                    entries.push(entry.clone());
                    continue;
                }
                let key = record_key(target, seq);
                let Some(bytes) = self.store.get_opt(&key).await? else {
                    tracing::error!(
                        target,
                        key,
                        "a record of the chain is missing; the digest vouches only for the records before it"
                    );
                    break;
                };
                let recorded_at = serde_json::from_slice::<Record>(&bytes)
                    .map(|r| r.recorded_at)
                    .unwrap_or_else(|_| Utc::now());
                entries.push(Entry {
                    seq,
                    key,
                    sha256: crate::mask::sha256_hex(&bytes),
                    recorded_at,
                });
            }
            let seq = previous.as_ref().map_or(1, |d| d.seq + 1);
            let (last_record_seq, last_record_sha256) = match entries.last() {
                Some(e) => (e.seq, Some(e.sha256.clone())),
                None => (from, previous.as_ref().and_then(|d| d.last_record_sha256.clone())),
            };
            let digest = Digest {
                format_version: DIGEST_FORMAT,
                target: target.to_string(),
                seq,
                written_at: Utc::now(),
                reason,
                records: entries,
                previous_last_record_seq: from,
                last_record_seq,
                last_record_sha256: last_record_sha256.clone(),
                previous_signature: previous.as_ref().map(|d| d.signature.clone()),
                previous_written_at: previous.as_ref().map(|d| d.written_at),
                signer: keyring.public().to_base64(),
                next_signer: next_signer.map(|k| k.to_base64()),
            };
            let (bytes, signature) = digest.seal(keyring)?;
            let key = digest_key(target, seq);
            match self.put_with_retries(&key, &bytes).await {
                Ok(()) => {
                    let head = DigestHead {
                        seq,
                        signature,
                        written_at: digest.written_at,
                        last_record_seq,
                        last_record_sha256,
                    };
                    chain.written.retain(|s, _| *s > last_record_seq);
                    save_hint(&self.hints.join(format!("{target}.digest.json")), &head);
                    chain.digest_head = Some(Some(head));
                    return Ok(key);
                }
                Err(HistoryError::Exists { .. }) => {
                    let newer = self.walk_digests_forward(target, previous).await?;
                    chain.digest_head = Some(newer);
                }
                Err(e) => return Err(e),
            }
        }
        Err(HistoryError::store_message(
            self.store.describe(),
            format!("gave up writing a digest of {target} after losing {MAX_RACES} races"),
        ))
    }

    /// Rotates the installation's signing key: every target in the store
    /// gets a digest signed by the old key that announces the new one, and
    /// only then does the new key start signing. Returns the new public key.
    pub async fn rotate_key(&self) -> Result<signing::PublicKey, HistoryError> {
        let (old, rotation) = signing::prepare_rotation(&self.state_dir)?;
        for target in super::targets_in(self.store.as_ref()).await? {
            self.write_digest_signed(&target, DigestReason::Rotation, &old, Some(&rotation.public))
                .await?;
        }
        rotation.commit(&self.state_dir)
    }
}
