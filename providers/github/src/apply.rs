//! Reconcile: guards over the whole batch first (an `Err` writes nothing),
//! then org settings, memberships, teams (parents first), team members and
//! repository permissions, with deletions last (children before parents).
//! One failing change — a blocked or unknown user — is recorded against that
//! change and the rest go on.

use std::collections::HashMap;

use plumb_model::{Action, ApplyChange, ChangeResult, Ctx, Outcome, ProviderError, Resource};
use serde_json::{json, Value};

use crate::client::{Api, TokenCache};
use crate::connection::Connection;
use crate::live::OrgIndex;
use crate::normalize::permission;
use crate::{ids, GUARD_MAX_REMOVALS, GUARD_REQUIRED_ADMINS};

/// The default cap: 5 removals, or 10% of the live members when
/// that is more.
pub const DEFAULT_MAX_REMOVALS: usize = 5;

fn refused(message: String) -> ProviderError {
    ProviderError::Refused(message)
}

/// The removal cap for an org with `live_members` members.
pub fn max_removals(guard: Option<&Value>, live_members: usize) -> Result<usize, ProviderError> {
    match guard {
        None => Ok(DEFAULT_MAX_REMOVALS.max(live_members / 10)),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| ProviderError::Config(format!("guard {GUARD_MAX_REMOVALS} must be a whole number"))),
        Some(Value::String(s)) if s.ends_with('%') => s[..s.len() - 1]
            .trim()
            .parse::<f64>()
            .map(|p| ((live_members as f64) * p / 100.0).floor() as usize)
            .map_err(|_| ProviderError::Config(format!("guard {GUARD_MAX_REMOVALS} {s:?} is not a percentage"))),
        Some(other) => Err(ProviderError::Config(format!(
            "guard {GUARD_MAX_REMOVALS} must be a number or a percentage such as \"10%\", not {other}"
        ))),
    }
}

fn role_of(r: Option<&Resource>) -> Option<String> {
    r.and_then(|r| r.body()["role"].as_str().map(str::to_string))
}

/// Change order: creates and updates top-down, deletions bottom-up.
fn rank(c: &ApplyChange) -> (u8, usize) {
    let kind = c
        .desired
        .as_ref()
        .or(c.live.as_ref())
        .map(|r| r.kind.clone())
        .unwrap_or_default();
    let depth = c.id.matches('/').count();
    let delete = c.action == Action::Delete;
    let step = match (kind.as_str(), delete) {
        (ids::KIND_SETTINGS, _) => 0,
        (ids::KIND_MEMBER, false) => 1,
        (ids::KIND_TEAM, false) => 2,
        (ids::KIND_TEAM_MEMBER, false) => 3,
        (ids::KIND_TEAM_REPO, false) => 4,
        (ids::KIND_TEAM_REPO, true) => 5,
        (ids::KIND_TEAM_MEMBER, true) => 6,
        (ids::KIND_TEAM, true) => 7,
        _ => 8,
    };
    (step, depth)
}

pub async fn apply(
    conn: &Connection,
    tokens: &TokenCache,
    changes: &[ApplyChange],
    ctx: &Ctx,
    desired_sizes: &HashMap<String, usize>,
    mut live: HashMap<String, OrgIndex>,
) -> Result<Vec<ChangeResult>, ProviderError> {
    // Group by org, and check every guard before the first write.
    let mut by_org: HashMap<String, Vec<&ApplyChange>> = HashMap::new();
    for c in changes {
        let org = ids::parse(&c.id)
            .and_then(|p| p.first().map(|o| o.to_string()))
            .ok_or_else(|| refused(format!("{} is not a github id", c.id)))?;
        by_org.entry(org).or_default().push(c);
    }
    let required: Vec<String> = crate::string_list(ctx.guards.get(GUARD_REQUIRED_ADMINS))
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();
    for (org, list) in &by_org {
        match desired_sizes.get(org) {
            Some(n) if *n > 0 => {}
            Some(_) => {
                return Err(refused(format!(
                    "the org file of {org} lists no admins and no members; plumb never acts on an empty org file"
                )))
            }
            None => {
                return Err(refused(format!(
                    "no org file of {org} was read in this run; nothing applied"
                )))
            }
        }
        let mut removals = Vec::new();
        for c in list
            .iter()
            .filter(|c| c.id.contains("/member/") && !c.id.contains("/team/"))
        {
            let login = c.id.rsplit('/').next().unwrap_or_default();
            let demoted = c.action == Action::Update && role_of(c.desired.as_ref()).as_deref() != Some("admin");
            if required.iter().any(|r| r == login) && (c.action == Action::Delete || demoted) {
                return Err(refused(format!(
                    "{login} is a required admin of {org} (guard {GUARD_REQUIRED_ADMINS}); the plan would {} them",
                    if demoted { "demote" } else { "remove" }
                )));
            }
            if c.action == Action::Delete {
                removals.push(login.to_string());
            }
        }
        let live_members = live.get(org).map(|i| i.members.len()).unwrap_or_default();
        let cap = max_removals(ctx.guards.get(GUARD_MAX_REMOVALS), live_members)?;
        if removals.len() > cap {
            return Err(refused(format!(
                "the plan removes {} members of {org} ({}), more than {GUARD_MAX_REMOVALS} = {cap}",
                removals.len(),
                preview(&removals)
            )));
        }
    }

    let mut results = Vec::new();
    for (org, mut list) in by_org {
        let api = Api::new(conn, &org, ctx, tokens).await?;
        let me = api
            .get("/user")
            .await
            .ok()
            .and_then(|u| u["login"].as_str().map(str::to_lowercase));
        if let Some(me) = &me {
            if list
                .iter()
                .any(|c| c.action == Action::Delete && c.id == ids::member(&org, me))
            {
                return Err(refused(format!(
                    "the plan removes {me}, the user plumb acts as, from {org}; plumb never removes its own user"
                )));
            }
        }
        list.sort_by_key(|c| rank(c));
        let index = live.entry(org.clone()).or_default();
        let wanted_team_members: std::collections::HashSet<&str> = list
            .iter()
            .filter(|c| c.action != Action::Delete)
            .map(|c| c.id.as_str())
            .collect();
        for c in &list {
            let outcome = match one(&api, &org, c, index, me.as_deref(), &wanted_team_members).await {
                Ok(()) => Outcome::Applied,
                Err(e) => {
                    tracing::warn!(id = %c.id, error = %e, "github change failed");
                    Outcome::Failed(e.to_string())
                }
            };
            results.push(ChangeResult {
                id: c.id.clone(),
                action: c.action,
                outcome,
            });
        }
    }
    Ok(results)
}

fn preview(logins: &[String]) -> String {
    let mut s = logins.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if logins.len() > 10 {
        s.push_str(", …");
    }
    s
}

/// The GitHub slug for plumb's team slug: the live one when known.
fn slug(index: &OrgIndex, org: &str, ours: &str) -> String {
    index
        .teams
        .get(&ids::team(org, ours))
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| ours.to_string())
}

async fn one(
    api: &Api,
    org: &str,
    c: &ApplyChange,
    index: &mut OrgIndex,
    me: Option<&str>,
    wanted: &std::collections::HashSet<&str>,
) -> Result<(), ProviderError> {
    let parts = ids::parse(&c.id).unwrap_or_default();
    let body = c.desired.as_ref().map(|r| r.body()).unwrap_or(Value::Null);
    match parts.as_slice() {
        [_, "settings"] => {
            api.write("PATCH", &format!("/orgs/{org}"), Some(&body)).await?;
        }
        [_, "member", login] => {
            let login = body["login"].as_str().unwrap_or(login);
            if c.action == Action::Delete {
                // https://docs.github.com/en/rest/orgs/members#remove-organization-membership-for-a-user
                api.write("DELETE", &format!("/orgs/{org}/memberships/{login}"), None)
                    .await?;
            } else {
                // https://docs.github.com/en/rest/orgs/members#set-organization-membership-for-a-user:
                // invites a non-member (state `pending`), changes a member's role.
                api.write(
                    "PUT",
                    &format!("/orgs/{org}/memberships/{login}"),
                    Some(&json!({"role": body["role"]})),
                )
                .await?;
            }
        }
        [_, "team", ours] => {
            let gh = slug(index, org, ours);
            if c.action == Action::Delete {
                // Deleting a parent deletes its children: a 404 here means
                // the team is already gone.
                match api.write("DELETE", &format!("/orgs/{org}/teams/{gh}"), None).await {
                    Err(ProviderError::Api { status: Some(404), .. }) | Ok(_) => {}
                    Err(e) => return Err(e),
                }
                return Ok(());
            }
            let mut req = json!({"name": body["name"]});
            for key in ["description", "privacy"] {
                if let Some(v) = body.get(key) {
                    req[key] = v.clone();
                }
            }
            let parent_id = match body["parent"].as_str() {
                Some(p) => Some(
                    index
                        .teams
                        .get(&ids::team(org, &crate::desired::slugify(p)))
                        .map(|(_, id)| *id)
                        .ok_or_else(|| refused(format!("parent team {p:?} of {} does not exist yet", c.id)))?,
                ),
                None => None,
            };
            req["parent_team_id"] = json!(parent_id);
            let team = if c.action == Action::Create {
                api.write("POST", &format!("/orgs/{org}/teams"), Some(&req)).await?
            } else {
                api.write("PATCH", &format!("/orgs/{org}/teams/{gh}"), Some(&req))
                    .await?
            };
            let new_slug = team["slug"].as_str().unwrap_or(ours).to_string();
            index.teams.insert(
                c.id.clone(),
                (new_slug.clone(), team["id"].as_u64().unwrap_or_default()),
            );
            // "When you create a new team, you automatically become a team
            // maintainer" (https://docs.github.com/en/rest/teams/teams#create-a-team):
            // undo that unless the org file wants it.
            if let (Action::Create, Some(me)) = (c.action, me) {
                if !wanted.contains(ids::team_member(org, ours, me).as_str()) {
                    match api
                        .write(
                            "DELETE",
                            &format!("/orgs/{org}/teams/{new_slug}/memberships/{me}"),
                            None,
                        )
                        .await
                    {
                        Ok(_) | Err(ProviderError::Api { status: Some(404), .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        [_, "team", ours, "member", login] => {
            let gh = slug(index, org, ours);
            let login = body["login"].as_str().unwrap_or(login);
            let path = format!("/orgs/{org}/teams/{gh}/memberships/{login}");
            if c.action == Action::Delete {
                api.write("DELETE", &path, None).await?;
            } else {
                api.write("PUT", &path, Some(&json!({"role": body["role"]}))).await?;
            }
        }
        [_, "team", ours, "repo", repo] => {
            let gh = slug(index, org, ours);
            let path = format!("/orgs/{org}/teams/{gh}/repos/{org}/{repo}");
            if c.action == Action::Delete {
                api.write("DELETE", &path, None).await?;
            } else {
                let p = permission(body["permission"].as_str().unwrap_or("read"));
                // The REST API takes `pull`/`push` or a role name.
                let p = match p {
                    "read" => "pull",
                    "write" => "push",
                    other => other,
                };
                api.write("PUT", &path, Some(&json!({"permission": p}))).await?;
            }
        }
        _ => return Err(refused(format!("{} is not a github resource plumb can change", c.id))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_cap_defaults_and_forms() {
        assert_eq!(max_removals(None, 20).unwrap(), 5);
        assert_eq!(max_removals(None, 1266).unwrap(), 126);
        assert_eq!(max_removals(Some(&json!(2)), 1000).unwrap(), 2);
        assert_eq!(max_removals(Some(&json!("1%")), 1000).unwrap(), 10);
        assert!(max_removals(Some(&json!("x")), 10).is_err());
    }
}
