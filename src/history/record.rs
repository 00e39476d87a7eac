//! One history record: what was audited, what was found, and what makes it
//! evidence: its position in the target's chain (`seq`) and the hash of the
//! record before it. Full records on every change of outcome, heartbeats
//! otherwise. Also the keys records, digests and day summaries live at.

use chrono::{DateTime, Utc};
use plumb_model::ChangeResult;
use serde::{Deserialize, Serialize};

use crate::plan::{Acknowledged, Plan, Summary, TargetPlan};
use crate::policy::Suspension;
use crate::source::SourceInfo;

/// Format 2 added `seq` and moved records to `<target>/records/<seq>.json`.
pub const RECORD_FORMAT: u32 = 2;

/// Where record `seq` of `target` lives: the key is a function of the
/// position alone, so two writers that both try to extend the same head
/// collide on one key and the store's write-once rule lets only one win.
pub fn record_key(target: &str, seq: u64) -> String {
    format!("{target}/records/{seq:012}.json")
}

/// Where digest `seq` of `target`'s digest chain lives (same rule).
pub fn digest_key(target: &str, seq: u64) -> String {
    format!("{target}/digests/{seq:012}.json")
}

/// The position a record or digest key names, if it is one of ours.
pub fn seq_of_key(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    if name.len() != 12 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The whole target plan: the outcome differs from the previous record.
    Full,
    /// The outcome is the one the previous record shows; only when and at
    /// which commit it was seen again.
    Heartbeat,
}

/// Per-target evidence the plan itself does not carry.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub policy_digest: Option<String>,
    pub suspended: Option<Suspension>,
    pub reconciled: Vec<ChangeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub format_version: u32,
    pub kind: RecordKind,
    pub target: String,
    /// Position in the target's chain, from 1, without gaps.
    pub seq: u64,
    pub provider: String,
    pub recorded_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub plumb_version: String,
    pub config_digest: String,
    pub policy_digest: Option<String>,
    pub source: SourceInfo,
    pub exit_code: i32,
    pub error: Option<String>,
    pub summary: Summary,
    /// Digest of the outcome (changes, findings, acknowledgements, error):
    /// equal digests mean nothing changed and a heartbeat suffices.
    pub state_digest: String,
    pub acknowledged: Vec<Acknowledged>,
    pub suspended: Option<Suspension>,
    #[serde(default)]
    pub reconciled: Vec<ChangeResult>,
    /// The target's plan, in full records only.
    pub plan: Option<TargetPlan>,
    /// SHA-256 of the bytes of this target's previous record.
    pub previous: Option<String>,
}

/// The part of a target plan that makes its outcome: what differs and
/// why, not when it was looked at.
#[derive(Serialize)]
struct Outcome<'a> {
    exit_code: i32,
    error: &'a Option<String>,
    changes: Vec<(&'a str, plumb_model::Action, &'a [String], &'a str)>,
    findings: &'a [plumb_model::Finding],
    acknowledged: &'a [Acknowledged],
}

pub fn state_digest(target: &TargetPlan) -> String {
    let outcome = Outcome {
        exit_code: target.exit_code,
        error: &target.error,
        changes: target
            .changes
            .iter()
            .map(|c| (c.id.as_str(), c.action, c.paths.as_slice(), c.diff.as_str()))
            .collect(),
        findings: &target.findings,
        acknowledged: &target.acknowledged,
    };
    crate::mask::sha256_hex(serde_json::to_string(&outcome).unwrap_or_default().as_bytes())
}

impl Record {
    /// The record of `target` in `plan` at position `seq`; `previous` is
    /// the hash and state digest of the chain's last record.
    pub fn build(
        plan: &Plan,
        target: &TargetPlan,
        extras: &Extras,
        config_digest: &str,
        seq: u64,
        previous: Option<(&str, &str)>,
    ) -> Record {
        let digest = state_digest(target);
        let unchanged = previous.is_some_and(|(_, prev_digest)| prev_digest == digest);
        // Reconcile results are news even when the outcome repeats.
        let kind = if unchanged && extras.reconciled.is_empty() {
            RecordKind::Heartbeat
        } else {
            RecordKind::Full
        };
        Record {
            format_version: RECORD_FORMAT,
            kind,
            target: target.name.clone(),
            seq,
            provider: target.provider.clone(),
            recorded_at: plan.finished_at,
            started_at: plan.started_at,
            plumb_version: plan.plumb_version.clone(),
            config_digest: config_digest.to_string(),
            policy_digest: extras.policy_digest.clone(),
            source: target.source.clone().unwrap_or_else(|| plan.source.clone()),
            exit_code: target.exit_code,
            error: target.error.clone(),
            summary: target.summary.clone(),
            state_digest: digest,
            acknowledged: target.acknowledged.clone(),
            suspended: extras.suspended.clone(),
            reconciled: extras.reconciled.clone(),
            plan: (kind == RecordKind::Full).then(|| target.clone()),
            previous: previous.map(|(hash, _)| hash.to_string()),
        }
    }

    pub fn key(&self) -> String {
        record_key(&self.target, self.seq)
    }
}

/// What a report needs of one record: small enough that a day's worth fits
/// in one summary object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub recorded_at: DateTime<Utc>,
    pub provider: String,
    pub exit_code: i32,
    pub commit: Option<String>,
    /// The drifted ids, from a full record; None for a heartbeat (the
    /// previous full record's ids still hold).
    pub change_ids: Option<Vec<String>>,
    #[serde(default)]
    pub changed_by: Vec<String>,
    #[serde(default)]
    pub reconciled_applied: usize,
    #[serde(default)]
    pub reconciled_failed: usize,
}

impl From<&Record> for Observation {
    fn from(r: &Record) -> Observation {
        let (applied, failed) = r.reconciled.iter().fold((0, 0), |(a, f), c| match c.outcome {
            plumb_model::Outcome::Applied => (a + 1, f),
            _ => (a, f + 1),
        });
        Observation {
            recorded_at: r.recorded_at,
            provider: r.provider.clone(),
            exit_code: r.exit_code,
            commit: r.source.commit.clone(),
            change_ids: r
                .plan
                .as_ref()
                .map(|p| p.changes.iter().map(|c| c.id.clone()).collect()),
            changed_by: r
                .plan
                .as_ref()
                .map(|p| {
                    p.changes
                        .iter()
                        .filter_map(|c| c.changed_by.as_ref().map(|b| b.who.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            reconciled_applied: applied,
            reconciled_failed: failed,
        }
    }
}

/// One target's observations of one closed day, written once when the day
/// is over so that a report reads one object per day instead of one per
/// audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaySummary {
    pub format_version: u32,
    pub target: String,
    pub day: String,
    /// Keys of the records summarised, in order.
    pub keys: Vec<String>,
    pub observations: Vec<Observation>,
}

/// Where the summary of `target`'s `day` (`yyyy/mm/dd`) lives.
pub fn summary_key(target: &str, day: &str) -> String {
    format!("_summaries/{target}/{day}.json")
}

/// The `yyyy/mm/dd` (UTC) a record was made on, as day summaries name it.
pub fn day_of(time: DateTime<Utc>) -> String {
    time.format("%Y/%m/%d").to_string()
}
