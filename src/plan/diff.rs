//! Structural comparison of two documents: the paths at which they differ,
//! with keyed-list elements matched by key (the provider says which lists
//! are keyed), so a change inside one element names that element.

use std::collections::{HashMap, HashSet};

use plumb_model::ListKey;
use serde_json::Value;

use super::path::{key_text, Segment};

/// The paths where `desired` and `live` differ, deepest point of each
/// difference, in document order.
pub fn changed_paths(
    kind: &str,
    desired: &Value,
    live: &Value,
    keys: &[ListKey],
) -> Vec<Vec<Segment>> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut fields = Vec::new();
    walk(kind, desired, live, keys, &mut path, &mut fields, &mut out);
    out
}

fn walk<'a>(
    kind: &str,
    desired: &'a Value,
    live: &'a Value,
    keys: &[ListKey],
    path: &mut Vec<Segment>,
    fields: &mut Vec<&'a str>,
    out: &mut Vec<Vec<Segment>>,
) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (key, dv) in d {
                path.push(Segment::Field(key.clone()));
                match l.get(key) {
                    Some(lv) => {
                        fields.push(key.as_str());
                        walk(kind, dv, lv, keys, path, fields, out);
                        fields.pop();
                    }
                    None => out.push(path.clone()),
                }
                path.pop();
            }
            for key in l.keys() {
                if !d.contains_key(key) {
                    path.push(Segment::Field(key.clone()));
                    out.push(path.clone());
                    path.pop();
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            let key = keys.iter().find(|k| k.matches(kind, fields));
            match key.and_then(|k| index_by_key(d, &k.keys).zip(index_by_key(l, &k.keys))) {
                Some((d_index, l_index)) => {
                    let live_by_key: HashMap<&Vec<(String, String)>, usize> =
                        l_index.iter().map(|(k, i)| (k, *i)).collect();
                    let mut seen = HashSet::new();
                    for (pairs, di) in &d_index {
                        path.push(Segment::Keyed(pairs.clone()));
                        match live_by_key.get(pairs) {
                            Some(li) => {
                                seen.insert(pairs);
                                walk(kind, &d[*di], &l[*li], keys, path, fields, out);
                            }
                            None => out.push(path.clone()),
                        }
                        path.pop();
                    }
                    for (pairs, _) in &l_index {
                        if !seen.contains(pairs) {
                            path.push(Segment::Keyed(pairs.clone()));
                            out.push(path.clone());
                            path.pop();
                        }
                    }
                }
                None => {
                    for i in 0..d.len().max(l.len()) {
                        path.push(Segment::Index(i));
                        match (d.get(i), l.get(i)) {
                            (Some(dv), Some(lv)) => walk(kind, dv, lv, keys, path, fields, out),
                            _ => out.push(path.clone()),
                        }
                        path.pop();
                    }
                }
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            // 1 and 1.0 are one number to every system plumb audits.
            let same = a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y);
            if !same {
                out.push(path.clone());
            }
        }
        (a, b) => {
            if a != b {
                out.push(path.clone());
            }
        }
    }
}

/// Each element's key, in order; `None` when some element lacks a key field
/// or two elements share a key (then the list is compared by position).
fn index_by_key(
    items: &[Value],
    key_fields: &[String],
) -> Option<Vec<(Vec<(String, String)>, usize)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut pairs = Vec::with_capacity(key_fields.len());
        for field in key_fields {
            pairs.push((field.clone(), key_text(item.get(field)?)?));
        }
        if !seen.insert(pairs.clone()) {
            return None;
        }
        out.push((pairs, i));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::path::render;
    use super::*;
    use serde_json::json;

    fn keys() -> Vec<ListKey> {
        vec![
            ListKey::new("*", "**/containers", &["name"]),
            ListKey::new("*", "**/containers/ports", &["containerPort", "protocol"]),
        ]
    }

    fn paths(desired: Value, live: Value) -> Vec<String> {
        changed_paths("Deployment", &desired, &live, &keys())
            .iter()
            .map(|p| render(p))
            .collect()
    }

    #[test]
    fn equal_documents_have_no_paths() {
        let doc = json!({"a": [1, {"b": null}], "c": "x"});
        assert!(paths(doc.clone(), doc).is_empty());
    }

    #[test]
    fn keyed_list_change_names_the_element() {
        let desired = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "side", "image": "s:1"},
            {"name": "web", "image": "web:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:2", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        assert_eq!(
            paths(desired, live),
            vec![
                "/spec/template/spec/containers[name=web]/image",
                "/spec/template/spec/containers[name=web]/ports[containerPort=80,protocol=TCP]/name",
            ]
        );
    }

    #[test]
    fn added_and_removed_keyed_elements() {
        let desired = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let live = json!({"containers": [{"name": "a"}, {"name": "c"}]});
        assert_eq!(
            paths(desired, live),
            vec!["/containers[name=b]", "/containers[name=c]"]
        );
    }

    #[test]
    fn unkeyed_lists_compare_by_position() {
        assert_eq!(
            paths(
                json!({"args": ["a", "b"]}),
                json!({"args": ["a", "c", "d"]})
            ),
            vec!["/args/1", "/args/2"]
        );
    }

    #[test]
    fn keyed_list_with_duplicate_keys_falls_back_to_position() {
        let desired = json!({"containers": [{"name": "a", "x": 1}, {"name": "a", "x": 2}]});
        let live = json!({"containers": [{"name": "a", "x": 1}, {"name": "a", "x": 3}]});
        assert_eq!(paths(desired, live), vec!["/containers/1/x"]);
    }

    #[test]
    fn keys_on_either_side_only_and_integer_float_equality() {
        assert_eq!(
            paths(json!({"a": 1, "b": 2.0}), json!({"b": 2, "c": 3})),
            vec!["/a", "/c"]
        );
    }

    #[test]
    fn type_change_is_a_change_at_that_path() {
        assert_eq!(paths(json!({"a": {"b": 1}}), json!({"a": [1]})), vec!["/a"]);
    }
}

/// Puts the elements of `live`'s keyed lists in the order `desired` has
/// them, so the rendered diff shows what changed inside an element rather
/// than a move (order within a keyed list is not drift).
pub fn align(kind: &str, desired: &Value, live: &mut Value, keys: &[ListKey]) {
    let mut fields = Vec::new();
    align_at(kind, desired, live, keys, &mut fields);
}

fn align_at(
    kind: &str,
    desired: &Value,
    live: &mut Value,
    keys: &[ListKey],
    fields: &mut Vec<String>,
) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (key, dv) in d {
                if let Some(lv) = l.get_mut(key) {
                    fields.push(key.clone());
                    align_at(kind, dv, lv, keys, fields);
                    fields.pop();
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            let Some(key) = keys.iter().find(|k| k.matches(kind, &names)) else {
                return;
            };
            let (Some(d_index), Some(l_index)) =
                (index_by_key(d, &key.keys), index_by_key(l, &key.keys))
            else {
                return;
            };
            let position: HashMap<&Vec<(String, String)>, usize> =
                d_index.iter().map(|(k, i)| (k, *i)).collect();
            let mut order: Vec<(usize, usize)> = l_index
                .iter()
                .map(|(k, li)| (position.get(k).copied().unwrap_or(usize::MAX), *li))
                .collect();
            order.sort();
            let mut taken: Vec<Option<Value>> = std::mem::take(l).into_iter().map(Some).collect();
            for (di, li) in order {
                if let Some(mut item) = taken[li].take() {
                    if di != usize::MAX {
                        align_at(kind, &d[di], &mut item, keys, fields);
                    }
                    l.push(item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod align_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_keyed_elements_follow_desired_order_extras_last() {
        let keys = vec![ListKey::new("*", "**/ports", &["name"])];
        let desired = json!({"ports": [{"name": "http"}, {"name": "https"}]});
        let mut live =
            json!({"ports": [{"name": "debug"}, {"name": "https", "port": 1}, {"name": "http"}]});
        align("svc", &desired, &mut live, &keys);
        assert_eq!(
            live,
            json!({"ports": [{"name": "http"}, {"name": "https", "port": 1}, {"name": "debug"}]})
        );
    }
}
