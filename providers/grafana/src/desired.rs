//! Desired state from files: dashboard JSON (the bare model or the export
//! wrapper `{"dashboard": …, "folderUid": …}`) below the target directory,
//! folders from directories (title and uid from a `_folder.yaml`, else the
//! directory name and a uid derived from the path), and the checks that
//! keep ids stable: every dashboard has a valid uid, no uid twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plumb_model::files::{self, parse_json};
use plumb_model::{Origin, ProviderError, Resource};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{dashboard_id, folder_id, DASHBOARD_KIND, FOLDER_KIND};

/// File names that describe the folder of their directory.
pub const FOLDER_FILES: [&str; 2] = ["_folder.yaml", "_folder.yml"];

/// Grafana's limit on uids (docs: dashboard.md "The uid can have a maximum
/// length of 40 characters").
pub const MAX_UID_LEN: usize = 40;

/// What a `_folder.yaml` may say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderFile {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

/// Whether `uid` is one Grafana accepts: letters, digits, `-` and `_`, at
/// most 40 characters (pkg/util/shortid_generator.go `IsValidShortUID`,
/// `IsShortUIDTooLong`).
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= MAX_UID_LEN
        && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A uid for a name that has none: lower-case letters, digits and `-`,
/// shortened with a stable hash when longer than Grafana allows.
pub fn suggest_uid(name: &str) -> String {
    let slug = crate::sim::slugify(name);
    let slug = if slug.is_empty() { "dashboard".to_string() } else { slug };
    if slug.len() <= MAX_UID_LEN {
        return slug;
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    format!("{}-{}", slug[..MAX_UID_LEN - 13].trim_end_matches('-'), &hash[..12])
}

/// FNV-1a, 64 bits: a stable, dependency-free hash for derived uids (the
/// same on every machine and Rust version, unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

fn parse_error(file: &Path, line: Option<usize>, message: impl Into<String>) -> ProviderError {
    ProviderError::Parse {
        origin: Origin {
            file: file.to_path_buf(),
            line,
        },
        message: message.into(),
    }
}

/// The 1-based line of the first `"key"` in `text`, to point an error at
/// it; only used for keys that appear once per file (`folderUid`). Keys such as `uid` also occur in every datasource
/// reference, so their errors point at line 1, where the object starts.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let needle = format!("\"{key}\"");
    text.lines().position(|l| l.contains(&needle)).map(|i| i + 1)
}

struct FolderInfo {
    uid: String,
    title: String,
    parent: Option<String>,
    origin: Origin,
}

/// Reads the desired resources below `dir`; origins are relative to `root`.
/// Folders come first, parents before children; then dashboards by path.
pub fn read(root: &Path, dir: &Path) -> Result<Vec<Resource>, ProviderError> {
    let dashboards = files::walk(dir, &["json"])?;
    let folder_files: Vec<PathBuf> = files::walk(dir, &["yaml", "yml"])?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| FOLDER_FILES.contains(&n))
        })
        .collect();

    // Directories that become folders: every directory (below `dir`) that
    // holds a dashboard or a _folder.yaml, and its ancestors up to `dir`.
    let mut folder_dirs: BTreeMap<PathBuf, Option<PathBuf>> = BTreeMap::new();
    let mut note = |file: &Path, folder_file: Option<&Path>| {
        let mut current = file.parent().map(Path::to_path_buf);
        let mut first = true;
        while let Some(d) = current {
            if d == dir || !d.starts_with(dir) {
                break;
            }
            let entry = folder_dirs.entry(d.clone()).or_insert(None);
            if first {
                if let Some(f) = folder_file {
                    *entry = Some(f.to_path_buf());
                }
            }
            first = false;
            current = d.parent().map(Path::to_path_buf);
        }
    };
    for f in &folder_files {
        note(f, Some(f));
    }
    for f in &dashboards {
        note(f, None);
    }

    // BTreeMap order puts a parent directory before its children.
    let mut folders: BTreeMap<PathBuf, FolderInfo> = BTreeMap::new();
    let mut resources = Vec::new();
    let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
    for (d, folder_file) in &folder_dirs {
        let rel_dir = files::relative(dir, d);
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or("folder").to_string();
        let mut uid = None;
        let mut title = None;
        let origin = match folder_file {
            Some(f) => {
                let rel = files::relative(root, f);
                let docs = files::read_documents(root, f)?;
                if let Some(doc) = docs.first() {
                    let parsed: FolderFile = serde_json::from_value(doc.value.clone())
                        .map_err(|e| parse_error(&rel, doc.origin.line, format!("invalid folder file: {e}")))?;
                    uid = parsed.uid;
                    title = parsed.title;
                }
                Origin {
                    file: rel,
                    line: Some(1),
                }
            }
            None => Origin {
                file: files::relative(root, d),
                line: None,
            },
        };
        let uid = match uid {
            Some(u) if valid_uid(&u) => u,
            Some(u) => {
                return Err(parse_error(
                    &origin.file,
                    origin.line,
                    format!(
                        "folder uid {u:?} is not valid: Grafana allows letters, digits, '-' and '_', at most {MAX_UID_LEN} characters"
                    ),
                ))
            }
            // Derived from the path relative to the target directory, so
            // it stays put when the repository moves.
            None => suggest_uid(&rel_dir.to_string_lossy()),
        };
        let parent = d.parent().and_then(|p| folders.get(p)).map(|f| f.uid.clone());
        let id = folder_id(&uid);
        if let Some(first) = seen.insert(id.clone(), origin.clone()) {
            return Err(ProviderError::DuplicateId {
                id,
                first,
                second: origin,
            });
        }
        folders.insert(
            d.clone(),
            FolderInfo {
                uid,
                title: title.filter(|t| !t.trim().is_empty()).unwrap_or(name),
                parent,
                origin,
            },
        );
    }
    for info in folders.values() {
        let mut body = json!({"uid": info.uid, "title": info.title});
        if let Some(p) = &info.parent {
            body["parentUid"] = json!(p);
        }
        resources.push(Resource::new(folder_id(&info.uid), FOLDER_KIND, body).with_origin(info.origin.clone()));
    }

    for path in &dashboards {
        let rel = files::relative(root, path);
        let text = files::read_text(root, path)?;
        let value = parse_json(&rel, &text)?;
        let Value::Object(mut top) = value else {
            return Err(parse_error(&rel, Some(1), "a dashboard file must hold a JSON object"));
        };
        // The export wrapper ({"dashboard": {...}, "folderUid": ...,
        // "overwrite": ...}) is the body of POST /api/dashboards/db.
        let (model, explicit_folder) = match top.get("dashboard") {
            Some(Value::Object(_)) => {
                let folder = match top.get("folderUid") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(parse_error(
                            &rel,
                            line_of_key(&text, "folderUid"),
                            format!("folderUid must be a string, not {other}"),
                        ))
                    }
                };
                (top.remove("dashboard").unwrap_or(Value::Null), folder)
            }
            _ => (Value::Object(top), None),
        };
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("dashboard");
        let uid = match model.get("uid") {
            Some(Value::String(u)) if !u.is_empty() => u.clone(),
            _ => {
                return Err(parse_error(
                    &rel,
                    Some(1),
                    format!(
                        "dashboard has no uid; every dashboard needs a stable uid so plumb can match it with Grafana's (add e.g. \"uid\": \"{}\")",
                        suggest_uid(stem)
                    ),
                ))
            }
        };
        if !valid_uid(&uid) {
            return Err(parse_error(
                &rel,
                Some(1),
                format!(
                    "dashboard uid {uid:?} is not valid: Grafana allows letters, digits, '-' and '_', at most {MAX_UID_LEN} characters (e.g. \"{}\")",
                    suggest_uid(&uid)
                ),
            ));
        }
        if model
            .get("title")
            .and_then(Value::as_str)
            .is_none_or(|t| t.trim().is_empty())
        {
            return Err(parse_error(
                &rel,
                Some(1),
                "dashboard has no title (Grafana refuses to save one without)",
            ));
        }
        let folder_uid = match explicit_folder {
            Some(f) => crate::normalize::folder_uid(&Value::String(f)),
            None => path
                .parent()
                .and_then(|p| folders.get(p))
                .map(|f| f.uid.clone())
                .unwrap_or_default(),
        };
        let origin = Origin {
            file: rel,
            line: Some(1),
        };
        let id = dashboard_id(&uid);
        if let Some(first) = seen.insert(id.clone(), origin.clone()) {
            return Err(ProviderError::DuplicateId {
                id,
                first,
                second: origin,
            });
        }
        let body = json!({"folderUid": folder_uid, "dashboard": model});
        resources.push(Resource::new(id, DASHBOARD_KIND, body).with_origin(origin));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_uids_are_valid_and_stable() {
        let long = "a-very-long-directory-name/with/many/levels/and-more-words-than-grafana-allows";
        let uid = suggest_uid(long);
        assert!(valid_uid(&uid), "{uid}");
        assert_eq!(uid, suggest_uid(long));
        assert_ne!(uid, suggest_uid(&format!("{long}2")));
        assert_eq!(suggest_uid("Kube Prometheus/dashboards"), "kube-prometheus-dashboards");
    }

    #[test]
    fn uid_rules_follow_grafana() {
        assert!(valid_uid("k8s_views-ns"));
        assert!(!valid_uid("has space"));
        assert!(!valid_uid(&"x".repeat(41)));
        assert!(!valid_uid(""));
    }
}
