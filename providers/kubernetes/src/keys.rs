//! Keyed lists of Kubernetes kinds: which lists have elements with an
//! identity of their own, and which fields make it. The engine uses them to
//! report `/spec/template/spec/containers[name=web]/image` instead of
//! "element 0 changed", and the normaliser uses the same table to match
//! desired and live elements.
//!
//! Source of every entry: the `x-kubernetes-list-map-keys` (server-side
//! apply) and `x-kubernetes-patch-merge-key` (strategic merge patch)
//! markers in k8s.io/api (`core/v1/types.go`, `admissionregistration/v1/
//! types.go`), as carried by the OpenAPI document and by k8s-openapi 0.29
//! (`DeepMerge` impls using `merge_strategies::list::map`, e.g.
//! `api/core/v1/pod_spec.rs`: containers by `name`, volumes by `name`).
//! Where the two markers differ the list-map keys win, because plumb applies
//! with server-side apply: container ports are `+listMapKey=containerPort`
//! `+listMapKey=protocol` (patchMergeKey `containerPort`), service ports
//! `+listMapKey=port` `+listMapKey=protocol` (patchMergeKey `port`),
//! topologySpreadConstraints `+listMapKey=topologyKey`
//! `+listMapKey=whenUnsatisfiable`.

use plumb_model::ListKey;
use serde_json::Value;

/// One keyed list: where it is (suffix of field names, as in
/// [`ListKey::path`]), its key fields, and the defaults the API server fills
/// into key fields a manifest leaves out.
#[derive(Debug, Clone, Copy)]
pub struct KeyedList {
    pub kind: &'static str,
    pub path: &'static str,
    pub keys: &'static [&'static str],
    /// `(field, default)` for key fields the server defaults.
    pub key_defaults: &'static [(&'static str, &'static str)],
}

/// `protocol` defaults to `TCP` on container ports (SetDefaults_ContainerPort
/// in k8s.io/kubernetes pkg/apis/core/v1/defaults.go) and on service ports
/// (SetDefaults_Service, same file).
const TCP: &[(&str, &str)] = &[("protocol", "TCP")];

pub const KEYED_LISTS: &[KeyedList] = &[
    KeyedList {
        kind: "*",
        path: "**/containers",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/initContainers",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/ephemeralContainers",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/containers/ports",
        keys: &["containerPort", "protocol"],
        key_defaults: TCP,
    },
    KeyedList {
        kind: "*",
        path: "**/initContainers/ports",
        keys: &["containerPort", "protocol"],
        key_defaults: TCP,
    },
    KeyedList {
        kind: "*",
        path: "**/containers/env",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/initContainers/env",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/containers/volumeMounts",
        keys: &["mountPath"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/initContainers/volumeMounts",
        keys: &["mountPath"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/containers/volumeDevices",
        keys: &["devicePath"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/containers/resources/claims",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/template/spec/volumes",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "Pod",
        path: "/spec/volumes",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/imagePullSecrets",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/hostAliases",
        keys: &["ip"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/schedulingGates",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/resourceClaims",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "*",
        path: "**/topologySpreadConstraints",
        keys: &["topologyKey", "whenUnsatisfiable"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "Service",
        path: "/spec/ports",
        keys: &["port", "protocol"],
        key_defaults: TCP,
    },
    KeyedList {
        kind: "MutatingWebhookConfiguration",
        path: "/webhooks",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "ValidatingWebhookConfiguration",
        path: "/webhooks",
        keys: &["name"],
        key_defaults: &[],
    },
    KeyedList {
        kind: "ServiceAccount",
        path: "/secrets",
        keys: &["name"],
        key_defaults: &[],
    },
];

/// The table in the engine's form.
pub fn list_keys() -> Vec<ListKey> {
    KEYED_LISTS
        .iter()
        .map(|k| ListKey::new(k.kind, k.path, k.keys))
        .collect()
}

/// The keyed list at `fields` (field names from the root, array positions
/// left out) in a document of `kind`, if it is one.
pub fn keyed_list(kind: &str, fields: &[&str]) -> Option<&'static KeyedList> {
    KEYED_LISTS
        .iter()
        .find(|k| ListKey::new(k.kind, k.path, k.keys).matches(kind, fields))
}

/// The value of key field `field` of `element`, the server default when it
/// is left out.
pub fn key_value(list: &KeyedList, element: &Value, field: &str) -> Value {
    match element.get(field) {
        Some(v) if !v.is_null() => v.clone(),
        _ => list
            .key_defaults
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, d)| Value::String((*d).to_string()))
            .unwrap_or(Value::Null),
    }
}

/// Whether two elements of `list` have the same key.
pub fn same_key(list: &KeyedList, a: &Value, b: &Value) -> bool {
    list.keys.iter().all(|k| key_value(list, a, k) == key_value(list, b, k))
}

/// Fills key fields the server would default, so the engine matches a
/// desired `{containerPort: 80}` with the live `{containerPort: 80,
/// protocol: TCP}`.
pub fn fill_key_defaults(list: &KeyedList, element: &mut Value) {
    if let Value::Object(map) = element {
        for (field, default) in list.key_defaults {
            if !map.contains_key(*field) {
                map.insert((*field).to_string(), Value::String((*default).to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol_with_tcp_default() {
        let list = keyed_list("Deployment", &["spec", "template", "spec", "containers", "ports"]).unwrap();
        assert!(same_key(
            list,
            &json!({"containerPort": 80}),
            &json!({"containerPort": 80, "protocol": "TCP"})
        ));
        assert!(!same_key(
            list,
            &json!({"containerPort": 80}),
            &json!({"containerPort": 80, "protocol": "UDP"})
        ));
    }

    #[test]
    fn service_ports_only_on_services() {
        assert!(keyed_list("Service", &["spec", "ports"]).is_some());
        assert!(keyed_list("Ingress", &["spec", "ports"]).is_none());
        assert!(keyed_list("Pod", &["spec", "volumes"]).is_some());
        assert!(keyed_list("PersistentVolume", &["spec", "volumes"]).is_none());
    }
}
