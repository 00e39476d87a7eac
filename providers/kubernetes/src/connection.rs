//! The `connection:` block of a kubernetes target, parsed when the provider
//! is built so that a typo fails `plumb validate`, not the first audit.

use std::path::{Path, PathBuf};

use plumb_model::ProviderError;
use serde::Deserialize;
use serde_json::Value;

/// The validated connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// Kubeconfig file (relative paths from the config file's directory);
    /// without it `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig; its current context when unset.
    pub context: Option<String>,
    /// Namespace for namespaced objects that name none (`default`).
    pub namespace: String,
    /// Namespaces to audit for unmanaged objects; those the desired objects
    /// use when unset.
    pub namespaces: Vec<String>,
    /// Use the pod's service account (`/var/run/secrets/kubernetes.io/serviceaccount`).
    pub in_cluster: bool,
    /// Kinds `plumb import` reads (`apps/v1/Deployment`, `v1/ConfigMap`);
    /// a list of common workload kinds when unset.
    pub import_kinds: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    in_cluster: Option<bool>,
    #[serde(default)]
    import_kinds: Option<Vec<String>>,
}

impl Connection {
    /// Validates `connection`; `base` resolves a relative kubeconfig path.
    pub fn parse(connection: &Value, base: &Path) -> Result<Connection, ProviderError> {
        let raw: Raw = match connection {
            Value::Null => Raw {
                kubeconfig: None,
                context: None,
                namespace: None,
                namespaces: None,
                in_cluster: None,
                import_kinds: None,
            },
            other => {
                serde_json::from_value(other.clone()).map_err(|e| ProviderError::Config(format!("kubernetes: {e}")))?
            }
        };
        let in_cluster = raw.in_cluster.unwrap_or(false);
        if in_cluster && (raw.kubeconfig.is_some() || raw.context.is_some()) {
            return Err(ProviderError::Config(
                "kubernetes: in_cluster: true cannot be combined with kubeconfig or context".into(),
            ));
        }
        let namespace = raw.namespace.unwrap_or_else(|| "default".to_string());
        for ns in std::iter::once(&namespace).chain(raw.namespaces.iter().flatten()) {
            if !valid_dns_label(ns) {
                return Err(ProviderError::Config(format!(
                    "kubernetes: {ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
                )));
            }
        }
        Ok(Connection {
            kubeconfig: raw.kubeconfig.map(|p| if p.is_relative() { base.join(p) } else { p }),
            context: raw.context,
            namespace,
            namespaces: raw.namespaces.unwrap_or_default(),
            in_cluster,
            import_kinds: raw.import_kinds.unwrap_or_default(),
        })
    }
}

/// RFC 1123 label, the rule for namespace names
/// (k8s.io/apimachinery pkg/util/validation IsDNS1123Label).
fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_parsed_and_paths_resolved() {
        let c = Connection::parse(
            &json!({"kubeconfig": "kube/config", "context": "prod", "namespace": "shop", "namespaces": ["a", "b"]}),
            Path::new("/etc/plumb"),
        )
        .unwrap();
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/etc/plumb/kube/config")));
        assert_eq!(c.context.as_deref(), Some("prod"));
        assert_eq!(c.namespace, "shop");
        assert_eq!(c.namespaces, vec!["a", "b"]);
    }

    #[test]
    fn defaults_to_default_namespace() {
        let c = Connection::parse(&json!({}), Path::new(".")).unwrap();
        assert_eq!(c.namespace, "default");
        assert!(c.kubeconfig.is_none());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Connection::parse(&json!({"kubconfig": "x"}), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubconfig"), "{err}");
    }

    #[test]
    fn bad_namespace_and_conflicting_auth_are_refused() {
        assert!(Connection::parse(&json!({"namespace": "Shop"}), Path::new(".")).is_err());
        assert!(Connection::parse(&json!({"in_cluster": true, "context": "x"}), Path::new(".")).is_err());
    }
}
