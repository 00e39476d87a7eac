//! Reading org files: peribolos' merged config (`orgs: {<org>: …}`) and the
//! per-org tree that kubernetes/org keeps (`<org>/org.yaml` with admins,
//! members and teams at the top, plus `teams.yaml` files in subdirectories
//! whose `teams:` are merged into the org of the nearest `org.yaml` above —
//! what kubernetes/org's `cmd/merge --merge-teams` does). Logins compare
//! case-insensitively; a login or team defined twice is an error naming both
//! places. Also turns an org into plumb resources (see the crate docs for
//! ids).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use plumb_model::{files, Authority, Finding, Origin, ProviderError, Resource, Severity};
use serde_json::{json, Map, Value};

use crate::ids;

/// Org metadata keys peribolos manages (its `org.Metadata`: see
/// kubernetes-sigs/prow `pkg/config/org/org.go`), audited against
/// `GET /orgs/{org}`.
pub const SETTINGS_KEYS: &[&str] = &[
    "billing_email",
    "company",
    "email",
    "name",
    "description",
    "location",
    "has_organization_projects",
    "has_repository_projects",
    "default_repository_permission",
    "members_can_create_repositories",
];

const TEAM_KEYS: &[&str] = &[
    "description",
    "privacy",
    "maintainers",
    "members",
    "teams",
    "repos",
    "previously",
    "parent",
];

/// One login and where it was written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub login: String,
    pub origin: Origin,
}

/// One team, nesting flattened into `parent`.
#[derive(Debug, Clone)]
pub struct TeamConfig {
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub privacy: Option<String>,
    pub parent: Option<String>,
    pub previously: Vec<String>,
    pub maintainers: Vec<Entry>,
    pub members: Vec<Entry>,
    pub repos: BTreeMap<String, String>,
    pub origin: Origin,
}

/// One organisation as the files describe it.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    pub org: String,
    pub origin: Origin,
    pub settings: Map<String, Value>,
    pub admins: Vec<Entry>,
    pub members: Vec<Entry>,
    pub teams: Vec<TeamConfig>,
}

/// GitHub's slug for a team name: "GitHub generates the team's slug from
/// the team name" (https://docs.github.com/en/rest/teams/teams); it is the
/// name lower-cased with every run of other characters than letters, digits,
/// `_` and `-` turned into one `-`, trimmed of dashes. Live reads use the
/// slug GitHub returns; this is only for teams not yet created.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    let mut dash = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            if dash && !slug.is_empty() && c != '-' {
                slug.push('-');
            }
            dash = false;
            slug.push(c);
        } else {
            dash = true;
        }
    }
    slug.trim_matches('-').to_string()
}

/// Line numbers of keys and list items in a block-style YAML file, so that
/// an error can name the line of `- alice` inside `teams/x/members`.
/// serde_yaml_ng keeps no positions; a small indentation scan of the
/// (already successfully parsed) text finds them. Flow-style lists fall back
/// to the line of their key.
#[derive(Debug, Default)]
struct LineIndex {
    keys: HashMap<String, usize>,
    items: HashMap<String, HashMap<String, Vec<usize>>>,
}

fn unquote(s: &str) -> String {
    let s = match s.find(" #") {
        Some(i) => &s[..i],
        None => s,
    }
    .trim();
    s.trim_matches('"').trim_matches('\'').to_string()
}

impl LineIndex {
    fn build(text: &str, first_line: usize) -> LineIndex {
        let mut index = LineIndex::default();
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = first_line + n;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if raw.starts_with("---") {
                stack.clear();
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            if trimmed == "-" || trimmed.starts_with("- ") {
                while stack.last().is_some_and(|(i, _)| *i > indent) {
                    stack.pop();
                }
                let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join("/");
                let item = unquote(trimmed.trim_start_matches('-'));
                index
                    .items
                    .entry(path)
                    .or_default()
                    .entry(item.to_lowercase())
                    .or_default()
                    .push(line);
            } else if let Some(colon) = trimmed.find(':') {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                stack.push((indent, unquote(&trimmed[..colon])));
                let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join("/");
                index.keys.entry(path).or_insert(line);
            }
        }
        index
    }

    fn key_line(&self, path: &[String]) -> Option<usize> {
        let mut p = path.to_vec();
        while !p.is_empty() {
            if let Some(l) = self.keys.get(&p.join("/")) {
                return Some(*l);
            }
            p.pop();
        }
        None
    }

    /// The line of the `nth` occurrence of `item` in the list at `path`.
    fn item_line(&self, path: &[String], item: &str, nth: usize) -> Option<usize> {
        self.items
            .get(&path.join("/"))
            .and_then(|m| m.get(&item.to_lowercase()))
            .and_then(|lines| lines.get(nth).or(lines.last()).copied())
            .or_else(|| self.key_line(path))
    }
}

/// One file being read: its origin and line index.
struct Source<'a> {
    file: &'a Path,
    doc_line: usize,
    lines: LineIndex,
}

impl Source<'_> {
    fn at(&self, path: &[String]) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            line: self.lines.key_line(path).or(Some(self.doc_line)),
        }
    }

    fn err(&self, path: &[String], message: impl Into<String>) -> ProviderError {
        ProviderError::Parse {
            origin: self.at(path),
            message: message.into(),
        }
    }
}

fn child(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

fn logins(src: &Source<'_>, path: &[String], value: Option<&Value>) -> Result<Vec<Entry>, ProviderError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    if value.is_null() {
        return Ok(Vec::new());
    }
    let Some(list) = value.as_array() else {
        return Err(src.err(path, format!("`{}` must be a list of logins", path.join("."))));
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for item in list {
        let login = match item {
            Value::String(s) => s.clone(),
            // An all-digit login such as `249043822` is a string to GitHub.
            Value::Number(n) => n.to_string(),
            other => return Err(src.err(path, format!("a login must be a string, not {other}"))),
        };
        let nth = seen.entry(login.to_lowercase()).or_default();
        let line = src.lines.item_line(path, &login, *nth);
        *nth += 1;
        out.push(Entry {
            login,
            origin: Origin {
                file: src.file.to_path_buf(),
                line,
            },
        });
    }
    Ok(out)
}

fn opt_string(src: &Source<'_>, path: &[String], value: Option<&Value>) -> Result<Option<String>, ProviderError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(src.err(path, format!("`{}` must be a string, not {other}", path.join(".")))),
    }
}

/// Peribolos' repo permissions plus GitHub's `pull`/`push` aliases.
const PERMISSIONS: &[&str] = &["read", "triage", "write", "maintain", "admin", "pull", "push"];

fn read_teams(
    src: &Source<'_>,
    path: &[String],
    value: &Value,
    parent: Option<&str>,
    out: &mut Vec<TeamConfig>,
) -> Result<(), ProviderError> {
    let Some(map) = value.as_object() else {
        return Err(src.err(path, "`teams` must be a mapping of team name to team"));
    };
    for (name, team) in map {
        let tpath = child(path, name);
        let empty = Map::new();
        let t = match team {
            Value::Null => &empty,
            Value::Object(t) => t,
            _ => return Err(src.err(&tpath, format!("team {name:?} must be a mapping"))),
        };
        for key in t.keys() {
            if !TEAM_KEYS.contains(&key.as_str()) {
                return Err(src.err(
                    &child(&tpath, key),
                    format!("unknown key `{key}` in team {name:?} (known: {})", TEAM_KEYS.join(", ")),
                ));
            }
        }
        let privacy = opt_string(src, &child(&tpath, "privacy"), t.get("privacy"))?;
        if let Some(p) = &privacy {
            // https://docs.github.com/en/rest/teams/teams#create-a-team: privacy is `secret` or `closed`.
            if p != "secret" && p != "closed" {
                return Err(src.err(
                    &child(&tpath, "privacy"),
                    format!("privacy {p:?} of team {name:?} must be closed or secret"),
                ));
            }
        }
        let mut repos = BTreeMap::new();
        if let Some(r) = t.get("repos").filter(|r| !r.is_null()) {
            let rpath = child(&tpath, "repos");
            let Some(r) = r.as_object() else {
                return Err(src.err(&rpath, "`repos` must map repository names to permissions"));
            };
            for (repo, perm) in r {
                let perm = perm.as_str().unwrap_or_default();
                if !PERMISSIONS.contains(&perm) {
                    return Err(src.err(
                        &child(&rpath, repo),
                        format!(
                            "permission {perm:?} for repo {repo:?} must be one of {}",
                            PERMISSIONS.join("|")
                        ),
                    ));
                }
                repos.insert(repo.clone(), perm.to_string());
            }
        }
        let previously = match t.get("previously") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(_) => return Err(src.err(&child(&tpath, "previously"), "`previously` must be a list of names")),
        };
        let explicit_parent = opt_string(src, &child(&tpath, "parent"), t.get("parent"))?;
        let team = TeamConfig {
            name: name.clone(),
            slug: slugify(name),
            description: opt_string(src, &child(&tpath, "description"), t.get("description"))?,
            privacy,
            parent: parent.map(str::to_string).or(explicit_parent),
            previously,
            maintainers: logins(src, &child(&tpath, "maintainers"), t.get("maintainers"))?,
            members: logins(src, &child(&tpath, "members"), t.get("members"))?,
            repos,
            origin: src.at(&tpath),
        };
        out.push(team);
        if let Some(children) = t.get("teams").filter(|c| !c.is_null()) {
            read_teams(src, &child(&tpath, "teams"), children, Some(name), out)?;
        }
    }
    Ok(())
}

fn read_org(src: &Source<'_>, org: &str, path: &[String], value: &Value) -> Result<OrgConfig, ProviderError> {
    let Some(map) = value.as_object() else {
        return Err(src.err(path, format!("org {org:?} must be a mapping")));
    };
    let mut settings = Map::new();
    for (key, v) in map {
        match key.as_str() {
            "admins" | "members" | "teams" => {}
            k if SETTINGS_KEYS.contains(&k) => {
                settings.insert(key.clone(), v.clone());
            }
            _ => {
                return Err(src.err(
                    &child(path, key),
                    format!(
                        "unknown key `{key}` in org {org:?} (known: admins, members, teams, {})",
                        SETTINGS_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    let mut teams = Vec::new();
    if let Some(t) = map.get("teams").filter(|t| !t.is_null()) {
        read_teams(src, &child(path, "teams"), t, None, &mut teams)?;
    }
    Ok(OrgConfig {
        org: org.to_string(),
        origin: src.at(path),
        settings,
        admins: logins(src, &child(path, "admins"), map.get("admins"))?,
        members: logins(src, &child(path, "members"), map.get("members"))?,
        teams,
    })
}

/// Reads every org file below `dir`; origins are relative to `root`.
pub fn read(root: &Path, dir: &Path) -> Result<(Vec<OrgConfig>, Vec<Finding>), ProviderError> {
    let mut orgs: BTreeMap<String, OrgConfig> = BTreeMap::new();
    // teams.yaml files wait until every org.yaml is known.
    let mut team_files: Vec<(PathBuf, Vec<TeamConfig>)> = Vec::new();
    let mut findings = Vec::new();
    for path in files::walk(dir, &["yaml", "yml", "json"])? {
        let rel = files::relative(root, &path);
        let text = files::read_text(root, &path)?;
        for doc in files::read_documents(root, &path)? {
            let src = Source {
                file: &rel,
                doc_line: doc.origin.line.unwrap_or(1),
                lines: LineIndex::build(&text, 1),
            };
            let Some(map) = doc.value.as_object() else {
                return Err(src.err(&[], "an org file must be a mapping"));
            };
            if let Some(merged) = map.get("orgs") {
                let Some(merged) = merged.as_object() else {
                    return Err(src.err(&["orgs".into()], "`orgs` must map org names to orgs"));
                };
                for (name, org) in merged {
                    let cfg = read_org(&src, name, &["orgs".to_string(), name.clone()], org)?;
                    add_org(&mut orgs, cfg)?;
                }
            } else if map.contains_key("restrictions") && map.len() == 1 {
                // kubernetes/org's config/restrictions.yaml says which
                // teams.yaml may name which repos: a review rule, not state.
                tracing::debug!(file = %rel.display(), "skipping restrictions file");
            } else if map.len() == 1 && map.contains_key("teams") && !is_org_yaml(&path) {
                let mut teams = Vec::new();
                read_teams(&src, &["teams".to_string()], &map["teams"], None, &mut teams)?;
                team_files.push((path.clone(), teams));
            } else {
                let org = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let cfg = read_org(&src, &org, &[], &doc.value)?;
                add_org(&mut orgs, cfg)?;
            }
        }
    }
    for (path, teams) in team_files {
        // The org is the nearest directory above with an org.yaml.
        let org = path
            .ancestors()
            .skip(1)
            .find(|d| d.join("org.yaml").is_file() || d.join("org.yml").is_file())
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_string());
        let rel = files::relative(root, &path);
        let Some(cfg) = org.and_then(|o| orgs.get_mut(&o)) else {
            return Err(ProviderError::Parse {
                origin: Origin {
                    file: rel,
                    line: Some(1),
                },
                message: "a teams.yaml file needs an org.yaml in a directory above it".into(),
            });
        };
        cfg.teams.extend(teams);
    }
    let orgs: Vec<OrgConfig> = orgs.into_values().collect();
    for org in &orgs {
        check(org)?;
        if org.admins.is_empty() && org.members.is_empty() {
            findings.push(Finding {
                id: ids::org(&org.org),
                kind: "org".into(),
                message: format!(
                    "{}: the org file lists no admins and no members; plumb will not act on it",
                    org.origin
                ),
                severity: Severity::Warning,
            });
        }
    }
    Ok((orgs, findings))
}

fn is_org_yaml(path: &Path) -> bool {
    matches!(path.file_name().and_then(|n| n.to_str()), Some("org.yaml" | "org.yml"))
}

fn add_org(orgs: &mut BTreeMap<String, OrgConfig>, cfg: OrgConfig) -> Result<(), ProviderError> {
    let key = cfg.org.to_lowercase();
    if let Some(first) = orgs.get(&key) {
        return Err(ProviderError::DuplicateId {
            id: ids::org(&cfg.org),
            first: first.origin.clone(),
            second: cfg.origin,
        });
    }
    orgs.insert(key, cfg);
    Ok(())
}

fn twice(what: &str, login: &str, first: &Origin, first_as: &str, second: &Origin, second_as: &str) -> ProviderError {
    ProviderError::Parse {
        origin: second.clone(),
        message: format!(
            "{what} {login:?} is listed twice: as {first_as} at {first} and as {second_as} here (logins compare case-insensitively)"
        ),
    }
}

/// Duplicate logins (org and per team) and team names, naming both places.
fn check(org: &OrgConfig) -> Result<(), ProviderError> {
    let mut seen: HashMap<String, (&Origin, &str)> = HashMap::new();
    for (list, role) in [(&org.admins, "admin"), (&org.members, "member")] {
        for e in list {
            if let Some((first, first_as)) = seen.get(&e.login.to_lowercase()) {
                return Err(twice("login", &e.login, first, first_as, &e.origin, role));
            }
            seen.insert(e.login.to_lowercase(), (&e.origin, role));
        }
    }
    let mut slugs: HashMap<String, &TeamConfig> = HashMap::new();
    for t in &org.teams {
        if let Some(first) = slugs.get(&t.slug) {
            return Err(ProviderError::DuplicateId {
                id: ids::team(&org.org, &t.slug),
                first: first.origin.clone(),
                second: t.origin.clone(),
            });
        }
        slugs.insert(t.slug.clone(), t);
        let mut seen: HashMap<String, (&Origin, &str)> = HashMap::new();
        for (list, role) in [(&t.maintainers, "maintainer"), (&t.members, "member")] {
            for e in list {
                if let Some((first, first_as)) = seen.get(&e.login.to_lowercase()) {
                    return Err(twice(
                        &format!("team {:?}: login", t.name),
                        &e.login,
                        first,
                        first_as,
                        &e.origin,
                        role,
                    ));
                }
                seen.insert(e.login.to_lowercase(), (&e.origin, role));
            }
        }
    }
    for t in &org.teams {
        if let Some(p) = &t.parent {
            if !slugs.contains_key(&slugify(p)) {
                return Err(ProviderError::Parse {
                    origin: t.origin.clone(),
                    message: format!(
                        "team {:?} names parent {p:?}, which the org file does not define",
                        t.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The org as plumb resources; every one is `Authority::Owned` (the org file
/// is authoritative for membership, docs/policies.md).
pub fn resources(org: &OrgConfig) -> Vec<Resource> {
    let o = &org.org;
    let mut out = Vec::new();
    let owned = |r: Resource| r.with_authority(Authority::Owned);
    if !org.settings.is_empty() {
        out.push(owned(
            Resource::new(
                ids::settings(o),
                ids::KIND_SETTINGS,
                Value::Object(org.settings.clone()),
            )
            .with_origin(org.origin.clone()),
        ));
    }
    for (list, role) in [(&org.admins, "admin"), (&org.members, "member")] {
        for e in list {
            out.push(owned(
                Resource::new(
                    ids::member(o, &e.login),
                    ids::KIND_MEMBER,
                    json!({"login": e.login, "role": role}),
                )
                .with_origin(e.origin.clone()),
            ));
        }
    }
    for t in &org.teams {
        let mut body = json!({
            "name": t.name,
            "parent": t.parent,
        });
        if let Some(d) = &t.description {
            body["description"] = json!(d);
        }
        if let Some(p) = &t.privacy {
            body["privacy"] = json!(p);
        }
        if !t.previously.is_empty() {
            body["previously"] = json!(t.previously);
        }
        out.push(owned(
            Resource::new(ids::team(o, &t.slug), ids::KIND_TEAM, body).with_origin(t.origin.clone()),
        ));
        for (list, role) in [(&t.maintainers, "maintainer"), (&t.members, "member")] {
            for e in list {
                out.push(owned(
                    Resource::new(
                        ids::team_member(o, &t.slug, &e.login),
                        ids::KIND_TEAM_MEMBER,
                        json!({"login": e.login, "role": role}),
                    )
                    .with_origin(e.origin.clone()),
                ));
            }
        }
        for (repo, perm) in &t.repos {
            out.push(owned(
                Resource::new(
                    ids::team_repo(o, &t.slug, repo),
                    ids::KIND_TEAM_REPO,
                    json!({"permission": perm}),
                )
                .with_origin(t.origin.clone()),
            ));
        }
    }
    out
}
