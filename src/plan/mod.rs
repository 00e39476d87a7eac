//! The plan engine: matches desired and live documents by id, lets the
//! provider canonicalise each pair, compares them structurally, applies the
//! target's policy (ignore rules, acknowledgements, what unmanaged objects
//! count as), asks the provider to confirm what looks like drift, and builds
//! the plan that every renderer, the history and apply read. It knows
//! nothing about any particular live system.

pub mod diff;
pub mod path;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use plumb_model::{
    Action, ChangedBy, ConfirmedBy, Ctx, Desired, Finding, Live, Pair, Provider, ProviderError, Resource, Severity,
    Suspect, Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mask::Masker;
use crate::policy::{AckStatus, CompiledPolicy, UnmanagedAs};
use crate::source::SourceInfo;
use path::Segment;

pub const FORMAT_VERSION: u32 = 1;

/// One audit of the selected targets: the JSON plan of docs/plan-format.md,
/// field for field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub plumb_version: String,
    pub source: SourceInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exit_code: i32,
    pub targets: Vec<TargetPlan>,
    /// Which installation made the plan, and its MAC over every change, so
    /// `apply --plan` refuses a plan that was edited or made elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
}

/// A plan's seal: the installation's key id and an HMAC-SHA256 (under the
/// installation's masking key) of each change's target, id, action, diff,
/// paths and digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub installation: String,
    pub mac: String,
}

impl Plan {
    /// The bytes the seal covers, in a fixed order.
    fn sealed_bytes(&self) -> Vec<u8> {
        let changes: Vec<_> = self
            .targets
            .iter()
            .flat_map(|t| {
                t.changes.iter().map(move |c| {
                    (
                        &t.name,
                        &c.id,
                        c.action,
                        &c.diff,
                        &c.paths,
                        &c.desired_digest,
                        &c.live_digest,
                        &c.live_version,
                    )
                })
            })
            .collect();
        serde_json::to_vec(&changes).unwrap_or_default()
    }

    /// Seals the plan with `masker`'s key.
    pub fn seal_with(&mut self, masker: &crate::mask::Masker) {
        self.seal = Some(Seal {
            installation: masker.key_id(),
            mac: masker.mac(&self.sealed_bytes()),
        });
    }

    /// Why the plan's seal does not hold for this installation, if it does
    /// not.
    pub fn seal_problem(&self, masker: &crate::mask::Masker) -> Option<String> {
        let Some(seal) = &self.seal else {
            return Some(
                "it carries no seal (made by an older plumb, or the seal was removed); make a new plan".into(),
            );
        };
        if seal.installation != masker.key_id() {
            return Some(format!(
                "it was made by another installation (key {}; this installation's key is {}); make the plan here, with this state_dir",
                seal.installation,
                masker.key_id()
            ));
        }
        let expected = masker.mac(&self.sealed_bytes());
        let holds = crate::mask::same_secret(expected.as_bytes(), seal.mac.as_bytes());
        (!holds).then(|| "it was edited after it was made: its seal does not match its changes; make a new plan".into())
    }
}

impl Plan {
    /// 1 if any target failed, else 2 if any drifted, else 0.
    pub fn compute_exit_code(targets: &[TargetPlan]) -> i32 {
        if targets.iter().any(|t| t.exit_code == 1) {
            1
        } else if targets.iter().any(|t| t.exit_code == 2) {
            2
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub in_sync: usize,
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unmanaged: usize,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.in_sync += other.in_sync;
        self.create += other.create;
        self.update += other.update;
        self.delete += other.delete;
        self.unmanaged += other.unmanaged;
    }

    pub fn count(&mut self, action: Action) {
        match action {
            Action::Create => self.create += 1,
            Action::Update => self.update += 1,
            Action::Delete => self.delete += 1,
            Action::Unmanaged => self.unmanaged += 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetPlan {
    pub name: String,
    pub provider: String,
    pub exit_code: i32,
    pub error: Option<String>,
    pub summary: Summary,
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
    pub acknowledged: Vec<Acknowledged>,
    /// The target's own source, when it does not use the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
    /// The policy's severity, for alerts.
    #[serde(default)]
    pub severity: Severity,
}

impl TargetPlan {
    pub fn failed(name: &str, provider: &str, error: String) -> TargetPlan {
        TargetPlan {
            name: name.to_string(),
            provider: provider.to_string(),
            exit_code: 1,
            error: Some(error),
            summary: Summary::default(),
            changes: Vec::new(),
            findings: Vec::new(),
            acknowledged: Vec::new(),
            source: None,
            severity: Severity::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub kind: String,
    pub action: Action,
    /// Unified diff of the YAML renderings, live (`-`) to desired (`+`),
    /// with sensitive values masked and ignored paths left out.
    pub diff: String,
    pub paths: Vec<String>,
    pub changed_by: Option<ChangedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<ConfirmedBy>,
    /// Where the desired document is (`file:line`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Keyed digests of both sides as compared, so `apply --plan` can tell
    /// whether either moved since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
}

/// Drift that a rule with a reason and a date covers (or covered: an
/// expired one is listed so that the reader sees why drift is back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub id: String,
    pub paths: Vec<String>,
    pub reason: String,
    pub until: String,
    pub status: AckStatus,
}

/// What the engine hands back besides the plan: the documents behind each
/// change, for apply.
#[derive(Debug)]
pub struct Outcome {
    pub plan: TargetPlan,
    pub documents: HashMap<String, (Option<Resource>, Option<Resource>)>,
}

/// What the engine needs besides the two document sets.
pub struct Planning<'a> {
    pub target: &'a str,
    pub provider_name: &'a str,
    pub provider: &'a dyn Provider,
    pub policy: &'a CompiledPolicy,
    pub masker: &'a Masker,
    pub ctx: &'a Ctx,
    /// The instant acknowledgements are judged at.
    pub now: DateTime<Utc>,
}

/// Plans one target. `desired` and `live` come straight from the provider;
/// everything else the engine decides.
pub async fn plan_target(planning: &Planning<'_>, desired: Desired, live: Live) -> Result<Outcome, ProviderError> {
    let Planning {
        target: name,
        provider_name,
        provider,
        policy,
        masker,
        ctx,
        now,
    } = *planning;
    let keys = provider.list_keys();
    let mut summary = Summary::default();
    let mut findings = desired.findings;
    findings.extend(live.findings);
    let mut acknowledged: Vec<Acknowledged> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();

    check_unique_ids(&desired.resources)?;
    let mut live_by_id: HashMap<String, Resource> = HashMap::with_capacity(live.resources.len());
    for l in live.resources {
        live_by_id.entry(l.id.clone()).or_insert(l);
    }

    for d in desired.resources {
        let l = live_by_id.remove(&d.id);
        let rules: Vec<_> = policy.rules.iter().filter(|r| r.selects(&d, l.as_ref())).collect();
        let active: Vec<&crate::policy::CompiledRule> = rules
            .iter()
            .copied()
            .filter(|r| r.status(now) != Some(AckStatus::Expired))
            .collect();

        let Some(l) = l else {
            if let Some(rule) = active.iter().find(|r| r.whole_resource()) {
                note_ack(&mut acknowledged, rule, &d.id, vec!["/".into()], now);
                continue;
            }
            note_expired(&mut acknowledged, &rules, &d.id, &[], now);
            candidates.push(Candidate::new(provider, Action::Create, Some(d), None, Vec::new()));
            continue;
        };

        // The same text on both sides is in sync whatever normalisation
        // would do: no need to parse (the common case of a large audit).
        if d.body_json() == l.body_json() {
            summary.in_sync += 1;
            continue;
        }
        let mut dv = d.body();
        let mut lv = l.body();
        provider.normalize(Pair {
            id: &d.id,
            kind: &d.kind,
            desired: Some(&mut dv),
            live: Some(&mut lv),
        });
        let full = diff::changed_paths(&d.kind, &dv, &lv, &keys);
        if full.is_empty() {
            summary.in_sync += 1;
            continue;
        }
        if let Some(rule) = active.iter().find(|r| r.whole_resource()) {
            note_ack(
                &mut acknowledged,
                rule,
                &d.id,
                full.iter().map(|p| path::render(p)).collect(),
                now,
            );
            summary.in_sync += 1;
            continue;
        }
        let path_rules: Vec<_> = active.iter().filter(|r| !r.whole_resource()).collect();
        let (shown, remaining) = if path_rules.is_empty() {
            (None, full.clone())
        } else {
            let mut sd = dv.clone();
            let mut sl = lv.clone();
            for rule in &path_rules {
                for pattern in &rule.paths {
                    path::remove(&mut sd, pattern);
                    path::remove(&mut sl, pattern);
                }
            }
            let remaining = diff::changed_paths(&d.kind, &sd, &sl, &keys);
            (Some((sd, sl)), remaining)
        };
        let remaining_set: HashSet<&Vec<Segment>> = remaining.iter().collect();
        let covered: Vec<&Vec<Segment>> = full.iter().filter(|p| !remaining_set.contains(p)).collect();
        for p in &covered {
            let rule = path_rules
                .iter()
                .find(|r| r.paths.iter().any(|pat| path::covers(pat, p)))
                .or(path_rules.first());
            if let Some(rule) = rule {
                note_ack(&mut acknowledged, rule, &d.id, vec![path::render(p)], now);
            }
        }
        note_expired(&mut acknowledged, &rules, &d.id, &full, now);
        if remaining.is_empty() {
            summary.in_sync += 1;
            continue;
        }
        candidates.push(Candidate {
            action: Action::Update,
            desired: Some(d),
            live: Some(l),
            values: (Some(dv), Some(lv)),
            paths: remaining,
            shown,
        });
    }

    let mut leftovers: Vec<Resource> = live_by_id.into_values().collect();
    leftovers.sort_by(|a, b| a.id.cmp(&b.id));
    for l in leftovers {
        let rules: Vec<_> = policy.rules.iter().filter(|r| r.selects(&l, Some(&l))).collect();
        if let Some(rule) = rules
            .iter()
            .filter(|r| r.status(now) != Some(AckStatus::Expired))
            .find(|r| r.whole_resource())
        {
            note_ack(&mut acknowledged, rule, &l.id, vec!["/".into()], now);
            continue;
        }
        note_expired(&mut acknowledged, &rules, &l.id, &[], now);
        if l.authority == plumb_model::Authority::Owned {
            candidates.push(Candidate::new(provider, Action::Delete, None, Some(l), Vec::new()));
            continue;
        }
        match policy.policy.unmanaged {
            UnmanagedAs::Drift => {
                candidates.push(Candidate::new(provider, Action::Unmanaged, None, Some(l), Vec::new()))
            }
            UnmanagedAs::Finding => findings.push(Finding {
                id: l.id.clone(),
                kind: l.kind.clone(),
                message: "live object that Git lacks (unmanaged)".into(),
                severity: policy.policy.severity,
            }),
            UnmanagedAs::Ignore => {}
        }
    }

    // The live system has the last word on what the offline comparison
    // suspects (unmanaged objects need no confirmation: they exist).
    let suspect_paths: Vec<Vec<String>> = candidates
        .iter()
        .map(|c| c.paths.iter().map(|p| path::render(p)).collect())
        .collect();
    let to_confirm: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].action != Action::Unmanaged)
        .collect();
    let suspects: Vec<Suspect<'_>> = to_confirm
        .iter()
        .map(|&i| {
            let c = &candidates[i];
            Suspect {
                id: c.id(),
                action: c.action,
                desired: c.desired.as_ref(),
                live: c.live.as_ref(),
                paths: &suspect_paths[i],
            }
        })
        .collect();
    let verdicts = if suspects.is_empty() {
        Vec::new()
    } else {
        provider.confirm(&suspects, ctx).await?
    };
    if verdicts.len() != suspects.len() {
        return Err(ProviderError::Other(format!(
            "provider returned {} verdicts for {} suspected changes",
            verdicts.len(),
            suspects.len()
        )));
    }
    drop(suspects);
    let mut confirmed: HashMap<usize, Option<ConfirmedBy>> = HashMap::new();
    for (&i, verdict) in to_confirm.iter().zip(verdicts) {
        match verdict {
            Verdict::Confirmed(by) => {
                confirmed.insert(i, Some(by));
            }
            Verdict::Dismissed { why } => {
                tracing::debug!(
                    target = name,
                    id = candidates[i].id(),
                    why,
                    "live system dismissed suspected drift"
                );
                confirmed.insert(i, None);
            }
        }
    }

    let mut changes = Vec::new();
    let mut documents = HashMap::new();
    for (i, candidate) in candidates.into_iter().enumerate() {
        let confirmed_by = match (candidate.action, confirmed.get(&i)) {
            (Action::Unmanaged, _) => None,
            (_, Some(Some(by))) => Some(*by),
            (_, Some(None)) => {
                summary.in_sync += 1;
                continue;
            }
            (_, None) => Some(ConfirmedBy::Unconfirmed),
        };
        summary.count(candidate.action);
        let change = candidate.to_change(masker, confirmed_by, &keys);
        documents.insert(change.id.clone(), (candidate.desired, candidate.live));
        changes.push(change);
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));

    let exit_code = if changes.is_empty() { 0 } else { 2 };
    Ok(Outcome {
        plan: TargetPlan {
            name: name.to_string(),
            provider: provider_name.to_string(),
            exit_code,
            error: None,
            summary,
            changes,
            findings,
            acknowledged,
            source: None,
            severity: policy.policy.severity,
        },
        documents,
    })
}

struct Candidate {
    action: Action,
    /// The documents as the provider gave them (what apply receives).
    desired: Option<Resource>,
    live: Option<Resource>,
    /// Both bodies parsed and normalised (what was compared).
    values: (Option<Value>, Option<Value>),
    paths: Vec<Vec<Segment>>,
    /// The normalised bodies with ignored paths removed, when any were.
    shown: Option<(Value, Value)>,
}

impl Candidate {
    /// A one-sided change (create, delete, unmanaged): parse and normalise
    /// the side there is.
    fn new(
        provider: &dyn Provider,
        action: Action,
        desired: Option<Resource>,
        live: Option<Resource>,
        paths: Vec<Vec<Segment>>,
    ) -> Self {
        let mut dv = desired.as_ref().map(Resource::body);
        let mut lv = live.as_ref().map(Resource::body);
        if let Some(either) = desired.as_ref().or(live.as_ref()) {
            provider.normalize(Pair {
                id: &either.id,
                kind: &either.kind,
                desired: dv.as_mut(),
                live: lv.as_mut(),
            });
        }
        Candidate {
            action,
            desired,
            live,
            values: (dv, lv),
            paths,
            shown: None,
        }
    }

    fn id(&self) -> &str {
        self.desired
            .as_ref()
            .or(self.live.as_ref())
            .map(|r| r.id.as_str())
            .unwrap_or_default()
    }

    fn to_change(&self, masker: &Masker, confirmed_by: Option<ConfirmedBy>, keys: &[plumb_model::ListKey]) -> Change {
        let either = self.desired.as_ref().or(self.live.as_ref());
        let kind = either.map(|r| r.kind.as_str()).unwrap_or_default();
        let (desired_value, live_value) = match &self.shown {
            Some((d, l)) => (Some(d), Some(l)),
            None => (self.values.0.as_ref(), self.values.1.as_ref()),
        };
        let masked = |value: Option<&Value>, r: Option<&Resource>| -> Option<Value> {
            Some(masker.masked_value(value?, &r?.sensitive))
        };
        let desired_shown = masked(desired_value, self.desired.as_ref());
        let mut live_shown = masked(live_value, self.live.as_ref());
        if let (Some(d), Some(l)) = (&desired_shown, &mut live_shown) {
            diff::align(kind, d, l, keys);
        }
        let desired_text = desired_shown.map(|v| to_yaml(&v)).unwrap_or_default();
        let live_text = live_shown.map(|v| to_yaml(&v)).unwrap_or_default();
        let id = self.id().to_string();
        // The header is one line whatever the id holds.
        let shown = crate::render::inert(&id);
        let diff = similar::TextDiff::from_lines(&live_text, &desired_text)
            .unified_diff()
            .context_radius(3)
            .header(&format!("live/{shown}"), &format!("desired/{shown}"))
            .to_string();
        Change {
            id,
            kind: kind.to_string(),
            action: self.action,
            diff,
            paths: self.paths.iter().map(|p| path::render(p)).collect(),
            changed_by: self.live.as_ref().and_then(|l| l.changed_by.clone()),
            confirmed_by,
            origin: self
                .desired
                .as_ref()
                .and_then(|d| d.origin.as_ref())
                .map(|o| o.to_string()),
            desired_digest: self.values.0.as_ref().map(|v| masker.digest(v)),
            live_digest: self.values.1.as_ref().map(|v| masker.digest(v)),
            live_version: self.live.as_ref().and_then(|l| l.version.clone()),
        }
    }
}

/// Two desired documents with one id are an error naming both places.
pub fn check_unique_ids(resources: &[Resource]) -> Result<(), ProviderError> {
    let mut seen: HashMap<&str, &Resource> = HashMap::with_capacity(resources.len());
    for r in resources {
        if let Some(first) = seen.insert(&r.id, r) {
            let origin = |r: &Resource| {
                r.origin.clone().unwrap_or_else(|| plumb_model::Origin {
                    file: "(no file)".into(),
                    line: None,
                })
            };
            return Err(ProviderError::DuplicateId {
                id: r.id.clone(),
                first: origin(first),
                second: origin(r),
            });
        }
    }
    Ok(())
}

/// YAML text of a document, for diffs people read.
pub fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|_| format!("{value:#}\n"))
}

fn note_ack(
    acknowledged: &mut Vec<Acknowledged>,
    rule: &crate::policy::CompiledRule,
    id: &str,
    paths: Vec<String>,
    now: DateTime<Utc>,
) {
    let (Some(reason), Some(until), Some(status)) = (&rule.reason, &rule.until_text, rule.status(now)) else {
        return; // a standing ignore is not listed
    };
    if let Some(existing) = acknowledged
        .iter_mut()
        .find(|a| a.id == id && &a.reason == reason && &a.until == until)
    {
        for p in paths {
            if !existing.paths.contains(&p) {
                existing.paths.push(p);
            }
        }
        return;
    }
    acknowledged.push(Acknowledged {
        id: id.to_string(),
        paths,
        reason: reason.clone(),
        until: until.clone(),
        status,
    });
}

/// Lists expired acknowledgements that would have covered drift of `id`, so
/// the reader sees why it shows again.
fn note_expired(
    acknowledged: &mut Vec<Acknowledged>,
    rules: &[&crate::policy::CompiledRule],
    id: &str,
    full: &[Vec<Segment>],
    now: DateTime<Utc>,
) {
    for rule in rules.iter().filter(|r| r.status(now) == Some(AckStatus::Expired)) {
        let paths: Vec<String> = if rule.whole_resource() {
            vec!["/".into()]
        } else {
            full.iter()
                .filter(|p| rule.paths.iter().any(|pat| path::covers(pat, p)))
                .map(|p| path::render(p))
                .collect()
        };
        if !paths.is_empty() {
            note_ack(acknowledged, rule, id, paths, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use async_trait::async_trait;
    use plumb_model::{ApplyChange, Authority, ChangeResult, ListKey};
    use serde_json::json;
    use std::path::{Path, PathBuf};

    /// Compares as given; keys containers by name.
    struct Plain;

    #[async_trait]
    impl Provider for Plain {
        fn list_keys(&self) -> Vec<ListKey> {
            vec![ListKey::new("*", "**/containers", &["name"])]
        }
        fn desired(&self, _: &Path, _: &Path, _: &Ctx) -> Result<Desired, ProviderError> {
            Ok(Desired::default())
        }
        async fn live(&self, _: &Desired, _: &Ctx) -> Result<Live, ProviderError> {
            Ok(Live::default())
        }
        async fn apply(&self, _: &[ApplyChange], _: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
            Ok(Vec::new())
        }
        async fn import(&self, _: &Live, _: &Path, _: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
            Ok(Vec::new())
        }
    }

    fn doc(id: &str, body: serde_json::Value) -> Resource {
        Resource::new(id, id.split('/').next().unwrap_or("x"), body)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn planning<'a>(policy: &'a CompiledPolicy, masker: &'a Masker, ctx: &'a Ctx) -> Planning<'a> {
        Planning {
            target: "t",
            provider_name: "plain",
            provider: &Plain,
            policy,
            masker,
            ctx,
            now: now(),
        }
    }

    async fn run(desired: Vec<Resource>, live: Vec<Resource>, policy: &str) -> TargetPlan {
        let policy = Policy::parse(Path::new("p.yaml"), policy, chrono_tz::UTC).unwrap();
        let outcome = plan_target(
            &planning(&policy, &Masker::with_key(b"k"), &Ctx::new("t", "/tmp")),
            Desired {
                resources: desired,
                findings: Vec::new(),
            },
            Live {
                resources: live,
                findings: Vec::new(),
            },
        )
        .await
        .unwrap();
        outcome.plan
    }

    #[tokio::test]
    async fn classifies_every_action_and_counts_in_sync() {
        let desired = vec![
            doc("a/same", json!({"v": 1})),
            doc("a/changed", json!({"v": 1})),
            doc("a/new", json!({"v": 1})),
        ];
        let live = vec![
            doc("a/same", json!({"v": 1})),
            doc("a/changed", json!({"v": 2})),
            doc("a/owned-extra", json!({})).with_authority(Authority::Owned),
            doc("a/foreign-extra", json!({})),
        ];
        let plan = run(desired, live, "").await;
        let actions: Vec<(String, Action)> = plan.changes.iter().map(|c| (c.id.clone(), c.action)).collect();
        assert_eq!(
            actions,
            vec![
                ("a/changed".into(), Action::Update),
                ("a/foreign-extra".into(), Action::Unmanaged),
                ("a/new".into(), Action::Create),
                ("a/owned-extra".into(), Action::Delete),
            ]
        );
        assert_eq!(
            plan.summary,
            Summary {
                in_sync: 1,
                create: 1,
                update: 1,
                delete: 1,
                unmanaged: 1
            }
        );
        assert_eq!(plan.exit_code, 2);
        let update = &plan.changes[0];
        assert_eq!(update.paths, vec!["/v"]);
        assert!(
            update.diff.contains("-v: 2") && update.diff.contains("+v: 1"),
            "{}",
            update.diff
        );
    }

    #[tokio::test]
    async fn unmanaged_policy_finding_and_ignore_do_not_drift() {
        let live = vec![doc("a/extra", json!({}))];
        let as_finding = run(Vec::new(), live.clone(), "unmanaged: finding\nseverity: critical\n").await;
        assert_eq!(as_finding.exit_code, 0);
        assert_eq!(as_finding.findings.len(), 1);
        assert_eq!(as_finding.findings[0].severity, Severity::Critical);
        let ignored = run(Vec::new(), live, "unmanaged: ignore\n").await;
        assert_eq!(ignored.exit_code, 0);
        assert!(ignored.findings.is_empty() && ignored.changes.is_empty());
    }

    #[tokio::test]
    async fn ignored_paths_vanish_from_paths_and_diff() {
        let desired = vec![doc(
            "a/x",
            json!({"replicas": 3, "image": "v1", "containers": [{"name": "web", "image": "a"}]}),
        )];
        let live = vec![doc(
            "a/x",
            json!({"replicas": 5, "image": "v2", "containers": [{"name": "web", "image": "b"}]}),
        )];
        let plan = run(
            desired,
            live,
            "ignore:\n  - kind: a\n    paths: [/replicas, \"/containers/*/image\"]\n",
        )
        .await;
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].paths, vec!["/image"]);
        assert!(!plan.changes[0].diff.contains("replicas"), "{}", plan.changes[0].diff);
        // A standing ignore is not an acknowledgement.
        assert!(plan.acknowledged.is_empty());
    }

    #[tokio::test]
    async fn acknowledgements_hold_until_their_date_then_drift_returns() {
        let desired = vec![doc("a/x", json!({"replicas": 3}))];
        let live = vec![doc("a/x", json!({"replicas": 5}))];
        let policy = |until: &str| {
            format!("ignore:\n  - id: a/x\n    paths: [/replicas]\n    reason: INC-1\n    until: {until}\n")
        };
        let held = run(desired.clone(), live.clone(), &policy("2026-12-31")).await;
        assert_eq!(held.exit_code, 0);
        assert_eq!(held.summary.in_sync, 1);
        assert_eq!(held.acknowledged.len(), 1);
        assert_eq!(held.acknowledged[0].paths, vec!["/replicas"]);
        assert_eq!(held.acknowledged[0].status, AckStatus::InForce);
        let soon = run(desired.clone(), live.clone(), &policy("2026-11-25")).await;
        assert_eq!(soon.acknowledged[0].status, AckStatus::Expiring);
        let lapsed = run(desired, live, &policy("2026-11-21")).await;
        assert_eq!(lapsed.exit_code, 2);
        assert_eq!(lapsed.changes[0].paths, vec!["/replicas"]);
        assert_eq!(lapsed.acknowledged[0].status, AckStatus::Expired);
    }

    #[tokio::test]
    async fn whole_resource_acknowledgement_covers_a_missing_object() {
        let desired = vec![doc("a/x", json!({}))];
        let plan = run(
            desired,
            Vec::new(),
            "ignore:\n  - id: a/x\n    reason: later\n    until: 2027-01-01\n",
        )
        .await;
        assert_eq!(plan.exit_code, 0);
        assert_eq!(plan.acknowledged[0].paths, vec!["/"]);
    }

    #[tokio::test]
    async fn duplicate_desired_ids_name_both_origins() {
        let origin = |line| plumb_model::Origin {
            file: "f.yaml".into(),
            line: Some(line),
        };
        let desired = vec![
            doc("a/x", json!({})).with_origin(origin(1)),
            doc("a/x", json!({})).with_origin(origin(9)),
        ];
        let policy = CompiledPolicy::audit_only();
        let err = plan_target(
            &planning(&policy, &Masker::with_key(b"k"), &Ctx::new("t", "/tmp")),
            Desired {
                resources: desired,
                findings: Vec::new(),
            },
            Live::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("f.yaml:1") && err.contains("f.yaml:9"), "{err}");
    }

    #[tokio::test]
    async fn sensitive_values_never_reach_the_diff() {
        let mut d = doc("s/x", json!({"token": "new-secret"}));
        d.sensitive = plumb_model::Sensitivity::Paths(vec!["/token".into()]);
        let mut l = doc("s/x", json!({"token": "old-secret"}));
        l.sensitive = d.sensitive.clone();
        let plan = run(vec![d], vec![l], "").await;
        let json = serde_json::to_string(&plan).unwrap();
        assert!(!json.contains("new-secret") && !json.contains("old-secret"), "{json}");
        assert_eq!(plan.changes[0].paths, vec!["/token"]);
        assert!(plan.changes[0].diff.contains("hmac-sha256:"));
    }

    #[test]
    fn exit_code_error_wins_over_drift() {
        let mut a = TargetPlan::failed("a", "p", "x".into());
        let mut b = TargetPlan::failed("b", "p", "x".into());
        b.exit_code = 2;
        assert_eq!(Plan::compute_exit_code(&[a.clone(), b.clone()]), 1);
        a.exit_code = 0;
        assert_eq!(Plan::compute_exit_code(&[a.clone(), b]), 2);
        assert_eq!(Plan::compute_exit_code(&[a]), 0);
    }
}
