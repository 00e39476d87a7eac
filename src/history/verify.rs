//! `plumb report --verify`: reads every record and digest of every target
//! once, and names every problem with its key and kind instead of stopping
//! at the first. A record is checked three ways: against the digest that
//! lists it (signed, so a store writer without the key cannot make a
//! rewritten record agree), against the record before it (`previous`), and
//! against its own key (position and target). A missing oldest part is
//! accepted only where retention explains it (`history.keep`); what this
//! installation remembers writing (its head hints) catches the newest
//! records or digests being removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::chain::{digest_hint, record_hint};
use super::digest::{Entry, Opened};
use super::record::{digest_key, record_key, seq_of_key, Record};
use super::signing::PublicKey;
use super::{HistoryError, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The content is not what was written (or cannot be read).
    Altered,
    /// Something that was written is gone.
    Removed,
    /// Something is there that the chain never held.
    Inserted,
    /// An object sits at another position than the one it says.
    OutOfOrder,
    /// A digest carries no usable signature.
    Unsigned,
    /// A digest is signed by a key the verifier does not trust.
    UnknownKey,
    /// A record names an older record as its predecessor: two writers
    /// extended the same head.
    Forked,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::OutOfOrder => "out of order",
            ProblemKind::Unsigned => "unsigned",
            ProblemKind::UnknownKey => "signed by an unknown key",
            ProblemKind::Forked => "chain forked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetVerdict {
    pub target: String,
    pub records: usize,
    pub digests: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Records before this seq were removed by retention.
    pub retained_from_seq: Option<u64>,
    /// When the newest trusted digest was written, and the last record it
    /// vouches for.
    pub vouched_through: Option<DateTime<Utc>>,
    pub vouched_through_seq: u64,
    /// Records after that digest: intact as a chain, but no signature
    /// vouches for them yet.
    pub unvouched_records: usize,
    pub unvouched_since: Option<DateTime<Utc>>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub store: String,
    /// Where the trusted keys came from.
    pub trust: String,
    pub trusted_keys: Vec<String>,
    pub records_read: usize,
    pub digests_read: usize,
    pub targets: Vec<TargetVerdict>,
    pub intact: bool,
}

/// What verification trusts and knows besides the store.
pub struct Options {
    /// Keys whose signatures count; empty means trust each chain's first
    /// signer (said in the verdict: then only a key held elsewhere stops a
    /// store writer who rewrites a whole chain).
    pub trusted: Vec<PublicKey>,
    pub trust: String,
    /// Retention (`history.keep`): a missing oldest part older than this
    /// is retention's doing.
    pub keep: Option<Duration>,
    /// This installation's head hints, if verification runs where plumb
    /// writes.
    pub hints: Option<PathBuf>,
    pub now: DateTime<Utc>,
}

/// The heads this installation remembers writing for one target.
#[derive(Default, Clone)]
struct Hints {
    record: Option<super::chain::RecordHead>,
    digest: Option<super::chain::DigestHead>,
}

struct LoadedDigest {
    key: String,
    key_seq: u64,
    opened: Result<Opened, String>,
}

/// Verifies `targets` in `store`.
pub async fn verify(store: &dyn Store, targets: &[String], options: &Options) -> Result<Verdict, HistoryError> {
    // The hints first: whatever plumb writes after this moment cannot make
    // a hint point past what the listings below will show.
    let hints: BTreeMap<String, Hints> = targets
        .iter()
        .map(|t| {
            let hints = options.hints.as_deref().map_or(Hints::default(), |dir| Hints {
                record: record_hint(dir, t),
                digest: digest_hint(dir, t),
            });
            (t.clone(), hints)
        })
        .collect();
    let mut digests_read = 0;
    let mut all_digests: BTreeMap<String, Vec<LoadedDigest>> = BTreeMap::new();
    for target in targets {
        let mut loaded = Vec::new();
        for key in store.list(&format!("{target}/digests/")).await? {
            let Some(key_seq) = seq_of_key(&key) else { continue };
            let bytes = store.get(&key).await?;
            digests_read += 1;
            loaded.push(LoadedDigest {
                key,
                key_seq,
                opened: Opened::parse(&bytes),
            });
        }
        loaded.sort_by_key(|d| d.key_seq);
        all_digests.insert(target.clone(), loaded);
    }

    // Trust: the given keys, then every key a trusted, well-signed digest
    // announced (rotation), until nothing new is learnt.
    let mut trusted: BTreeSet<PublicKey> = options.trusted.iter().cloned().collect();
    let first_use = trusted.is_empty();
    if first_use {
        for loaded in all_digests.values() {
            if let Some(signer) = loaded
                .iter()
                .filter_map(|d| d.opened.as_ref().ok())
                .find(|o| o.signature_holds())
                .and_then(|o| o.signer.clone())
            {
                trusted.insert(signer);
            }
        }
    }
    loop {
        let mut learnt = Vec::new();
        for opened in all_digests.values().flatten().filter_map(|d| d.opened.as_ref().ok()) {
            let signed_by_trusted =
                opened.signature_holds() && opened.signer.as_ref().is_some_and(|s| trusted.contains(s));
            if let Some(next) = opened.digest.next_signer.as_deref().and_then(PublicKey::from_base64) {
                if signed_by_trusted && !trusted.contains(&next) {
                    learnt.push(next);
                }
            }
        }
        if learnt.is_empty() {
            break;
        }
        trusted.extend(learnt);
    }

    let mut records_read = 0;
    let mut verdicts = Vec::new();
    for target in targets {
        let digests = all_digests.remove(target).unwrap_or_default();
        let hints = hints.get(target).cloned().unwrap_or_default();
        let (verdict, read) = verify_target(store, target, &digests, &trusted, &hints, options).await?;
        records_read += read;
        verdicts.push(verdict);
    }
    let intact = verdicts.iter().all(|v| v.problems.is_empty());
    Ok(Verdict {
        store: store.describe(),
        trust: if first_use {
            format!(
                "{} (no key held elsewhere was given: each chain's first signer is trusted)",
                options.trust
            )
        } else {
            options.trust.clone()
        },
        trusted_keys: trusted.iter().map(PublicKey::id).collect(),
        records_read,
        digests_read,
        targets: verdicts,
        intact,
    })
}

fn excused(keep: Option<Duration>, written: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match (keep, written) {
        (Some(keep), Some(at)) => chrono::Duration::from_std(keep).is_ok_and(|keep| at + keep <= now),
        _ => false,
    }
}

async fn verify_target(
    store: &dyn Store,
    target: &str,
    digests: &[LoadedDigest],
    trusted: &BTreeSet<PublicKey>,
    hints: &Hints,
    options: &Options,
) -> Result<(TargetVerdict, usize), HistoryError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, kind: ProblemKind, message: String| {
        problems.push(Problem {
            key: key.to_string(),
            kind,
            message,
        })
    };

    // Digests, in order of their keys.
    let mut expected: BTreeMap<u64, (Entry, String)> = BTreeMap::new();
    let mut previous: Option<&LoadedDigest> = None;
    let mut vouched: Option<(DateTime<Utc>, u64)> = None;
    let mut retained_from_seq = None;
    let mut prefix_excused = false;
    let mut pins: Vec<(u64, String, String)> = Vec::new();
    for loaded in digests {
        let key = loaded.key.as_str();
        let opened = match &loaded.opened {
            Ok(o) => o,
            Err(why) => {
                problem(key, ProblemKind::Altered, format!("the digest cannot be read: {why}"));
                previous = None;
                continue;
            }
        };
        let digest = &opened.digest;
        let mut trustworthy = true;
        if digest.target != target {
            problem(
                key,
                ProblemKind::Inserted,
                format!("a digest of target {:?} copied into this chain", digest.target),
            );
            trustworthy = false;
        } else if digest.seq != loaded.key_seq {
            problem(
                key,
                ProblemKind::OutOfOrder,
                format!("it says it is digest {} of the chain", digest.seq),
            );
            trustworthy = false;
        }
        match &opened.signer {
            None => {
                problem(key, ProblemKind::Unsigned, "it names no usable signing key".into());
                trustworthy = false;
            }
            Some(_) if !opened.signature_holds() => {
                problem(
                    key,
                    ProblemKind::Altered,
                    "its signature does not match its content: the digest was edited".into(),
                );
                trustworthy = false;
            }
            Some(signer) if !trusted.contains(signer) => {
                problem(
                    key,
                    ProblemKind::UnknownKey,
                    format!("signed by {}, which is not among the trusted keys", signer.id()),
                );
                trustworthy = false;
            }
            Some(_) => {}
        }
        // The link to the digest before it.
        let missing_from = previous.map_or(1, |p| p.key_seq + 1);
        if loaded.key_seq > missing_from {
            let at_start = previous.is_none();
            if at_start && excused(options.keep, digest.previous_written_at, options.now) {
                prefix_excused = true;
                retained_from_seq = Some(digest.previous_last_record_seq + 1);
            } else {
                for gone in missing_from..loaded.key_seq {
                    problem(
                        &digest_key(target, gone),
                        ProblemKind::Removed,
                        format!(
                            "digest {gone} is gone{}",
                            if at_start {
                                " (the oldest digests were removed, and not by retention)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        } else if let Some(p) = previous.and_then(|p| p.opened.as_ref().ok()) {
            if digest.previous_signature.as_deref() != Some(p.envelope.signature.as_str()) {
                problem(
                    key,
                    ProblemKind::Altered,
                    format!(
                        "it does not name the signature of {}, the digest before it: one of them was replaced",
                        previous.map_or("", |p| p.key.as_str())
                    ),
                );
            }
            if digest.previous_last_record_seq != p.digest.last_record_seq {
                problem(
                    key,
                    ProblemKind::Altered,
                    format!(
                        "it continues from record {}, but the digest before it ends at record {}",
                        digest.previous_last_record_seq, p.digest.last_record_seq
                    ),
                );
            }
        } else if previous.is_none() && (digest.previous_signature.is_some() || digest.previous_last_record_seq != 0) {
            // The first digest kept names a predecessor: fine only for retention.
            if excused(options.keep, digest.previous_written_at, options.now) {
                prefix_excused = true;
                retained_from_seq = Some(digest.previous_last_record_seq + 1);
            } else {
                problem(
                    key,
                    ProblemKind::Removed,
                    "the digests before this one are gone (and not by retention)".into(),
                );
            }
        }
        let mut next_seq = digest.previous_last_record_seq + 1;
        for entry in &digest.records {
            if entry.seq != next_seq || entry.key != record_key(target, entry.seq) {
                problem(
                    key,
                    ProblemKind::Altered,
                    format!(
                        "it lists record {} at {} where record {next_seq} belongs",
                        entry.seq, entry.key
                    ),
                );
            }
            next_seq = entry.seq + 1;
            expected.insert(entry.seq, (entry.clone(), key.to_string()));
        }
        if digest.records.is_empty() {
            if let Some(hash) = &digest.last_record_sha256 {
                pins.push((digest.last_record_seq, hash.clone(), key.to_string()));
            }
        }
        if trustworthy && opened.signature_holds() {
            vouched = Some((digest.written_at, digest.last_record_seq));
        }
        previous = Some(loaded);
    }

    // Records, each read once.
    let keys = store.list(&format!("{target}/records/")).await?;
    let mut present: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut times: BTreeMap<u64, DateTime<Utc>> = BTreeMap::new();
    let mut previous_claims: BTreeMap<u64, Option<String>> = BTreeMap::new();
    let mut read = 0;
    for key in &keys {
        let Some(key_seq) = seq_of_key(key) else {
            problem(key, ProblemKind::Inserted, "not a record key of this chain".into());
            continue;
        };
        let bytes = store.get(key).await?;
        read += 1;
        let hash = crate::mask::sha256_hex(&bytes);
        match serde_json::from_slice::<Record>(&bytes) {
            Err(e) => problem(key, ProblemKind::Altered, format!("the record cannot be read: {e}")),
            Ok(record) if record.target != target => problem(
                key,
                ProblemKind::Inserted,
                format!(
                    "a record of target {:?} (its record {}) copied into this chain",
                    record.target, record.seq
                ),
            ),
            Ok(record) if record.seq != key_seq => problem(
                key,
                ProblemKind::OutOfOrder,
                format!("it holds record {} of the chain, not record {key_seq}", record.seq),
            ),
            Ok(record) => {
                if let Some((entry, digest)) = expected.get(&key_seq) {
                    if entry.sha256 != hash {
                        problem(
                            key,
                            ProblemKind::Altered,
                            format!("its SHA-256 is {hash}, but digest {digest} lists {}", entry.sha256),
                        );
                    }
                }
                times.insert(key_seq, record.recorded_at);
                previous_claims.insert(key_seq, record.previous.clone());
            }
        }
        present.insert(key_seq, (key.clone(), hash));
    }
    for (seq, hash, digest) in &pins {
        if let Some((key, actual)) = present.get(seq) {
            if actual != hash {
                problem(
                    key,
                    ProblemKind::Altered,
                    format!("its SHA-256 is {actual}, but digest {digest} names {hash} as the head"),
                );
            }
        }
    }

    // Links between neighbours.
    let hash_to_seq: HashMap<&str, u64> = present.iter().map(|(s, (_, h))| (h.as_str(), *s)).collect();
    for (seq, claim) in &previous_claims {
        let key = record_key(target, *seq);
        match (present.get(&(seq - 1)), claim) {
            (_, None) if *seq == 1 => {}
            (_, Some(_)) if *seq == 1 => {
                problem(
                    &key,
                    ProblemKind::Altered,
                    "the first record names a record before it".into(),
                );
            }
            (_, None) => problem(
                &key,
                ProblemKind::Altered,
                "it names no record before it, but it is not the first".into(),
            ),
            (Some((before_key, before_hash)), Some(claim)) if claim != before_hash => {
                match hash_to_seq.get(claim.as_str()).filter(|s| **s < seq - 1) {
                    Some(older) => problem(
                        &key,
                        ProblemKind::Forked,
                        format!(
                            "it names record {older} as the one before it, but {before_key} is: two writers extended the same head"
                        ),
                    ),
                    None => problem(
                        &key,
                        ProblemKind::Altered,
                        format!(
                            "it names {claim} as the hash of the record before it, but that record, {before_key}, hashes to {before_hash}"
                        ),
                    ),
                }
            }
            _ => {}
        }
    }

    // What should be there and is not.
    let newest = present
        .keys()
        .next_back()
        .copied()
        .max(expected.keys().next_back().copied())
        .unwrap_or(0);
    let first_present = present.keys().next().copied();
    let mut in_prefix = true;
    for seq in 1..=newest {
        if present.contains_key(&seq) {
            in_prefix = false;
            continue;
        }
        let key = record_key(target, seq);
        let retention = in_prefix
            && (retained_from_seq.is_some_and(|from| seq < from)
                || expected
                    .get(&seq)
                    .is_some_and(|(e, _)| excused(options.keep, Some(e.recorded_at), options.now)));
        if retention {
            retained_from_seq = Some(retained_from_seq.unwrap_or(0).max(seq + 1));
            continue;
        }
        let why = match expected.get(&seq) {
            Some((_, digest)) => format!("record {seq} is gone; digest {digest} lists it"),
            None if in_prefix && prefix_excused => continue,
            None => format!("record {seq} is gone; the records after it are still there"),
        };
        problem(&key, ProblemKind::Removed, why);
    }

    // What this installation remembers writing.
    {
        if let Some(hint) = &hints.record {
            if hint.seq > newest {
                problem(
                    &record_key(target, hint.seq),
                    ProblemKind::Removed,
                    format!(
                        "record {} is gone: this installation wrote it at {}, and the store now ends at record {newest}",
                        hint.seq,
                        hint.recorded_at.to_rfc3339()
                    ),
                );
            }
        }
        if let Some(hint) = &hints.digest {
            let newest_digest = digests.last().map_or(0, |d| d.key_seq);
            if hint.seq > newest_digest {
                problem(
                    &digest_key(target, hint.seq),
                    ProblemKind::Removed,
                    format!(
                        "digest {} is gone: this installation wrote it at {}, and the store now ends at digest {newest_digest}",
                        hint.seq,
                        hint.written_at.to_rfc3339()
                    ),
                );
            } else if let Some(Ok(stored)) = digests
                .iter()
                .find(|d| d.key_seq == hint.seq)
                .map(|d| d.opened.as_ref())
            {
                if stored.envelope.signature != hint.signature {
                    problem(
                        &digest_key(target, hint.seq),
                        ProblemKind::Altered,
                        "it is not the digest this installation wrote at that position".into(),
                    );
                }
            }
        }
    }

    let vouched_through_seq = vouched.map_or(0, |(_, s)| s);
    let unvouched: Vec<u64> = present.keys().copied().filter(|s| *s > vouched_through_seq).collect();
    problems.sort_by(|a, b| a.key.cmp(&b.key).then(a.kind.cmp(&b.kind)));
    problems.dedup();
    Ok((
        TargetVerdict {
            target: target.to_string(),
            records: present.len(),
            digests: digests.len(),
            first_seq: first_present,
            last_seq: present.keys().next_back().copied(),
            retained_from_seq,
            vouched_through: vouched.map(|(t, _)| t),
            vouched_through_seq,
            unvouched_records: unvouched.len(),
            unvouched_since: unvouched.first().and_then(|s| times.get(s)).copied(),
            problems,
        },
        read,
    ))
}

/// The verdict for people: one line per problem, one per target, a total.
/// Names come from the store, which may be hostile: control characters are
/// escaped so they cannot forge lines or move the cursor.
pub fn text(verdict: &Verdict) -> String {
    use crate::render::inert;
    let mut out = String::new();
    for t in &verdict.targets {
        for p in &t.problems {
            let _ = writeln!(
                out,
                "PROBLEM {} {}: {}: {}",
                inert(&t.target),
                inert(&p.key),
                p.kind.as_str(),
                inert(&p.message)
            );
        }
    }
    for t in &verdict.targets {
        let range = match (t.first_seq, t.last_seq) {
            (Some(a), Some(b)) => format!("records {a}–{b}"),
            _ => "no records".into(),
        };
        let vouched = match t.vouched_through {
            Some(at) => format!(
                "vouched for through record {} by a digest of {}",
                t.vouched_through_seq,
                at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => "no signed digest vouches for it".into(),
        };
        let unvouched = match (t.unvouched_records, t.unvouched_since) {
            (0, _) => String::new(),
            (n, Some(since)) => format!(
                "; {n} record(s) since {} not vouched for yet",
                since.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            (n, None) => format!("; {n} record(s) not vouched for yet"),
        };
        let retained = t
            .retained_from_seq
            .map(|s| format!("; retention removed records before {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}: {range}, {} digest(s); {vouched}{unvouched}{retained}; {}",
            inert(&t.target),
            t.digests,
            if t.problems.is_empty() {
                "intact".to_string()
            } else {
                format!("{} problem(s)", t.problems.len())
            }
        );
    }
    let broken = verdict.targets.iter().filter(|t| !t.problems.is_empty()).count();
    let _ = writeln!(
        out,
        "verified {} record(s) and {} digest(s) of {} target(s) in {} against {} [{}]: {}",
        verdict.records_read,
        verdict.digests_read,
        verdict.targets.len(),
        inert(&verdict.store),
        inert(&verdict.trust),
        verdict.trusted_keys.join(", "),
        if verdict.intact {
            "every chain is intact".to_string()
        } else {
            format!("{broken} target(s) with problems")
        }
    );
    out
}

pub fn json(verdict: &Verdict) -> String {
    serde_json::to_string_pretty(verdict).unwrap_or_default() + "\n"
}
