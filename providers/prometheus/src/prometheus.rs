//! The Prometheus server backend: reading `/api/v1/rules` (plus
//! `/api/v1/status/buildinfo` and `/api/v1/status/config`) into namespaces,
//! and reconciling by writing `rules_dir` and calling `POST /-/reload`.
//!
//! Response shapes are those of `web/api/v1/api.go` (`RuleGroup`,
//! `AlertingRule`, `RecordingRule`); a recorded 2.42 answer is kept in
//! `tests/fixtures/prometheus-2.42-rules.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_model::ProviderError;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::http::Client;
use crate::promql;
use crate::rules::{Group, Namespace, Rule};

/// `{"status": "success", "data": …}`, the envelope of every v1 answer.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RulesData {
    pub groups: Vec<ApiGroup>,
}

#[derive(Debug, Deserialize)]
pub struct ApiGroup {
    pub name: String,
    pub file: String,
    #[serde(default)]
    pub rules: Vec<ApiRule>,
    /// Seconds; the global evaluation interval when the group sets none.
    #[serde(default)]
    pub interval: f64,
    #[serde(default)]
    pub limit: u64,
}

#[derive(Debug, Deserialize)]
pub struct ApiRule {
    pub name: String,
    pub query: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Alerting rules: `for` in seconds.
    #[serde(default)]
    pub duration: f64,
    /// Alerting rules, Prometheus ≥ 2.42.
    #[serde(default, rename = "keepFiringFor")]
    pub keep_firing_for: f64,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub health: String,
    #[serde(default, rename = "lastError")]
    pub last_error: Option<String>,
}

/// A semantic version as `buildinfo` reports it (`2.42.0+ds`, `3.1.0-rc.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['+', '-']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        Some(Version(
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
            parts.next().flatten().unwrap_or(0),
        ))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Group `labels` arrived in Prometheus 3.0 (CHANGELOG 3.0.0, "rules: add
/// labels to rule groups"); earlier servers refuse the file.
pub const GROUP_LABELS_SINCE: Version = Version(3, 0, 0);
/// `query_offset` on groups arrived in 2.53 (CHANGELOG 2.53.0).
pub const QUERY_OFFSET_SINCE: Version = Version(2, 53, 0);
/// `config.DefaultGlobalConfig.EvaluationInterval` in `config/config.go`.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// Decodes a v1 answer, naming the request on failure.
pub fn decode<T: for<'de> Deserialize<'de>>(request: &str, body: &str) -> Result<T, ProviderError> {
    let env: Envelope<T> = serde_json::from_str(body).map_err(|e| ProviderError::Api {
        request: request.to_string(),
        status: None,
        message: format!("unexpected answer: {e}"),
    })?;
    match (env.status.as_str(), env.data) {
        ("success", Some(data)) => Ok(data),
        _ => Err(ProviderError::Api {
            request: request.to_string(),
            status: None,
            message: env.error.unwrap_or_else(|| format!("status {}", env.status)),
        }),
    }
}

/// What the server is.
pub async fn version(client: &Client, url: &str) -> Result<Option<Version>, ProviderError> {
    let request = format!("{url}/api/v1/status/buildinfo");
    let answer = client.send(Method::GET, &request, None, &[]).await?;
    let data: Value = decode(&format!("GET {request}"), &answer.body)?;
    Ok(data.get("version").and_then(Value::as_str).and_then(Version::parse))
}

/// The global evaluation interval the server runs with, from its loaded
/// configuration (`/api/v1/status/config` returns the YAML as a string).
pub async fn evaluation_interval(client: &Client, url: &str) -> Result<Duration, ProviderError> {
    let request = format!("{url}/api/v1/status/config");
    let answer = client.send(Method::GET, &request, None, &[]).await?;
    let data: Value = decode(&format!("GET {request}"), &answer.body)?;
    let yaml = data.get("yaml").and_then(Value::as_str).unwrap_or("");
    let config: Value = serde_yaml_ng::from_str(yaml).unwrap_or(Value::Null);
    Ok(config
        .pointer("/global/evaluation_interval")
        .and_then(Value::as_str)
        .and_then(|t| promql::parse_duration(t).ok())
        .unwrap_or(DEFAULT_EVALUATION_INTERVAL))
}

pub async fn rules(client: &Client, url: &str) -> Result<RulesData, ProviderError> {
    let request = format!("{url}/api/v1/rules");
    let answer = client.send(Method::GET, &request, None, &[]).await?;
    decode(&format!("GET {request}"), &answer.body)
}

/// `/api/v1/status/runtimeinfo`'s `reloadConfigSuccess` and `lastConfigTime`.
pub async fn runtime(client: &Client, url: &str) -> Result<(bool, String), ProviderError> {
    let request = format!("{url}/api/v1/status/runtimeinfo");
    let answer = client.send(Method::GET, &request, None, &[]).await?;
    let data: Value = decode(&format!("GET {request}"), &answer.body)?;
    Ok((
        data.get("reloadConfigSuccess")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        data.get("lastConfigTime")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    ))
}

/// The file name plumb gives a namespace inside `rules_dir`: one flat file
/// (Prometheus's `rule_files` globs do not recurse), `/` and `%` escaped so
/// the name maps back exactly.
pub fn file_name(namespace: &str) -> String {
    namespace.replace('%', "%25").replace('/', "%2F")
}

pub fn namespace_of_file_name(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

/// Which namespace a live group's `file` belongs to: plumb's own file in
/// `rules_dir`; else the desired file whose path the live path ends with;
/// else a Prometheus Operator file `<k8s ns>-<name>[-<uid>].yaml` of a
/// desired `PrometheusRule`; else the live path itself. The second value
/// says whether Git is authoritative over it.
pub fn map_file(file: &str, rules_dir: Option<&Path>, desired: &[Namespace]) -> (String, bool) {
    let path = Path::new(file);
    if let Some(dir) = rules_dir {
        if let Ok(rest) = path.strip_prefix(dir) {
            if rest.components().count() == 1 {
                return (namespace_of_file_name(&rest.to_string_lossy()), true);
            }
        }
    }
    let base = path
        .file_name()
        .map(|b| b.to_string_lossy().to_string())
        .unwrap_or_default();
    for ns in desired {
        // The Git file itself, or plumb's file for it seen through another
        // mount path than `rules_dir` (a container's view of the volume).
        if file == ns.name || file.ends_with(&format!("/{}", ns.name)) || base == file_name(&ns.name) {
            return (ns.name.clone(), true);
        }
    }
    for ns in desired {
        for alias in &ns.aliases {
            if base.starts_with(&format!("{alias}-")) || base.starts_with(&format!("{alias}.")) {
                return (ns.name.clone(), true);
            }
        }
    }
    (file.trim_start_matches('/').to_string(), false)
}

/// A live rule as the rule-file model. `for` comes back in seconds and is
/// spelled as Prometheus spells durations; 0 means unset
/// (`rules/alerting.go`: `holdDuration` zero value).
pub fn rule_of(api: &ApiRule) -> Rule {
    let dur = |secs: f64| {
        let d = promql::from_seconds(secs);
        (!d.is_zero()).then(|| promql::format_duration(d))
    };
    let alerting = api.kind == "alerting";
    Rule {
        alert: alerting.then(|| api.name.clone()),
        record: (!alerting).then(|| api.name.clone()),
        expr: api.query.clone(),
        for_: if alerting { dur(api.duration) } else { None },
        keep_firing_for: if alerting { dur(api.keep_firing_for) } else { None },
        labels: api.labels.clone().unwrap_or_default(),
        annotations: api.annotations.clone().unwrap_or_default(),
        line: None,
    }
}

/// A live group, with `interval` left out where the desired group sets none
/// and the server reports its global evaluation interval — the API fills
/// it in (`rules/manager.go` `LoadGroups`: `itv := interval` unless the
/// group sets one), so it is not drift.
pub fn group_of(api: &ApiGroup, desired: Option<&Group>, global: Duration) -> Group {
    let interval = promql::from_seconds(api.interval);
    let desired_sets_interval = desired.map(|g| g.interval.is_some()).unwrap_or(false);
    let interval = if !desired_sets_interval && interval == global {
        None
    } else {
        Some(promql::format_duration(interval))
    };
    Group {
        name: api.name.clone(),
        interval,
        limit: (api.limit > 0).then_some(api.limit),
        query_offset: None,
        labels: BTreeMap::new(),
        rules: api.rules.iter().map(rule_of).collect(),
        ..Group::default()
    }
}

/// Writes `text` to `path` atomically (a temporary file in the same
/// directory, then a rename), so Prometheus never loads half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), ProviderError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".plumb-")
        .tempfile_in(dir)
        .map_err(|e| ProviderError::io(dir, e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| ProviderError::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| ProviderError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| ProviderError::io(path, e.error))?;
    Ok(())
}

/// The files reconcile is about to change, as they were, so a failed
/// reload can put them back.
#[derive(Debug, Default)]
pub struct Backup {
    files: Vec<(PathBuf, Option<String>)>,
}

impl Backup {
    pub fn keep(&mut self, path: &Path) -> Result<Option<String>, ProviderError> {
        let old = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ProviderError::io(path, e)),
        };
        self.files.push((path.to_path_buf(), old.clone()));
        Ok(old)
    }

    /// Puts every file back as it was (removing the ones that were new).
    /// A file that still is as it was is left alone (its write is the one
    /// that failed, or never happened), and one failure does not stop the
    /// others from being restored: all failures are reported together.
    pub fn restore(&self) -> Result<(), ProviderError> {
        let mut failures = Vec::new();
        for (path, old) in &self.files {
            let now = std::fs::read_to_string(path).ok();
            if now == *old {
                continue;
            }
            let result = match old {
                Some(text) => write_atomic(path, text),
                None => match std::fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(ProviderError::io(path, e)),
                },
            };
            if let Err(e) = result {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::Other(failures.join("; ")))
        }
    }
}

/// `POST /-/reload` (needs `--web.enable-lifecycle`), then the proof it
/// took: `reloadConfigSuccess` true and a `lastConfigTime` that moved.
pub async fn reload(client: &Client, url: &str) -> Result<(), ProviderError> {
    let (_, before) = runtime(client, url).await?;
    let request = format!("{url}/-/reload");
    // A failed reload answers 500 with the reason (web/web.go `reload`);
    // that is not transient, so it is taken as the answer, not retried.
    let answer = client.send(Method::POST, &request, None, &[500]).await?;
    if answer.status.as_u16() == 500 {
        return Err(ProviderError::Api {
            request: format!("POST {request}"),
            status: Some(500),
            message: crate::http::short(&answer.body),
        });
    }
    let (ok, after) = runtime(client, url).await?;
    if !ok {
        return Err(ProviderError::Api {
            request: format!("POST {request}"),
            status: Some(answer.status.as_u16()),
            message: "the server reports reloadConfigSuccess=false after the reload".into(),
        });
    }
    if after == before {
        tracing::debug!(%url, "lastConfigTime did not move (sub-second reload); reloadConfigSuccess is true");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(Version::parse("2.42.0+ds"), Some(Version(2, 42, 0)));
        assert_eq!(Version::parse("3.1.0-rc.0"), Some(Version(3, 1, 0)));
        assert!(Version::parse("2.42.0").unwrap() < GROUP_LABELS_SINCE);
        assert!(Version::parse("2.53.1").unwrap() >= QUERY_OFFSET_SINCE);
        assert_eq!(Version::parse("garbage"), None);
    }

    #[test]
    fn file_names_round_trip() {
        for ns in ["a.yml", "dir/sub/x.yaml", "odd%2F.yml"] {
            assert_eq!(namespace_of_file_name(&file_name(ns)), ns);
            assert!(!file_name(ns).contains('/'));
        }
    }

    #[test]
    fn live_files_map_back_to_git() {
        let desired = vec![
            Namespace {
                name: "node/alerts.yml".into(),
                ..Namespace::default()
            },
            Namespace {
                name: "manifests/am-prometheusRule.yaml".into(),
                aliases: vec!["monitoring-alertmanager-main-rules".into()],
                ..Namespace::default()
            },
        ];
        let dir = Path::new("/var/lib/plumb/rules");
        assert_eq!(
            map_file("/var/lib/plumb/rules/node%2Falerts.yml", Some(dir), &desired),
            ("node/alerts.yml".into(), true)
        );
        assert_eq!(
            map_file("/etc/prometheus/rules/node/alerts.yml", None, &desired),
            ("node/alerts.yml".into(), true)
        );
        assert_eq!(
            map_file(
                "/etc/prometheus/rules/prometheus-k8s-rulefiles-0/monitoring-alertmanager-main-rules-1f2e.yaml",
                None,
                &desired
            ),
            ("manifests/am-prometheusRule.yaml".into(), true)
        );
        assert_eq!(
            map_file("/etc/other.yml", None, &desired),
            ("etc/other.yml".into(), false)
        );
    }
}
