//! The local directory store: one file per record below `history.dir`,
//! written through a temporary file and a hard link, so a record appears
//! whole or not at all and is never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::{HistoryError, Store};

/// Written by retention: the hash of the last record it removed, so the
/// chain can still be verified from the first record that is left.
pub const CHECKPOINT: &str = "checkpoint.json";

pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: &Path) -> LocalStore {
        LocalStore { dir: dir.to_path_buf() }
    }

    fn error(&self, message: String) -> HistoryError {
        HistoryError::Store {
            store: self.describe(),
            message,
        }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, HistoryError> {
        if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(self.error(format!("invalid key {key:?}")));
        }
        Ok(self.dir.join(key))
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        let path = self.path_of(key)?;
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        let bytes = bytes.to_vec();
        let key = key.to_string();
        let store = self.describe();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&parent)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&parent)?;
            tmp.write_all(&bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist_noclobber(&path).map(|_| ()).map_err(|e| e.error)
        })
        .await
        .map_err(|e| HistoryError::Store {
            store: store.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                HistoryError::Exists { key }
            } else {
                HistoryError::Store {
                    store,
                    message: e.to_string(),
                }
            }
        })
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| self.error(format!("reading {}: {e}", path.display())))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        let root = self.dir.clone();
        let start = if prefix.is_empty() {
            root.clone()
        } else {
            root.join(prefix.trim_end_matches('/'))
        };
        let store = self.describe();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut pending = vec![start];
            while let Some(dir) = pending.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue; // temporary files of writes in progress
                    }
                    if entry.file_type()?.is_dir() {
                        pending.push(path);
                    } else if name.ends_with(".json") && name != CHECKPOINT {
                        if let Ok(rel) = path.strip_prefix(&root) {
                            keys.push(rel.to_string_lossy().replace('\\', "/"));
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| HistoryError::Store {
            store: store.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| HistoryError::Store {
            store,
            message: e.to_string(),
        })
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Removes the records of every target older than `keep`, day by day, and
/// leaves a checkpoint naming the hash of the last record removed.
pub fn prune(dir: &Path, keep: Duration) -> std::io::Result<usize> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let cutoff_day = cutoff.format("%Y/%m/%d").to_string();
    let mut removed = 0;
    let targets = match std::fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for target in targets {
        let target = target?;
        if !target.file_type()?.is_dir() || target.file_name().to_string_lossy().starts_with('_') {
            continue;
        }
        // The target's day summaries go with its days.
        let summaries = dir.join("_summaries").join(target.file_name());
        if summaries.is_dir() {
            for year in read_dirs(&summaries)? {
                for month in read_dirs(&year)? {
                    for file in std::fs::read_dir(&month)? {
                        let path = file?.path();
                        let rel = path
                            .strip_prefix(&summaries)
                            .map(|p| p.to_string_lossy().replace('\\', "/"))
                            .unwrap_or_default();
                        if rel.trim_end_matches(".json") < cutoff_day.as_str() {
                            std::fs::remove_file(&path)?;
                        }
                    }
                }
            }
        }
        let root = target.path();
        let mut days = Vec::new();
        for year in read_dirs(&root)? {
            for month in read_dirs(&year)? {
                for day in read_dirs(&month)? {
                    let rel = day
                        .strip_prefix(&root)
                        .map(|p| p.to_string_lossy().replace('\\', "/"))
                        .unwrap_or_default();
                    if rel < cutoff_day {
                        days.push(day);
                    }
                }
            }
        }
        days.sort();
        let Some(last_day) = days.last() else { continue };
        let mut files: Vec<PathBuf> = std::fs::read_dir(last_day)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        if let Some(last) = files.last() {
            let bytes = std::fs::read(last)?;
            let checkpoint = serde_json::json!({
                "last_removed": last.strip_prefix(dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                "hash": crate::mask::sha256_hex(&bytes),
            });
            crate::metrics::write_atomically(&root.join(CHECKPOINT), &checkpoint.to_string())?;
        }
        for day in days {
            removed += std::fs::read_dir(&day)?.count();
            std::fs::remove_dir_all(&day)?;
        }
    }
    Ok(removed)
}

fn read_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// The hash of the last record retention removed for `target`, if any.
pub fn checkpoint_hash(dir: &Path, target: &str) -> Option<String> {
    let bytes = std::fs::read(dir.join(target).join(CHECKPOINT)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("hash")?.as_str().map(str::to_string)
}
