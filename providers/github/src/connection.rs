//! The `connection:` block of a GitHub target, parsed once when the provider
//! is built so a typo fails `plumb validate`, not the first audit. Secrets
//! are only named here (`token_env`, `private_key_file`); their values are
//! read when the first request is made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_model::ProviderError;
use serde::Deserialize;
use serde_json::Value;

/// github.com's REST endpoint.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Upper bound for one HTTP request when the connection does not say.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a transient failure (5xx, connect error, timeout).
pub const DEFAULT_RETRIES: u32 = 3;

/// How plumb authenticates to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSpec {
    /// A personal access token (classic with `admin:org`, or fine-grained
    /// with organisation "Members: read/write") in this environment variable.
    Token { token_env: String },
    /// A GitHub App: a JWT signed with the private key buys an installation
    /// token, which plumb renews when less than 5 minutes are left.
    App {
        app_id: u64,
        private_key_file: PathBuf,
        /// When absent, looked up with `GET /orgs/{org}/installation`.
        installation_id: Option<u64>,
    },
}

/// The validated connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// The organisations this target audits; empty means every org file
    /// found below the target's path.
    pub orgs: Vec<String>,
    pub auth: AuthSpec,
    /// REST base URL without a trailing slash: `https://api.github.com`, or
    /// `https://ghe.example.com/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    pub request_timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    orgs: Option<Vec<String>>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    app_id: Option<u64>,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    installation_id: Option<u64>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    request_timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
}

fn config(message: impl Into<String>) -> ProviderError {
    ProviderError::Config(message.into())
}

impl Connection {
    /// Validates `connection`, naming the offending key in every error.
    /// `base` (the directory of plumb.yaml) resolves a relative
    /// `private_key_file`.
    pub fn parse(connection: &Value, base: &Path) -> Result<Connection, ProviderError> {
        if !connection.is_object() {
            return Err(config(
                "the github provider needs a mapping with `org` and `token_env` (or `app_id` and `private_key_file`)",
            ));
        }
        let raw: Raw = serde_json::from_value(connection.clone()).map_err(|e| config(e.to_string()))?;
        let mut orgs = raw.orgs.unwrap_or_default();
        if let Some(org) = raw.org {
            orgs.insert(0, org);
        }
        for org in &orgs {
            if org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(config(format!("org {org:?} is not a GitHub organisation name")));
            }
        }
        let api_url = raw.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let parsed: http::Uri = api_url
            .parse()
            .map_err(|e| config(format!("api_url {api_url:?}: {e}")))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(config(format!("api_url {api_url:?}: needs http(s)://host[/api/v3]")));
        }
        if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
            // Credentials in a URL end up in logs and error messages.
            return Err(config("api_url must not carry credentials; use token_env"));
        }
        if parsed.query().is_some() {
            return Err(config("api_url must not have a query"));
        }
        let api_url = api_url.trim_end_matches('/').to_string();
        let auth = match (raw.token_env, raw.app_id, raw.private_key_file) {
            (Some(t), None, None) if !t.is_empty() => AuthSpec::Token { token_env: t },
            (None, Some(app_id), Some(key)) if !key.is_empty() => AuthSpec::App {
                app_id,
                private_key_file: base.join(key),
                installation_id: raw.installation_id,
            },
            (Some(_), _, _) => return Err(config("use either token_env or app_id + private_key_file, not both")),
            (None, Some(_), None) => return Err(config("app_id needs private_key_file (the App's PEM key)")),
            (None, None, Some(_)) => return Err(config("private_key_file needs app_id")),
            _ => {
                return Err(config(
                    "no credentials: set token_env (a token with admin:org) or app_id and private_key_file",
                ))
            }
        };
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
        Ok(Connection {
            orgs,
            auth,
            api_url,
            request_timeout,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_and_enterprise_url() {
        let c = Connection::parse(
            &json!({"org": "acme", "token_env": "GH", "api_url": "https://ghe.example.com/api/v3/"}),
            Path::new("/etc/plumb"),
        )
        .unwrap();
        assert_eq!(c.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(c.orgs, vec!["acme"]);
        assert_eq!(c.auth, AuthSpec::Token { token_env: "GH".into() });
    }

    #[test]
    fn app_key_is_relative_to_config() {
        let c = Connection::parse(
            &json!({"org": "acme", "app_id": 12, "private_key_file": "keys/app.pem"}),
            Path::new("/etc/plumb"),
        )
        .unwrap();
        let AuthSpec::App { private_key_file, .. } = c.auth else {
            panic!()
        };
        assert_eq!(private_key_file, Path::new("/etc/plumb/keys/app.pem"));
    }

    #[test]
    fn bad_connections_name_the_key() {
        let base = Path::new(".");
        let e = Connection::parse(&json!({"org": "a", "token_env": "T", "tokn": 1}), base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokn"), "{e}");
        let e = Connection::parse(&json!({"org": "a"}), base).unwrap_err().to_string();
        assert!(e.contains("token_env"), "{e}");
        let e = Connection::parse(&json!({"org": "a", "app_id": 3}), base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("private_key_file"), "{e}");
        let e = Connection::parse(&json!({"org": "a b", "token_env": "T"}), base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("org"), "{e}");
        let e = Connection::parse(&json!({"org": "a", "token_env": "T", "api_url": "https://u:p@x"}), base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
    }
}
