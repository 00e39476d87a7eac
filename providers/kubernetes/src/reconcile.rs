//! Changing the cluster: server-side apply as field manager `plumb` in
//! dependency order (Namespaces and CRDs first), each object labelled with
//! plumb's mark, then removal of fields added by hand ([`crate::strays`]);
//! pruning of marked objects only; and `plumb import`, which
//! writes live objects as clean manifests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use plumb_model::{Action, ApplyChange, Authority, ChangeResult, Live, Outcome, ProviderError, Resource};
use serde_json::Value;

use crate::client::{Api, ApiResource};
use crate::confirm::{with_mark, APPLY_CONTENT_TYPE, FIELD_MANAGER};
use crate::normalize;
use crate::strays;

/// RFC 6902 JSON patch, which kube-apiserver accepts for every kind
/// (<https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/>).
pub const JSON_PATCH_CONTENT_TYPE: &str = "application/json-patch+json";

/// Namespaces, then CRDs, then everything else (reverse for deletes).
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    }
}

/// How apply treats fields: `force` takes over fields Git sets from other
/// managers (policy guard `force_conflicts`); `keep` names managers whose
/// hand-added fields are left in place (guard `keep_field_managers`).
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub force: bool,
    pub keep: BTreeSet<String>,
}

/// Applies the allowed changes, one result per change.
pub async fn apply(api: &Api, changes: &[ApplyChange], target: &str, options: &ApplyOptions) -> Vec<ChangeResult> {
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| {
        let c = &changes[i];
        let kind = c
            .desired
            .as_ref()
            .or(c.live.as_ref())
            .map(|r| r.kind.as_str())
            .unwrap_or_default();
        match c.action {
            Action::Delete => (1, 2 - rank(kind)),
            _ => (0, rank(kind)),
        }
    });
    let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
    for i in order {
        let change = &changes[i];
        let outcome = match change.action {
            Action::Create | Action::Update => match &change.desired {
                Some(d) => apply_one(api, d, target, options).await,
                None => Outcome::Refused(format!("{} without a desired manifest", change.action)),
            },
            Action::Delete => match &change.live {
                Some(l) if l.authority == Authority::Owned => delete_one(api, l).await,
                Some(_) => Outcome::Refused("not marked as plumb's (label plumb.dev/target); never pruned".into()),
                None => Outcome::Refused("delete without a live object".into()),
            },
            Action::Unmanaged => Outcome::Refused("unmanaged objects are only reported".into()),
        };
        match &outcome {
            Outcome::Applied => tracing::info!(id = %change.id, action = %change.action, "applied"),
            Outcome::Failed(why) | Outcome::Refused(why) => {
                tracing::warn!(id = %change.id, action = %change.action, reason = %why, "not applied")
            }
        }
        results[i] = Some(ChangeResult {
            id: change.id.clone(),
            action: change.action,
            outcome,
        });
    }
    results.into_iter().flatten().collect()
}

/// Resolves a kind, waiting briefly for one whose CRD was just created
/// (the API server serves it once the CRD is Established).
async fn resolve_waiting(api: &Api, api_version: &str, kind: &str) -> Result<Option<ApiResource>, ProviderError> {
    let mut delay = Duration::from_millis(100);
    for _ in 0..8 {
        if let Some(r) = api.resolve(api_version, kind).await? {
            return Ok(Some(r));
        }
        api.forget(api_version).await;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    api.resolve(api_version, kind).await
}

async fn apply_one(api: &Api, desired: &Resource, target: &str, options: &ApplyOptions) -> Outcome {
    let body = with_mark(desired.body(), target);
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let resource = match resolve_waiting(api, api_version, &desired.kind).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Failed(format!("the cluster does not serve {api_version} {}", desired.kind)),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let namespace = body.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut path = format!("{}?fieldManager={FIELD_MANAGER}", resource.path(namespace, Some(name)));
    if options.force {
        path.push_str("&force=true");
    }
    let bytes = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("could not encode the manifest: {e}")),
    };
    let applied = match api.request(Method::PATCH, &path, Some((&bytes, APPLY_CONTENT_TYPE))).await {
        Ok(r) if r.status == 200 || r.status == 201 => r,
        Ok(r) if r.status == 409 => return Outcome::Failed(format!(
            "{} (another field manager owns these fields; policy guard force_conflicts: true lets plumb take them over)",
            api.status_error(&Method::PATCH, &path, &r)
        )),
        Ok(r) => return Outcome::Failed(api.status_error(&Method::PATCH, &path, &r).to_string()),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let after = match applied.json() {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("{}: {e}", api.describe(&Method::PATCH, &path))),
    };
    let object_path = resource.path(namespace, Some(name));
    remove_strays(api, &desired.kind, &body, after, &object_path, &options.keep).await
}

/// How often plumb re-reads an object that keeps changing under the
/// removal patch before it gives up.
const STRAY_ATTEMPTS: usize = 3;

/// Removes the hand-added fields of the just-applied object `after` (see
/// [`strays`]) with a JSON patch guarded by its resourceVersion; when
/// someone wrote the object in between (422 from the failed `test`, or 409),
/// reads it again and recomputes, at most [`STRAY_ATTEMPTS`] times.
async fn remove_strays(
    api: &Api,
    kind: &str,
    desired: &Value,
    mut after: Value,
    object_path: &str,
    keep: &BTreeSet<String>,
) -> Outcome {
    let path = format!("{object_path}?fieldManager={FIELD_MANAGER}");
    for attempt in 1..=STRAY_ATTEMPTS {
        let found = strays::find(kind, desired, &after, keep);
        if found.is_empty() {
            return Outcome::Applied;
        }
        let Some(rv) = after.pointer("/metadata/resourceVersion").and_then(Value::as_str) else {
            return Outcome::Failed(format!(
                "{}: the applied object has no resourceVersion; hand-added fields not removed",
                api.describe(&Method::GET, object_path)
            ));
        };
        let ops = strays::patch(rv, &found);
        let bytes = match serde_json::to_vec(&ops) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("could not encode the removal patch: {e}")),
        };
        let pointers: Vec<&str> = found.iter().map(|s| s.pointer.as_str()).collect();
        match api
            .request(Method::PATCH, &path, Some((&bytes, JSON_PATCH_CONTENT_TYPE)))
            .await
        {
            Ok(r) if r.status == 200 => {
                tracing::info!(request = %api.describe(&Method::PATCH, &path), fields = ?pointers, "removed hand-added fields");
                return Outcome::Applied;
            }
            Ok(r) if matches!(r.status, 409 | 422) && attempt < STRAY_ATTEMPTS => {
                tracing::debug!(request = %api.describe(&Method::PATCH, &path), status = r.status, "object changed under the removal patch; reading it again");
                after = match api.get_json(object_path).await {
                    Ok(v) => v,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
            }
            Ok(r) => {
                return Outcome::Failed(format!(
                    "applied, but removing the hand-added fields {} failed: {}",
                    pointers.join(", "),
                    api.status_error(&Method::PATCH, &path, &r)
                ))
            }
            Err(e) => {
                return Outcome::Failed(format!(
                    "applied, but removing the hand-added fields {} failed: {e}",
                    pointers.join(", ")
                ))
            }
        }
    }
    Outcome::Failed(format!(
        "{}: the object kept changing; hand-added fields not removed after {STRAY_ATTEMPTS} attempts",
        api.describe(&Method::PATCH, &path)
    ))
}

async fn delete_one(api: &Api, live: &Resource) -> Outcome {
    let body = live.body();
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let resource = match api.resolve(api_version, &live.kind).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Applied,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let namespace = body.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = format!("{}?propagationPolicy=Background", resource.path(namespace, Some(name)));
    match api.request(Method::DELETE, &path, None).await {
        Ok(r) if matches!(r.status, 200 | 202 | 404) => Outcome::Applied,
        Ok(r) => Outcome::Failed(api.status_error(&Method::DELETE, &path, &r).to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The manifest import writes for a live object: everything but server
/// metadata, status, and what the server set or defaulted by itself.
pub fn clean_manifest(kind: &str, live: &Value) -> Value {
    normalize::project_live(kind, None, live, true)
}

/// `<namespace>/<kind>-<name>.yaml`, `_cluster/` for cluster-scoped objects.
pub fn import_path(manifest: &Value) -> PathBuf {
    let kind = manifest
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_lowercase();
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    let dir = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("_cluster");
    PathBuf::from(safe(dir)).join(format!("{kind}-{}.yaml", safe(name)))
}

/// A name safe as a file name (Kubernetes names already are, bar `:` in
/// `system:` RBAC names).
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes every live object as a clean manifest below `out`.
pub async fn import(live: &Live, out: &Path) -> Result<Vec<PathBuf>, ProviderError> {
    let mut written = Vec::with_capacity(live.resources.len());
    for resource in &live.resources {
        let manifest = clean_manifest(&resource.kind, &resource.body());
        let path = out.join(import_path(&manifest));
        let text = serde_yaml_ng::to_string(&manifest)
            .map_err(|e| ProviderError::Other(format!("could not write {} as YAML: {e}", resource.id)))?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ProviderError::io(parent, e))?;
        }
        tokio::fs::write(&path, text)
            .await
            .map_err(|e| ProviderError::io(&path, e))?;
        written.push(path);
    }
    tracing::info!(out = %out.display(), files = written.len(), "imported Kubernetes objects");
    Ok(written)
}
