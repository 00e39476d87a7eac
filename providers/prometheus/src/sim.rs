//! A simulator of the Mimir ruler's configuration API — or, started with
//! [`RulerFlavour::Loki`], of Loki's — for tests and `plumb demo`:
//! per-tenant namespaces of rule groups in memory, served with the
//! documented paths, status codes and bodies
//! (<https://grafana.com/docs/mimir/latest/references/http-api/#ruler>;
//! handlers in Mimir's `pkg/ruler/api.go`; Loki's ruler API
//! <https://grafana.com/docs/loki/latest/reference/loki-http-api/#ruler>
//! is the same Cortex-derived handler set, `pkg/ruler/base/api.go`, under
//! `/loki/api/v1/rules`, with its rule state at `/prometheus/api/v1/rules`):
//!
//! - every request needs `X-Scope-OrgID`, else `401 no org id` (dskit
//!   `middleware.AuthenticateUser`, `user.ErrNoOrgID`);
//! - `GET /prometheus/config/v1/rules[/{namespace}]`: `200`
//!   `application/yaml` map of namespace → groups, or `404 no rule groups
//!   found` (`ListRules`, `ErrNoRuleGroups`);
//! - `GET …/{namespace}/{group}`: the group, or `404 group does not exist`
//!   (`rulestore.ErrGroupNotFound`);
//! - `POST …/{namespace}`: one group as YAML; `400 unable to decoded rule
//!   group` (sic, `ErrBadRuleGroup`) when it does not parse, `400` with the
//!   validation errors joined by `, ` when invalid, else `202` with
//!   `{"status":"success"}` (`respondAccepted`); a group of the same name is
//!   replaced;
//! - `DELETE …/{namespace}/{group}` and `DELETE …/{namespace}`: `202`, or
//!   `404 group does not exist` / `404 group namespace does not exist`;
//! - `GET /prometheus/api/v1/rules`: the Prometheus-compatible rule state,
//!   every rule `health: ok` unless drift injection marked it `err`;
//! - a stored group comes back as Mimir's `rulespb.ToProto`/`FromProto`
//!   round trip leaves it (Mimir `pkg/ruler/rulespb/compat.go`): durations
//!   re-printed by `model.Duration` (`60s` → `1m`), `query_offset` and
//!   `evaluation_delay` kept only when greater than zero, `source_tenants`
//!   and `align_evaluation_time_on_interval` kept as posted; a zero `for`
//!   is omitted (`rulefmt.RuleNode` `for,omitempty`);
//! - Loki flavour: the body is decoded with non-strict `yaml.Unmarshal`
//!   (Loki `CreateRuleGroup`), so keys Loki does not store
//!   (`source_tenants`, `query_offset`, `labels`, …) are dropped silently;
//!   expressions are LogQL, checked only by [`crate::logql::check`];
//! - a write to a group marked with [`Simulator::fail_writes`] answers `500`
//!   with the store's error, as Mimir does when `SetRuleGroup` /
//!   `DeleteRuleGroup` fails (`http.Error(w, err.Error(), 500)`).
//!
//! Left out: rule evaluation, alerts and their state, limits
//! (`ruler_max_rule_groups_per_tenant`, rules per group), federation (the
//! tenants in `source_tenants` are not queried), full LogQL validation, the
//! legacy `/api/v1/rules` (Cortex) and `/api/prom/rules` (Loki) config
//! paths, the Cortex flavour, paging and filters of the state endpoint,
//! namespace protection, and persistence. Group `limit` and `labels` are
//! kept as posted (Mimir releases differ in whether they store them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use plumb_model::loopback::LoopbackServer;
use plumb_model::ProviderError;
use serde_json::json;

use crate::connection::RulerFlavour;
use crate::rules::{self, Dialect, Group};

type Store = BTreeMap<String, BTreeMap<String, Vec<Group>>>;

#[derive(Default)]
struct Inner {
    tenants: Store,
    /// (tenant, namespace, group, rule name) → lastError.
    errors: HashMap<(String, String, String, String), String>,
    /// (namespace, group) whose writes fail with 500.
    failing: Vec<(String, String)>,
    flavour: Option<RulerFlavour>,
}

impl Inner {
    fn dialect(&self) -> Dialect {
        match self.flavour {
            Some(RulerFlavour::Loki) => Dialect::Loki,
            _ => Dialect::Mimir,
        }
    }

    fn fails(&self, namespace: &str, group: &str) -> bool {
        self.failing.iter().any(|(n, g)| n == namespace && g == group)
    }
}

/// A group as the ruler's store gives it back (see the module docs).
fn stored(mut group: Group) -> Group {
    let respell = |d: &mut Option<String>| {
        *d = d
            .as_deref()
            .and_then(|t| crate::promql::parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .map(crate::promql::format_duration);
    };
    respell(&mut group.interval);
    respell(&mut group.query_offset);
    respell(&mut group.evaluation_delay);
    for rule in &mut group.rules {
        respell(&mut rule.for_);
        respell(&mut rule.keep_firing_for);
        rule.line = None;
    }
    group.line = None;
    group
}

type Shared = Arc<Mutex<Inner>>;

/// A running simulator; stops when dropped.
pub struct Simulator {
    url: String,
    inner: Shared,
    _server: LoopbackServer,
}

impl Simulator {
    /// Starts an empty Mimir ruler simulator on a free loopback port.
    pub async fn start() -> std::io::Result<Simulator> {
        Simulator::start_as(RulerFlavour::Mimir).await
    }

    /// Starts an empty simulator of the given ruler (Cortex is served as
    /// Mimir).
    pub async fn start_as(flavour: RulerFlavour) -> std::io::Result<Simulator> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            flavour: Some(flavour),
            ..Inner::default()
        }));
        let app = router(inner.clone(), flavour);
        let server = LoopbackServer::start("ruler", app).await?;
        Ok(Simulator {
            url: format!("http://{}", server.addr()),
            inner,
            _server: server,
        })
    }

    /// Starts a simulator whose `tenant` holds every rule file below `dir`,
    /// one namespace per file (its path without extension, as the provider
    /// names ruler namespaces).
    pub async fn start_seeded(dir: &Path, tenant: &str) -> Result<Simulator, ProviderError> {
        Simulator::start_seeded_as(dir, tenant, RulerFlavour::Mimir).await
    }

    /// [`Simulator::start_seeded`] for the given ruler.
    pub async fn start_seeded_as(dir: &Path, tenant: &str, flavour: RulerFlavour) -> Result<Simulator, ProviderError> {
        let sim = Simulator::start_as(flavour)
            .await
            .map_err(|e| ProviderError::io(dir, e))?;
        for mut ns in rules::read_dir_as(dir, dir, flavour.dialect())? {
            for ext in [".yaml", ".yml", ".json"] {
                if let Some(stem) = ns.name.strip_suffix(ext) {
                    ns.name = stem.to_string();
                    break;
                }
            }
            for group in ns.groups {
                sim.set_group(tenant, &ns.name, group);
            }
        }
        Ok(sim)
    }

    /// The base URL (`ruler_url`); the API is under `/prometheus` (Mimir)
    /// or `/loki/api/v1/rules` (Loki).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Creates or replaces a group (drift: a group added by hand).
    pub fn set_group(&self, tenant: &str, namespace: &str, group: Group) {
        self.with(|i| upsert(&mut i.tenants, tenant, namespace, stored(group)));
    }

    /// From now on, every `POST` or `DELETE` of `group` in `namespace`
    /// answers `500` (a failing rule store), for any tenant.
    pub fn fail_writes(&self, namespace: &str, group: &str) {
        self.with(|i| i.failing.push((namespace.into(), group.into())));
    }

    /// Removes a group; false if it was not there.
    pub fn remove_group(&self, tenant: &str, namespace: &str, group: &str) -> bool {
        self.with(|i| remove(&mut i.tenants, tenant, namespace, group))
    }

    /// Changes a rule's expression (drift: an edited threshold); false if
    /// no such rule.
    pub fn edit_expr(&self, tenant: &str, namespace: &str, group: &str, rule: &str, expr: &str) -> bool {
        self.with(|i| {
            let Some(g) = find_group(&mut i.tenants, tenant, namespace, group) else {
                return false;
            };
            match g.rules.iter_mut().find(|r| r.name() == rule) {
                Some(r) => {
                    r.expr = expr.to_string();
                    true
                }
                None => false,
            }
        })
    }

    /// Makes a rule report `health: err` with `error` on the state endpoint.
    pub fn fail_rule(&self, tenant: &str, namespace: &str, group: &str, rule: &str, error: &str) {
        self.with(|i| {
            i.errors.insert(
                (tenant.into(), namespace.into(), group.into(), rule.into()),
                error.into(),
            )
        });
    }

    /// What a tenant holds now.
    pub fn groups(&self, tenant: &str) -> BTreeMap<String, Vec<Group>> {
        self.with(|i| i.tenants.get(tenant).cloned().unwrap_or_default())
    }
}

fn upsert(store: &mut Store, tenant: &str, namespace: &str, group: Group) {
    let groups = store
        .entry(tenant.to_string())
        .or_default()
        .entry(namespace.to_string())
        .or_default();
    match groups.iter_mut().find(|g| g.name == group.name) {
        Some(old) => *old = group,
        None => groups.push(group),
    }
}

fn remove(store: &mut Store, tenant: &str, namespace: &str, group: &str) -> bool {
    let Some(spaces) = store.get_mut(tenant) else {
        return false;
    };
    let Some(groups) = spaces.get_mut(namespace) else {
        return false;
    };
    let before = groups.len();
    groups.retain(|g| g.name != group);
    let removed = groups.len() != before;
    if groups.is_empty() {
        spaces.remove(namespace);
    }
    removed
}

fn find_group<'a>(store: &'a mut Store, tenant: &str, namespace: &str, group: &str) -> Option<&'a mut Group> {
    store
        .get_mut(tenant)?
        .get_mut(namespace)?
        .iter_mut()
        .find(|g| g.name == group)
}

fn router(inner: Shared, flavour: RulerFlavour) -> Router {
    let base = match flavour {
        RulerFlavour::Loki => "/loki/api/v1/rules",
        RulerFlavour::Mimir | RulerFlavour::Cortex => "/prometheus/config/v1/rules",
    };
    Router::new()
        .route(base, get(list_all))
        .route(
            &format!("{base}/{{namespace}}"),
            get(list_namespace).post(create_group).delete(delete_namespace),
        )
        .route(
            &format!("{base}/{{namespace}}/{{group}}"),
            get(get_group).delete(delete_group),
        )
        .route("/prometheus/api/v1/rules", get(rule_state))
        .with_state(inner)
}

fn text(status: StatusCode, body: &str) -> Response {
    // Go's http.Error: text/plain and a trailing newline.
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

fn tenant_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn no_org_id() -> Response {
    text(StatusCode::UNAUTHORIZED, "no org id")
}

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    match inner.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn yaml(map: &BTreeMap<String, Vec<Group>>) -> Response {
    let out: BTreeMap<&String, Vec<rules::OutGroup<'_>>> = map
        .iter()
        .map(|(ns, gs)| (ns, gs.iter().map(rules::out_group).collect()))
        .collect();
    match serde_yaml_ng::to_string(&out) {
        Ok(body) => (StatusCode::OK, [("content-type", "application/yaml")], body).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        json!({"status": "success", "data": null, "errorType": "", "error": ""}).to_string(),
    )
        .into_response()
}

async fn list_all(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let store = lock(&inner);
    match store.tenants.get(&tenant).filter(|m| !m.is_empty()) {
        Some(map) => yaml(map),
        None => text(StatusCode::NOT_FOUND, "no rule groups found"),
    }
}

async fn list_namespace(
    State(inner): State<Shared>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let store = lock(&inner);
    match store.tenants.get(&tenant).and_then(|m| m.get(&namespace)) {
        Some(groups) if !groups.is_empty() => yaml(&BTreeMap::from([(namespace, groups.clone())])),
        _ => text(StatusCode::NOT_FOUND, "no rule groups found"),
    }
}

async fn get_group(
    State(inner): State<Shared>,
    headers: HeaderMap,
    UrlPath((namespace, group)): UrlPath<(String, String)>,
) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let mut store = lock(&inner);
    match find_group(&mut store.tenants, &tenant, &namespace, &group) {
        Some(g) => match rules::group_yaml(g) {
            Ok(body) => (StatusCode::OK, [("content-type", "application/yaml")], body).into_response(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        None => text(StatusCode::NOT_FOUND, "group does not exist"),
    }
}

async fn create_group(
    State(inner): State<Shared>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
    body: String,
) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let Ok(mut value) = serde_yaml_ng::from_str::<serde_json::Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "unable to decoded rule group");
    };
    let dialect = lock(&inner).dialect();
    let body = if dialect == Dialect::Loki {
        // Non-strict decoding: what Loki does not store is dropped.
        if let serde_json::Value::Object(map) = &mut value {
            map.retain(|k, _| rules::LOKI_GROUP_KEYS.contains(&k.as_str()));
        }
        serde_yaml_ng::to_string(&value).unwrap_or(body)
    } else {
        body
    };
    let group = match rules::parse_group_text(&namespace, &body, dialect) {
        Ok(g) => g,
        Err(ProviderError::Parse { message, .. }) => return text(StatusCode::BAD_REQUEST, &message),
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut store = lock(&inner);
    if store.fails(&namespace, &group.name) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unable to store rule group: simulated store failure",
        );
    }
    upsert(&mut store.tenants, &tenant, &namespace, stored(group));
    accepted()
}

async fn delete_group(
    State(inner): State<Shared>,
    headers: HeaderMap,
    UrlPath((namespace, group)): UrlPath<(String, String)>,
) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let mut store = lock(&inner);
    if store.fails(&namespace, &group) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unable to delete rule group: simulated store failure",
        );
    }
    if remove(&mut store.tenants, &tenant, &namespace, &group) {
        accepted()
    } else {
        text(StatusCode::NOT_FOUND, "group does not exist")
    }
}

async fn delete_namespace(
    State(inner): State<Shared>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let mut store = lock(&inner);
    match store.tenants.get_mut(&tenant).and_then(|m| m.remove(&namespace)) {
        Some(_) => accepted(),
        None => text(StatusCode::NOT_FOUND, "group namespace does not exist"),
    }
}

/// The Prometheus-shaped rule state (`web/api/v1/api.go` `RuleDiscovery`),
/// with the namespace as each group's `file`, as Mimir reports it.
async fn rule_state(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let Some(tenant) = tenant_of(&headers) else {
        return no_org_id();
    };
    let store = lock(&inner);
    let mut groups = Vec::new();
    if let Some(spaces) = store.tenants.get(&tenant) {
        for (ns, gs) in spaces {
            for g in gs {
                let rules: Vec<serde_json::Value> = g
                    .rules
                    .iter()
                    .map(|r| {
                        let error =
                            store
                                .errors
                                .get(&(tenant.clone(), ns.clone(), g.name.clone(), r.name().to_string()));
                        let secs = |d: &Option<String>| {
                            d.as_deref()
                                .and_then(|t| crate::promql::parse_duration(t).ok())
                                .map(|d| d.as_secs_f64())
                                .unwrap_or(0.0)
                        };
                        let mut v = json!({
                            "name": r.name(),
                            "query": r.expr,
                            "labels": rules::effective_labels(g, r),
                            "health": if error.is_some() { "err" } else { "ok" },
                            "type": if r.alert.is_some() { "alerting" } else { "recording" },
                            "evaluationTime": 0,
                            "lastEvaluation": "0001-01-01T00:00:00Z",
                        });
                        if let Some(e) = error {
                            v["lastError"] = json!(e);
                        }
                        if r.alert.is_some() {
                            v["duration"] = json!(secs(&r.for_));
                            v["keepFiringFor"] = json!(secs(&r.keep_firing_for));
                            v["annotations"] = json!(r.annotations);
                            v["alerts"] = json!([]);
                            v["state"] = json!("inactive");
                        }
                        v
                    })
                    .collect();
                groups.push(json!({
                    "name": g.name,
                    "file": ns,
                    "rules": rules,
                    "interval": g.interval.as_deref().and_then(|t| crate::promql::parse_duration(t).ok()).map(|d| d.as_secs_f64()).unwrap_or(60.0),
                    "limit": g.limit.unwrap_or(0),
                    "evaluationTime": 0,
                    "lastEvaluation": "0001-01-01T00:00:00Z",
                }));
            }
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"status": "success", "data": {"groups": groups}}).to_string(),
    )
        .into_response()
}
