//! Bringing a desired manifest and a live object into one canonical form so
//! that only real drift differs.
//!
//! The live object is *projected*: it keeps the fields the desired manifest
//! sets, plus the fields some field manager owns that Git does not set (a
//! label added with `kubectl label`, a port added with `kubectl edit`, a
//! label Git removed that an earlier apply still owns) — a plain
//! desired-subset comparison would miss those. Dropped are server metadata,
//! `status`, fields the API server sets or defaults by itself (the tables in
//! [`crate::defaults`], each rule citing its source), and fields nobody owns.
//! Equal values spelled differently (quantities, int-or-string, `1` and
//! `1.0`, Secret `stringData` and `data`) are spelled the desired way on both
//! sides, so the diff shows the user's own spelling.

use serde_json::{Map, Value};

use crate::defaults;
use crate::keys;
use crate::managed::{self, Cursor};
use crate::quantity;

/// The label plumb puts on what it applies: its value is the target's name.
/// It marks objects plumb may prune; never drift in itself.
pub const MARK_LABEL: &str = "plumb.dev/target";
/// kubectl's client-side apply record. Never compared: it repeats the object
/// (Secret values in clear included) and is not part of its meaning
/// (<https://kubernetes.io/docs/tasks/manage-kubernetes-objects/declarative-config/>).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Server-written `metadata` fields, dropped from both sides always
/// (ObjectMeta in k8s.io/apimachinery pkg/apis/meta/v1/types.go: "Populated
/// by the system. Read-only.").
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Canonicalises a pair in place (either side may be absent).
pub fn normalize_pair(kind: &str, desired: Option<&mut Value>, live: Option<&mut Value>) {
    let desired = desired.map(|d| {
        canonical_desired(kind, d);
        &*d
    });
    if let Some(live) = live {
        *live = project_live(kind, desired, live, false);
    }
}

/// The desired manifest in canonical form.
pub fn canonical_desired(kind: &str, desired: &mut Value) {
    strip_always(desired);
    remove_nulls(desired);
    if kind == "Secret" {
        merge_string_data(desired);
    }
    fill_key_defaults(kind, desired, &mut Vec::new());
    remove_empty(desired);
}

/// The live object projected onto what matters for `desired` (see the
/// module doc). With `keep_unowned`, fields nobody owns are kept too (minus
/// server-set and defaulted ones): that is what import writes.
pub fn project_live(kind: &str, desired: Option<&Value>, live: &Value, keep_unowned: bool) -> Value {
    let entries = managed::entries(live);
    let cursor = Cursor::root(&entries);
    let mut stripped = live.clone();
    strip_always(&mut stripped);
    remove_nulls(&mut stripped);
    if kind == "Secret" {
        // A live Secret read back never has stringData (write-only,
        // https://kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/secret-v1/),
        // but a canned or simulated one might.
        merge_string_data(&mut stripped);
    }
    let projector = Projector {
        kind,
        name: live
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        aggregated: live.get("aggregationRule").is_some(),
        has_managed_fields: !entries.is_empty(),
    };
    let mut out = projector
        .project(&mut Vec::new(), desired, &stripped, cursor, None, keep_unowned)
        .unwrap_or_else(|| Value::Object(Map::new()));
    // Identity is always shown, owned or not.
    if let Value::Object(map) = &mut out {
        for key in ["apiVersion", "kind"] {
            if let Some(v) = live.get(key) {
                map.insert(key.to_string(), v.clone());
            }
        }
        let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            for key in ["name", "namespace"] {
                if let Some(v) = live.pointer(&format!("/metadata/{key}")) {
                    meta.insert(key.to_string(), v.clone());
                }
            }
        }
    }
    remove_empty(&mut out);
    out
}

/// Drops what is never compared, on either side: `status`, server metadata,
/// the last-applied annotation, plumb's own mark, and `creationTimestamp:
/// null` in embedded templates (written by `kubectl create --dry-run -o
/// yaml` and by client-go's serialisation of an empty metav1.Time).
pub fn strip_always(v: &mut Value) {
    let Value::Object(map) = v else { return };
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for key in SERVER_METADATA {
            meta.remove(*key);
        }
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            a.remove(LAST_APPLIED);
        }
        if let Some(Value::Object(l)) = meta.get_mut("labels") {
            l.remove(MARK_LABEL);
        }
    }
    strip_template_timestamps(v);
}

fn strip_template_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "metadata" {
                    if let Value::Object(m) = child {
                        m.remove("creationTimestamp");
                    }
                }
                strip_template_timestamps(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_template_timestamps),
        _ => {}
    }
}

/// `null` means "not set" to the API server (server-side apply removes a
/// field given as null; JSON merge patch likewise, RFC 7386).
fn remove_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, c| !c.is_null());
            map.values_mut().for_each(remove_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_nulls),
        _ => {}
    }
}

/// Empty maps and lists mean the same as absent ones: Kubernetes types
/// serialise with `omitempty`, so the server returns some as absent and
/// some (non-pointer structs such as `resources: {}`) as empty
/// (k8s.io/api core/v1/types.go; Go encoding/json `omitempty`).
pub fn remove_empty(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.values_mut().for_each(remove_empty);
            map.retain(|_, c| !is_empty_collection(c));
        }
        Value::Array(items) => items.iter_mut().for_each(remove_empty),
        _ => {}
    }
}

pub fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Secret `stringData` is write-only and "merged into the data field on
/// write, overwriting any existing values"
/// (<https://kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/secret-v1/>),
/// so it is compared as the base64 `data` it becomes.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Value::Object(map) = secret else { return };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(data) = data {
        for (key, value) in string_data {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                key,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
            );
        }
    }
}

/// Adds key fields the server defaults (port `protocol: TCP`) to keyed-list
/// elements, so elements match by key (see [`keys::KEYED_LISTS`]).
fn fill_key_defaults(kind: &str, v: &mut Value, fields: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                fields.push(key.clone());
                fill_key_defaults(kind, child, fields);
                fields.pop();
            }
        }
        Value::Array(items) => {
            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
            if let Some(list) = keys::keyed_list(kind, &f) {
                items.iter_mut().for_each(|e| keys::fill_key_defaults(list, e));
            }
            for item in items.iter_mut() {
                fill_key_defaults(kind, item, fields);
            }
        }
        _ => {}
    }
}

struct Projector<'a> {
    kind: &'a str,
    name: &'a str,
    aggregated: bool,
    has_managed_fields: bool,
}

impl Projector<'_> {
    /// `force`: keep whatever is not server-set or defaulted, owned or not
    /// (inside an element Git lacks, or for import).
    fn project(
        &self,
        fields: &mut Vec<String>,
        desired: Option<&Value>,
        live: &Value,
        own: Cursor<'_>,
        parent: Option<&Map<String, Value>>,
        force: bool,
    ) -> Option<Value> {
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        if desired.is_none() {
            let context = defaults::Context {
                kind: self.kind,
                name: self.name,
                aggregated: self.aggregated,
                parent,
            };
            if defaults::server_set(&context, &f, live) || defaults::is_default(&context, &f, live) {
                return None;
            }
        }
        match live {
            Value::Object(lm) => {
                let dm = match desired {
                    Some(Value::Object(dm)) => Some(dm),
                    Some(_) => return Some(live.clone()),
                    None => None,
                };
                let user_map = self.always_compared_map(&f);
                let mut out = Map::new();
                for (key, lv) in lm {
                    let dv = dm.and_then(|m| m.get(key));
                    fields.push(key.clone());
                    let child_force = force || (dm.is_some() && user_map);
                    if let Some(v) = self.project(fields, dv, lv, own.field(key), Some(lm), child_force) {
                        out.insert(key.clone(), v);
                    }
                    fields.pop();
                }
                if desired.is_none() && out.is_empty() {
                    return None;
                }
                Some(Value::Object(out))
            }
            Value::Array(la) => {
                let keyed = keys::keyed_list(self.kind, &f);
                match desired {
                    Some(Value::Array(da)) => {
                        let mut out = Vec::with_capacity(la.len());
                        for (i, le) in la.iter().enumerate() {
                            let de = match keyed {
                                Some(k) => da.iter().find(|de| keys::same_key(k, de, le)),
                                None => da.get(i),
                            };
                            let eo = own.element(le, i);
                            // An element Git lacks in a list Git sets is
                            // always drift: the server never adds elements
                            // to these lists by itself.
                            let v = match de {
                                Some(de) => self.project(fields, Some(de), le, eo, None, force),
                                None => self.project(fields, None, le, eo, None, true),
                            };
                            out.push(v.map(|v| with_keys(keyed, v, le)).unwrap_or_else(|| le.clone()));
                        }
                        Some(Value::Array(out))
                    }
                    Some(_) => Some(live.clone()),
                    None => {
                        if !(force || own.is_owned()) {
                            return None;
                        }
                        let mut out = Vec::new();
                        for (i, le) in la.iter().enumerate() {
                            let eo = own.element(le, i);
                            if keyed.is_some() && !(force || eo.is_owned()) {
                                continue;
                            }
                            match self.project(fields, None, le, eo, None, true) {
                                Some(v) => out.push(with_keys(keyed, v, le)),
                                None if keyed.is_none() => out.push(le.clone()),
                                None => {}
                            }
                        }
                        (!out.is_empty()).then_some(Value::Array(out))
                    }
                }
            }
            scalar => match desired {
                Some(d) if equivalent(&f, d, scalar) => Some(d.clone()),
                Some(_) => Some(scalar.clone()),
                None if force || own.is_owned() => Some(scalar.clone()),
                None => None,
            },
        }
    }

    /// Maps whose every key is user data: when Git sets the map, a key it
    /// lacks is drift even on an object without managedFields (the server
    /// adds no keys to a ConfigMap's or Secret's data).
    fn always_compared_map(&self, f: &[&str]) -> bool {
        matches!((self.kind, f), ("ConfigMap" | "Secret", ["data" | "binaryData"]))
            || (!self.has_managed_fields && matches!(f, ["spec", "selector", "matchLabels"]))
    }
}

/// A projected keyed-list element with its key fields back (a defaulted
/// key such as `protocol: TCP` is part of the element's identity).
fn with_keys(keyed: Option<&keys::KeyedList>, mut projected: Value, live: &Value) -> Value {
    if let (Some(list), Value::Object(map)) = (keyed, &mut projected) {
        for key in list.keys {
            if let Some(v) = live.get(*key) {
                map.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
    }
    projected
}

/// Equal values in different spellings: numbers by value, quantities by
/// amount (`1000m` = `1`, `1024Mi` = `1Gi`, `0.5` = `500m`; k8s.io/apimachinery
/// pkg/api/resource/quantity.go), int-or-string fields by number (`"8080"`
/// and `8080`; k8s.io/apimachinery pkg/util/intstr, whose JSON form keeps
/// either type).
fn equivalent(fields: &[&str], desired: &Value, live: &Value) -> bool {
    if desired == live {
        return true;
    }
    if let (Value::Number(a), Value::Number(b)) = (desired, live) {
        return a.as_f64() == b.as_f64();
    }
    let last = fields.last().copied().unwrap_or_default();
    if quantity::is_quantity_path(fields) {
        if let (Some(a), Some(b)) = (quantity::parse_value(desired), quantity::parse_value(live)) {
            return a == b;
        }
    }
    if defaults::INT_OR_STRING_FIELDS.contains(&last) {
        let as_int = |v: &Value| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let (Some(a), Some(b)) = (as_int(desired), as_int(live)) {
            return a == b;
        }
    }
    false
}

/// Paths where two canonical documents differ, rendered as the engine
/// renders them (`/spec/template/spec/containers[name=web]/image`, keyed
/// elements matched by key). The engine computes its own; this one serves
/// logs and tests.
pub fn diff_paths(kind: &str, desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_walk(kind, desired, live, &mut Vec::new(), &mut String::new(), &mut out);
    out
}

fn diff_walk(kind: &str, d: &Value, l: &Value, fields: &mut Vec<String>, path: &mut String, out: &mut Vec<String>) {
    if d == l {
        return;
    }
    match (d, l) {
        (Value::Object(dm), Value::Object(lm)) => {
            let mut keys: Vec<&String> = dm.keys().chain(lm.keys().filter(|k| !dm.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                match (dm.get(key), lm.get(key)) {
                    (Some(a), Some(b)) => {
                        fields.push(key.clone());
                        diff_walk(kind, a, b, fields, path, out);
                        fields.pop();
                    }
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(da), Value::Array(la)) => {
            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
            match keys::keyed_list(kind, &f) {
                Some(list) => {
                    let label = |e: &Value| {
                        let pairs: Vec<String> = list
                            .keys
                            .iter()
                            .map(|k| {
                                let v = keys::key_value(list, e, k);
                                let text = match v {
                                    Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                format!("{k}={text}")
                            })
                            .collect();
                        format!("[{}]", pairs.join(","))
                    };
                    for de in da {
                        let len = path.len();
                        path.push_str(&label(de));
                        match la.iter().find(|le| keys::same_key(list, de, le)) {
                            Some(le) => diff_walk(kind, de, le, fields, path, out),
                            None => out.push(path.clone()),
                        }
                        path.truncate(len);
                    }
                    for le in la {
                        if !da.iter().any(|de| keys::same_key(list, de, le)) {
                            out.push(format!("{path}{}", label(le)));
                        }
                    }
                }
                None => {
                    for i in 0..da.len().max(la.len()) {
                        let len = path.len();
                        path.push_str(&format!("/{i}"));
                        match (da.get(i), la.get(i)) {
                            (Some(a), Some(b)) => diff_walk(kind, a, b, fields, path, out),
                            _ => out.push(path.clone()),
                        }
                        path.truncate(len);
                    }
                }
            }
        }
        _ => out.push(if path.is_empty() { "/".into() } else { path.clone() }),
    }
}
