//! The HTTP face of the simulator: authentication, fault injection,
//! request recording, discovery documents and the REST verbs on
//! `/api/v1/...` and `/apis/<group>/<version>/...` paths, following
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/>.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::store::{ApiError, FieldSelector, ListQuery, Selector};
use super::types::ResourceType;
use super::{RequestRecord, Shared};

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status());
    if e.code == 429 {
        // apiserver max-in-flight filter answers 429 with Retry-After: 1
        // (k8s.io/apiserver pkg/server/filters/maxinflight.go tooManyRequests)
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// Reasons for injected status codes (errors.go: NewInternalError,
/// NewServiceUnavailable, NewTooManyRequests, NewTimeoutError, NewForbidden...).
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(decode(k), decode(v));
    }
    m
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Entry point for every request.
pub(crate) async fn handle(shared: Arc<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let q = query_map(&uri);
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let path = uri.path().to_string();
    let fault = shared.take_fault(method.as_str(), &path);
    let response = if let Some(f) = &fault {
        if let Some(d) = f.delay {
            tokio::time::sleep(d).await;
        }
        if f.status == 0 {
            None
        } else {
            let e = ApiError::new(
                f.status,
                reason_for(f.status),
                format!("injected fault: {} {}", f.status, reason_for(f.status)),
            );
            Some(error_response(&e))
        }
    } else {
        None
    };
    let response = match response {
        Some(r) => r,
        None => match authenticate(&shared, &headers) {
            Err(e) => error_response(&e),
            Ok(()) => route(&shared, &method, &path, &q, &headers, body, dry_run).await,
        },
    };
    tracing::debug!(method = %method, path = %path, status = response.status().as_u16(), "simulator request");
    shared.record(RequestRecord {
        method: method.to_string(),
        path,
        query: uri.query().unwrap_or("").to_string(),
        dry_run,
        status: response.status().as_u16(),
    });
    response
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &shared.token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(401, "Unauthorized", "Unauthorized"))
    }
}

/// `/api/v1/...` or `/apis/<g>/<v>/...` split into (group, version, rest).
fn split_prefix(segs: &[&str]) -> Option<(String, String, usize)> {
    match segs {
        ["api", v, ..] => Some((String::new(), v.to_string(), 2)),
        ["apis", g, v, ..] => Some((g.to_string(), v.to_string(), 3)),
        _ => None,
    }
}

fn not_found_path() -> ApiError {
    ApiError {
        details: json!({}),
        ..ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    dry_run: bool,
) -> Response {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    if let Some(r) = discovery(shared, &segs) {
        return r;
    }
    let Some((group, version, at)) = split_prefix(&segs) else {
        return error_response(&not_found_path());
    };
    let mut rest = &segs[at..];
    let mut watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    // [namespaces/<ns>/]<plural>[/<name>[/<subresource>]]
    let (ns, plural, name, sub): (Option<String>, &str, Option<&str>, Option<&str>) = {
        let store = shared.lock();
        match rest {
            ["namespaces", ns, plural, tail @ ..]
                if store.find(&group, &version, plural).is_some_and(|t| t.namespaced) =>
            {
                (
                    Some(ns.to_string()),
                    *plural,
                    tail.first().copied(),
                    tail.get(1).copied(),
                )
            }
            [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
            _ => return error_response(&not_found_path()),
        }
    };
    let Some(rt) = shared.lock().find(&group, &version, plural) else {
        return error_response(&not_found_path());
    };
    if sub.is_some() {
        // Subresources (status, scale, ...) are not simulated.
        return error_response(&not_found_path());
    }
    let verb = match (method.as_str(), name, watch) {
        ("GET", _, true) => "watch",
        ("GET", Some(_), _) => "get",
        ("GET", None, _) => "list",
        ("POST", None, _) => "create",
        ("PUT", Some(_), _) => "update",
        ("PATCH", Some(_), _) => "patch",
        ("DELETE", Some(_), _) => "delete",
        ("DELETE", None, _) => "deletecollection",
        _ => {
            return error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".to_string(),
            ))
        }
    };
    if let Some(e) = shared.forbidden(verb, &rt, ns.as_deref(), name) {
        return error_response(&e);
    }
    let result = match verb {
        "watch" => return watch_response(shared, &rt, ns.as_deref(), q),
        "get" => shared.lock().get(&rt, ns.as_deref(), name.unwrap_or_default()),
        "list" => list(shared, &rt, ns.as_deref(), q),
        "create" => parse_body(headers, &body)
            .and_then(|o| {
                if let Some(e) = ns_mismatch(&rt, ns.as_deref(), &o) {
                    return Err(e);
                }
                let manager = q
                    .get("fieldManager")
                    .cloned()
                    .unwrap_or_else(|| default_manager(headers));
                shared
                    .lock()
                    .create(&rt, ns.as_deref(), o, &manager, dry_run)
                    .map(|v| (v, 201))
            })
            .map(|(v, c)| return_code(v, c)),
        "update" => parse_body(headers, &body).and_then(|o| {
            if let Some(e) = ns_mismatch(&rt, ns.as_deref(), &o) {
                return Err(e);
            }
            let manager = q
                .get("fieldManager")
                .cloned()
                .unwrap_or_else(|| default_manager(headers));
            shared
                .lock()
                .update(&rt, ns.as_deref(), name.unwrap_or_default(), o, &manager, dry_run)
        }),
        "patch" => patch(
            shared,
            &rt,
            ns.as_deref(),
            name.unwrap_or_default(),
            q,
            headers,
            &body,
            dry_run,
        ),
        "delete" => shared
            .lock()
            .delete(&rt, ns.as_deref(), name.unwrap_or_default(), dry_run),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "deletecollection is not simulated",
        )),
    };
    match result {
        Ok(v) => {
            let code = v.get("__code").and_then(Value::as_u64).unwrap_or(200) as u16;
            let mut v = v;
            if let Some(m) = v.as_object_mut() {
                m.remove("__code");
            }
            json_response(code, &v)
        }
        Err(e) => error_response(&e),
    }
}

fn return_code(mut v: Value, code: u16) -> Value {
    v["__code"] = json!(code);
    v
}

/// client-go's default field manager is the program name (rest.Config
/// UserAgent prefix, e.g. `kubectl`), which apiserver takes from the
/// User-Agent when `fieldManager` is absent (handlers/rest.go
/// `managerOrUserAgent`).
fn default_manager(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/').next().unwrap_or(ua).to_string()
}

fn ns_mismatch(rt: &ResourceType, ns: Option<&str>, o: &Value) -> Option<ApiError> {
    let body_ns = o.pointer("/metadata/namespace").and_then(Value::as_str)?;
    if rt.namespaced && ns.is_some_and(|n| n != body_ns) {
        return Some(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    None
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("protobuf") {
        return Err(ApiError::new(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".to_string()));
    }
    if ct.contains("yaml") {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal body: {e}")))
    }
}

fn list(shared: &Shared, rt: &ResourceType, ns: Option<&str>, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    let labels = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    let limit = match q.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: Invalid value: \"{l}\"")))?,
        ),
        None => None,
    };
    let query = ListQuery {
        namespace: ns,
        labels,
        fields,
        limit,
        continue_token: q.get("continue").map(String::as_str),
    };
    shared.lock().list(rt, &query)
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ct = ct.split(';').next().unwrap_or("").trim().to_string();
    let manager = q.get("fieldManager").cloned();
    if let Some(race) = shared.take_race(&ct) {
        // Sim::race: another client's write lands first.
        let mut store = shared.lock();
        let mut current = store.get(rt, ns, name)?;
        (race.edit)(&mut current);
        store.update(rt, ns, name, current, &race.manager, false)?;
    }
    match ct.as_str() {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            let cfg: Value = serde_yaml_ng::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if let Some(e) = ns_mismatch(rt, ns, &cfg) {
                return Err(e);
            }
            let force = q.get("force").is_some_and(|v| v == "true");
            let mut store = shared.lock();
            let existed = store.get(rt, ns, name).is_ok();
            let r = store.apply(rt, ns, name, cfg, manager.as_deref().unwrap_or(""), force, dry_run)?;
            // An apply that creates the object answers 201 Created
            // (apiserver handlers/patch.go: `if wasCreated { status =
            // http.StatusCreated }`), an update 200.
            Ok(if existed { r } else { return_code(r, 201) })
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/json-patch+json" => {
            let manager = manager.unwrap_or_else(|| default_manager(headers));
            let mut store = shared.lock();
            let current = store.get(rt, ns, name)?;
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{e}")))?;
            let mut new = current.clone();
            match ct.as_str() {
                "application/merge-patch+json" => json_patch::merge(&mut new, &p),
                "application/strategic-merge-patch+json" => {
                    if rt.custom {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                        ));
                    }
                    super::patch::strategic(&mut new, &p, rt.custom)
                }
                _ => {
                    // apiserver handlers/patch.go `applyJSPatch`: an
                    // undecodable patch is 400 BadRequest; more than
                    // `maxJSONPatchOperations` (10000) operations is 413;
                    // a failing operation (a `test` that does not hold, a
                    // `remove` of a missing path) is
                    // `NewGenericServerResponse(422, ...)`, whose message is
                    // the fixed "the server rejected our request due to an
                    // error in our request" with the patch error dropped
                    // (apimachinery pkg/api/errors/errors.go). The whole
                    // patch is refused; nothing is stored.
                    let ops: json_patch::Patch = serde_json::from_value(p)
                        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
                        return Err(ApiError::new(
                            413,
                            "RequestEntityTooLarge",
                            format!(
                                "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                                ops.0.len()
                            ),
                        ));
                    }
                    json_patch::patch(&mut new, &ops).map_err(|_| {
                        ApiError::new(422, "Invalid", "the server rejected our request due to an error in our request")
                    })?;
                }
            }
            // A patch that does not name a resourceVersion is applied to
            // the current object unconditionally.
            if p_sets_rv(body) {
                // keep the resourceVersion the patch carries
            } else if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            store.update(rt, ns, name, new, &manager, dry_run)
        }
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".to_string(),
        )),
    }
}

/// apiserver handlers/patch.go `maxJSONPatchOperations`.
const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

fn p_sets_rv(body: &Bytes) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|p| p.pointer("/metadata/resourceVersion").cloned())
        .is_some()
}

/// Discovery (<https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api>).
/// Only the unaggregated documents are served, always as plain
/// `application/json`; client-go asks for aggregated discovery first
/// (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`)
/// and falls back to these when the response's content type is not the
/// aggregated one (client-go discovery_client.go `downloadLegacy`/`downloadAPIs`).
fn discovery(shared: &Shared, segs: &[&str]) -> Option<Response> {
    let store = shared.lock();
    let types = &store.types;
    let group_versions = |g: &str| {
        let mut vs: Vec<String> = types
            .iter()
            .filter(|t| t.group == g)
            .map(|t| t.version.clone())
            .collect();
        vs.dedup();
        vs
    };
    let body = match segs {
        ["version"] => {
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-plumb-sim", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2025-08-27T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc", "platform": "linux/amd64"})
        }
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}]}),
        ["apis"] => {
            let mut groups: Vec<String> = types
                .iter()
                .filter(|t| !t.group.is_empty())
                .map(|t| t.group.clone())
                .collect();
            groups.sort();
            groups.dedup();
            let list: Vec<Value> = groups.iter().map(|g| group_doc(g, &group_versions(g))).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
        }
        ["apis", g] => {
            let vs = group_versions(g);
            if vs.is_empty() {
                return Some(error_response(&not_found_path()));
            }
            group_doc(g, &vs)
        }
        ["api", v] | ["apis", _, v] => {
            let g = if segs[0] == "api" { "" } else { segs[1] };
            let resources: Vec<Value> = types
                .iter()
                .filter(|t| t.group == g && t.version == *v)
                .map(ResourceType::discovery)
                .collect();
            if resources.is_empty() {
                return Some(error_response(&not_found_path()));
            }
            let gv = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
        }
        _ => return None,
    };
    Some(json_response(200, &body))
}

fn group_doc(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// A watch: newline-delimited `{"type":..., "object":...}` events. Without
/// a resourceVersion (or with "0") the current objects come first as ADDED
/// (the "Get State and Start at Most Recent" semantics); with one, only
/// later events are sent (the simulator keeps no event history, so it
/// never answers 410 Gone). Ends after `timeoutSeconds` (default 30 min).
fn watch_response(shared: &Arc<Shared>, rt: &ResourceType, ns: Option<&str>, q: &HashMap<String, String>) -> Response {
    let labels = match Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let rv = q.get("resourceVersion").cloned().unwrap_or_default();
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let (rx, initial) = {
        let store = shared.lock();
        let rx = store.events.subscribe();
        let mut initial = Vec::new();
        if rv.is_empty() || rv == "0" {
            let query = ListQuery {
                namespace: ns,
                labels: labels.clone(),
                fields: FieldSelector::default(),
                limit: None,
                continue_token: None,
            };
            if let Ok(list) = store.list(rt, &query) {
                for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                    item["apiVersion"] = json!(rt.api_version());
                    item["kind"] = json!(rt.kind);
                    initial.push(format!("{}\n", json!({"type": "ADDED", "object": item})));
                }
            }
        }
        (rx, initial)
    };
    let (group, plural, ns) = (rt.group.clone(), rt.plural.clone(), ns.map(str::to_string));
    let live = tokio_stream_from(rx).filter_map(move |(_, ev)| {
        let keep = ev.group == group
            && ev.plural == plural
            && ns.as_ref().is_none_or(|n| *n == ev.namespace)
            && labels.matches(ev.object.pointer("/metadata/labels").and_then(Value::as_object));
        let line = format!("{}\n", json!({"type": ev.kind, "object": ev.object}));
        async move { keep.then_some(line) }
    });
    let stream = futures_util::stream::iter(initial)
        .chain(live)
        .map(Ok::<_, std::io::Error>);
    let deadline = tokio::time::sleep(Duration::from_secs(timeout));
    let stream = stream.take_until(deadline);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn tokio_stream_from<T: Clone + Send + 'static>(
    rx: tokio::sync::broadcast::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
