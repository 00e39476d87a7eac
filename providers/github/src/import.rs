//! `plumb import`: live state as one peribolos-format `org.yaml` per org
//! (`<out>/<org>/org.yaml`, nested teams under their parents), such that a
//! plan against it right after is empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plumb_model::{Live, ProviderError};
use serde_json::{json, Map, Value};

use crate::ids;

#[derive(Default)]
struct Team {
    name: String,
    parent: Option<String>,
    body: Map<String, Value>,
    maintainers: Vec<String>,
    members: Vec<String>,
    repos: BTreeMap<String, String>,
}

#[derive(Default)]
struct Org {
    settings: Map<String, Value>,
    admins: Vec<String>,
    members: Vec<String>,
    teams: BTreeMap<String, Team>,
}

fn team_value(slug: &str, teams: &BTreeMap<String, Team>, children: &BTreeMap<String, Vec<String>>) -> (String, Value) {
    let t = &teams[slug];
    let mut v = t.body.clone();
    let sorted = |l: &Vec<String>| {
        let mut l = l.clone();
        l.sort_by_key(|s| s.to_lowercase());
        json!(l)
    };
    if !t.maintainers.is_empty() {
        v.insert("maintainers".into(), sorted(&t.maintainers));
    }
    if !t.members.is_empty() {
        v.insert("members".into(), sorted(&t.members));
    }
    if !t.repos.is_empty() {
        v.insert("repos".into(), json!(t.repos));
    }
    if let Some(kids) = children.get(&t.name) {
        let mut nested = Map::new();
        for k in kids {
            let (name, value) = team_value(k, teams, children);
            nested.insert(name, value);
        }
        v.insert("teams".into(), Value::Object(nested));
    }
    (t.name.clone(), Value::Object(v))
}

pub fn write(live: &Live, out: &Path) -> Result<Vec<PathBuf>, ProviderError> {
    let mut orgs: BTreeMap<String, Org> = BTreeMap::new();
    for r in &live.resources {
        let Some(parts) = ids::parse(&r.id) else { continue };
        let body = r.body();
        let org = orgs.entry(parts[0].to_string()).or_default();
        let login = body["login"].as_str().unwrap_or_default().to_string();
        match parts.as_slice() {
            [_, "settings"] => org.settings = body.as_object().cloned().unwrap_or_default(),
            [_, "member", _] if body["role"] == "admin" => org.admins.push(login),
            [_, "member", _] => org.members.push(login),
            [_, "team", slug] => {
                let t = org.teams.entry(slug.to_string()).or_default();
                t.name = body["name"].as_str().unwrap_or(slug).to_string();
                t.parent = body["parent"].as_str().map(str::to_string);
                for key in ["description", "privacy"] {
                    if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
                        t.body.insert(key.into(), v.clone());
                    }
                }
            }
            [_, "team", slug, "member", _] => {
                let t = org.teams.entry(slug.to_string()).or_default();
                if body["role"] == "maintainer" {
                    t.maintainers.push(login)
                } else {
                    t.members.push(login)
                }
            }
            [_, "team", slug, "repo", repo] => {
                let t = org.teams.entry(slug.to_string()).or_default();
                t.repos.insert(
                    repo.to_string(),
                    body["permission"].as_str().unwrap_or("read").to_string(),
                );
            }
            _ => {}
        }
    }
    let mut written = Vec::new();
    for (name, org) in orgs {
        let mut doc = org.settings.clone();
        let mut admins = org.admins.clone();
        admins.sort_by_key(|s| s.to_lowercase());
        let mut members = org.members.clone();
        members.sort_by_key(|s| s.to_lowercase());
        doc.insert("admins".into(), json!(admins));
        doc.insert("members".into(), json!(members));
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut top = Vec::new();
        for (slug, t) in &org.teams {
            match &t.parent {
                Some(p) => children.entry(p.clone()).or_default().push(slug.clone()),
                None => top.push(slug.clone()),
            }
        }
        let mut teams = Map::new();
        for slug in top {
            let (n, v) = team_value(&slug, &org.teams, &children);
            teams.insert(n, v);
        }
        doc.insert("teams".into(), Value::Object(teams));
        let dir = out.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| ProviderError::io(&dir, e))?;
        let path = dir.join("org.yaml");
        let text = serde_yaml_ng::to_string(&Value::Object(doc))
            .map_err(|e| ProviderError::Other(format!("writing {}: {e}", path.display())))?;
        std::fs::write(&path, text).map_err(|e| ProviderError::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
