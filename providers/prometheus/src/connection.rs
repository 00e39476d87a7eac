//! The `connection:` block of a prometheus target, parsed once when the
//! provider is built so a typo fails `plumb validate`, not the first audit.
//!
//! Exactly one backend: `url` (a Prometheus server, optionally with the
//! `rules_dir` that reconcile writes) or `ruler_url` (a Mimir, Cortex or
//! Loki ruler, chosen by `ruler_flavour`, optionally with `tenant`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_model::ProviderError;
use serde::Deserialize;
use serde_json::Value;

/// Which ruler API `ruler_url` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulerFlavour {
    /// Mimir: `<prefix>/config/v1/rules`, prefix `/prometheus`
    /// (<https://grafana.com/docs/mimir/latest/references/http-api/#ruler>).
    Mimir,
    /// Cortex: the same API under `/api/prom`
    /// (<https://cortexmetrics.io/docs/api/#ruler>).
    Cortex,
    /// Loki: `/loki/api/v1/rules`, LogQL expressions, rule state at
    /// `/prometheus/api/v1/rules`
    /// (<https://grafana.com/docs/loki/latest/reference/loki-http-api/#ruler>).
    Loki,
}

impl RulerFlavour {
    /// The rule language its groups are read in.
    pub fn dialect(self) -> crate::rules::Dialect {
        match self {
            RulerFlavour::Mimir | RulerFlavour::Cortex => crate::rules::Dialect::Mimir,
            RulerFlavour::Loki => crate::rules::Dialect::Loki,
        }
    }
}

/// Which live system a target talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Prometheus {
        url: String,
        /// Where reconcile writes one rule file per namespace; Prometheus's
        /// `rule_files` must include `<rules_dir>/*`.
        rules_dir: Option<PathBuf>,
    },
    Ruler {
        url: String,
        /// Sent as `X-Scope-OrgID`.
        tenant: Option<String>,
        flavour: RulerFlavour,
        /// Path of the configuration API: `<prefix>/config/v1/rules` for
        /// Mimir (`/prometheus`) and Cortex (`/api/prom`),
        /// `/loki/api/v1/rules` for Loki.
        config_path: String,
        /// Path of the Prometheus-compatible rule state.
        state_path: String,
    },
}

/// The validated connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub backend: Backend,
    /// Upper bound for one HTTP request (the core's `ctx.timeout` caps it).
    pub timeout: Duration,
    /// How many times a transient failure is retried.
    pub retries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    rules_dir: Option<PathBuf>,
    #[serde(default)]
    ruler_url: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    ruler_prefix: Option<String>,
    #[serde(default)]
    ruler_flavour: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
}

fn config(message: impl Into<String>) -> ProviderError {
    ProviderError::Config(message.into())
}

fn check_url(key: &str, url: &str) -> Result<String, ProviderError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| config(format!("{key}: invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(config(format!(
            "{key}: expected an http:// or https:// URL, got {url:?}"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(config(format!(
            "{key}: credentials in the URL are not allowed (they would show in errors and logs)"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl Connection {
    /// Validates `connection`; `base` is the directory of `plumb.yaml`, for
    /// a relative `rules_dir`.
    pub fn parse(connection: &Value, base: &Path) -> Result<Connection, ProviderError> {
        let raw: Raw = match connection {
            Value::Object(_) => serde_json::from_value(connection.clone()).map_err(|e| config(e.to_string()))?,
            Value::Null => {
                return Err(config(
                    "the prometheus provider needs `url` (a Prometheus server) or `ruler_url`",
                ))
            }
            _ => return Err(config("expected a mapping with `url` or `ruler_url`")),
        };
        let timeout = match &raw.timeout {
            None => Duration::from_secs(30),
            Some(t) => {
                humantime::parse_duration(t).map_err(|e| config(format!("timeout: invalid duration {t:?}: {e}")))?
            }
        };
        if timeout.is_zero() {
            return Err(config("timeout: must be greater than zero"));
        }
        let backend = match (raw.url, raw.ruler_url) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "set either `url` (Prometheus) or `ruler_url` (a ruler), not both",
                ))
            }
            (None, None) => {
                return Err(config(
                    "the prometheus provider needs `url` (a Prometheus server) or `ruler_url`",
                ))
            }
            (Some(url), None) => {
                if raw.tenant.is_some() || raw.ruler_prefix.is_some() || raw.ruler_flavour.is_some() {
                    return Err(config(
                        "`tenant`, `ruler_prefix` and `ruler_flavour` apply to `ruler_url` only",
                    ));
                }
                Backend::Prometheus {
                    url: check_url("url", &url)?,
                    rules_dir: raw.rules_dir.map(|d| if d.is_relative() { base.join(d) } else { d }),
                }
            }
            (None, Some(url)) => {
                if raw.rules_dir.is_some() {
                    return Err(config("`rules_dir` applies to `url` (a Prometheus server) only"));
                }
                let flavour = match raw.ruler_flavour.as_deref() {
                    None | Some("mimir") => RulerFlavour::Mimir,
                    Some("cortex") => RulerFlavour::Cortex,
                    Some("loki") => RulerFlavour::Loki,
                    Some(other) => {
                        return Err(config(format!(
                            "ruler_flavour: expected mimir, cortex or loki, got {other:?}"
                        )))
                    }
                };
                let default_prefix = match flavour {
                    RulerFlavour::Mimir => "/prometheus",
                    RulerFlavour::Cortex => "/api/prom",
                    RulerFlavour::Loki => {
                        if raw.ruler_prefix.is_some() {
                            return Err(config(
                                "ruler_prefix: Loki's ruler paths are fixed (/loki/api/v1/rules); \
                                 ruler_prefix applies to mimir and cortex only",
                            ));
                        }
                        ""
                    }
                };
                let prefix = raw.ruler_prefix.unwrap_or_else(|| default_prefix.into());
                if !(prefix.is_empty() || prefix.starts_with('/')) {
                    return Err(config(format!("ruler_prefix: must start with `/`, got {prefix:?}")));
                }
                let prefix = prefix.trim_end_matches('/');
                let (config_path, state_path) = match flavour {
                    RulerFlavour::Loki => ("/loki/api/v1/rules".to_string(), "/prometheus/api/v1/rules".to_string()),
                    _ => (format!("{prefix}/config/v1/rules"), format!("{prefix}/api/v1/rules")),
                };
                if raw
                    .tenant
                    .as_deref()
                    .is_some_and(|t| t.is_empty() || t.contains(['\r', '\n']))
                {
                    return Err(config("tenant: must be a non-empty single-line string"));
                }
                Backend::Ruler {
                    url: check_url("ruler_url", &url)?,
                    tenant: raw.tenant,
                    flavour,
                    config_path,
                    state_path,
                }
            }
        };
        Ok(Connection {
            backend,
            timeout,
            retries: raw.retries.unwrap_or(3).min(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prometheus_with_relative_rules_dir() {
        let c = Connection::parse(
            &json!({"url": "http://127.0.0.1:9090/", "rules_dir": "rules"}),
            Path::new("/etc/plumb"),
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Prometheus {
                url: "http://127.0.0.1:9090".into(),
                rules_dir: Some(PathBuf::from("/etc/plumb/rules"))
            }
        );
    }

    #[test]
    fn ruler_defaults_to_mimir_prefix() {
        let c = Connection::parse(&json!({"ruler_url": "http://m:8080", "tenant": "t1"}), Path::new(".")).unwrap();
        assert_eq!(
            c.backend,
            Backend::Ruler {
                url: "http://m:8080".into(),
                tenant: Some("t1".into()),
                flavour: RulerFlavour::Mimir,
                config_path: "/prometheus/config/v1/rules".into(),
                state_path: "/prometheus/api/v1/rules".into(),
            }
        );
    }

    #[test]
    fn flavours_choose_the_paths() {
        let paths = |c: Value| match Connection::parse(&c, Path::new(".")).unwrap().backend {
            Backend::Ruler {
                flavour,
                config_path,
                state_path,
                ..
            } => (flavour, config_path, state_path),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            paths(json!({"ruler_url": "http://l:3100", "ruler_flavour": "loki"})),
            (
                RulerFlavour::Loki,
                "/loki/api/v1/rules".into(),
                "/prometheus/api/v1/rules".into()
            )
        );
        assert_eq!(
            paths(json!({"ruler_url": "http://c", "ruler_flavour": "cortex"})),
            (
                RulerFlavour::Cortex,
                "/api/prom/config/v1/rules".into(),
                "/api/prom/api/v1/rules".into()
            )
        );
        assert_eq!(
            paths(json!({"ruler_url": "http://m", "ruler_prefix": "/mimir/"})).1,
            "/mimir/config/v1/rules"
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        for (c, needle) in [
            (json!({"url": "http://a", "ruler_url": "http://b"}), "not both"),
            (json!({}), "needs `url`"),
            (json!({"url": "http://a", "rules_dri": "x"}), "rules_dri"),
            (json!({"url": "ftp://a"}), "url: expected an http"),
            (json!({"url": "http://u:p@a"}), "credentials"),
            (json!({"url": "http://a", "tenant": "x"}), "apply to `ruler_url` only"),
            (
                json!({"url": "http://a", "ruler_flavour": "loki"}),
                "apply to `ruler_url` only",
            ),
            (
                json!({"ruler_url": "http://a", "ruler_flavour": "thanos"}),
                "ruler_flavour: expected",
            ),
            (
                json!({"ruler_url": "http://a", "ruler_flavour": "loki", "ruler_prefix": "/x"}),
                "Loki's ruler paths are fixed",
            ),
            (json!({"ruler_url": "http://a", "rules_dir": "x"}), "rules_dir"),
            (json!({"url": "http://a", "timeout": "soon"}), "timeout"),
            (json!(["x"]), "expected a mapping"),
        ] {
            let err = Connection::parse(&c, Path::new(".")).unwrap_err().to_string();
            assert!(err.contains(needle), "{c}: {err}");
            assert!(err.starts_with("connection:"), "{err}");
        }
    }
}
