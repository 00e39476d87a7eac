//! Providers by name: the one place that knows which provider crates exist,
//! the way Vector's components register. Config picks a provider by the
//! string in `targets[].provider`; adding a provider adds one line here and
//! touches no other provider.

use std::collections::BTreeMap;
use std::path::Path;

use plumb_model::{Provider, ProviderError};

/// Builds a provider from a target's `connection` value, rejecting keys the
/// provider does not know. The path is the config file's directory, against
/// which relative paths in `connection` are resolved.
pub type Factory = fn(&serde_json::Value, &Path) -> Result<Box<dyn Provider>, ProviderError>;

#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Factory>,
}

impl Registry {
    /// Every provider compiled into this binary.
    pub fn builtin() -> Registry {
        let mut registry = Registry::empty();
        registry.register(plumb_exec::NAME, |c, base| Ok(Box::new(plumb_exec::build(c, base)?)));
        registry.register(plumb_kubernetes::NAME, |c, base| {
            Ok(Box::new(plumb_kubernetes::build(c, base)?))
        });
        registry.register(plumb_prometheus::NAME, |c, base| {
            Ok(Box::new(plumb_prometheus::build(c, base)?))
        });
        registry.register(plumb_grafana::NAME, |c, base| {
            Ok(Box::new(plumb_grafana::build(c, base)?))
        });
        registry.register(plumb_github::NAME, |c, base| {
            Ok(Box::new(plumb_github::build(c, base)?))
        });
        registry
    }

    pub fn empty() -> Registry {
        Registry {
            factories: BTreeMap::new(),
        }
    }

    /// Adds or replaces a provider (tests register their own).
    pub fn register(&mut self, name: &'static str, factory: Factory) {
        self.factories.insert(name, factory);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    pub fn build(
        &self,
        name: &str,
        connection: &serde_json::Value,
        base: &Path,
    ) -> Result<Box<dyn Provider>, ProviderError> {
        let factory = self.factories.get(name).ok_or_else(|| {
            ProviderError::Config(format!(
                "unknown provider {name:?} (this build knows: {})",
                self.names().join(", ")
            ))
        })?;
        factory(connection, base)
    }

    pub fn knows(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_provider_names_the_known_ones() {
        let err = Registry::builtin()
            .build("kubernets", &serde_json::Value::Null, Path::new("."))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown provider \"kubernets\""), "{err}");
        assert!(err.contains("exec"), "{err}");
    }
}
