//! Fields someone added by hand to an object plumb manages (a label from
//! `kubectl label`, a container port or env var from `kubectl edit`), found
//! after a server-side apply so that apply can remove them and the next plan
//! is empty.
//!
//! Server-side apply as `plumb` cannot remove them itself: a field another
//! manager owns stays when plumb's applied configuration omits it, and
//! applying it with the same value only shares ownership
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>:
//! "managers can share ownership ... by applying the same value"). So plumb
//! removes them with one RFC 6902 JSON patch of `remove` operations, guarded
//! by a `test` operation on `metadata.resourceVersion`: if anyone wrote the
//! object since plumb read it, kube-apiserver refuses the whole patch with
//! 422 (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go,
//! `applyJSPatch`: a failed `patchObj.Apply` becomes
//! `NewGenericServerResponse(StatusUnprocessableEntity, ...)`), and plumb
//! reads the object again and recomputes. An Update that removes a field
//! takes it out of every manager's set (sigs.k8s.io/structured-merge-diff
//! merge/update.go, `Updater.update`: `managerSet.Difference(compare.Removed)`,
//! empty managers deleted), so the removed fields leave no trace in
//! managedFields either.
//!
//! What counts as hand-added is exactly what the plan shows for fields Git
//! does not set: the difference between the canonical desired manifest and
//! the projected live object ([`crate::normalize::project_live`]), so server-set
//! and defaulted fields are never touched. Fields owned by a manager the
//! policy keeps (`keep_field_managers`) or written through a subresource
//! other than status (an HPA's `scale` writes to `spec.replicas`) are left.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::keys;
use crate::managed::{self, Cursor, Entry};
use crate::normalize;

/// One field to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// RFC 6901 pointer into the live object, array positions as indices.
    pub pointer: String,
    /// The field managers that own it (empty when nobody does: an element
    /// Git lacks in a list Git sets).
    pub owners: Vec<String>,
}

/// The hand-added fields of `live` (the object as the server returned it
/// after plumb's apply) that `desired` (the manifest from Git) does not
/// set, minus those owned by a kept manager or written through a
/// subresource. Ordered so that removing them one after another keeps the
/// remaining pointers valid (higher array indices first).
pub fn find(kind: &str, desired: &Value, live: &Value, keep: &BTreeSet<String>) -> Vec<Stray> {
    let mut canonical = desired.clone();
    normalize::canonical_desired(kind, &mut canonical);
    let projected = normalize::project_live(kind, Some(&canonical), live, false);
    let entries = managed::entries(live);
    let mut walk = Walk {
        kind,
        entries: &entries,
        keep,
        out: Vec::new(),
    };
    walk.node(
        &mut Vec::new(),
        &mut String::new(),
        Some(&canonical),
        &projected,
        live,
        Cursor::root(&entries),
    );
    let mut out = walk.out;
    out.sort_by(|a, b| compare_pointers(&b.pointer, &a.pointer));
    out
}

/// The JSON patch that removes `strays` from the object at `resource_version`.
pub fn patch(resource_version: &str, strays: &[Stray]) -> Value {
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})];
    ops.extend(strays.iter().map(|s| json!({"op": "remove", "path": s.pointer})));
    Value::Array(ops)
}

struct Walk<'a> {
    kind: &'a str,
    entries: &'a [Entry],
    keep: &'a BTreeSet<String>,
    out: Vec<Stray>,
}

impl Walk<'_> {
    /// `desired` is `None` below a field Git does not set.
    fn node(
        &mut self,
        fields: &mut Vec<String>,
        pointer: &mut String,
        desired: Option<&Value>,
        projected: &Value,
        live: &Value,
        own: Cursor<'_>,
    ) {
        if desired == Some(projected) {
            return;
        }
        match (projected, live) {
            (Value::Object(pm), Value::Object(lm)) => {
                let dm = match desired {
                    Some(Value::Object(dm)) => Some(dm),
                    // A map where Git sets a scalar: a value difference,
                    // which the apply itself settles.
                    Some(_) => return,
                    None => None,
                };
                for (key, pv) in pm {
                    let Some(lv) = lm.get(key) else { continue };
                    let dv = dm.and_then(|m| m.get(key));
                    // Without `dv`, Git does not set this field: what the
                    // projection kept below it someone added.
                    fields.push(key.clone());
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    self.node(fields, pointer, dv, pv, lv, own.field(key));
                    pointer.truncate(len);
                    fields.pop();
                }
            }
            (Value::Array(pa), Value::Array(la)) => {
                let f: Vec<&str> = fields.iter().map(String::as_str).collect();
                let Some(list) = keys::keyed_list(self.kind, &f) else {
                    // An atomic list: removed whole when Git does not set
                    // it; a different value where Git sets it is the
                    // apply's business.
                    if desired.is_none() {
                        self.remove(pointer, &own);
                    }
                    return;
                };
                let da = match desired {
                    Some(Value::Array(da)) => Some(da),
                    Some(_) => return,
                    None => None,
                };
                for pe in pa {
                    let Some(li) = la.iter().position(|le| keys::same_key(list, le, pe)) else {
                        continue;
                    };
                    let eo = own.element(&la[li], li);
                    let len = pointer.len();
                    pointer.push_str(&format!("/{li}"));
                    match da.and_then(|da| da.iter().find(|de| keys::same_key(list, de, pe))) {
                        Some(de) => self.node(fields, pointer, Some(de), pe, &la[li], eo),
                        // An element Git lacks goes whole.
                        None => self.remove(pointer, &eo),
                    }
                    pointer.truncate(len);
                }
            }
            _ => {
                if desired.is_none() {
                    self.remove(pointer, &own);
                }
            }
        }
    }

    fn remove(&mut self, pointer: &str, own: &Cursor<'_>) {
        if pointer.is_empty() {
            return;
        }
        let owners: Vec<&Entry> = own.owners().into_iter().map(|i| &self.entries[i]).collect();
        let kept = owners
            .iter()
            .any(|e| self.keep.contains(&e.manager) || e.subresource.as_deref().is_some_and(|s| !s.is_empty()));
        if kept {
            tracing::debug!(
                pointer,
                "hand-added field kept: its manager is kept by policy or wrote through a subresource"
            );
            return;
        }
        let mut names: Vec<String> = owners.iter().map(|e| e.manager.clone()).collect();
        names.dedup();
        self.out.push(Stray {
            pointer: pointer.to_string(),
            owners: names,
        });
    }
}

/// Orders pointers segment by segment, array indices by number.
fn compare_pointers(a: &str, b: &str) -> Ordering {
    let mut sa = a.split('/');
    let mut sb = b.split('/');
    loop {
        match (sa.next(), sb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_after_apply() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cart", "namespace": "shop", "resourceVersion": "42",
                "labels": {"app": "cart", "hand": "made", "plumb.dev/target": "prod"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "managedFields": [
                    {"manager": "plumb", "operation": "Apply", "time": "2025-01-01T00:00:00Z", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}, "f:plumb.dev/target": {}}},
                        "f:spec": {"f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}, "f:ports": {
                                "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
                    {"manager": "kubectl-edit", "operation": "Update", "time": "2025-02-01T00:00:00Z", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:hand": {}}},
                        "f:spec": {"f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {"f:env": {".": {}, "k:{\"name\":\"DEBUG\"}": {".": {}, "f:name": {}, "f:value": {}}},
                                "f:ports": {"k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale", "fieldsV1": {
                        "f:spec": {"f:replicas": {}}}}
                ]},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "x:1",
                "terminationMessagePath": "/dev/termination-log",
                "env": [{"name": "DEBUG", "value": "1"}],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "TCP"}]}]}}}
        })
    }

    fn desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cart", "namespace": "shop", "labels": {"app": "cart"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x:1",
                "ports": [{"containerPort": 8080}]}]}}}})
    }

    #[test]
    fn hand_added_label_port_and_env_are_found_highest_index_first() {
        let strays = find("Deployment", &desired(), &deployment_after_apply(), &BTreeSet::new());
        let pointers: Vec<&str> = strays.iter().map(|s| s.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            vec![
                "/spec/template/spec/containers/0/ports/1",
                "/spec/template/spec/containers/0/env/0",
                "/metadata/labels/hand",
            ],
            "replicas (written through scale), defaults and server annotations stay"
        );
        assert!(strays.iter().all(|s| s.owners == vec!["kubectl-edit".to_string()]));
    }

    #[test]
    fn kept_managers_are_left_alone() {
        let keep: BTreeSet<String> = ["kubectl-edit".to_string()].into();
        assert!(find("Deployment", &desired(), &deployment_after_apply(), &keep).is_empty());
    }

    #[test]
    fn in_sync_object_has_nothing_to_remove() {
        let mut live = deployment_after_apply();
        live["metadata"]["labels"].as_object_mut().unwrap().remove("hand");
        let c = &mut live["spec"]["template"]["spec"]["containers"][0];
        c.as_object_mut().unwrap().remove("env");
        c["ports"].as_array_mut().unwrap().pop();
        assert!(find("Deployment", &desired(), &live, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn patch_tests_the_resource_version_first() {
        let p = patch(
            "42",
            &[Stray {
                pointer: "/metadata/labels/hand".into(),
                owners: vec![],
            }],
        );
        assert_eq!(
            p,
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                   {"op": "remove", "path": "/metadata/labels/hand"}])
        );
    }

    #[test]
    fn pointers_order_by_number() {
        assert_eq!(compare_pointers("/a/10", "/a/9"), Ordering::Greater);
        assert_eq!(compare_pointers("/a/1/b", "/a/1"), Ordering::Greater);
    }
}
