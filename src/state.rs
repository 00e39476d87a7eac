//! Small facts plumb keeps between runs in `state_dir`, so that metrics such
//! as `plumb_drift_since_timestamp_seconds` survive restarts and cron runs:
//! when each target's drift began, when it last ran and last succeeded.
//! Caches and this file live in `state_dir`; history never does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// Unix seconds when the current drift was first seen; None when in sync.
    pub drift_since: Option<i64>,
    pub last_run: Option<i64>,
    pub last_success: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub targets: BTreeMap<String, TargetState>,
    #[serde(default)]
    pub source_last_success: Option<i64>,
}

const FILE: &str = "target-state.json";

impl State {
    pub fn file(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Reads the state; a missing or unreadable file starts afresh (the
    /// worst outcome is a drift-since time that restarts).
    pub fn load(state_dir: &Path) -> State {
        match std::fs::read(Self::file(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "state file unreadable, starting afresh");
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Folds one plan in: drift keeps its first-seen time, a failed run
    /// keeps the last success, a target in sync clears drift.
    pub fn record(&mut self, plan: &Plan) {
        let now = plan.finished_at.timestamp();
        let source_ok = plan.source.commit.is_some()
            || plan
                .targets
                .iter()
                .any(|t| t.error.as_deref().is_none_or(|e| !e.starts_with("source:")));
        if source_ok {
            self.source_last_success = Some(now);
        }
        for target in &plan.targets {
            let entry = self.targets.entry(target.name.clone()).or_default();
            entry.last_run = Some(now);
            match target.exit_code {
                0 => {
                    entry.drift_since = None;
                    entry.last_success = Some(now);
                }
                2 => {
                    entry.drift_since.get_or_insert(plan.started_at.timestamp());
                    entry.last_success = Some(now);
                }
                // An error says nothing about drift: keep what was known.
                _ => {}
            }
        }
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(state_dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        tmp.persist(Self::file(state_dir)).map_err(|e| e.error)?;
        Ok(())
    }
}
