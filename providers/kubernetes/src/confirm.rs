//! The second step of the comparison: a server-side dry-run apply (`dryRun=All`,
//! field manager `plumb`) for objects where the offline step saw a change in
//! a field Git sets. The dry run may clear such a change (a default the
//! offline tables did not know); it never clears a field someone added by
//! hand, because applying as `plumb` would not remove it either. A conflict
//! with another manager is retried with `force=true`, still as a dry run —
//! the conflict is itself the drift. A refusal (403 under a read-only role,
//! a webhook that rejects dry runs) leaves the change `unconfirmed`.

use http::Method;
use plumb_model::{Action, ConfirmedBy, Suspect, Verdict};
use serde_json::Value;

use crate::client::Api;
use crate::keys;
use crate::normalize;

pub const FIELD_MANAGER: &str = "plumb";
pub const APPLY_CONTENT_TYPE: &str = "application/apply-patch+yaml";

/// The verdict on one suspect.
pub async fn confirm_one(api: &Api, suspect: &Suspect<'_>, target: &str) -> Verdict {
    if suspect.action != Action::Update {
        // A missing or extra object needs no second opinion.
        return Verdict::Confirmed(ConfirmedBy::Offline);
    }
    let (Some(desired), Some(live)) = (suspect.desired, suspect.live) else {
        return Verdict::Confirmed(ConfirmedBy::Offline);
    };
    let mut canonical = desired.body();
    normalize::canonical_desired(&desired.kind, &mut canonical);
    let git_set = suspect
        .paths
        .iter()
        .filter(|p| path_exists(&desired.kind, &canonical, p))
        .count();
    if git_set == 0 {
        // Only fields Git does not set: a dry run cannot speak for them.
        return Verdict::Confirmed(ConfirmedBy::Offline);
    }
    let hand_added = git_set < suspect.paths.len();
    let body = desired.body();
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let resource = match api.resolve(api_version, &desired.kind).await {
        Ok(Some(r)) => r,
        Ok(None) => return unconfirmed(suspect.id, "the kind is no longer served"),
        Err(e) => return unconfirmed(suspect.id, &e.to_string()),
    };
    let namespace = body.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let apply_body = with_mark(body.clone(), target);
    let bytes = match serde_json::to_vec(&apply_body) {
        Ok(b) => b,
        Err(e) => return unconfirmed(suspect.id, &e.to_string()),
    };
    let base = resource.path(namespace, Some(name));
    let mut path = format!("{base}?dryRun=All&fieldManager={FIELD_MANAGER}");
    let mut response = match api
        .request(Method::PATCH, &path, Some((&bytes, APPLY_CONTENT_TYPE)))
        .await
    {
        Ok(r) => r,
        Err(e) => return unconfirmed(suspect.id, &e.to_string()),
    };
    if response.status == 409 {
        tracing::debug!(id = suspect.id, message = %response.message(), "dry run conflicts with another field manager; repeating with force");
        path.push_str("&force=true");
        response = match api
            .request(Method::PATCH, &path, Some((&bytes, APPLY_CONTENT_TYPE)))
            .await
        {
            Ok(r) => r,
            Err(e) => return unconfirmed(suspect.id, &e.to_string()),
        };
    }
    match response.status {
        200 | 201 => {}
        _ => {
            let err = api.status_error(&Method::PATCH, &path, &response);
            return unconfirmed(suspect.id, &err.to_string());
        }
    }
    let Ok(mut result) = response.json() else {
        return unconfirmed(suspect.id, "the dry run answered with something that is not JSON");
    };
    let mut before = live.body();
    normalize::strip_always(&mut before);
    normalize::strip_always(&mut result);
    if let Some(Value::Object(a)) = result.pointer_mut("/metadata/annotations") {
        a.remove(normalize::LAST_APPLIED);
    }
    if before == result && !hand_added {
        return Verdict::Dismissed {
            why: "server-side dry run: applying the desired manifest would change nothing".into(),
        };
    }
    Verdict::Confirmed(ConfirmedBy::DryRun)
}

fn unconfirmed(id: &str, why: &str) -> Verdict {
    tracing::warn!(
        id,
        reason = why,
        "server-side dry run refused or failed; change left unconfirmed"
    );
    Verdict::Confirmed(ConfirmedBy::Unconfirmed)
}

/// The manifest as plumb applies it: with its mark, the target's name.
pub fn with_mark(mut body: Value, target: &str) -> Value {
    if let Some(Value::Object(meta)) = body.get_mut("metadata") {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(labels) = labels {
            labels.insert(normalize::MARK_LABEL.to_string(), Value::String(target.to_string()));
        }
    }
    body
}

/// Whether the plan path `path` (`/spec/containers[name=web]/image`) names
/// something the canonical desired manifest sets.
pub fn path_exists(kind: &str, desired: &Value, path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let mut node = desired;
    let mut fields: Vec<String> = Vec::new();
    for raw in rest.split('/') {
        let (field, keyed) = match raw.find('[') {
            Some(open) if raw.ends_with(']') => (&raw[..open], Some(&raw[open + 1..raw.len() - 1])),
            _ => (raw, None),
        };
        if !field.is_empty() {
            let name = field.replace("~1", "/").replace("~0", "~");
            node = match node {
                Value::Object(m) => match m.get(&name) {
                    Some(v) => v,
                    None => return false,
                },
                Value::Array(a) => match name.parse::<usize>().ok().and_then(|i| a.get(i)) {
                    Some(v) => v,
                    None => return false,
                },
                _ => return false,
            };
            fields.push(name);
        }
        if let Some(keyed) = keyed {
            let Value::Array(items) = node else { return false };
            let pairs: Vec<(&str, &str)> = keyed.split(',').filter_map(|p| p.split_once('=')).collect();
            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
            let list = keys::keyed_list(kind, &f);
            let found = items.iter().find(|e| {
                pairs.iter().all(|(k, v)| {
                    let value = match list {
                        Some(l) => keys::key_value(l, e, k),
                        None => e.get(*k).cloned().unwrap_or(Value::Null),
                    };
                    match value {
                        Value::String(s) => s == *v,
                        Value::Number(n) => n.to_string() == *v,
                        Value::Bool(b) => b.to_string() == *v,
                        _ => false,
                    }
                })
            });
            match found {
                Some(e) => node = e,
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_with_keys_resolve_against_desired() {
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}}});
        assert!(path_exists(
            "Deployment",
            &d,
            "/spec/template/spec/containers[name=web]/image"
        ));
        assert!(path_exists(
            "Deployment",
            &d,
            "/spec/template/spec/containers[name=web]/ports[containerPort=80,protocol=TCP]"
        ));
        assert!(!path_exists(
            "Deployment",
            &d,
            "/spec/template/spec/containers[name=web]/ports[containerPort=9090,protocol=TCP]"
        ));
        assert!(!path_exists(
            "Deployment",
            &d,
            "/spec/template/spec/containers[name=sidecar]"
        ));
        assert!(path_exists(
            "Deployment",
            &d,
            "/metadata/labels/app.kubernetes.io~1name"
        ));
        assert!(!path_exists("Deployment", &d, "/metadata/labels/extra"));
    }
}
