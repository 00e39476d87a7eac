//! Resource ids and kinds. Logins and slugs are lower-cased in ids because
//! GitHub compares them case-insensitively, so `Alice` in Git and `alice`
//! live are one resource.

/// Org settings (`GET /orgs/{org}`): `github/<org>/settings`.
pub const KIND_SETTINGS: &str = "org-settings";
/// An org member or owner: `github/<org>/member/<login>`.
pub const KIND_MEMBER: &str = "member";
/// A team: `github/<org>/team/<slug>`.
pub const KIND_TEAM: &str = "team";
/// A team membership: `github/<org>/team/<slug>/member/<login>`.
pub const KIND_TEAM_MEMBER: &str = "team-member";
/// A team's repository permission: `github/<org>/team/<slug>/repo/<repo>`.
pub const KIND_TEAM_REPO: &str = "team-repo";

pub fn org(org: &str) -> String {
    format!("github/{}", org.to_lowercase())
}

pub fn settings(org: &str) -> String {
    format!("github/{}/settings", org.to_lowercase())
}

pub fn member(org: &str, login: &str) -> String {
    format!("github/{}/member/{}", org.to_lowercase(), login.to_lowercase())
}

pub fn team(org: &str, slug: &str) -> String {
    format!("github/{}/team/{}", org.to_lowercase(), slug.to_lowercase())
}

pub fn team_member(org: &str, slug: &str, login: &str) -> String {
    format!("{}/member/{}", team(org, slug), login.to_lowercase())
}

pub fn team_repo(org: &str, slug: &str, repo: &str) -> String {
    format!("{}/repo/{}", team(org, slug), repo.to_lowercase())
}

/// The parts of an id: (org, rest...). `None` when it is not ours.
pub fn parse(id: &str) -> Option<Vec<&str>> {
    let rest = id.strip_prefix("github/")?;
    Some(rest.split('/').collect())
}
