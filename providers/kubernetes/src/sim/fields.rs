//! Managed fields: the `fieldsV1` sets the API server keeps per field manager,
//! and the server-side-apply merge, conflict detection and removal built on
//! them.
//!
//! A field set is kept in exactly its wire form, a JSON tree whose keys are
//! `f:<field>`, `k:<json of the key fields>`, `v:<json value>` and `.` (the
//! list item itself), with `{}` for a leaf — the format documented at
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
//! and produced by sigs.k8s.io/structured-merge-diff `fieldpath/serialize.go`.
//! Keeping the wire form means a set read from `metadata.managedFields` needs
//! no conversion.
//!
//! Which lists are associative (merged by key) comes from the `+listType=map`
//! / `+listMapKey` markers in k8s.io/api `core/v1/types.go` and friends; see
//! [`list_kind`]. Custom resources are treated as if every list were atomic
//! (the simulator does not read `x-kubernetes-list-type` from CRD schemas).

use serde_json::{Map, Value};

/// A `fieldsV1` tree.
pub(crate) type FieldSet = Map<String, Value>;

/// How a list at some path merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `+listType=map`: items are identified by these key fields.
    Map(&'static [&'static str]),
    /// `+listType=set`: items are scalars identified by value.
    Set,
    /// `+listType=atomic` (the default): replaced whole.
    Atomic,
}

/// The list type of the list at `path` (field names from the object root,
/// no array positions). Sources: k8s.io/api core/v1/types.go markers —
/// `Containers`/`InitContainers`/`EphemeralContainers` (`listMapKey=name`),
/// `Container.Ports` (`listMapKey=containerPort`, `listMapKey=protocol`),
/// `ServiceSpec.Ports` (`listMapKey=port`, `listMapKey=protocol`),
/// `Env` (`name`), `VolumeMounts` (`mountPath`), `Volumes` (`name`),
/// `VolumeDevices` (`devicePath`), `ImagePullSecrets` (`name`),
/// `HostAliases` (`ip`), `TopologySpreadConstraints` (`topologyKey`,
/// `whenUnsatisfiable`), `ResourceClaims` (`name`); meta/v1 types.go
/// `OwnerReferences` (`uid`), `Finalizers` (`listType=set`); admissionregistration/v1
/// `Webhooks` (`name`); conditions everywhere (`type`).
pub(crate) fn list_kind(custom: bool, path: &[String]) -> ListKind {
    let last = path.last().map(String::as_str).unwrap_or("");
    let parent = if path.len() >= 2 {
        path[path.len() - 2].as_str()
    } else {
        ""
    };
    if path.len() == 2 && path[0] == "metadata" {
        return match last {
            "finalizers" => ListKind::Set,
            "ownerReferences" => ListKind::Map(&["uid"]),
            _ => ListKind::Atomic,
        };
    }
    if custom {
        return ListKind::Atomic;
    }
    match (parent, last) {
        (_, "containers") | (_, "initContainers") | (_, "ephemeralContainers") => ListKind::Map(&["name"]),
        ("containers", "ports") | ("initContainers", "ports") | ("ephemeralContainers", "ports") => {
            ListKind::Map(&["containerPort", "protocol"])
        }
        ("spec", "ports") => ListKind::Map(&["port", "protocol"]),
        (_, "env") => ListKind::Map(&["name"]),
        (_, "volumeMounts") => ListKind::Map(&["mountPath"]),
        (_, "volumeDevices") => ListKind::Map(&["devicePath"]),
        ("spec", "volumes") => ListKind::Map(&["name"]),
        (_, "imagePullSecrets") => ListKind::Map(&["name"]),
        (_, "hostAliases") => ListKind::Map(&["ip"]),
        (_, "topologySpreadConstraints") => ListKind::Map(&["topologyKey", "whenUnsatisfiable"]),
        ("spec", "resourceClaims") => ListKind::Map(&["name"]),
        ("", "webhooks") => ListKind::Map(&["name"]),
        (_, "conditions") => ListKind::Map(&["type"]),
        _ => ListKind::Atomic,
    }
}

/// Key fields whose absence is filled with their OpenAPI default when a key
/// is computed: structured-merge-diff honours schema defaults of list-map
/// keys (KEP-3325 follow-up, k8s.io/api `Protocol` has `+default="TCP"` on
/// ContainerPort and ServicePort).
fn key_default(field: &str) -> Option<Value> {
    match field {
        "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

/// The `k:{...}` key of a list item, keys sorted as structured-merge-diff
/// serialises them. None when the item is not an object.
pub(crate) fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let obj = item.as_object()?;
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut m = Map::new();
    for k in sorted {
        match obj.get(k).cloned().or_else(|| key_default(k)) {
            Some(v) => {
                m.insert(k.to_string(), v);
            }
            None => continue,
        }
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Fields of an object that managed-field tracking never records: the
/// fieldmanager strips them before computing sets (k8s.io/apiserver
/// `pkg/endpoints/handlers/fieldmanager/internal/stripmeta.go`).
fn stripped(path: &[String], field: &str) -> bool {
    match path.len() {
        0 => matches!(field, "apiVersion" | "kind" | "status"),
        1 if path[0] == "metadata" => matches!(
            field,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "generateName"
        ),
        _ => false,
    }
}

/// The field set of a whole object (as an applier or updater would own it).
pub(crate) fn set_of(obj: &Value, custom: bool) -> FieldSet {
    let mut path = Vec::new();
    let mut set = children(obj, &mut path, custom);
    // An emptied `f:metadata` (only a name was given) is left out, as the
    // real server does.
    if set
        .get("f:metadata")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        set.remove("f:metadata");
    }
    set
}

fn children(v: &Value, path: &mut Vec<String>, custom: bool) -> FieldSet {
    let mut out = Map::new();
    if let Value::Object(m) = v {
        for (k, child) in m {
            if stripped(path, k) || child.is_null() {
                continue;
            }
            path.push(k.clone());
            out.insert(format!("f:{k}"), Value::Object(node(child, path, custom)));
            path.pop();
        }
    }
    out
}

fn node(v: &Value, path: &mut Vec<String>, custom: bool) -> FieldSet {
    match v {
        Value::Object(_) => children(v, path, custom),
        Value::Array(items) => match list_kind(custom, path) {
            ListKind::Map(keys) => {
                let mut out = Map::new();
                for item in items {
                    if let Some(k) = item_key(item, keys) {
                        let mut n = children(item, path, custom);
                        n.insert(".".into(), Value::Object(Map::new()));
                        out.insert(k, Value::Object(n));
                    }
                }
                out
            }
            ListKind::Set => {
                let mut out = Map::new();
                for item in items {
                    out.insert(format!("v:{item}"), Value::Object(Map::new()));
                }
                out
            }
            ListKind::Atomic => Map::new(),
        },
        _ => Map::new(),
    }
}

/// Every leaf path of a set (a path ends at a node with no children).
pub(crate) fn leaves(set: &FieldSet) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk_leaves(set, &mut path, &mut out);
    out
}

fn walk_leaves(set: &FieldSet, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in set {
        path.push(k.clone());
        match v.as_object() {
            Some(m) if !m.is_empty() => walk_leaves(m, path, out),
            _ => out.push(path.clone()),
        }
        path.pop();
    }
}

/// Whether `path` is in `set` (as a leaf or an inner node).
pub(crate) fn contains(set: &FieldSet, path: &[String]) -> bool {
    let mut cur = set;
    for seg in path {
        match cur.get(seg).and_then(Value::as_object) {
            Some(m) => cur = m,
            None => return false,
        }
    }
    true
}

/// Adds `path` to `set`.
pub(crate) fn insert(set: &mut FieldSet, path: &[String]) {
    let mut cur = set;
    for seg in path {
        let entry = cur.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = match entry.as_object_mut() {
            Some(m) => m,
            None => return,
        };
    }
}

/// Removes `path` (and everything below it) from `set`, pruning emptied
/// parents so the set stays in canonical form.
pub(crate) fn remove(set: &mut FieldSet, path: &[String]) {
    fn go(cur: &mut FieldSet, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        if rest.is_empty() {
            cur.remove(first);
        } else if let Some(Value::Object(child)) = cur.get_mut(first) {
            if go(child, rest) && child.is_empty() {
                cur.remove(first);
            }
        }
        true
    }
    go(set, path);
}

/// The value an object holds at a set path, if any.
pub(crate) fn get_at<'a>(obj: &'a Value, path: &[String], custom: bool) -> Option<&'a Value> {
    let mut cur = obj;
    let mut fields: Vec<String> = Vec::new();
    for seg in path {
        if seg == "." {
            continue;
        }
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.as_object()?.get(f)?;
            fields.push(f.to_string());
        } else if seg.starts_with("k:") {
            let keys = match list_kind(custom, &fields) {
                ListKind::Map(keys) => keys,
                _ => return None,
            };
            cur = cur
                .as_array()?
                .iter()
                .find(|item| item_key(item, keys).as_deref() == Some(seg.as_str()))?;
        } else if let Some(v) = seg.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur = cur.as_array()?.iter().find(|item| **item == want)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes what an object holds at a set path (a field, a list item, a set
/// member). Missing paths are ignored.
pub(crate) fn remove_at(obj: &mut Value, path: &[String], custom: bool) {
    let path: Vec<String> = path.iter().filter(|s| s.as_str() != ".").cloned().collect();
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut fields: Vec<String> = Vec::new();
    let mut cur = obj;
    for seg in parent {
        cur = match step_mut(cur, seg, &mut fields, custom) {
            Some(c) => c,
            None => return,
        };
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if last.starts_with("k:") {
        if let (ListKind::Map(keys), Some(items)) = (list_kind(custom, &fields), cur.as_array_mut()) {
            items.retain(|item| item_key(item, keys).as_deref() != Some(last.as_str()));
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        if let (Ok(want), Some(items)) = (serde_json::from_str::<Value>(v), cur.as_array_mut()) {
            items.retain(|item| *item != want);
        }
    }
}

fn step_mut<'a>(cur: &'a mut Value, seg: &str, fields: &mut Vec<String>, custom: bool) -> Option<&'a mut Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        fields.push(f.to_string());
        return cur.as_object_mut()?.get_mut(f);
    }
    if seg.starts_with("k:") {
        let ListKind::Map(keys) = list_kind(custom, fields) else {
            return None;
        };
        return cur
            .as_array_mut()?
            .iter_mut()
            .find(|item| item_key(item, keys).as_deref() == Some(seg));
    }
    None
}

/// Merges an applied configuration into the live object: maps field by
/// field, associative lists item by key, sets by value, everything else
/// replaced (structured-merge-diff `merge/update.go` semantics).
pub(crate) fn merge(live: &mut Value, cfg: &Value, custom: bool) {
    let mut path = Vec::new();
    merge_at(live, cfg, &mut path, custom);
}

fn merge_at(live: &mut Value, cfg: &Value, path: &mut Vec<String>, custom: bool) {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                    continue;
                }
                path.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) => merge_at(lv, cv, path, custom),
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => match list_kind(custom, path) {
            ListKind::Map(keys) => {
                for item in c {
                    let key = item_key(item, keys);
                    match l.iter_mut().find(|li| key.is_some() && item_key(li, keys) == key) {
                        Some(li) => merge_at(li, item, path, custom),
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

/// Conflict paths in structured-merge-diff's `fieldpath.Path.String()`
/// form, e.g. `.spec.template.spec.containers[name="web"].image`.
pub(crate) fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// The fields an update changed: every leaf of `new` whose value differs
/// from `old` or is new, and (separately) every leaf of `old` that `new`
/// lacks. This is what the fieldmanager hands to the updating manager for
/// an Update operation (k8s.io/apiserver fieldmanager `internal/structuredmerge.go`
/// `Update` → structured-merge-diff `Updater.Update` compares old and new).
pub(crate) fn changed(old: &Value, new: &Value, custom: bool) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let new_set = set_of(new, custom);
    let old_set = set_of(old, custom);
    let mut changed = Vec::new();
    for leaf in leaves(&new_set) {
        let differs = if leaf.last().map(String::as_str) == Some(".") {
            get_at(old, &leaf, custom).is_none()
        } else {
            get_at(old, &leaf, custom) != get_at(new, &leaf, custom)
        };
        if differs {
            changed.push(leaf);
        }
    }
    let removed = leaves(&old_set)
        .into_iter()
        .filter(|l| !contains(&new_set, l))
        .collect();
    (changed, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_ports_key_with_default_protocol() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        let set = set_of(&obj, false);
        let text = Value::Object(set.clone()).to_string();
        assert!(
            text.contains(r#""k:{\"containerPort\":80,\"protocol\":\"TCP\"}""#),
            "{text}"
        );
        assert!(text.contains(r#""f:labels":{"f:x":{}}"#), "{text}");
        assert!(!text.contains("f:name\":{}}},\"f:spec"), "name is stripped: {text}");
        let image = vec![
            "f:spec".to_string(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            r#"k:{"name":"web"}"#.into(),
            "f:image".into(),
        ];
        assert!(contains(&set, &image));
        assert_eq!(get_at(&obj, &image, false), Some(&json!("nginx")));
        assert_eq!(
            path_string(&image),
            r#".spec.template.spec.containers[name="web"].image"#
        );
    }

    #[test]
    fn merge_keyed_lists_and_remove_items() {
        let mut live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        merge(
            &mut live,
            &json!({"spec": {"containers": [{"name": "b", "image": "3"}]}}),
            false,
        );
        assert_eq!(live["spec"]["containers"][1]["image"], "3");
        assert_eq!(live["spec"]["containers"][0]["image"], "1");
        let path = vec![
            "f:spec".to_string(),
            "f:containers".into(),
            r#"k:{"name":"a"}"#.into(),
            ".".into(),
        ];
        remove_at(&mut live, &path, false);
        assert_eq!(live["spec"]["containers"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn changed_sees_edits_and_removals() {
        let old = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let new = json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "data": {"k": "w"}});
        let (ch, rm) = changed(&old, &new, false);
        let mut ch: Vec<String> = ch.iter().map(|p| path_string(p)).collect();
        ch.sort();
        let rm: Vec<String> = rm.iter().map(|p| path_string(p)).collect();
        assert_eq!(ch, vec![".data.k", ".metadata.labels.c"]);
        assert_eq!(rm, vec![".metadata.labels.b"]);
    }
}
