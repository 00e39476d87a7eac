//! Canonical forms applied to both sides of a pair before comparison. Each
//! rule cites where GitHub documents the equivalence.

use plumb_model::Pair;
use serde_json::Value;

use crate::ids;

/// "Where pull and push permissions are accepted, these will map to the
/// Read and Write roles for an organization repository"
/// (https://docs.github.com/en/rest/teams/members, "About team members").
pub fn permission(p: &str) -> &str {
    match p {
        "pull" => "read",
        "push" => "write",
        other => other,
    }
}

fn lower_login(v: &mut Value) {
    // Logins are case-insensitive on GitHub ("The handle for the GitHub
    // user account" is matched without case in every endpoint; the corpus
    // has 19 team logins that differ from the org list only in case).
    if let Some(l) = v.get("login").and_then(Value::as_str).map(str::to_lowercase) {
        v["login"] = Value::String(l);
    }
}

/// Brings one pair into canonical form.
pub fn pair(pair: Pair<'_>) {
    let Pair {
        kind, desired, live, ..
    } = pair;
    match kind {
        ids::KIND_MEMBER | ids::KIND_TEAM_MEMBER => {
            desired.map(lower_login);
            live.map(lower_login);
        }
        ids::KIND_TEAM_REPO => {
            for v in [desired, live].into_iter().flatten() {
                if let Some(p) = v
                    .get("permission")
                    .and_then(Value::as_str)
                    .map(|p| permission(p).to_string())
                {
                    v["permission"] = Value::String(p);
                }
            }
        }
        ids::KIND_TEAM => {
            if let Some(d) = desired {
                // `previously` tells plumb how to find a renamed team; it is
                // no property of the team.
                if let Some(m) = d.as_object_mut() {
                    m.remove("previously");
                }
                // Peribolos leaves a field it is not given alone
                // (kubernetes-sigs/prow pkg/config/org: optional
                // `description` and `privacy` are pointers, nil = keep).
                if let Some(l) = live.and_then(|l| l.as_object_mut()) {
                    for key in ["description", "privacy"] {
                        if d.get(key).is_none() {
                            l.remove(key);
                        }
                    }
                }
            }
        }
        ids::KIND_SETTINGS => {
            // Only the settings the org file states are audited; GitHub
            // returns dozens more (https://docs.github.com/en/rest/orgs/orgs#get-an-organization).
            if let (Some(d), Some(l)) = (desired.as_deref(), live) {
                if let (Some(d), Some(l)) = (d.as_object(), l.as_object_mut()) {
                    l.retain(|k, _| d.contains_key(k));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: &str, mut d: Value, mut l: Value) -> (Value, Value) {
        pair(Pair {
            id: "x",
            kind,
            desired: Some(&mut d),
            live: Some(&mut l),
        });
        (d, l)
    }

    #[test]
    fn pull_and_push_are_read_and_write() {
        let (d, l) = run(
            ids::KIND_TEAM_REPO,
            json!({"permission": "push"}),
            json!({"permission": "write"}),
        );
        assert_eq!(d, l);
        let (d, l) = run(
            ids::KIND_TEAM_REPO,
            json!({"permission": "pull"}),
            json!({"permission": "triage"}),
        );
        assert_ne!(d, l);
    }

    #[test]
    fn logins_ignore_case_but_roles_do_not() {
        let (d, l) = run(
            ids::KIND_MEMBER,
            json!({"login": "Alice", "role": "member"}),
            json!({"login": "alice", "role": "member"}),
        );
        assert_eq!(d, l);
        let (d, l) = run(
            ids::KIND_MEMBER,
            json!({"login": "Alice", "role": "admin"}),
            json!({"login": "alice", "role": "member"}),
        );
        assert_ne!(d, l);
    }

    #[test]
    fn unstated_team_fields_are_not_audited() {
        let (d, l) = run(
            ids::KIND_TEAM,
            json!({"name": "t", "parent": null, "previously": ["old"]}),
            json!({"name": "t", "parent": null, "description": "x", "privacy": "secret"}),
        );
        assert_eq!(d, l);
        let (d, l) = run(
            ids::KIND_TEAM,
            json!({"name": "t", "parent": null, "privacy": "closed"}),
            json!({"name": "t", "parent": null, "description": "x", "privacy": "secret"}),
        );
        assert_ne!(d, l);
    }

    #[test]
    fn settings_keep_only_stated_keys() {
        let (d, l) = run(
            ids::KIND_SETTINGS,
            json!({"default_repository_permission": "read"}),
            json!({"default_repository_permission": "read", "name": "Acme", "billing_email": "b@x"}),
        );
        assert_eq!(d, l);
    }
}
