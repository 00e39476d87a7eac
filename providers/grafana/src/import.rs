//! `plumb import`: live folders become directories with a `_folder.yaml`
//! (uid and title), live dashboards JSON files inside them, with what
//! Grafana manages itself (`id`, `version`, `iteration`) removed, so a plan
//! against the result right away is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plumb_model::{Live, ProviderError};
use serde_json::Value;

use crate::sim::slugify;
use crate::{DASHBOARD_KIND, FOLDER_KIND};

/// A file or directory name that is unique among its siblings.
fn unique(base: &str, uid: &str, taken: &mut BTreeSet<PathBuf>, dir: &Path, ext: &str) -> PathBuf {
    let base = if base.is_empty() {
        uid.to_string()
    } else {
        base.to_string()
    };
    let first = dir.join(format!("{base}{ext}"));
    if taken.insert(first.clone()) {
        return first;
    }
    let second = dir.join(format!("{base}-{uid}{ext}"));
    taken.insert(second.clone());
    second
}

/// Writes `live` below `out`; returns the files written.
pub fn write(live: &Live, out: &Path) -> Result<Vec<PathBuf>, ProviderError> {
    let mut folders: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    for r in live.resources.iter().filter(|r| r.kind == FOLDER_KIND) {
        let b = r.body();
        folders.insert(
            b["uid"].as_str().unwrap_or_default().to_string(),
            (
                b["title"].as_str().unwrap_or_default().to_string(),
                b.get("parentUid").and_then(Value::as_str).map(str::to_string),
            ),
        );
    }
    // Resolve each folder's directory, parents first (bounded: a cycle in
    // live data cannot loop forever).
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut taken: BTreeSet<PathBuf> = BTreeSet::new();
    for _ in 0..=folders.len() {
        let mut progressed = false;
        for (uid, (title, parent)) in &folders {
            if dirs.contains_key(uid) {
                continue;
            }
            let parent_dir = match parent {
                None => out.to_path_buf(),
                Some(p) if !folders.contains_key(p) => out.to_path_buf(),
                Some(p) => match dirs.get(p) {
                    Some(d) => d.clone(),
                    None => continue,
                },
            };
            let dir = unique(&slugify(title), uid, &mut taken, &parent_dir, "");
            dirs.insert(uid.clone(), dir);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let mut written = Vec::new();
    for (uid, dir) in &dirs {
        std::fs::create_dir_all(dir).map_err(|e| ProviderError::io(dir, e))?;
        let title = folders.get(uid).map(|f| f.0.clone()).unwrap_or_default();
        let text = serde_yaml_ng::to_string(&serde_json::json!({"uid": uid, "title": title}))
            .map_err(|e| ProviderError::Other(format!("could not write folder {uid}: {e}")))?;
        let path = dir.join(crate::desired::FOLDER_FILES[0]);
        std::fs::write(&path, text).map_err(|e| ProviderError::io(&path, e))?;
        written.push(path);
    }
    for r in live.resources.iter().filter(|r| r.kind == DASHBOARD_KIND) {
        let body = r.body();
        let mut model = body["dashboard"].clone();
        if let Value::Object(m) = &mut model {
            for k in ["id", "version", "iteration"] {
                m.remove(k);
            }
        }
        let uid = model["uid"].as_str().unwrap_or_default().to_string();
        let folder = body["folderUid"].as_str().unwrap_or_default().to_string();
        let (dir, doc) = match dirs.get(&folder) {
            Some(d) => (d.clone(), model),
            None if folder.is_empty() => (out.to_path_buf(), model),
            // A folder outside what was read: keep it explicit.
            None => (
                out.to_path_buf(),
                serde_json::json!({"dashboard": model, "folderUid": folder}),
            ),
        };
        let title = doc
            .get("title")
            .or_else(|| doc.get("dashboard").and_then(|d| d.get("title")))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        std::fs::create_dir_all(&dir).map_err(|e| ProviderError::io(&dir, e))?;
        let path = unique(&slugify(&title), &uid, &mut taken, &dir, ".json");
        let mut text = serde_json::to_string_pretty(&doc)
            .map_err(|e| ProviderError::Other(format!("could not write dashboard {uid}: {e}")))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| ProviderError::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
