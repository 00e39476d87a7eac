//! Reading one organisation from GitHub: settings, members by role, pending
//! and failed invitations, outside collaborators, teams with their parents,
//! team members by role (child-team members subtracted) and team repository
//! permissions. Everything is a paginated, conditional list, so an unchanged
//! org costs `304`s, which GitHub does not count against the rate limit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use plumb_model::{Authority, Finding, ProviderError, Resource, Severity};
use serde_json::{json, Map, Value};

use crate::client::Api;
use crate::desired::SETTINGS_KEYS;
use crate::ids;

/// GitHub: "Invitations expire after 7 days"
/// (https://docs.github.com/en/organizations/managing-membership-in-your-organization/inviting-users-to-join-your-organization).
pub const INVITATION_LIFETIME_DAYS: i64 = 7;

/// What a live read learnt besides the resources, for apply.
#[derive(Debug, Clone, Default)]
pub struct OrgIndex {
    /// Team id (plumb's) → (GitHub slug, GitHub numeric id).
    pub teams: HashMap<String, (String, u64)>,
    /// Lower-cased logins of live members and owners.
    pub members: HashSet<String>,
    pub admins: HashSet<String>,
}

/// What desired says about one org, as live() needs it.
#[derive(Debug, Default)]
struct Want<'a> {
    settings: Option<&'a Resource>,
    members: HashMap<String, Value>,
    teams: HashMap<String, Value>,
    team_members: HashMap<String, Value>,
}

fn owned(id: String, kind: &str, body: Value) -> Resource {
    Resource::new(id, kind, body).with_authority(Authority::Owned)
}

fn login_of(v: &Value) -> String {
    v["login"].as_str().unwrap_or_default().to_string()
}

/// Reads org `org`; `desired` is the whole desired set (this org's part is
/// picked by id prefix).
pub async fn read_org(
    api: &Api,
    org: &str,
    desired: &[Resource],
    out: &mut Vec<Resource>,
    findings: &mut Vec<Finding>,
) -> Result<OrgIndex, ProviderError> {
    let prefix = format!("{}/", ids::org(org));
    let mut want = Want::default();
    for r in desired.iter().filter(|r| r.id.starts_with(&prefix)) {
        match r.kind.as_str() {
            ids::KIND_SETTINGS => want.settings = Some(r),
            ids::KIND_MEMBER => {
                want.members.insert(r.id.clone(), r.body());
            }
            ids::KIND_TEAM => {
                want.teams.insert(r.id.clone(), r.body());
            }
            ids::KIND_TEAM_MEMBER => {
                want.team_members.insert(r.id.clone(), r.body());
            }
            _ => {}
        }
    }
    let mut index = OrgIndex::default();

    if let Some(wanted) = want.settings {
        let live = api.get(&format!("/orgs/{org}")).await?;
        let mut body = Map::new();
        for key in SETTINGS_KEYS {
            if let Some(v) = live.get(*key).filter(|v| !v.is_null()) {
                body.insert(key.to_string(), v.clone());
            }
        }
        let _ = wanted;
        out.push(owned(ids::settings(org), ids::KIND_SETTINGS, Value::Object(body)));
    }

    // https://docs.github.com/en/rest/orgs/members#list-organization-members:
    // `role=admin` lists owners, `role=member` non-owners.
    for role in ["admin", "member"] {
        for user in api.list(&format!("/orgs/{org}/members?role={role}")).await? {
            let login = login_of(&user);
            index.members.insert(login.to_lowercase());
            if role == "admin" {
                index.admins.insert(login.to_lowercase());
            }
            out.push(owned(
                ids::member(org, &login),
                ids::KIND_MEMBER,
                json!({"login": login, "role": role}),
            ));
        }
    }

    // Pending invitations: a desired member with one is `invited`, not
    // drift; one older than the documented lifetime has expired.
    let now = chrono::Utc::now();
    let mut invited: HashSet<String> = HashSet::new();
    for inv in optional_list(api, org, "invitations", "pending invitations", findings).await? {
        let who = inv["login"]
            .as_str()
            .or(inv["email"].as_str())
            .unwrap_or("(unknown)")
            .to_string();
        let created = inv["created_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let id = ids::member(org, &who);
        let expired = created.is_some_and(|c| (now - c).num_days() >= INVITATION_LIFETIME_DAYS);
        if expired {
            findings.push(Finding {
                id: id.clone(),
                kind: "invitation".into(),
                message: format!(
                    "the invitation of {who} to {org} (sent {}) has expired: {who} has no access",
                    inv["created_at"].as_str().unwrap_or("?")
                ),
                severity: Severity::Warning,
            });
            continue;
        }
        let role = if inv["role"].as_str() == Some("admin") {
            "admin"
        } else {
            "member"
        };
        invited.insert(who.to_lowercase());
        match want.members.get(&id) {
            Some(w) if !index.members.contains(&who.to_lowercase()) => {
                findings.push(Finding {
                    id: id.clone(),
                    kind: "invitation".into(),
                    message: format!(
                        "{who} is invited to {org} as {role} (pending since {}); access starts when they accept",
                        inv["created_at"].as_str().unwrap_or("?")
                    ),
                    severity: Severity::Info,
                });
                // The invitation stands for the membership: the role it
                // grants is compared, the pending state is not drift.
                let mut body = w.clone();
                body["role"] = json!(role);
                out.push(owned(id, ids::KIND_MEMBER, body));
            }
            _ => findings.push(Finding {
                id,
                kind: "invitation".into(),
                message: format!("{who} has a pending invitation to {org} as {role} that the org file does not list"),
                severity: Severity::Warning,
            }),
        }
    }
    // https://docs.github.com/en/rest/orgs/members#list-failed-organization-invitations
    for inv in optional_list(api, org, "failed_invitations", "failed invitations", findings).await? {
        let who = inv["login"]
            .as_str()
            .or(inv["email"].as_str())
            .unwrap_or("(unknown)")
            .to_string();
        findings.push(Finding {
            id: ids::member(org, &who),
            kind: "invitation".into(),
            message: format!(
                "the invitation of {who} to {org} failed at {} ({}): {who} has no access",
                inv["failed_at"].as_str().unwrap_or("?"),
                inv["failed_reason"].as_str().unwrap_or("no reason given")
            ),
            severity: Severity::Warning,
        });
    }
    // https://docs.github.com/en/rest/orgs/outside-collaborators
    for user in optional_list(api, org, "outside_collaborators", "outside collaborators", findings).await? {
        let login = login_of(&user);
        findings.push(Finding {
            id: format!("{}/outside-collaborator/{}", ids::org(org), login.to_lowercase()),
            kind: "outside-collaborator".into(),
            message: format!("{login} is an outside collaborator on repositories of {org} (not an org member)"),
            severity: Severity::Info,
        });
    }

    // Teams, with renames (`previously:`) mapped onto the desired id.
    let teams = api.list(&format!("/orgs/{org}/teams")).await?;
    let live_slugs: HashSet<String> = teams
        .iter()
        .filter_map(|t| t["slug"].as_str().map(str::to_lowercase))
        .collect();
    let mut renamed: HashMap<String, String> = HashMap::new();
    for (id, body) in &want.teams {
        let slug = id.rsplit('/').next().unwrap_or_default().to_string();
        if live_slugs.contains(&slug) {
            continue;
        }
        for old in body["previously"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let old_slug = crate::desired::slugify(old);
            if live_slugs.contains(&old_slug) {
                renamed.insert(old_slug, slug.clone());
                break;
            }
        }
    }
    let mut slug_of_team: HashMap<String, String> = HashMap::new(); // GitHub slug → plumb slug
    for t in &teams {
        let gh = t["slug"].as_str().unwrap_or_default().to_lowercase();
        let ours = renamed.get(&gh).cloned().unwrap_or_else(|| gh.clone());
        slug_of_team.insert(gh, ours);
    }
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &teams {
        let gh = t["slug"].as_str().unwrap_or_default().to_lowercase();
        let ours = slug_of_team[&gh].clone();
        let id = ids::team(org, &ours);
        let parent = t["parent"]["name"].as_str().map(str::to_string);
        if let Some(p) = t["parent"]["slug"].as_str() {
            children.entry(p.to_lowercase()).or_default().push(gh.clone());
        }
        index
            .teams
            .insert(id.clone(), (gh.clone(), t["id"].as_u64().unwrap_or_default()));
        out.push(owned(
            id,
            ids::KIND_TEAM,
            json!({
                "name": t["name"],
                "description": t["description"].as_str().unwrap_or_default(),
                "privacy": t["privacy"],
                "parent": parent,
            }),
        ));
    }

    // Team members by role: "Team members will include the members of child
    // teams" (https://docs.github.com/en/rest/teams/members#list-team-members).
    let mut all: BTreeMap<String, BTreeMap<String, (String, &'static str)>> = BTreeMap::new();
    for t in &teams {
        let gh = t["slug"].as_str().unwrap_or_default().to_lowercase();
        let mut members = BTreeMap::new();
        for role in ["maintainer", "member"] {
            for user in api.list(&format!("/orgs/{org}/teams/{gh}/members?role={role}")).await? {
                let login = login_of(&user);
                members.insert(login.to_lowercase(), (login, role));
            }
        }
        all.insert(gh, members);
    }
    for (gh, members) in &all {
        let ours = &slug_of_team[gh];
        // Everyone seen through a child team (at any depth).
        let mut inherited: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<String> = children.get(gh).cloned().unwrap_or_default();
        let mut visited = HashSet::new();
        while let Some(c) = pending.pop() {
            if !visited.insert(c.clone()) {
                continue;
            }
            inherited.extend(all.get(&c).into_iter().flat_map(|m| m.keys().cloned()));
            pending.extend(children.get(&c).cloned().unwrap_or_default());
        }
        for (lower, (login, role)) in members {
            let id = ids::team_member(org, ours, login);
            let wanted = want.team_members.get(&id);
            // Someone in a child team is listed here too; REST cannot tell
            // whether they are also a direct member, so they count as one
            // only when the org file says so.
            if inherited.contains(lower) && wanted.is_none() {
                continue;
            }
            let mut role = *role;
            // "The role for organization owners is set to maintainer"
            // (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user):
            // an owner listed as a plain member must not flip-flop.
            if role == "maintainer" && index.admins.contains(lower) && wanted.is_some_and(|w| w["role"] == "member") {
                role = "member";
            }
            out.push(owned(id, ids::KIND_TEAM_MEMBER, json!({"login": login, "role": role})));
        }
    }
    // A desired team member whose org invitation is pending: GitHub adds
    // them to the team when they accept, so that is `invited`, not drift.
    let present: HashSet<String> = out.iter().map(|r| r.id.clone()).collect();
    for (id, body) in &want.team_members {
        let login = login_of(body).to_lowercase();
        if invited.contains(&login) && !present.contains(id) {
            out.push(owned(id.clone(), ids::KIND_TEAM_MEMBER, body.clone()));
        }
    }

    // https://docs.github.com/en/rest/teams/teams#list-team-repositories:
    // `role_name` is the repository role (read, triage, write, maintain,
    // admin or a custom role); `permissions` the booleans behind it.
    for t in &teams {
        let gh = t["slug"].as_str().unwrap_or_default().to_lowercase();
        let ours = &slug_of_team[&gh];
        for repo in api.list(&format!("/orgs/{org}/teams/{gh}/repos")).await? {
            let name = repo["name"].as_str().unwrap_or_default();
            let permission = repo["role_name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| highest_permission(&repo["permissions"]));
            out.push(owned(
                ids::team_repo(org, ours, name),
                ids::KIND_TEAM_REPO,
                json!({"permission": permission}),
            ));
        }
    }
    Ok(index)
}

/// The highest of `permissions` booleans, in GitHub's order of roles.
fn highest_permission(p: &Value) -> String {
    for (flag, role) in [
        ("admin", "admin"),
        ("maintain", "maintain"),
        ("push", "write"),
        ("triage", "triage"),
        ("pull", "read"),
    ] {
        if p[flag] == true {
            return role.to_string();
        }
    }
    "read".to_string()
}

/// An optional read: GitHub shows pending and failed invitations and
/// outside collaborators to organisation owners only (`403`), and a token
/// without the permission gets `403` or `404`. Then the audit of
/// memberships goes on, and a warning finding names what was not checked
/// and why, instead of failing the whole target.
async fn optional_list(
    api: &Api,
    org: &str,
    path: &str,
    what: &str,
    findings: &mut Vec<Finding>,
) -> Result<Vec<Value>, ProviderError> {
    match api.list(&format!("/orgs/{org}/{path}")).await {
        Ok(items) => Ok(items),
        Err(ProviderError::Api {
            request,
            status: Some(status @ (403 | 404)),
            message,
        }) => {
            findings.push(Finding {
                id: ids::org(org),
                kind: "permission".into(),
                message: format!(
                    "{what} of {org} not checked: {request} answered {status} ({message}); GitHub lists them to organisation owners only, so the token needs an owner's access with the \"Members\" organisation permission (read)"
                ),
                severity: Severity::Warning,
            });
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}
