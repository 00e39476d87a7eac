//! The `connection:` block of an exec target: parsed once when the provider
//! is built, so a typo or a missing `command` fails `plumb validate` instead
//! of the first audit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use plumb_model::{ListKey, ProviderError};
use serde::Deserialize;
use serde_json::Value;

/// How long a command may run when the connection does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The validated connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Program and arguments that print the live documents.
    pub command: Vec<String>,
    /// Program and arguments that apply one change; `None` makes the target
    /// audit-only.
    pub apply_command: Option<Vec<String>>,
    /// Upper bound for one run of either command.
    pub timeout: Duration,
    /// Added to (not replacing) plumb's own environment.
    pub env: BTreeMap<String, String>,
    /// Working directory of both commands; plumb's own when unset.
    pub workdir: Option<PathBuf>,
    /// Git is authoritative for everything `command` lists.
    pub authoritative: bool,
    /// JSON pointers masked on every document.
    pub sensitive_paths: Vec<String>,
    /// Keyed lists the engine should match by key.
    pub list_keys: Vec<ListKey>,
}

/// The form users write; `deny_unknown_fields` makes serde name a mistyped
/// key together with the keys it expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    command: Value,
    #[serde(default)]
    apply_command: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    env: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    workdir: Option<PathBuf>,
    #[serde(default)]
    authoritative: Option<bool>,
    #[serde(default)]
    sensitive_paths: Option<Vec<String>>,
    #[serde(default)]
    list_keys: Option<Vec<RawListKey>>,
}

/// A mirror of [`ListKey`] that rejects unknown keys and lets `kind` default
/// to every kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListKey {
    #[serde(default = "any_kind")]
    kind: String,
    path: String,
    keys: Vec<String>,
}

fn any_kind() -> String {
    "*".to_string()
}

fn config(message: impl Into<String>) -> ProviderError {
    ProviderError::Config(message.into())
}

impl Connection {
    /// Validates `connection` (the target's `connection:` value as the core
    /// parsed it), naming the offending key in every error.
    pub fn parse(connection: &Value) -> Result<Connection, ProviderError> {
        let missing_command = || {
            config(
                "the exec provider needs `command`: the program and arguments that print \
                 the live documents as a JSON array, e.g. command: [\"./plugins/list-users\"]",
            )
        };
        match connection {
            Value::Null => return Err(missing_command()),
            Value::Object(map) if !map.contains_key("command") => return Err(missing_command()),
            Value::Object(_) => {}
            other => {
                return Err(config(format!(
                    "expected a mapping with `command`, got {}",
                    type_name(other)
                )))
            }
        }
        let raw: Raw = serde_json::from_value(connection.clone()).map_err(|e| config(e.to_string()))?;

        let command = argv("command", &raw.command)?;
        let apply_command = raw
            .apply_command
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| argv("apply_command", v))
            .transpose()?;
        let timeout = match &raw.timeout {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(v) => parse_timeout(v)?,
        };
        let mut env = BTreeMap::new();
        for (name, value) in raw.env.unwrap_or_default() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(config(format!("env: invalid variable name {name:?}")));
            }
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(config(format!(
                        "env.{name}: expected a string, got {}",
                        type_name(&other)
                    )))
                }
            };
            env.insert(name, text);
        }
        let sensitive_paths = raw.sensitive_paths.unwrap_or_default();
        for path in &sensitive_paths {
            if !path.starts_with('/') {
                return Err(config(format!(
                    "sensitive_paths: {path:?} is not a JSON pointer (it must start with `/`, \
                     e.g. \"/password\" or \"/data/*\")"
                )));
            }
        }
        let mut list_keys = Vec::new();
        for (index, key) in raw.list_keys.unwrap_or_default().into_iter().enumerate() {
            if key.path.trim_matches('/').is_empty() {
                return Err(config(format!("list_keys[{index}].path must name a list")));
            }
            if key.keys.is_empty() || key.keys.iter().any(|k| k.is_empty()) {
                return Err(config(format!("list_keys[{index}].keys must name at least one field")));
            }
            list_keys.push(ListKey {
                kind: key.kind,
                path: key.path,
                keys: key.keys,
            });
        }
        Ok(Connection {
            command,
            apply_command,
            timeout,
            env,
            workdir: raw.workdir,
            authoritative: raw.authoritative.unwrap_or(false),
            sensitive_paths,
            list_keys,
        })
    }
}

/// A command is a list (program, then arguments) because plumb never runs a
/// shell: a string would invite quoting bugs and injection through ids.
fn argv(key: &str, value: &Value) -> Result<Vec<String>, ProviderError> {
    let Value::Array(items) = value else {
        return Err(config(format!(
            "{key}: expected a list of program and arguments (no shell is used), e.g. \
             [\"./plugin\", \"--list\"], got {}",
            type_name(value)
        )));
    };
    if items.is_empty() {
        return Err(config(format!("{key}: the list is empty; name a program")));
    }
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if index == 0 && s.trim().is_empty() => {
                return Err(config(format!("{key}[0]: the program name is empty")))
            }
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            other => {
                return Err(config(format!(
                    "{key}[{index}]: expected a string, got {}",
                    type_name(other)
                )))
            }
        }
    }
    Ok(out)
}

/// `30s`, `1m30s`, `500ms` (humantime), or a number of seconds.
fn parse_timeout(value: &Value) -> Result<Duration, ProviderError> {
    let duration = match value {
        Value::String(text) => humantime::parse_duration(text.trim())
            .map_err(|e| config(format!("timeout: invalid duration {text:?}: {e}")))?,
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => Duration::from_secs_f64(secs),
            _ => return Err(config(format!("timeout: invalid number of seconds {n}"))),
        },
        other => {
            return Err(config(format!(
                "timeout: expected a duration such as \"30s\", got {}",
                type_name(other)
            )))
        }
    };
    if duration.is_zero() {
        return Err(config("timeout: must be greater than zero"));
    }
    Ok(duration)
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_connection_parses() {
        let c = Connection::parse(&json!({
            "command": ["./list", "--all"],
            "apply_command": ["./apply"],
            "timeout": "1m30s",
            "env": {"REGION": "eu", "PORT": 8080},
            "workdir": "/srv/plugins",
            "authoritative": true,
            "sensitive_paths": ["/password", "/data/*"],
            "list_keys": [{"path": "/members", "keys": ["login"]}]
        }))
        .unwrap();
        assert_eq!(c.command, vec!["./list", "--all"]);
        assert_eq!(c.apply_command, Some(vec!["./apply".to_string()]));
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.env["PORT"], "8080");
        assert!(c.authoritative);
        assert_eq!(c.list_keys, vec![ListKey::new("*", "/members", &["login"])]);
    }

    #[test]
    fn defaults() {
        let c = Connection::parse(&json!({"command": ["x"]})).unwrap();
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(!c.authoritative);
        assert!(c.apply_command.is_none());
        assert!(c.sensitive_paths.is_empty());
    }

    #[test]
    fn numeric_timeout_is_seconds() {
        let c = Connection::parse(&json!({"command": ["x"], "timeout": 0.5})).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (connection, needle) in [
            (json!({"command": "ls -l"}), "command: expected a list"),
            (json!({"command": []}), "command: the list is empty"),
            (json!({"command": ["x"], "apply_command": [{}]}), "apply_command[0]"),
            (
                json!({"command": ["x"], "timeout": "soon"}),
                "timeout: invalid duration",
            ),
            (json!({"command": ["x"], "timeout": "0s"}), "timeout: must be greater"),
            (json!({"command": ["x"], "env": {"A": [1]}}), "env.A"),
            (
                json!({"command": ["x"], "sensitive_paths": ["password"]}),
                "sensitive_paths",
            ),
            (
                json!({"command": ["x"], "list_keys": [{"path": "/a", "keys": []}]}),
                "list_keys[0].keys",
            ),
            (
                json!({"command": ["x"], "list_keys": [{"path": "/a", "keys": ["k"], "kidn": "x"}]}),
                "kidn",
            ),
            (json!(["x"]), "expected a mapping"),
        ] {
            let err = Connection::parse(&connection).unwrap_err().to_string();
            assert!(err.contains(needle), "{connection}: {err}");
        }
    }
}
