//! The local directory store: one file per object below `history.dir`,
//! written through a temporary file (named with a leading dot, which
//! listings skip, so litter from a crash is never read as a record) and a
//! hard link, so an object appears whole or not at all and is never
//! overwritten: two writers of one key cannot both succeed. Also local
//! retention.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::{HistoryError, Store};

pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: &Path) -> LocalStore {
        LocalStore { dir: dir.to_path_buf() }
    }

    fn error(&self, message: String, source: std::io::Error) -> HistoryError {
        HistoryError::store(self.describe(), message, source)
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, HistoryError> {
        if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(HistoryError::store_message(
                self.describe(),
                format!("invalid key {key:?}"),
            ));
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
        .map_err(|e| HistoryError::store(store.clone(), format!("writing {key}"), e))?
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                HistoryError::Exists { key: key.clone() }
            } else {
                HistoryError::store(store, format!("writing {key}: {e}"), e)
            }
        })
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| self.error(format!("reading {}: {e}", path.display()), e))
    }

    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("reading {}: {e}", path.display()), e)),
        }
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
                    } else if name.ends_with(".json") {
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
        .map_err(|e| HistoryError::store(store.clone(), "listing", e))?
        .map_err(|e| HistoryError::store(store, format!("listing: {e}"), e))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Retention for a local store: per target, removes each digest written
/// before `now - keep` (never the newest) together with the records it
/// lists, oldest first, and the day summaries of days before the cutoff.
/// What is left starts at a digest whose `previous_written_at` is before
/// the cutoff, which is how `report --verify` tells retention from
/// deletion. Records no digest vouches for yet are never removed.
pub fn prune(dir: &Path, keep: Duration) -> std::io::Result<usize> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let cutoff_day = super::record::day_of(cutoff);
    let mut removed = 0;
    let targets = match std::fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for target in targets {
        let target = target?;
        let name = target.file_name().to_string_lossy().into_owned();
        if !target.file_type()?.is_dir() || name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let summaries = dir.join("_summaries").join(&name);
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
        let digests_dir = target.path().join("digests");
        let mut digests: Vec<(u64, PathBuf)> = match std::fs::read_dir(&digests_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    super::record::seq_of_key(&name).map(|seq| (seq, e.path()))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        digests.sort();
        digests.pop(); // the newest digest always stays
        for (_, path) in digests {
            let Ok(opened) = super::digest::Opened::parse(&std::fs::read(&path)?) else {
                break; // a damaged digest stops retention; verify names it
            };
            if opened.digest.written_at >= cutoff {
                break;
            }
            for entry in &opened.digest.records {
                match std::fs::remove_file(dir.join(&entry.key)) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            std::fs::remove_file(&path)?;
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
