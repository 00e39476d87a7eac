//! Reading `metadata.managedFields`: which field manager owns which field
//! of a live object, and when it last wrote. This is how plumb tells a field
//! someone added by hand (`kubectl-edit`, `kubectl-label`, `kubectl-set`)
//! from one the API server filled in by itself (owned by nobody when the
//! object was created by server-side apply), and how it fills `changed_by`.
//!
//! Format: `fieldsV1` (k8s.io/apimachinery pkg/apis/meta/v1/types.go,
//! `FieldsV1`; sigs.k8s.io/structured-merge-diff fieldpath/serialize.go):
//! `f:<name>` is a field, `k:<json object>` a keyed list element (its key
//! fields), `v:<json value>` a set element, `i:<n>` an element by index, and
//! `.` the element itself; an empty object marks a leaf (or an atomic value
//! owned whole).

use serde_json::{Map, Value};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: Value,
}

/// The entries of `object`, leaving out those for the `status` subresource
/// (plumb never compares status).
pub fn entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let subresource = e.get("subresource").and_then(Value::as_str).map(str::to_string);
            if subresource.as_deref() == Some("status") {
                return None;
            }
            Some(Entry {
                manager: e
                    .get("manager")
                    .and_then(Value::as_str)
                    .unwrap_or("(unknown)")
                    .to_string(),
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                subresource,
                fields: e.get("fieldsV1").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// A position in every entry's field set at once, moved down field by
/// field and element by element alongside the live object.
#[derive(Debug, Clone, Default)]
pub struct Cursor<'a> {
    /// Entries with a (non-empty) node here.
    nodes: Vec<(usize, &'a Map<String, Value>)>,
    /// Entries that own everything below (a leaf or atomic value above).
    whole: Vec<usize>,
}

impl<'a> Cursor<'a> {
    pub fn root(entries: &'a [Entry]) -> Cursor<'a> {
        Cursor {
            nodes: entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.fields.as_object().map(|m| (i, m)))
                .collect(),
            whole: Vec::new(),
        }
    }

    /// A cursor that owns nothing (objects without managedFields).
    pub fn none() -> Cursor<'a> {
        Cursor::default()
    }

    fn step(&self, pick: impl Fn(&'a Map<String, Value>) -> Option<&'a Value>) -> Cursor<'a> {
        let mut next = Cursor {
            nodes: Vec::new(),
            whole: self.whole.clone(),
        };
        for (i, node) in &self.nodes {
            if let Some(Value::Object(child)) = pick(node) {
                // `{".": {}}` alone still means the element is owned.
                if child.is_empty() {
                    next.whole.push(*i);
                } else {
                    next.nodes.push((*i, child));
                }
            }
        }
        next
    }

    /// Down into field `name`.
    pub fn field(&self, name: &str) -> Cursor<'a> {
        let key = format!("f:{name}");
        self.step(|node| node.get(&key))
    }

    /// Down into the list element `element` (at `index`).
    pub fn element(&self, element: &Value, index: usize) -> Cursor<'a> {
        let by_index = format!("i:{index}");
        self.step(|node| {
            node.iter()
                .find(|(k, _)| element_matches(k, element) || **k == by_index)
                .map(|(_, v)| v)
        })
    }

    /// Whether any manager owns this position (or everything above it).
    pub fn is_owned(&self) -> bool {
        !self.whole.is_empty() || !self.nodes.is_empty()
    }

    /// Entries owning this position, the ones with a node here first.
    pub fn owners(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.nodes.iter().map(|(i, _)| *i).collect();
        for i in &self.whole {
            if !all.contains(i) {
                all.push(*i);
            }
        }
        all
    }
}

/// Whether the field-set key `key` (`k:{...}` or `v:...`) names `element`.
fn element_matches(key: &str, element: &Value) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        return !fields.is_empty()
            && fields
                .iter()
                .all(|(f, v)| element.get(f).is_some_and(|e| same_scalar(e, v)));
    }
    if let Some(json) = key.strip_prefix("v:") {
        return serde_json::from_str::<Value>(json).is_ok_and(|v| same_scalar(&v, element));
    }
    false
}

/// Equal values, numbers compared by value (`80` and `80.0`).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Apply", "time": "2025-01-01T00:00:00Z", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:ports": {
                        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2025-02-01T00:00:00Z", "fieldsV1": {
                "f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {"f:image": {}, "f:ports": {
                        "k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {"f:replicas": {}}}}
        ]}})
    }

    #[test]
    fn status_entries_are_left_out() {
        let o = object();
        let e = entries(&o);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].manager, "kubectl-edit");
    }

    #[test]
    fn cursor_finds_owner_of_keyed_elements() {
        let o = object();
        let e = entries(&o);
        let c = Cursor::root(&e)
            .field("spec")
            .field("template")
            .field("spec")
            .field("containers");
        let web = c.element(&json!({"name": "web", "image": "x"}), 0);
        assert_eq!(web.field("image").owners(), vec![1]);
        assert_eq!(web.field("name").owners(), vec![0]);
        let ports = web.field("ports");
        let added = ports.element(&json!({"containerPort": 9090, "protocol": "TCP"}), 1);
        assert_eq!(added.owners(), vec![1]);
        assert!(!web.field("terminationMessagePath").is_owned());
        let label = Cursor::root(&e).field("metadata").field("labels").field("app");
        assert_eq!(label.owners(), vec![0]);
    }
}
