//! The vocabulary shared by plumb's core and every provider: a target is a set
//! of JSON documents with stable ids ([`Resource`]), read once from Git
//! ([`Desired`]) and once from the live system ([`Live`]); a [`Provider`]
//! produces both, canonicalises pairs, may confirm suspected drift against the
//! live system, applies what policy allowed and imports live state as files.
//!
//! This crate does no I/O of its own and pulls in no heavy dependencies, so a
//! provider crate and the core can both depend on it cheaply (the way
//! `kube-core` sits under `kube`). The one exception is opt-in: the
//! `loopback` feature adds the server the providers' API simulators share.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

pub mod files;
pub mod limits;
#[cfg(feature = "loopback")]
pub mod loopback;

/// Where a desired document came from, so every error and every change can
/// point a person at the file and line to edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Path relative to the root of the source (the Git work tree or `dir:`).
    pub file: PathBuf,
    /// 1-based line where the document starts, when the format tells us.
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file.display(), line),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Which parts of a document must never be shown in clear. The core masks
/// them with a keyed HMAC in every rendering, so a changed secret still shows
/// as changed while its value cannot be read or matched across installations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    #[default]
    None,
    /// Every value below these JSON pointers (plain RFC 6901, `*` matching
    /// any one segment) is secret, e.g. `/data/*` of a Kubernetes Secret.
    Paths(Vec<String>),
    /// The whole document is secret apart from its id and kind.
    Whole,
}

impl Sensitivity {
    pub fn is_none(&self) -> bool {
        matches!(self, Sensitivity::None)
    }
}

/// Whether plumb's desired state is the authority over a live object. A live
/// object that Git lacks is a `delete` when plumb owns it (GitHub membership,
/// a Kubernetes object carrying plumb's mark) and `unmanaged` otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// Git is authoritative: absence from Git means the object should go.
    Owned,
    /// Someone else created it; plumb only reports it.
    #[default]
    Foreign,
}

/// Who last changed a live object, in the live system's own words: a person
/// (Grafana's `updatedBy`) or a client (a Kubernetes field manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBy {
    pub who: String,
    pub when: Option<String>,
}

/// One document with a stable, readable id such as
/// `apps/v1/Deployment/shop/cart` or `github/acme/member/alice`.
///
/// The body is kept as compact JSON text rather than a parsed tree: a
/// parsed `serde_json::Value` takes five to ten times the memory of its
/// text, and an audit holds every desired and every live document at once.
/// The engine parses one pair at a time, and skips parsing altogether when
/// both sides are the same text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    /// The kind as users name it in ignore rules (`Deployment`, `dashboard`).
    pub kind: String,
    body: Box<RawValue>,
    /// Set on desired documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(default, skip_serializing_if = "Sensitivity::is_none")]
    pub sensitive: Sensitivity,
    /// The live system's version token (resourceVersion, ETag, dashboard
    /// version) when it has one; a saved plan uses it to notice that a live
    /// object moved since the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<ChangedBy>,
    #[serde(default)]
    pub authority: Authority,
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.body.get() == other.body.get()
            && self.origin == other.origin
            && self.sensitive == other.sensitive
            && self.version == other.version
            && self.changed_by == other.changed_by
            && self.authority == other.authority
    }
}

fn compact(body: &Value) -> Box<RawValue> {
    // Serialising a Value cannot fail (its keys are strings); should it
    // ever, `null` is a visible, safe fallback.
    serde_json::value::to_raw_value(body).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl Resource {
    pub fn new(id: impl Into<String>, kind: impl Into<String>, body: Value) -> Self {
        Resource {
            id: id.into(),
            kind: kind.into(),
            body: compact(&body),
            origin: None,
            sensitive: Sensitivity::None,
            version: None,
            changed_by: None,
            authority: Authority::Foreign,
        }
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn with_authority(mut self, authority: Authority) -> Self {
        self.authority = authority;
        self
    }

    /// The body, parsed (a fresh copy each call).
    pub fn body(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }

    /// The body as compact JSON text.
    pub fn body_json(&self) -> &str {
        self.body.get()
    }

    pub fn set_body(&mut self, body: &Value) {
        self.body = compact(body);
    }
}

/// One pair on its way to comparison, bodies parsed so a provider can bring
/// them into canonical form. Either side may be absent (create, delete).
#[derive(Debug)]
pub struct Pair<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub desired: Option<&'a mut Value>,
    pub live: Option<&'a mut Value>,
}

/// How loud a finding or an alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// Something an auditor must see that is not drift: a rule whose evaluation
/// fails, an expired invitation, an object another tool manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub kind: String,
    pub message: String,
    pub severity: Severity,
}

/// A list inside documents of some kind whose elements have an identity of
/// their own. The engine matches such elements by key, so a change inside
/// one container is reported as `/containers[name=web]/image`, not as
/// "element 0 removed, element 0 added".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListKey {
    /// Kinds this applies to (`*` for all kinds of the provider).
    pub kind: String,
    /// The list's path as field names only, array positions left out, with a
    /// leading `**/` to match at any depth: `**/containers`,
    /// `**/containers/ports`, `/spec/rules`.
    pub path: String,
    /// Fields that together identify an element, e.g. `["containerPort",
    /// "protocol"]`.
    pub keys: Vec<String>,
}

impl ListKey {
    pub fn new(kind: &str, path: &str, keys: &[&str]) -> Self {
        ListKey {
            kind: kind.to_string(),
            path: path.to_string(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// Whether this key applies to a list at `fields` (field names from the
    /// document root, array positions left out) in a document of `kind`.
    pub fn matches(&self, kind: &str, fields: &[&str]) -> bool {
        if self.kind != "*" && self.kind != kind {
            return false;
        }
        let (anywhere, pattern) = match self.path.strip_prefix("**/") {
            Some(rest) => (true, rest),
            None => (false, self.path.trim_start_matches('/')),
        };
        let wanted: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        if anywhere {
            fields.len() >= wanted.len() && fields[fields.len() - wanted.len()..] == wanted[..]
        } else {
            fields == wanted.as_slice()
        }
    }
}

/// What a provider read from Git for one target.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub resources: Vec<Resource>,
    /// Problems in the desired state that are not fatal (deprecated keys).
    pub findings: Vec<Finding>,
}

/// What a provider read from the live system, within the scope its desired
/// state implies.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub resources: Vec<Resource>,
    pub findings: Vec<Finding>,
}

/// A change the engine proposes, in the form a provider needs to carry it
/// out or to confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Unmanaged,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unmanaged => "unmanaged",
        })
    }
}

/// How sure the plan is that a suspected change is real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfirmedBy {
    /// The offline comparison alone decides (no live check exists or needed).
    Offline,
    /// The live system agreed in a dry run (Kubernetes server-side dry-run).
    DryRun,
    /// The provider could have checked but the check failed or was skipped.
    Unconfirmed,
}

/// A pair the offline comparison found different, handed to
/// [`Provider::confirm`] so the live system can have the last word.
#[derive(Debug, Clone, Copy)]
pub struct Suspect<'a> {
    pub id: &'a str,
    pub action: Action,
    pub desired: Option<&'a Resource>,
    pub live: Option<&'a Resource>,
    /// The changed paths the engine found.
    pub paths: &'a [String],
}

/// The live system's answer about one suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Confirmed(ConfirmedBy),
    /// Not drift after all (the live system would store exactly the live
    /// object); `why` goes to the debug log.
    Dismissed {
        why: String,
    },
}

/// A change policy allowed, passed to [`Provider::apply`] as part of the whole
/// plan so a provider can order it (namespaces first), batch it (one reload)
/// or refuse the whole plan (a guard).
#[derive(Debug, Clone)]
pub struct ApplyChange {
    pub id: String,
    pub action: Action,
    pub desired: Option<Resource>,
    pub live: Option<Resource>,
}

/// What happened to one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "message")]
pub enum Outcome {
    Applied,
    Failed(String),
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeResult {
    pub id: String,
    pub action: Action,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Everything a provider may consult while it works. Secrets are read
/// through [`Ctx::secret`] so the message on a missing variable is the same
/// everywhere and never contains a value.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub target: String,
    /// The provider's own cache directory below `state_dir` (ETags, list
    /// pages): never the history.
    pub cache_dir: PathBuf,
    /// The commit being audited or applied, for messages such as a Grafana
    /// save message.
    pub commit: Option<String>,
    /// That commit's subject line, for the same messages.
    pub commit_subject: Option<String>,
    /// Upper bound for one live call; providers must not hang past it.
    pub timeout: Duration,
    /// Provider-specific guards from the target's policy (`required_admins`,
    /// `max_removals`), as written there.
    pub guards: BTreeMap<String, Value>,
}

impl Ctx {
    pub fn new(target: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Ctx {
            target: target.into(),
            cache_dir: cache_dir.into(),
            commit: None,
            commit_subject: None,
            timeout: Duration::from_secs(60),
            guards: BTreeMap::new(),
        }
    }

    /// Reads a secret from the environment variable a `*_env` key names.
    pub fn secret(&self, key: &str, var: &str) -> Result<String, ProviderError> {
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(value),
            _ => Err(ProviderError::Config(format!(
                "environment variable {var} (named by connection.{key}) is not set"
            ))),
        }
    }
}

/// Why a provider could not do its part. Every variant names what a person
/// needs to act: the file and line, the request and status, the command.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{origin}: {message}")]
    Parse { origin: Origin, message: String },
    #[error("duplicate id {id}: defined in {first} and in {second}")]
    DuplicateId { id: String, first: Origin, second: Origin },
    #[error("connection: {0}")]
    Config(String),
    #[error("{request}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
    Api {
        request: String,
        status: Option<u16>,
        message: String,
    },
    #[error("command {command} {message}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Command {
        command: String,
        message: String,
        stderr: String,
    },
    #[error("{what} timed out after {}", humanize(*after))]
    Timeout { what: String, after: Duration },
    #[error("refused: {0}")]
    Refused(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl ProviderError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ProviderError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The contract between the core and one kind of live system. The core does
/// the matching, diffing, policy, rendering and history; a provider only
/// knows its own files and API.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Keyed lists of this provider's kinds (see [`ListKey`]).
    fn list_keys(&self) -> Vec<ListKey> {
        Vec::new()
    }

    /// Parses desired state below `dir` (the target's path inside the
    /// checked-out source); `root` is the source root, for origins relative
    /// to it.
    fn desired(&self, root: &Path, dir: &Path, ctx: &Ctx) -> Result<Desired, ProviderError>;

    /// Reads what is live within the scope `desired` implies (its kinds, its
    /// namespaces), using `ctx.cache_dir` for conditional requests.
    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError>;

    /// Brings a pair into canonical form before comparison: drops what the
    /// live system fills in by itself, spells equal values alike. Either side
    /// may be absent (create, delete). Each rule should cite its source.
    /// Not called when both sides are the same text.
    fn normalize(&self, _pair: Pair<'_>) {}

    /// Lets the live system confirm or dismiss what the offline comparison
    /// suspects (e.g. a server-side dry run). One verdict per suspect, in
    /// order. Must not write.
    async fn confirm(&self, suspects: &[Suspect<'_>], _ctx: &Ctx) -> Result<Vec<Verdict>, ProviderError> {
        Ok(suspects
            .iter()
            .map(|_| Verdict::Confirmed(ConfirmedBy::Offline))
            .collect())
    }

    /// Carries out the changes policy allowed, all of one plan at once. An
    /// `Err` refuses the whole plan before any write (a guard); otherwise one
    /// result per change.
    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError>;

    /// Writes `live` as desired-state files below `out`, such that a plan
    /// against them right after is empty. Returns the files written.
    async fn import(&self, live: &Live, out: &Path, ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_key_anywhere_matches_suffix_only() {
        let key = ListKey::new("*", "**/containers/ports", &["containerPort", "protocol"]);
        assert!(key.matches("Pod", &["spec", "containers", "ports"]));
        assert!(key.matches("Deployment", &["spec", "template", "spec", "containers", "ports"]));
        assert!(!key.matches("Pod", &["spec", "containers"]));
        assert!(!key.matches("Pod", &["spec", "ports"]));
    }

    #[test]
    fn list_key_rooted_matches_exact_path_and_kind() {
        let key = ListKey::new("Ingress", "/spec/rules", &["host"]);
        assert!(key.matches("Ingress", &["spec", "rules"]));
        assert!(!key.matches("Ingress", &["x", "spec", "rules"]));
        assert!(!key.matches("Service", &["spec", "rules"]));
    }

    #[test]
    fn missing_secret_names_variable_and_key_not_value() {
        let ctx = Ctx::new("t", "/tmp");
        let err = ctx
            .secret("token_env", "PLUMB_TEST_SURELY_UNSET_VARIABLE")
            .unwrap_err()
            .to_string();
        assert!(err.contains("PLUMB_TEST_SURELY_UNSET_VARIABLE"), "{err}");
        assert!(err.contains("connection.token_env"), "{err}");
    }

    #[test]
    fn errors_name_request_and_status() {
        let err = ProviderError::Api {
            request: "GET http://127.0.0.1:1/api".into(),
            status: Some(503),
            message: "unavailable".into(),
        };
        assert_eq!(err.to_string(), "GET http://127.0.0.1:1/api: HTTP 503: unavailable");
    }
}
