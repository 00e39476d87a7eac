//! `plumb.yaml`: the schema of docs/configuration.md, loaded strictly. Any key no schema
//! knows is an error naming the key and its line; secrets appear only as the
//! names of environment variables or files that hold them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A problem in the configuration, always with the file and, where there is
/// one, the line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Where desired state lives: a Git repository or a plain directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default)]
    pub git: Option<GitSpec>,
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GitSpec {
    /// https, ssh (`ssh://` or scp-like `git@host:path`), `file://` or a local path.
    pub url: String,
    /// Branch, tag or commit id.
    #[serde(rename = "ref", default = "default_ref")]
    pub reference: String,
    #[serde(default)]
    pub auth: Option<GitAuth>,
    /// How often `serve` fetches.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub poll: Option<Duration>,
}

fn default_ref() -> String {
    "main".to_string()
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GitAuth {
    /// Environment variable holding an HTTPS token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// User name sent with the token (`x-access-token` suits GitHub, GitLab
    /// accepts any, Bitbucket wants `x-token-auth`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    pub provider: String,
    #[serde(default = "default_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub source: Option<SourceSpec>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub policy: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Provider specific; checked by the provider when it is built.
    #[serde(default)]
    pub connection: serde_json::Value,
    /// Upper bound for one live read or apply of this target (default 5m).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// serve: a random delay of up to this much before each scheduled
    /// audit, so targets on one schedule do not hit their APIs at once.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub jitter: Option<Duration>,
    /// 1-based line of this target's entry, for messages about it.
    #[serde(skip)]
    pub line: Option<usize>,
}

fn default_path() -> PathBuf {
    PathBuf::from(".")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub s3: Option<S3Spec>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub keep: Option<Duration>,
    /// How long one record vouches for what it saw; time with no record
    /// within this is unknown in reports (default 1h).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub unknown_after: Option<Duration>,
    /// How often each target gets a signed digest at the least while plumb
    /// runs (default 1h, at least 1s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub digest_every: Option<Duration>,
    /// A public-key file (as `plumb history public-key` prints) that
    /// `report --verify` trusts instead of this installation's own key.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Spec {
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub object_lock: Option<ObjectLockSpec>,
}

/// S3 Object Lock retention for every record and digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockSpec {
    pub mode: ObjectLockMode,
    #[serde(deserialize_with = "de_duration")]
    pub retain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectLockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete.
    Governance,
    /// Nobody, not even the account root, may delete before the date.
    Compliance,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSpec {
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// serve: how many audits may run at once (default 4).
    #[serde(default)]
    pub max_concurrent_audits: Option<usize>,
    /// serve: a request head must arrive whole within this (default 10s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub header_timeout: Option<Duration>,
    /// serve: a connection with no request in flight is closed after this
    /// (default 60s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// serve: open connections at once (default 512, and at most three
    /// quarters of the file descriptor limit).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: SourceSpec,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    targets: Vec<TargetSpec>,
    #[serde(default)]
    history: Option<HistorySpec>,
    #[serde(default)]
    alerting: Option<AlertingSpec>,
    #[serde(default)]
    server: Option<ServerSpec>,
    #[serde(default)]
    limits: Option<LimitsSpec>,
}

/// Size limits on input plumb does not control.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// A desired file larger than this is an error (default 64MiB).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_file_size: Option<u64>,
    /// A live listing (an exec plugin's output) larger than this is an
    /// error (default 256MiB).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_live_bytes: Option<u64>,
}

impl LimitsSpec {
    /// Puts the limits in force for this process.
    pub fn apply(&self) {
        plumb_model::limits::set(
            self.max_file_size.unwrap_or(plumb_model::limits::DEFAULT_MAX_FILE_SIZE),
            self.max_live_bytes
                .unwrap_or(plumb_model::limits::DEFAULT_MAX_LIVE_BYTES),
        );
    }
}

/// `64MiB`, `1GiB`, `500KiB`, `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: use a number of bytes or KiB, MiB, GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size unit {other:?} in {text:?}: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value: Option<serde_yaml_ng::Value> = Option::deserialize(d)?;
    match value {
        None => Ok(None),
        Some(serde_yaml_ng::Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("a size must be a whole number of bytes")),
        Some(serde_yaml_ng::Value::String(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
        Some(_) => Err(serde::de::Error::custom(
            "a size is a number of bytes or a string such as 64MiB",
        )),
    }
}

/// The loaded configuration, with relative paths resolved against the
/// directory of the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// The file's bytes, for the digest recorded with every plan.
    pub text: String,
    pub source: SourceSpec,
    pub state_dir: PathBuf,
    pub targets: Vec<TargetSpec>,
    pub history: HistorySpec,
    pub alerting: AlertingSpec,
    pub server: ServerSpec,
    pub limits: LimitsSpec,
}

/// Label names plumb sets itself on per-target series.
pub const RESERVED_LABELS: &[&str] = &["target", "provider", "le", "job", "instance", "action", "result"];

impl Config {
    /// The union of every target's label names, sorted: metric label names
    /// must be the same for every series of a metric, so a target without
    /// one of them exports it empty.
    pub fn target_label_names(&self) -> Vec<String> {
        self.targets
            .iter()
            .flat_map(|t| t.labels.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: None,
            message: format!("cannot read the config: {e}"),
        })?;
        Config::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let error = |line: Option<usize>, message: String| ConfigError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let message = plumb_model::files::without_location(&e.to_string());
            error(line, message)
        })?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let resolve = |p: &Path| clean(&if p.is_absolute() { p.to_path_buf() } else { base.join(p) });

        check_source(&raw.source, "source").map_err(|m| error(line_of(text, "source:", 0), m))?;
        let mut source = raw.source.clone();
        resolve_source(&mut source, &resolve);

        let mut names = BTreeSet::new();
        let mut targets = raw.targets;
        let mut search_from = 0;
        for target in &mut targets {
            target.line = line_of_target(text, &target.name, search_from);
            if let Some(line) = target.line {
                search_from = line;
            }
            if target.name.is_empty()
                || target.name.starts_with(['.', '_'])
                || !target
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(error(
                    target.line,
                    format!(
                        "target name {:?}: use letters, digits, '-', '_' and '.', not first '.' or '_' (it names files in the history and state)",
                        target.name
                    ),
                ));
            }
            if !names.insert(target.name.clone()) {
                return Err(error(
                    target.line,
                    format!("target name {:?} is used twice; names must be unique", target.name),
                ));
            }
            if target.path.is_absolute() {
                return Err(error(
                    target.line,
                    format!("target {}: path must be relative to the source", target.name),
                ));
            }
            if clean(&target.path).starts_with("..") {
                return Err(error(
                    line_of(text, "path:", target.line.unwrap_or(0)).or(target.line),
                    format!(
                        "target {}: path {} climbs out of the source with `..`; desired state is read only inside the source",
                        target.name,
                        target.path.display()
                    ),
                ));
            }
            if let Some(src) = &mut target.source {
                check_source(src, &format!("targets.{}.source", target.name)).map_err(|m| error(target.line, m))?;
                resolve_source(src, &resolve);
            }
            if let Some(policy) = &target.policy {
                target.policy = Some(resolve(policy));
            }
            for label in target.labels.keys() {
                if RESERVED_LABELS.contains(&label.as_str()) {
                    return Err(error(
                        target.line,
                        format!("target {}: label name {label:?} is reserved by plumb", target.name),
                    ));
                }
                if !is_label_name(label) {
                    return Err(error(
                        target.line,
                        format!("target {}: {label:?} is not a valid Prometheus label name", target.name),
                    ));
                }
            }
            let tz: chrono_tz::Tz = match &target.timezone {
                Some(tz) => tz.parse().unwrap_or(chrono_tz::UTC),
                None => chrono_tz::UTC,
            };
            if let Some(schedule) = &target.schedule {
                crate::schedule::Schedule::parse(schedule, tz)
                    .map_err(|m| error(target.line, format!("target {}: {m}", target.name)))?;
            }
            if let Some(tz) = &target.timezone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    return Err(error(
                        target.line,
                        format!(
                            "target {}: unknown timezone {tz:?} (use an IANA name such as Europe/Berlin)",
                            target.name
                        ),
                    ));
                }
            }
        }

        let state_dir = resolve(raw.state_dir.as_deref().unwrap_or(Path::new(".plumb")));
        let mut history = raw.history.unwrap_or_default();
        if history.dir.is_some() && history.s3.is_some() {
            return Err(error(
                line_of(text, "history:", 0),
                "history: give either dir or s3, not both".into(),
            ));
        }
        if history.s3.is_none() {
            history.dir = Some(resolve(history.dir.as_deref().unwrap_or(Path::new("plumb-history"))));
        }
        if history.digest_every.is_some_and(|every| every < Duration::from_secs(1)) {
            return Err(error(
                line_of(text, "digest_every:", 0),
                "history.digest_every: at least 1s".into(),
            ));
        }
        if let Some(key) = &history.public_key {
            history.public_key = Some(resolve(key));
        }
        Ok(Config {
            file: file.to_path_buf(),
            text: text.to_string(),
            source,
            state_dir,
            targets,
            history,
            alerting: raw.alerting.unwrap_or_default(),
            server: raw.server.unwrap_or_default(),
            limits: raw.limits.unwrap_or_default(),
        })
    }

    /// The line of `key:` inside the entry of `target`, for errors a provider
    /// raises about its connection (the provider sees a parsed value, not
    /// the text).
    pub fn line_in_target(&self, target: &TargetSpec, key: &str) -> Option<usize> {
        let start = target.line?;
        line_of(&self.text, &format!("{key}:"), start - 1)
    }

    /// The config file's directory, against which relative paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub fn target(&self, name: &str) -> Option<&TargetSpec> {
        self.targets.iter().find(|t| t.name == name)
    }
}

fn check_source(source: &SourceSpec, at: &str) -> Result<(), String> {
    match (&source.git, &source.dir) {
        (Some(_), Some(_)) => Err(format!("{at}: give either git or dir, not both")),
        (None, None) => Err(format!("{at}: needs git or dir")),
        (Some(git), None) => {
            if let Some(auth) = &git.auth {
                if auth.token_env.is_some() && auth.ssh_key_file.is_some() {
                    return Err(format!("{at}.git.auth: give either token_env or ssh_key_file"));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn resolve_source(source: &mut SourceSpec, resolve: &dyn Fn(&Path) -> PathBuf) {
    if let Some(dir) = &source.dir {
        source.dir = Some(resolve(dir));
    }
    if let Some(git) = &mut source.git {
        if is_local_path(&git.url) {
            git.url = resolve(Path::new(&git.url)).to_string_lossy().into_owned();
        }
        if let Some(auth) = &mut git.auth {
            auth.ssh_key_file = auth.ssh_key_file.as_deref().map(resolve);
            auth.known_hosts_file = auth.known_hosts_file.as_deref().map(resolve);
        }
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system, so paths in
/// messages read the way people wrote them.
pub fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// A Git URL that is a plain path rather than a URL (`../config.git`).
pub fn is_local_path(url: &str) -> bool {
    !url.contains("://") && !looks_like_scp(url)
}

fn looks_like_scp(url: &str) -> bool {
    // `git@host:path`: a colon before the first slash.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// 1-based line of the first line at or after `from` (0-based) whose
/// trimmed text starts with `needle`.
fn line_of(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.trim_start().trim_start_matches("- ").starts_with(needle))
        .map(|(i, _)| i + 1)
}

fn line_of_target(text: &str, name: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim();
            t.strip_prefix("name:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == name)
                .unwrap_or(false)
        })
        .map(|(i, _)| i + 1)
}

/// Parses `30s`, `1m`, `90d` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
source:
  git:
    url: ../ops.git
    ref: main
    auth: { token_env: GIT_TOKEN }
    poll: 1m
state_dir: ./.plumb
targets:
  - name: a
    provider: exec
    path: apps
    labels: { team: platform }
    connection: { command: [\"x\"] }
  - name: b
    provider: exec
    source: { dir: ./other }
";

    #[test]
    fn loads_and_resolves_relative_paths() {
        let config = Config::parse(Path::new("/etc/plumb/plumb.yaml"), GOOD).unwrap();
        let git = config.source.git.as_ref().unwrap();
        assert_eq!(git.url, "/etc/ops.git");
        assert_eq!(git.poll, Some(Duration::from_secs(60)));
        assert_eq!(config.state_dir, Path::new("/etc/plumb/.plumb"));
        assert_eq!(config.targets[0].line, Some(9));
        assert_eq!(config.targets[1].line, Some(14));
        assert_eq!(
            config.targets[1].source.as_ref().unwrap().dir.as_deref(),
            Some(Path::new("/etc/plumb/other"))
        );
        assert_eq!(
            config.history.dir.as_deref(),
            Some(Path::new("/etc/plumb/plumb-history"))
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = GOOD.replace("    path: apps\n", "    path: apps\n    scheduel: \"* * * * *\"\n");
        let err = Config::parse(Path::new("plumb.yaml"), &text).unwrap_err();
        assert_eq!(err.line, Some(12), "{err}");
        assert!(err.message.contains("scheduel"), "{err}");
        assert!(err.to_string().starts_with("plumb.yaml:12:"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let text = format!("{GOOD}extra: 1\n");
        let err = Config::parse(Path::new("plumb.yaml"), &text).unwrap_err();
        assert!(err.message.contains("extra"), "{err}");
        assert_eq!(err.line, Some(17));
    }

    #[test]
    fn reserved_label_and_duplicate_names_are_refused() {
        let text = GOOD.replace("team: platform", "target: x");
        let err = Config::parse(Path::new("p.yaml"), &text).unwrap_err();
        assert!(err.message.contains("reserved"), "{err}");
        let text = GOOD.replace("name: b", "name: a");
        let err = Config::parse(Path::new("p.yaml"), &text).unwrap_err();
        assert!(err.message.contains("used twice"), "{err}");
    }

    #[test]
    fn source_needs_exactly_one_kind() {
        let text = GOOD.replace("state_dir", "  dir: ./x\nstate_dir");
        let err = Config::parse(Path::new("p.yaml"), &text).unwrap_err();
        assert!(err.message.contains("either git or dir"), "{err}");
    }

    #[test]
    fn bad_duration_is_an_error_with_line() {
        let text = GOOD.replace("poll: 1m", "poll: soon");
        let err = Config::parse(Path::new("p.yaml"), &text).unwrap_err();
        assert!(err.message.contains("invalid duration"), "{err}");
        assert!(err.line.is_some());
    }

    #[test]
    fn local_and_remote_urls_are_told_apart() {
        assert!(is_local_path("../ops.git"));
        assert!(is_local_path("/srv/git/ops"));
        assert!(!is_local_path("file:///srv/git/ops"));
        assert!(!is_local_path("git@github.com:acme/ops.git"));
        assert!(!is_local_path("https://git.example.com/ops.git"));
    }
}
