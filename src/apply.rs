//! Reconcile: decide per change what policy allows (mode, suspension, prune,
//! unmanaged, `max_changes`, the empty-desired-state guard), check a saved
//! plan against what is there now, hand the allowed changes of each target
//! to its provider as one batch, and re-plan to see that they converged.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use plumb_model::{Action, ApplyChange, ChangeResult, Outcome};
use serde::Serialize;

use crate::audit::TargetRun;
use crate::plan::{Change, Plan};
use crate::policy::Mode;

/// What policy says about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub action: Action,
    pub allowed: bool,
    /// Why it is refused; None when allowed.
    pub reason: Option<String>,
}

/// The decisions for one target, and a refusal of the whole target when a
/// guard stops everything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetDecisions {
    pub target: String,
    pub decisions: Vec<Decision>,
    /// Set when nothing of this target may be applied (and says why).
    pub refused: Option<String>,
    pub error: Option<String>,
}

impl TargetDecisions {
    pub fn allowed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.allowed)
    }
}

/// Applies policy to one target's plan.
pub fn decide(run: &TargetRun) -> TargetDecisions {
    let mut out = TargetDecisions {
        target: run.spec.name.clone(),
        error: run.plan.error.clone(),
        ..Default::default()
    };
    if run.plan.error.is_some() {
        return out;
    }
    let policy = &run.policy.policy;
    let suspended = run.policy.suspended(Utc::now(), run.timezone);
    for change in &run.plan.changes {
        let reason = if policy.mode == Mode::Audit {
            Some("policy mode is audit (set `mode: reconcile` to allow apply)".to_string())
        } else if let Some(s) = suspended {
            Some(format!("reconcile is suspended until {}: {}", s.until, s.reason))
        } else if change.action == Action::Unmanaged {
            Some("unmanaged objects are reported, never changed".to_string())
        } else if change.action == Action::Delete && !policy.prune {
            Some("deleting needs `prune: true` in the policy".to_string())
        } else {
            None
        };
        out.decisions.push(Decision {
            id: change.id.clone(),
            action: change.action,
            allowed: reason.is_none(),
            reason,
        });
    }
    let allowed = out.allowed().count();
    let deletes = out.allowed().filter(|d| d.action == Action::Delete).count();
    if deletes > 0 && run.desired_count == Some(0) {
        out.refused = Some(format!(
            "the desired state of {} is empty; refusing to delete {deletes} live object(s) (an empty or unreadable desired state never means \"delete everything\")",
            run.spec.name
        ));
    } else if let Some(max) = policy.max_changes {
        if allowed > max {
            out.refused = Some(format!(
                "the plan for {} has {allowed} changes, more than max_changes {max}; nothing applied",
                run.spec.name
            ));
        }
    }
    if let Some(why) = &out.refused {
        for d in out.decisions.iter_mut().filter(|d| d.allowed) {
            d.allowed = false;
            d.reason = Some(why.clone());
        }
    }
    out
}

/// Why a saved plan can no longer be applied as it is, per target.
pub fn stale_changes(saved: &[Change], fresh: &[Change]) -> Vec<String> {
    let fresh_by_id: HashMap<&str, &Change> = fresh.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut moved = Vec::new();
    for change in saved {
        match fresh_by_id.get(change.id.as_str()) {
            None => moved.push(format!("{}: no longer differs", change.id)),
            Some(now) if now.action != change.action => {
                moved.push(format!("{}: was {}, now {}", change.id, change.action, now.action))
            }
            Some(now) if now.live_digest != change.live_digest || now.live_version != change.live_version => {
                moved.push(format!("{}: the live object changed", change.id))
            }
            Some(now) if now.desired_digest != change.desired_digest => {
                moved.push(format!("{}: the desired document changed", change.id))
            }
            Some(_) => {}
        }
    }
    moved
}

/// Restricts `run` to exactly the changes of a saved plan.
pub fn restrict_to(run: &mut TargetRun, saved: &[Change]) {
    let wanted: HashSet<&str> = saved.iter().map(|c| c.id.as_str()).collect();
    run.plan.changes.retain(|c| wanted.contains(c.id.as_str()));
}

/// Hands the allowed changes of one target to its provider as one batch.
pub async fn execute(run: &TargetRun, decisions: &TargetDecisions) -> Vec<ChangeResult> {
    let allowed: Vec<&Decision> = decisions.allowed().collect();
    if allowed.is_empty() {
        return Vec::new();
    }
    let Some(provider) = &run.provider else {
        return Vec::new();
    };
    let changes: Vec<ApplyChange> = allowed
        .iter()
        .map(|d| {
            let (desired, live) = run.documents.get(&d.id).cloned().unwrap_or((None, None));
            ApplyChange {
                id: d.id.clone(),
                action: d.action,
                desired,
                live,
            }
        })
        .collect();
    let applied = tokio::time::timeout(run.ctx.timeout, provider.apply(&changes, &run.ctx)).await;
    let refuse_all = |why: String| -> Vec<ChangeResult> {
        changes
            .iter()
            .map(|c| ChangeResult {
                id: c.id.clone(),
                action: c.action,
                outcome: Outcome::Refused(why.clone()),
            })
            .collect()
    };
    match applied {
        Ok(Ok(results)) => {
            // A provider that forgets a change must not make it look applied.
            let reported: HashSet<String> = results.iter().map(|r| r.id.clone()).collect();
            let mut results = results;
            for c in &changes {
                if !reported.contains(&c.id) {
                    results.push(ChangeResult {
                        id: c.id.clone(),
                        action: c.action,
                        outcome: Outcome::Failed("the provider reported no result".into()),
                    });
                }
            }
            results
        }
        Ok(Err(e)) => refuse_all(e.to_string()),
        Err(_) => changes
            .iter()
            .map(|c| ChangeResult {
                id: c.id.clone(),
                action: c.action,
                outcome: Outcome::Failed(format!("apply timed out after {}s", run.ctx.timeout.as_secs())),
            })
            .collect(),
    }
}

/// apply's exit code: 1 on any failure or refusal of a whole target, else 2
/// when drift remains that policy forbade to fix, else 0.
pub fn exit_code(decisions: &[TargetDecisions], results: &[ChangeResult], still_drifting: &[String]) -> i32 {
    let failed = decisions.iter().any(|d| d.error.is_some() || d.refused.is_some())
        || results.iter().any(|r| !matches!(r.outcome, Outcome::Applied))
        || !still_drifting.is_empty();
    if failed {
        return 1;
    }
    if decisions.iter().any(|d| d.decisions.iter().any(|x| !x.allowed)) {
        return 2;
    }
    0
}

/// The `--dry-run` text: what policy would allow or refuse.
pub fn render_decisions(decisions: &[TargetDecisions]) -> String {
    let mut out = String::new();
    for t in decisions {
        if let Some(e) = &t.error {
            out.push_str(&format!("{}: error: {e}\n", t.target));
            continue;
        }
        if t.decisions.is_empty() {
            out.push_str(&format!("{}: nothing to do\n", t.target));
            continue;
        }
        out.push_str(&format!("{}:\n", t.target));
        if let Some(why) = &t.refused {
            out.push_str(&format!("  refused: {why}\n"));
        }
        for d in &t.decisions {
            match &d.reason {
                None => out.push_str(&format!("  allow  {} {}\n", d.action, d.id)),
                Some(why) => out.push_str(&format!("  refuse {} {} ({why})\n", d.action, d.id)),
            }
        }
    }
    out
}

/// The results of an apply, for people.
pub fn render_results(results: &[ChangeResult], still_drifting: &[String]) -> String {
    let mut out = String::new();
    for r in results {
        match &r.outcome {
            Outcome::Applied => out.push_str(&format!("  applied {} {}\n", r.action, r.id)),
            Outcome::Failed(m) => out.push_str(&format!("  FAILED  {} {}: {m}\n", r.action, r.id)),
            Outcome::Refused(m) => out.push_str(&format!("  refused {} {}: {m}\n", r.action, r.id)),
        }
    }
    for id in still_drifting {
        out.push_str(&format!("  still differs after apply: {id}\n"));
    }
    let applied = results.iter().filter(|r| matches!(r.outcome, Outcome::Applied)).count();
    out.push_str(&format!(
        "Apply complete: {applied} applied, {} not applied.\n",
        results.len() - applied
    ));
    out
}

/// Whether the plan a saved file holds can be used by this binary.
pub fn check_saved(plan: &Plan) -> Result<(), String> {
    if plan.format_version != crate::plan::FORMAT_VERSION {
        return Err(format!(
            "saved plan has format_version {}, this plumb reads {}",
            plan.format_version,
            crate::plan::FORMAT_VERSION
        ));
    }
    if plan.exit_code == 1 {
        return Err("the saved plan has errors; make a new one".into());
    }
    Ok(())
}
