//! Structural comparison of two documents: the paths at which they differ,
//! with keyed-list elements matched by key (the provider says which lists
//! are keyed), so a change inside one element names that element.

use std::collections::{HashMap, HashSet};

use plumb_model::ListKey;
use serde_json::Value;

use super::path::{key_text, Segment};

/// The paths where `desired` and `live` differ, deepest point of each
/// difference, in document order.
pub fn changed_paths(kind: &str, desired: &Value, live: &Value, keys: &[ListKey]) -> Vec<Vec<Segment>> {
    let mut out = Vec::new();
    if desired == live {
        return out;
    }
    let mut walker = Walker {
        kind,
        keys,
        path: Vec::new(),
        fields: Vec::new(),
        out: &mut out,
    };
    walker.walk(desired, live);
    out
}

/// One step of the path being walked, borrowed from the documents so that
/// equal parts cost no allocation.
#[derive(Clone)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
    Keyed(Vec<(String, String)>),
}

struct Walker<'a, 'o> {
    kind: &'a str,
    keys: &'a [ListKey],
    path: Vec<Step<'a>>,
    /// Field names only (array positions left out), for matching list keys.
    fields: Vec<&'a str>,
    out: &'o mut Vec<Vec<Segment>>,
}

impl<'a> Walker<'a, '_> {
    fn emit(&mut self) {
        let segments = self
            .path
            .iter()
            .map(|step| match step {
                Step::Field(name) => Segment::Field((*name).to_string()),
                Step::Index(i) => Segment::Index(*i),
                Step::Keyed(pairs) => Segment::Keyed(pairs.clone()),
            })
            .collect();
        self.out.push(segments);
    }

    fn emit_at(&mut self, step: Step<'a>) {
        self.path.push(step);
        self.emit();
        self.path.pop();
    }

    fn walk(&mut self, desired: &'a Value, live: &'a Value) {
        match (desired, live) {
            (Value::Object(d), Value::Object(l)) => {
                for (key, dv) in d {
                    match l.get(key) {
                        Some(lv) => {
                            if dv == lv {
                                continue;
                            }
                            self.path.push(Step::Field(key));
                            self.fields.push(key);
                            self.walk(dv, lv);
                            self.fields.pop();
                            self.path.pop();
                        }
                        None => self.emit_at(Step::Field(key)),
                    }
                }
                for key in l.keys() {
                    if !d.contains_key(key) {
                        self.emit_at(Step::Field(key));
                    }
                }
            }
            (Value::Array(d), Value::Array(l)) => {
                let key = self.keys.iter().find(|k| k.matches(self.kind, &self.fields));
                match key.and_then(|k| index_by_key(d, &k.keys).zip(index_by_key(l, &k.keys))) {
                    Some((d_index, l_index)) => {
                        let live_by_key: HashMap<&Vec<(String, String)>, usize> =
                            l_index.iter().map(|(k, i)| (k, *i)).collect();
                        let mut seen = HashSet::new();
                        for (pairs, di) in &d_index {
                            match live_by_key.get(pairs) {
                                Some(li) => {
                                    seen.insert(pairs);
                                    if d[*di] != l[*li] {
                                        self.path.push(Step::Keyed(pairs.clone()));
                                        self.walk(&d[*di], &l[*li]);
                                        self.path.pop();
                                    }
                                }
                                None => self.emit_at(Step::Keyed(pairs.clone())),
                            }
                        }
                        for (pairs, _) in &l_index {
                            if !seen.contains(pairs) {
                                self.emit_at(Step::Keyed(pairs.clone()));
                            }
                        }
                    }
                    None => {
                        for i in 0..d.len().max(l.len()) {
                            match (d.get(i), l.get(i)) {
                                (Some(dv), Some(lv)) => {
                                    if dv != lv {
                                        self.path.push(Step::Index(i));
                                        self.walk(dv, lv);
                                        self.path.pop();
                                    }
                                }
                                _ => self.emit_at(Step::Index(i)),
                            }
                        }
                    }
                }
            }
            (Value::Number(a), Value::Number(b)) => {
                // 1 and 1.0 are one number to every system plumb audits.
                let same = a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y);
                if !same {
                    self.emit();
                }
            }
            (a, b) => {
                if a != b {
                    self.emit();
                }
            }
        }
    }
}

/// The key of one element of a keyed list: its key fields and their values.
type ElementKey = Vec<(String, String)>;

/// Each element's key, in order; `None` when some element lacks a key field
/// or two elements share a key (then the list is compared by position).
fn index_by_key(items: &[Value], key_fields: &[String]) -> Option<Vec<(ElementKey, usize)>> {
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
        assert_eq!(paths(desired, live), vec!["/containers[name=b]", "/containers[name=c]"]);
    }

    #[test]
    fn unkeyed_lists_compare_by_position() {
        assert_eq!(
            paths(json!({"args": ["a", "b"]}), json!({"args": ["a", "c", "d"]})),
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

fn align_at(kind: &str, desired: &Value, live: &mut Value, keys: &[ListKey], fields: &mut Vec<String>) {
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
            let (Some(d_index), Some(l_index)) = (index_by_key(d, &key.keys), index_by_key(l, &key.keys)) else {
                return;
            };
            let position: HashMap<&Vec<(String, String)>, usize> = d_index.iter().map(|(k, i)| (k, *i)).collect();
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
        let mut live = json!({"ports": [{"name": "debug"}, {"name": "https", "port": 1}, {"name": "http"}]});
        align("svc", &desired, &mut live, &keys);
        assert_eq!(
            live,
            json!({"ports": [{"name": "http"}, {"name": "https", "port": 1}, {"name": "debug"}]})
        );
    }
}
