//! What the core's engine does with a provider, in miniature, shared by the
//! integration tests: match desired and live by id, normalise, diff,
//! confirm.

#![allow(dead_code)]

use std::path::Path;

use plumb_kubernetes::normalize::{diff_paths, normalize_pair};
use plumb_kubernetes::KubernetesProvider;
use plumb_model::{Action, Authority, ChangedBy, ConfirmedBy, Ctx, Provider, Resource, Suspect, Verdict};

pub struct Change {
    pub id: String,
    pub action: Action,
    pub paths: Vec<String>,
    pub changed_by: Option<ChangedBy>,
    pub confirmed_by: Option<ConfirmedBy>,
    pub desired: Option<Resource>,
    pub live: Option<Resource>,
}

/// What the core's engine does, in miniature: match by id, normalise,
/// diff, confirm.
pub async fn plan(p: &KubernetesProvider, dir: &Path, ctx: &Ctx) -> Result<Vec<Change>, plumb_model::ProviderError> {
    let desired = p.desired(dir, dir, ctx)?;
    let live = p.live(&desired, ctx).await?;
    let mut live_by_id: std::collections::HashMap<String, Resource> =
        live.resources.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut changes = Vec::new();
    for d in desired.resources {
        match live_by_id.remove(&d.id) {
            None => changes.push(Change {
                id: d.id.clone(),
                action: Action::Create,
                paths: vec![],
                changed_by: None,
                confirmed_by: None,
                desired: Some(d),
                live: None,
            }),
            Some(l) => {
                let mut dv = d.body();
                let mut lv = l.body();
                normalize_pair(&d.kind, Some(&mut dv), Some(&mut lv));
                let paths = diff_paths(&d.kind, &dv, &lv);
                if !paths.is_empty() {
                    changes.push(Change {
                        id: d.id.clone(),
                        action: Action::Update,
                        paths,
                        changed_by: l.changed_by.clone(),
                        confirmed_by: None,
                        desired: Some(d),
                        live: Some(l),
                    });
                }
            }
        }
    }
    let mut rest: Vec<Resource> = live_by_id.into_values().collect();
    rest.sort_by(|a, b| a.id.cmp(&b.id));
    for l in rest {
        let action = if l.authority == Authority::Owned {
            Action::Delete
        } else {
            Action::Unmanaged
        };
        changes.push(Change {
            id: l.id.clone(),
            action,
            paths: vec![],
            changed_by: l.changed_by.clone(),
            confirmed_by: None,
            desired: None,
            live: Some(l),
        });
    }
    let idx: Vec<usize> = (0..changes.len())
        .filter(|&i| changes[i].action != Action::Unmanaged)
        .collect();
    let suspects: Vec<Suspect<'_>> = idx
        .iter()
        .map(|&i| Suspect {
            id: &changes[i].id,
            action: changes[i].action,
            desired: changes[i].desired.as_ref(),
            live: changes[i].live.as_ref(),
            paths: &changes[i].paths,
        })
        .collect();
    let verdicts = p.confirm(&suspects, ctx).await?;
    drop(suspects);
    let mut dismissed = Vec::new();
    for (&i, v) in idx.iter().zip(verdicts) {
        match v {
            Verdict::Confirmed(by) => changes[i].confirmed_by = Some(by),
            Verdict::Dismissed { .. } => dismissed.push(i),
        }
    }
    let mut i = 0;
    changes.retain(|_| {
        let keep = !dismissed.contains(&i);
        i += 1;
        keep
    });
    Ok(changes)
}
