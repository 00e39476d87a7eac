//! Strategic merge patch for the keyed lists of built-in kinds
//! (<https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/>,
//! k8s.io/apimachinery `pkg/util/strategicpatch/patch.go`): maps merge,
//! `null` deletes, lists with a `patchMergeKey` merge item by key (the same
//! lists and keys as managed fields, see `fields::list_kind`), other lists
//! are replaced. Directives honoured: `$patch: delete|replace` on list
//! items and maps, `$deleteFromPrimitiveList/<field>`; `$setElementOrder/`
//! and `$retainKeys` are accepted and ignored (order is not simulated).

use serde_json::Value;

use super::fields::{item_key, list_kind, ListKind};

pub(crate) fn strategic(target: &mut Value, patch: &Value, custom: bool) {
    let mut path = Vec::new();
    merge(target, patch, &mut path, custom);
}

fn merge(target: &mut Value, patch: &Value, path: &mut Vec<String>, custom: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        if let Some(m) = clean.as_object_mut() {
            m.remove("$patch");
        }
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Some(t) = target.as_object_mut() else { return };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (t.get_mut(field), v.as_array()) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => match list_kind(custom, path) {
                ListKind::Map(keys) => {
                    for item in items {
                        let key = item_key(item, keys);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        let pos = cur.iter().position(|c| key.is_some() && item_key(c, keys) == key);
                        match (pos, delete) {
                            (Some(i), true) => {
                                cur.remove(i);
                            }
                            (Some(i), false) => merge(&mut cur[i], item, path, custom),
                            (None, true) => {}
                            (None, false) => cur.push(item.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for item in items {
                        if !cur.contains(item) {
                            cur.push(item.clone());
                        }
                    }
                }
                ListKind::Atomic => *cur = items.clone(),
            },
            (Some(cur @ Value::Object(_)), Value::Object(_)) => merge(cur, v, path, custom),
            _ => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                t.insert(k.clone(), clean);
            }
        }
        path.pop();
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::strategic;
    use serde_json::json;

    #[test]
    fn set_image_merges_by_container_name() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}});
        strategic(
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "3"}]}}}}),
            false,
        );
        assert_eq!(d.pointer("/spec/template/spec/containers/0/image"), Some(&json!("1")));
        assert_eq!(d.pointer("/spec/template/spec/containers/1/image"), Some(&json!("3")));
        strategic(
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}}),
            false,
        );
        assert_eq!(d.pointer("/spec/template/spec/containers/0/name"), Some(&json!("b")));
    }
}
