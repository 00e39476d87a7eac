//! The `connection:` block of a Grafana target, parsed once when the
//! provider is built so a typo fails `plumb validate`, not the first audit.
//! Secrets are only named here (`*_env`); their values are read when a
//! request is made.

use std::time::Duration;

use plumb_model::ProviderError;
use serde::Deserialize;
use serde_json::Value;

/// Dashboards fetched at once when the connection does not say
/// (the default).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Upper bound for one HTTP request when the connection does not say.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a transient failure (5xx, connect error, timeout, 429).
pub const DEFAULT_RETRIES: u32 = 3;
/// The `/apis` namespace of organisation 1 on a self-hosted Grafana
/// ("Default organization (org 1): default"; other organisations are
/// `org-<id>`, Grafana Cloud stacks `stacks-<id>`:
/// https://grafana.com/docs/grafana/latest/developer-resources/api-reference/http-api/apis/).
pub const DEFAULT_NAMESPACE: &str = "default";

/// How plumb authenticates to Grafana.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSpec {
    /// A service-account token in this environment variable (Bearer).
    Token { token_env: String },
    /// Basic auth; both values from environment variables.
    Basic { username_env: String, password_env: String },
}

/// The validated connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Base URL, with any sub-path, always ending in `/`.
    pub url: reqwest::Url,
    pub auth: AuthSpec,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub retries: u32,
    /// Namespace of the `/apis` endpoints (the organisation or stack).
    pub namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    username_env: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    request_timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    namespace: Option<String>,
}

fn config(message: impl Into<String>) -> ProviderError {
    ProviderError::Config(message.into())
}

impl Connection {
    /// Validates `connection`, naming the offending key in every error.
    pub fn parse(connection: &Value) -> Result<Connection, ProviderError> {
        if !connection.is_object() {
            return Err(config(
                "the grafana provider needs a mapping with `url` and `token_env` (or `username_env` and `password_env`)",
            ));
        }
        let raw: Raw = serde_json::from_value(connection.clone()).map_err(|e| config(e.to_string()))?;
        let mut url = reqwest::Url::parse(&raw.url).map_err(|e| config(format!("url {:?}: {e}", raw.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config(format!("url {:?}: only http and https are supported", raw.url)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials in a URL end up in logs and error messages.
            return Err(config(
                "url must not carry credentials; use token_env, or username_env and password_env",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(config("url must not have a query or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let auth = match (raw.token_env, raw.username_env, raw.password_env) {
            (Some(t), None, None) if !t.is_empty() => AuthSpec::Token { token_env: t },
            (None, Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => AuthSpec::Basic {
                username_env: u,
                password_env: p,
            },
            (Some(_), _, _) => return Err(config("use either token_env or username_env + password_env, not both")),
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(config("basic auth needs both username_env and password_env"))
            }
            _ => {
                return Err(config(
                    "no credentials: set token_env (a service-account token) or username_env and password_env",
                ))
            }
        };
        let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err(config(format!(
                "concurrency must be between 1 and 64, not {concurrency}"
            )));
        }
        let request_timeout = match raw.request_timeout {
            None => DEFAULT_REQUEST_TIMEOUT,
            Some(t) => humantime::parse_duration(&t)
                .map_err(|e| config(format!("request_timeout {t:?}: {e} (e.g. \"30s\")")))?,
        };
        if request_timeout.is_zero() {
            return Err(config("request_timeout must be more than 0"));
        }
        let retries = raw.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > 10 {
            return Err(config(format!("retries must be at most 10, not {retries}")));
        }
        let namespace = raw.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        // A Kubernetes namespace is a DNS label (RFC 1123): it goes into
        // the request path as it is.
        let label_ok = !namespace.is_empty()
            && namespace.len() <= 63
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !label_ok {
            return Err(config(format!(
                "namespace {namespace:?} is not a namespace name (lower-case letters, digits and '-': default, org-2, stacks-1234)"
            )));
        }
        Ok(Connection {
            url,
            auth,
            concurrency,
            request_timeout,
            retries,
            namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sub_path_keeps_and_gains_a_slash() {
        let c = Connection::parse(&json!({"url": "https://ops.example.com/grafana", "token_env": "T"})).unwrap();
        assert_eq!(c.url.as_str(), "https://ops.example.com/grafana/");
        assert_eq!(c.concurrency, 8);
    }

    #[test]
    fn unknown_keys_and_bad_auth_are_named() {
        let e = Connection::parse(&json!({"url": "http://x", "token_env": "T", "tokn": 1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokn"), "{e}");
        let e = Connection::parse(&json!({"url": "http://x", "username_env": "U"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password_env"), "{e}");
        let e = Connection::parse(&json!({"url": "http://x"})).unwrap_err().to_string();
        assert!(e.contains("token_env"), "{e}");
        let e = Connection::parse(&json!({"url": "http://u:p@x", "token_env": "T"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
        let e = Connection::parse(&json!({"url": "http://x", "token_env": "T", "concurrency": 0}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("concurrency"), "{e}");
        let e = Connection::parse(&json!({"url": "http://x", "token_env": "T", "namespace": "../x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace"), "{e}");
    }

    #[test]
    fn namespace_defaults_to_org_one() {
        let c = Connection::parse(&json!({"url": "http://x", "token_env": "T"})).unwrap();
        assert_eq!(c.namespace, "default");
        let c = Connection::parse(&json!({"url": "http://x", "token_env": "T", "namespace": "stacks-1234"})).unwrap();
        assert_eq!(c.namespace, "stacks-1234");
    }
}
