//! Reconcile: folders first (parents before children), then dashboards
//! saved with `POST /api/dashboards/db` (`overwrite: true`, the folder uid
//! always set, a message naming the commit), then deletes of dashboards
//! inside folders this target owns. Each change stands alone: one failure
//! does not stop the rest.

use std::collections::{BTreeMap, HashMap};

use plumb_model::{Action, ApplyChange, Authority, ChangeResult, Ctx, Outcome};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::{DASHBOARD_KIND, FOLDER_KIND};

/// The version-history message of a save, so Grafana's own history points
/// back to Git ("Create / Update dashboard": `message` is the commit
/// message of the version, dashboard.md): the commit id and its subject,
/// e.g. `plumb: sync from Git commit 0123abcd "Fix the latency panel"
/// (target grafana-prod)`. Either part is left out when the core does not
/// know it; a subject is cut to its first line.
pub fn save_message(ctx: &Ctx) -> String {
    let commit = ctx.commit.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let subject = ctx
        .commit_subject
        .as_deref()
        .and_then(|s| s.lines().next())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let target = &ctx.target;
    match (commit, subject) {
        (Some(c), Some(s)) => format!("plumb: sync from Git commit {c} \"{s}\" (target {target})"),
        (Some(c), None) => format!("plumb: sync from Git commit {c} (target {target})"),
        (None, Some(s)) => format!("plumb: sync from Git: \"{s}\" (target {target})"),
        (None, None) => format!("plumb: sync from Git (target {target})"),
    }
}

fn kind_of(change: &ApplyChange) -> &str {
    change
        .desired
        .as_ref()
        .or(change.live.as_ref())
        .map(|r| r.kind.as_str())
        .unwrap_or_default()
}

/// Depth of a folder in the desired tree, so parents are created first.
fn depth(uid: &str, parents: &BTreeMap<String, Option<String>>) -> usize {
    let mut d = 0;
    let mut cursor = parents.get(uid).cloned().flatten();
    while let Some(p) = cursor {
        d += 1;
        if d > 64 {
            break;
        }
        cursor = parents.get(&p).cloned().flatten();
    }
    d
}

/// Carries out `changes`; one result per change, in the order given.
pub async fn apply(
    client: &Client,
    changes: &[ApplyChange],
    provisioned: &HashMap<String, String>,
    ctx: &Ctx,
) -> Vec<ChangeResult> {
    let message = save_message(ctx);
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    for c in changes.iter().filter(|c| kind_of(c) == FOLDER_KIND) {
        if let Some(d) = &c.desired {
            let b = d.body();
            parents.insert(
                b["uid"].as_str().unwrap_or_default().to_string(),
                b.get("parentUid").and_then(Value::as_str).map(str::to_string),
            );
        }
    }
    // Order: folder writes by depth, dashboard writes, dashboard deletes,
    // folder deletes (which are refused).
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| {
        let c = &changes[i];
        let is_folder = kind_of(c) == FOLDER_KIND;
        let stage = match (is_folder, c.action) {
            (true, Action::Create | Action::Update) => 0,
            (false, Action::Create | Action::Update) => 1,
            (false, _) => 2,
            (true, _) => 3,
        };
        let d = c
            .desired
            .as_ref()
            .map(|r| depth(r.body()["uid"].as_str().unwrap_or_default(), &parents))
            .unwrap_or(0);
        (stage, d, i)
    });
    let mut outcomes: Vec<Option<Outcome>> = vec![None; changes.len()];
    for i in order {
        let change = &changes[i];
        let outcome = apply_one(client, change, provisioned, &message).await;
        match &outcome {
            Outcome::Applied => {
                tracing::info!(target_name = %ctx.target, id = %change.id, action = %change.action, "applied")
            }
            Outcome::Failed(why) | Outcome::Refused(why) => {
                tracing::warn!(target_name = %ctx.target, id = %change.id, action = %change.action, reason = %why, "not applied")
            }
        }
        outcomes[i] = Some(outcome);
    }
    changes
        .iter()
        .zip(outcomes)
        .map(|(c, o)| ChangeResult {
            id: c.id.clone(),
            action: c.action,
            outcome: o.unwrap_or_else(|| Outcome::Failed("not attempted".into())),
        })
        .collect()
}

async fn send(client: &Client, method: Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let url = client.url(path, &[]).map_err(|e| e.to_string())?;
    client.call(method, url, body).await.map_err(|f| f.error.to_string())
}

async fn apply_one(
    client: &Client,
    change: &ApplyChange,
    provisioned: &HashMap<String, String>,
    message: &str,
) -> Outcome {
    let kind = kind_of(change);
    match (kind, change.action) {
        (_, Action::Unmanaged) => Outcome::Refused("unmanaged objects are reported, never changed".into()),
        (FOLDER_KIND, Action::Delete) => Outcome::Refused(
            "plumb never deletes Grafana folders: Grafana deletes every dashboard and alert rule inside with them"
                .into(),
        ),
        (FOLDER_KIND, Action::Create | Action::Update) => {
            let Some(desired) = &change.desired else {
                return Outcome::Refused(format!("{} without a desired document", change.action));
            };
            let body = desired.body();
            let uid = body["uid"].as_str().unwrap_or_default().to_string();
            let title = body["title"].clone();
            let parent = body
                .get("parentUid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if change.action == Action::Create {
                let mut create = json!({"uid": uid, "title": title});
                if !parent.is_empty() {
                    create["parentUid"] = json!(parent);
                }
                return match send(client, Method::POST, "api/folders", Some(&create)).await {
                    Ok(_) => Outcome::Applied,
                    Err(e) => Outcome::Failed(e),
                };
            }
            let live = change.live.as_ref().map(|l| l.body()).unwrap_or(Value::Null);
            if live.get("title") != Some(&title) {
                let update = json!({"title": title, "overwrite": true});
                if let Err(e) = send(client, Method::PUT, &format!("api/folders/{uid}"), Some(&update)).await {
                    return Outcome::Failed(e);
                }
            }
            let live_parent = live.get("parentUid").and_then(Value::as_str).unwrap_or_default();
            if live_parent != parent {
                let mv = json!({"parentUid": parent});
                if let Err(e) = send(client, Method::POST, &format!("api/folders/{uid}/move"), Some(&mv)).await {
                    return Outcome::Failed(e);
                }
            }
            Outcome::Applied
        }
        (DASHBOARD_KIND, Action::Create | Action::Update) => {
            let Some(desired) = &change.desired else {
                return Outcome::Refused(format!("{} without a desired document", change.action));
            };
            let body = desired.body();
            let mut model = body["dashboard"].clone();
            let uid = model["uid"].as_str().unwrap_or_default().to_string();
            if let Some(who) = provisioned.get(&uid) {
                return Outcome::Refused(format!(
                    "managed elsewhere: {who}; plumb never saves it (the other tool would overwrite or refuse the save)"
                ));
            }
            if let Value::Object(m) = &mut model {
                // Grafana assigns id and version; export artefacts do not
                // belong in a stored dashboard (see normalize.rs).
                m.remove("id");
                m.remove("version");
                for k in ["__inputs", "__requires", "__elements"] {
                    m.remove(k);
                }
            }
            // Always set: "if you do not define the folderId or the
            // folderUid property, then the dashboard(s) are moved to the
            // root level" (dashboard.md).
            let folder = body["folderUid"].as_str().unwrap_or_default().to_string();
            let save = json!({"dashboard": model, "folderUid": folder, "overwrite": true, "message": message});
            match send(client, Method::POST, "api/dashboards/db", Some(&save)).await {
                Ok(_) => Outcome::Applied,
                Err(e) => Outcome::Failed(e),
            }
        }
        (DASHBOARD_KIND, Action::Delete) => {
            let Some(live) = &change.live else {
                return Outcome::Refused("delete without a live document".into());
            };
            if live.authority != Authority::Owned {
                return Outcome::Refused(
                    "only dashboards inside folders this target owns are deleted (policy guard authoritative_folders)"
                        .into(),
                );
            }
            let uid = live.body()["dashboard"]["uid"].as_str().unwrap_or_default().to_string();
            if let Some(who) = provisioned.get(&uid) {
                return Outcome::Refused(format!("managed elsewhere: {who}; plumb never deletes it"));
            }
            match send(client, Method::DELETE, &format!("api/dashboards/uid/{uid}"), None).await {
                Ok(_) => Outcome::Applied,
                Err(e) => Outcome::Failed(e),
            }
        }
        (other, action) => Outcome::Refused(format!("the grafana provider cannot {action} a {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(commit: Option<&str>, subject: Option<&str>) -> Ctx {
        let mut ctx = Ctx::new("grafana-prod", std::env::temp_dir());
        ctx.commit = commit.map(str::to_string);
        ctx.commit_subject = subject.map(str::to_string);
        ctx
    }

    #[test]
    fn save_message_names_commit_and_subject() {
        assert_eq!(
            save_message(&ctx(Some("9f1c2e7"), Some("Raise the latency threshold"))),
            r#"plumb: sync from Git commit 9f1c2e7 "Raise the latency threshold" (target grafana-prod)"#
        );
        // Only the subject line, trimmed.
        assert_eq!(
            save_message(&ctx(Some(" 9f1c2e7 "), Some("  Subject  \n\nBody text"))),
            r#"plumb: sync from Git commit 9f1c2e7 "Subject" (target grafana-prod)"#
        );
        assert_eq!(
            save_message(&ctx(Some("9f1c2e7"), Some("  "))),
            "plumb: sync from Git commit 9f1c2e7 (target grafana-prod)"
        );
        assert_eq!(
            save_message(&ctx(None, None)),
            "plumb: sync from Git (target grafana-prod)"
        );
        assert_eq!(
            save_message(&ctx(None, Some("Subject"))),
            r#"plumb: sync from Git: "Subject" (target grafana-prod)"#
        );
    }
}
