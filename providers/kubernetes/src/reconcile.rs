//! Changing the cluster: server-side apply as field manager `plumb` in
//! dependency order (Namespaces and CRDs first), each object labelled with
//! plumb's mark; pruning of marked objects only; and `plumb import`, which
//! writes live objects as clean manifests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use plumb_model::{Action, ApplyChange, Authority, ChangeResult, Live, Outcome, ProviderError, Resource};
use serde_json::Value;

use crate::client::{Api, ApiResource};
use crate::confirm::{with_mark, APPLY_CONTENT_TYPE, FIELD_MANAGER};
use crate::normalize;

/// Namespaces, then CRDs, then everything else (reverse for deletes).
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    }
}

/// Applies the allowed changes, one result per change.
pub async fn apply(api: &Api, changes: &[ApplyChange], target: &str, force: bool) -> Vec<ChangeResult> {
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
                Some(d) => apply_one(api, d, target, force).await,
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

async fn apply_one(api: &Api, desired: &Resource, target: &str, force: bool) -> Outcome {
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
    if force {
        path.push_str("&force=true");
    }
    let bytes = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("could not encode the manifest: {e}")),
    };
    match api.request(Method::PATCH, &path, Some((&bytes, APPLY_CONTENT_TYPE))).await {
        Ok(r) if r.status == 200 || r.status == 201 => Outcome::Applied,
        Ok(r) if r.status == 409 => Outcome::Failed(format!(
            "{} (another field manager owns these fields; policy guard force_conflicts: true lets plumb take them over)",
            api.status_error(&Method::PATCH, &path, &r)
        )),
        Ok(r) => Outcome::Failed(api.status_error(&Method::PATCH, &path, &r).to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
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
