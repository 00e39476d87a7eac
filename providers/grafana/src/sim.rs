//! A Grafana HTTP API simulator: an axum server on a free loopback port that
//! answers the legacy `/api` endpoints plumb uses the way Grafana documents
//! them, so the provider's tests, its benchmarks and `plumb demo` run without
//! a real Grafana.
//!
//! What it follows (each rule cites its source next to the code):
//! - `GET /api/health` (no auth);
//! - `GET /api/search` with `query`, `tag`, `type`, `dashboardUIDs`,
//!   `folderUIDs`, `starred`, `limit` (default 1000, max 5000, invalid → 1000)
//!   and `page` (1-based), sorted alphabetically by title;
//! - `GET/DELETE /api/dashboards/uid/{uid}` with `meta` (`updatedBy`,
//!   `updated`, `version`, `folderUid`, `provisioned`, …) and
//!   `GET /api/dashboards/uid/{uid}/versions`;
//! - `POST /api/dashboards/db` assigning id, uid and version, keeping a
//!   version history with the save `message`, answering 412
//!   (`version-mismatch`, `name-exists`) when `overwrite` is false, moving a
//!   dashboard saved without a folder to the root, refusing provisioned ones;
//! - folders: `GET /api/folders` (paged, `parentUid` for nested folders),
//!   `GET/PUT/DELETE /api/folders/{uid}`, `POST /api/folders`,
//!   `POST /api/folders/{uid}/move`;
//! - Bearer tokens and basic auth with Viewer / Editor / Admin roles, with
//!   Grafana's 401 and 403 bodies;
//! - the Kubernetes-style `/apis` dashboards of Grafana 12 (unless
//!   `SimOptions::apis` is off, as on Grafana 11, which answers 404): group
//!   discovery `GET /apis/dashboard.grafana.app`, and `GET` of the list and
//!   of one dashboard in `v1beta1` and `v0alpha1` below
//!   `namespaces/default`, with `limit`/`continue` paging, metadata-only
//!   lists when `Accept` asks for `PartialObjectMetadataList`, and the
//!   `grafana.app/managedBy`, `managerId` and `sourcePath` annotations of
//!   dashboards another tool manages ([`Sim::set_managed`]);
//! - fault injection (status, `Retry-After`, delay) and request counting;
//! - an optional sub-path (Grafana's `serve_from_sub_path`).
//!
//! What it leaves out: writes through `/apis` (create, update, patch,
//! delete), watches, the `v1`/`v2*` versions, the `/dto` subresource,
//! Kubernetes `Status` bodies for 401/403 on `/apis` (it answers the
//! legacy ones), the admission rules that keep a managed dashboard's
//! annotations to its manager (legacy saves of such a dashboard are
//! accepted and keep the annotations), organisations other than 1 (other
//! namespaces answer 404), dashboard
//! and folder permissions (ACLs) beyond the three basic roles, library panels
//! and `__elements`, starring, dashboard restore and the trash, public
//! dashboards, alert rules in folders, `schemaVersion` migration (Grafana
//! migrates in the browser, not on save), and the old SQL store's behaviour of
//! overwriting a *different* dashboard with the same title when `overwrite` is
//! true (it saves alongside it, as unified storage does). Timestamps are real
//! wall-clock times; generated uids are deterministic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use plumb_model::loopback::{self, LoopbackServer};
use plumb_model::ProviderError;
use serde_json::{json, Value};

/// A Grafana role, as an organisation member or service account has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

/// Who a request authenticated as.
#[derive(Debug, Clone)]
struct Principal {
    login: String,
    role: Role,
}

/// A failure the simulator answers instead of the real handler, for the
/// next `times` requests that match.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only this method (`GET`, `POST`, …); any when `None`.
    pub method: Option<String>,
    /// Requests whose path (below the sub-path) starts with this.
    pub path_prefix: String,
    /// The status to answer; `None` with a `delay` answers normally, late.
    pub status: Option<u16>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u64>,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Option<Duration>,
    /// The JSON body to answer with; Grafana's `{"message": reason}` when
    /// `None`.
    pub body: Option<Value>,
    /// How many matching requests this fault affects.
    pub times: usize,
}

impl Fault {
    /// `times` answers of `status` to requests below `path_prefix`.
    pub fn status(path_prefix: &str, status: u16, times: usize) -> Fault {
        Fault {
            method: None,
            path_prefix: path_prefix.to_string(),
            status: Some(status),
            retry_after: None,
            delay: None,
            body: None,
            times,
        }
    }

    /// `times` answers delayed by `delay`.
    pub fn delay(path_prefix: &str, delay: Duration, times: usize) -> Fault {
        Fault {
            method: None,
            path_prefix: path_prefix.to_string(),
            status: None,
            retry_after: None,
            delay: Some(delay),
            body: None,
            times,
        }
    }
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve below this path (`/grafana`), like `serve_from_sub_path`.
    pub sub_path: Option<String>,
    /// Service-account tokens: (token, login, role).
    pub tokens: Vec<(String, String, Role)>,
    /// Basic-auth users: (login, password, role).
    pub users: Vec<(String, String, Role)>,
    /// Serve the `/apis` dashboards, as Grafana 12 does; off, `/apis`
    /// answers 404 as Grafana 11 does.
    pub apis: bool,
}

impl Default for SimOptions {
    /// An admin token `sim-admin-token`, an editor `sim-editor-token`, a
    /// viewer `sim-viewer-token`, and the basic-auth user `admin`/`admin`
    /// (Grafana's own first-start credentials).
    fn default() -> Self {
        SimOptions {
            sub_path: None,
            tokens: vec![
                ("sim-admin-token".into(), "sa-plumb-admin".into(), Role::Admin),
                ("sim-editor-token".into(), "sa-plumb-editor".into(), Role::Editor),
                ("sim-viewer-token".into(), "sa-plumb-viewer".into(), Role::Viewer),
            ],
            users: vec![("admin".into(), "admin".into(), Role::Admin)],
            apis: true,
        }
    }
}

#[derive(Debug, Clone)]
struct VersionEntry {
    version: i64,
    created: String,
    created_by: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Dash {
    id: i64,
    uid: String,
    /// "" is the root ("General") folder.
    folder_uid: String,
    data: Value,
    version: i64,
    created: String,
    updated: String,
    created_by: String,
    updated_by: String,
    provisioned: Option<String>,
    /// Set by another tool through `/apis`: the `grafana.app/managedBy`,
    /// `managerId` and `sourcePath` annotations.
    manager: Option<SimManager>,
    versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone)]
struct SimManager {
    kind: String,
    identity: String,
    source_path: String,
}

#[derive(Debug, Clone)]
struct Folder {
    id: i64,
    uid: String,
    title: String,
    parent_uid: Option<String>,
    version: i64,
    created: String,
    updated: String,
    created_by: String,
    updated_by: String,
}

#[derive(Debug, Default)]
struct State {
    dashboards: BTreeMap<String, Dash>,
    folders: BTreeMap<String, Folder>,
    next_id: i64,
    next_uid: u64,
    tokens: HashMap<String, Principal>,
    users: HashMap<String, (String, Principal)>,
    faults: Vec<Fault>,
    requests: BTreeMap<String, u64>,
    sub_path: String,
    apis: bool,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A handler that panicked while holding the lock leaves consistent data
    // (every mutation is a single insert/remove); keep serving.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Grafana's slug for URLs: lower-case, runs of other characters to `-`
/// (pkg/infra/slugify/slugify.go).
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(|c| c.to_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Grafana generates a short uid when none is given
    /// (pkg/util/shortid_generator.go); ours are deterministic.
    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("sim{:011}", self.next_uid)
    }

    fn folder_url(&self, f: &Folder) -> String {
        format!("{}/dashboards/f/{}/{}", self.sub_path, f.uid, slugify(&f.title))
    }

    fn dash_url(&self, d: &Dash) -> String {
        format!("{}/d/{}/{}", self.sub_path, d.uid, slugify(&title_of(&d.data)))
    }

    fn folder_json(&self, f: &Folder, role: Role) -> Value {
        let mut v = json!({
            "id": f.id, "uid": f.uid, "orgId": 1, "title": f.title, "url": self.folder_url(f),
            "hasAcl": false, "canSave": role >= Role::Editor, "canEdit": role >= Role::Editor,
            "canAdmin": role >= Role::Admin, "canDelete": role >= Role::Editor,
            "createdBy": f.created_by, "created": f.created, "updatedBy": f.updated_by,
            "updated": f.updated, "version": f.version,
        });
        // parentUid and parents only for nested folders (docs: folder.md,
        // "If nested folders are enabled, and the folder is nested").
        if let Some(parent) = &f.parent_uid {
            v["parentUid"] = json!(parent);
            let mut parents = Vec::new();
            let mut cursor = Some(parent.clone());
            let mut guard = 0;
            while let (Some(uid), true) = (cursor.clone(), guard < 64) {
                guard += 1;
                match self.folders.get(&uid) {
                    Some(p) => {
                        parents.push(json!({"id": p.id, "uid": p.uid, "title": p.title, "url": self.folder_url(p)}));
                        cursor = p.parent_uid.clone();
                    }
                    None => break,
                }
            }
            parents.reverse();
            v["parents"] = Value::Array(parents);
        }
        v
    }

    fn is_descendant(&self, uid: &str, ancestor: &str) -> bool {
        let mut cursor = self.folders.get(uid).and_then(|f| f.parent_uid.clone());
        let mut guard = 0;
        while let Some(c) = cursor {
            if c == ancestor || guard > 64 {
                return true;
            }
            guard += 1;
            cursor = self.folders.get(&c).and_then(|f| f.parent_uid.clone());
        }
        false
    }
}

fn title_of(data: &Value) -> String {
    data.get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Grafana's error body for handler errors: `{"message": …}` plus `status`
/// where the API documents one (dashboard.md, 412 answers).
fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let mut body = json!({ "message": message });
    if let Some(code) = code {
        body["status"] = json!(code);
    }
    (status, Json(body)).into_response()
}

/// Grafana's `errutil` body, used by the authentication layer
/// (pkg/apimachinery/errutil: message, messageId, statusCode, traceID).
fn errutil(status: StatusCode, message: &str, message_id: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "messageId": message_id, "statusCode": status.as_u16(), "traceID": ""})),
    )
        .into_response()
}

/// Grafana's 403 from the access-control middleware
/// (pkg/services/accesscontrol/middleware.go `deny`: `title` "Access
/// denied", `message` "You'll need additional permissions to perform this
/// action. Permissions needed: " + the evaluator's `String()`, and
/// `accessErrorId` "ACE" + 10 digits from `newID`). An `EvalAny` prints as
/// "any of a, b" (pkg/services/accesscontrol/evaluator.go
/// `anyEvaluator.String`).
fn forbidden(permission: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "title": "Access denied",
            "message": format!("You'll need additional permissions to perform this action. Permissions needed: {permission}"),
            "accessErrorId": "ACE0000000001",
        })),
    )
        .into_response()
}

/// The running simulator. Dropping it stops the server.
pub struct Sim {
    state: Shared,
    server: LoopbackServer,
    sub_path: String,
}

impl Sim {
    /// Starts a simulator on 127.0.0.1 with a free port, on the current
    /// Tokio runtime.
    pub async fn start(options: SimOptions) -> std::io::Result<Sim> {
        let sub_path = loopback::sub_path(options.sub_path.as_deref());
        let mut state = State {
            sub_path: sub_path.clone(),
            apis: options.apis,
            ..Default::default()
        };
        for (token, login, role) in options.tokens {
            state.tokens.insert(token, Principal { login, role });
        }
        for (login, password, role) in options.users {
            state.users.insert(login.clone(), (password, Principal { login, role }));
        }
        let state: Shared = Arc::new(Mutex::new(state));

        let api = Router::new()
            .route("/api/health", get(health))
            .route("/api/search", get(search))
            .route("/api/dashboards/db", post(save_dashboard))
            .route("/api/dashboards/uid/{uid}", get(get_dashboard).delete(delete_dashboard))
            .route("/api/dashboards/uid/{uid}/versions", get(dashboard_versions))
            .route("/api/folders", get(list_folders).post(create_folder))
            .route(
                "/api/folders/{uid}",
                get(get_folder).put(update_folder).delete(delete_folder),
            )
            .route("/api/folders/{uid}/move", post(move_folder))
            .route("/apis/dashboard.grafana.app", get(apis_group))
            .route(
                "/apis/dashboard.grafana.app/{version}/namespaces/{namespace}/dashboards",
                get(apis_list),
            )
            .route(
                "/apis/dashboard.grafana.app/{version}/namespaces/{namespace}/dashboards/{name}",
                get(apis_get),
            )
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let server = LoopbackServer::start("grafana", loopback::mounted(&sub_path, api)).await?;
        Ok(Sim {
            state,
            server,
            sub_path,
        })
    }

    /// The base URL to put in a target's `connection.url`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.server.addr(), self.sub_path)
    }

    /// Loads a directory of desired-state files (the provider's own format:
    /// dashboards JSON, folders from directories and `_folder.yaml`) as
    /// live state, as if someone had saved them by hand.
    pub fn seed_dir(&self, dir: &Path) -> Result<usize, ProviderError> {
        let resources = crate::desired::read(dir, dir)?;
        let mut folders: Vec<Value> = Vec::new();
        let mut dashboards: Vec<Value> = Vec::new();
        for r in &resources {
            if r.kind == crate::FOLDER_KIND {
                folders.push(r.body());
            } else {
                dashboards.push(r.body());
            }
        }
        let mut st = lock(&self.state);
        // Parents first: desired::read lists folders in path order.
        for f in folders {
            let uid = f["uid"].as_str().unwrap_or_default().to_string();
            let id = st.id();
            let t = now();
            st.folders.insert(
                uid.clone(),
                Folder {
                    id,
                    uid,
                    title: f["title"].as_str().unwrap_or_default().to_string(),
                    parent_uid: f.get("parentUid").and_then(Value::as_str).map(str::to_string),
                    version: 1,
                    created: t.clone(),
                    updated: t,
                    created_by: "admin".into(),
                    updated_by: "admin".into(),
                },
            );
        }
        let count = dashboards.len();
        for d in dashboards {
            let folder = d["folderUid"].as_str().unwrap_or_default().to_string();
            insert_dashboard(&mut st, &folder, d["dashboard"].clone(), "admin", "seeded");
        }
        Ok(count)
    }

    /// Adds or replaces a dashboard by hand (a person saving in the UI):
    /// version + 1, `updatedBy` = `login`.
    pub fn put_dashboard(&self, folder_uid: &str, dashboard: Value, login: &str) {
        let mut st = lock(&self.state);
        insert_dashboard(&mut st, folder_uid, dashboard, login, "");
    }

    /// Edits a stored dashboard by hand; returns false when there is none.
    pub fn edit_dashboard(&self, uid: &str, login: &str, edit: impl FnOnce(&mut Value)) -> bool {
        let mut st = lock(&self.state);
        let Some(d) = st.dashboards.get(uid) else {
            return false;
        };
        let folder = d.folder_uid.clone();
        let mut data = d.data.clone();
        edit(&mut data);
        insert_dashboard(&mut st, &folder, data, login, "");
        true
    }

    /// Moves a dashboard to another folder by hand.
    pub fn move_dashboard(&self, uid: &str, folder_uid: &str, login: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(d) = st.dashboards.get(uid) else {
            return false;
        };
        let data = d.data.clone();
        insert_dashboard(&mut st, folder_uid, data, login, "");
        true
    }

    /// Adds a folder by hand.
    pub fn put_folder(&self, uid: &str, title: &str, parent_uid: Option<&str>) {
        let mut st = lock(&self.state);
        let id = st.id();
        let t = now();
        st.folders.insert(
            uid.to_string(),
            Folder {
                id,
                uid: uid.to_string(),
                title: title.to_string(),
                parent_uid: parent_uid.map(str::to_string),
                version: 1,
                created: t.clone(),
                updated: t,
                created_by: "admin".into(),
                updated_by: "admin".into(),
            },
        );
    }

    /// Marks a dashboard as provisioned from a file (`meta.provisioned`).
    pub fn set_provisioned(&self, uid: &str, external_id: &str) -> bool {
        let mut st = lock(&self.state);
        match st.dashboards.get_mut(uid) {
            Some(d) => {
                d.provisioned = Some(external_id.to_string());
                true
            }
            None => false,
        }
    }

    /// Marks a dashboard as managed by another tool through `/apis`: its
    /// `grafana.app/managedBy` (`repo`, `terraform`, `kubectl`, `plugin`),
    /// `managerId` and `sourcePath` annotations. The legacy `meta` does not
    /// show it.
    pub fn set_managed(&self, uid: &str, kind: &str, identity: &str, source_path: &str) -> bool {
        let mut st = lock(&self.state);
        match st.dashboards.get_mut(uid) {
            Some(d) => {
                d.manager = Some(SimManager {
                    kind: kind.to_string(),
                    identity: identity.to_string(),
                    source_path: source_path.to_string(),
                });
                true
            }
            None => false,
        }
    }

    /// Removes a dashboard by hand.
    pub fn remove_dashboard(&self, uid: &str) -> bool {
        lock(&self.state).dashboards.remove(uid).is_some()
    }

    /// The stored dashboard model and its folder uid.
    pub fn dashboard(&self, uid: &str) -> Option<(Value, String)> {
        lock(&self.state)
            .dashboards
            .get(uid)
            .map(|d| (d.data.clone(), d.folder_uid.clone()))
    }

    /// Folder uid → (title, parent uid).
    pub fn folders(&self) -> BTreeMap<String, (String, Option<String>)> {
        lock(&self.state)
            .folders
            .values()
            .map(|f| (f.uid.clone(), (f.title.clone(), f.parent_uid.clone())))
            .collect()
    }

    /// Save messages of a dashboard's versions, oldest first.
    pub fn version_messages(&self, uid: &str) -> Vec<String> {
        lock(&self.state)
            .dashboards
            .get(uid)
            .map(|d| d.versions.iter().map(|v| v.message.clone()).collect())
            .unwrap_or_default()
    }

    pub fn dashboard_count(&self) -> usize {
        lock(&self.state).dashboards.len()
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Requests seen, keyed `METHOD /path` (path below the sub-path, no query).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.state).requests.clone()
    }

    pub fn total_requests(&self) -> u64 {
        lock(&self.state).requests.values().sum()
    }

    pub fn reset_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

/// Stores a dashboard as a save would: keeps its id and creation, assigns
/// a version one higher, writes id/uid/version into the model (Grafana's
/// store does: pkg/services/dashboards/database `saveDashboard` sets
/// `dash.Data["id"]`, `["version"]`, `["uid"]`).
fn insert_dashboard(
    st: &mut State,
    folder_uid: &str,
    mut data: Value,
    login: &str,
    message: &str,
) -> (i64, String, i64) {
    let uid = match data.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => st.uid(),
    };
    let t = now();
    let (id, version, created, created_by, mut versions, provisioned, manager) = match st.dashboards.get(&uid) {
        Some(d) => (
            d.id,
            d.version + 1,
            d.created.clone(),
            d.created_by.clone(),
            d.versions.clone(),
            d.provisioned.clone(),
            d.manager.clone(),
        ),
        None => (st.id(), 1, t.clone(), login.to_string(), Vec::new(), None, None),
    };
    if let Value::Object(map) = &mut data {
        map.insert("id".into(), json!(id));
        map.insert("uid".into(), json!(uid));
        map.insert("version".into(), json!(version));
    }
    versions.push(VersionEntry {
        version,
        created: t.clone(),
        created_by: login.to_string(),
        message: message.to_string(),
    });
    let folder_uid = normalize_folder_param(folder_uid);
    st.dashboards.insert(
        uid.clone(),
        Dash {
            id,
            uid: uid.clone(),
            folder_uid,
            data,
            version,
            created,
            updated: t,
            created_by,
            updated_by: login.to_string(),
            provisioned,
            manager,
            versions,
        },
    );
    (id, uid, version)
}

/// The root folder is "" in storage; the APIs also accept `general`
/// (folder.GeneralFolderUID in pkg/services/folder/model.go).
fn normalize_folder_param(uid: &str) -> String {
    if uid == "general" {
        String::new()
    } else {
        uid.to_string()
    }
}

/// Counts, injects faults and authenticates every request (health is open,
/// as in Grafana: pkg/api/api.go registers /api/health without reqSignedIn).
async fn gate(AxState(state): AxState<Shared>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let fault = {
        let mut st = lock(&state);
        *st.requests.entry(format!("{method} {path}")).or_default() += 1;
        let found = st.faults.iter().position(|f| {
            f.times > 0
                && path.starts_with(&f.path_prefix)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
        });
        found.map(|i| {
            st.faults[i].times -= 1;
            let fault = st.faults[i].clone();
            if st.faults[i].times == 0 {
                st.faults.remove(i);
            }
            fault
        })
    };
    if let Some(fault) = fault {
        if let Some(delay) = fault.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = fault.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = match fault.body {
                Some(body) => (status, Json(body)).into_response(),
                None => error(status, status.canonical_reason().unwrap_or("error"), None),
            };
            if let Some(secs) = fault.retry_after {
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert("retry-after", v);
                }
            }
            return response;
        }
    }
    if path == "/api/health" {
        return next.run(request).await;
    }
    match authenticate(&state, request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(response) => response,
    }
}

/// Bearer tokens and basic auth, with Grafana's wording: an unknown token
/// is "Invalid API key" (`api-key.invalid`, pkg/services/authn/clients/api_key.go),
/// a wrong password "Invalid username or password" (`password-auth.failed`,
/// pkg/services/authn/clients/password.go), no credentials "Unauthorized"
/// (`auth.unauthorized`).
#[allow(clippy::result_large_err)]
fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<Principal, Response> {
    let st = lock(state);
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(token) = header.strip_prefix("Bearer ") {
        return st
            .tokens
            .get(token.trim())
            .cloned()
            .ok_or_else(|| errutil(StatusCode::UNAUTHORIZED, "Invalid API key", "api-key.invalid"));
    }
    if let Some(encoded) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        return match st.users.get(user) {
            Some((expected, principal)) if expected == password => Ok(principal.clone()),
            _ => Err(errutil(
                StatusCode::UNAUTHORIZED,
                "Invalid username or password",
                "password-auth.failed",
            )),
        };
    }
    Err(errutil(StatusCode::UNAUTHORIZED, "Unauthorized", "auth.unauthorized"))
}

/// `/apis` exists from Grafana 12 on.
async fn health(AxState(state): AxState<Shared>) -> Response {
    let version = if lock(&state).apis {
        "12.1.0-plumb-sim"
    } else {
        "11.6.0-plumb-sim"
    };
    Json(json!({"commit": "plumb-sim", "database": "ok", "version": version})).into_response()
}

/// Unknown paths: Grafana's `NotFoundHandler` (pkg/api/index.go) answers
/// API paths (`/api…`, which includes `/apis` on a Grafana without them)
/// with `404 {"message": "Not found"}`.
async fn not_found() -> Response {
    not_found_sync()
}

/// The dashboard versions the simulator serves, preferred first (Grafana
/// 12's docs use v1beta1: grafana.com/docs/grafana/v12.4/developer-resources/api-reference/http-api/dashboard.md).
const APIS_VERSIONS: [&str; 2] = ["v1beta1", "v0alpha1"];
const APIS_GROUP: &str = "dashboard.grafana.app";

/// A Kubernetes `Status` failure (k8s.io/apimachinery pkg/api/errors:
/// `NewNotFound` words it `<resource>.<group> "<name>" not found`; an
/// unknown path is "the server could not find the requested resource").
fn k8s_status(status: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16(),
    });
    if let Some(name) = name {
        body["details"] = json!({"name": name, "group": APIS_GROUP, "kind": "dashboards"});
    }
    (status, Json(body)).into_response()
}

fn apis_off_or_unknown(st: &State, version: &str, namespace: &str) -> Option<Response> {
    if !st.apis {
        return Some(not_found_sync());
    }
    if !APIS_VERSIONS.contains(&version) || namespace != "default" {
        return Some(k8s_status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ));
    }
    None
}

fn not_found_sync() -> Response {
    error(StatusCode::NOT_FOUND, "Not found", None)
}

/// `GET /apis/dashboard.grafana.app`: the group's discovery document, a
/// Kubernetes `APIGroup` (https://kubernetes.io/docs/reference/using-api/api-concepts/
/// and k8s.io/apimachinery meta/v1 `APIGroup`).
async fn apis_group(AxState(state): AxState<Shared>) -> Response {
    if !lock(&state).apis {
        return not_found_sync();
    }
    let versions: Vec<Value> = APIS_VERSIONS
        .iter()
        .map(|v| json!({"groupVersion": format!("{APIS_GROUP}/{v}"), "version": v}))
        .collect();
    Json(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": APIS_GROUP, "versions": versions,
        "preferredVersion": {"groupVersion": format!("{APIS_GROUP}/{}", APIS_VERSIONS[0]), "version": APIS_VERSIONS[0]},
    }))
    .into_response()
}

/// A dashboard's `metadata`, as Grafana's unified storage fills it
/// (annotation keys from pkg/apimachinery/utils/meta.go: `createdBy`,
/// `updatedBy`, `updatedTimestamp`, `folder`, `managedBy`, `managerId`,
/// `sourcePath`; `name` is the dashboard uid, `generation` its version,
/// the legacy id in the `grafana.app/deprecatedInternalID` label).
fn apis_metadata(d: &Dash) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert("grafana.app/createdBy".into(), json!(format!("user:{}", d.created_by)));
    annotations.insert("grafana.app/updatedBy".into(), json!(format!("user:{}", d.updated_by)));
    annotations.insert("grafana.app/updatedTimestamp".into(), json!(d.updated));
    if !d.folder_uid.is_empty() {
        annotations.insert("grafana.app/folder".into(), json!(d.folder_uid));
    }
    if let Some(m) = &d.manager {
        annotations.insert("grafana.app/managedBy".into(), json!(m.kind));
        if !m.identity.is_empty() {
            annotations.insert("grafana.app/managerId".into(), json!(m.identity));
        }
        if !m.source_path.is_empty() {
            annotations.insert("grafana.app/sourcePath".into(), json!(m.source_path));
        }
    }
    json!({
        "name": d.uid, "namespace": "default",
        "uid": format!("{:08x}-0000-4000-8000-{:012x}", d.id, d.version),
        "resourceVersion": format!("{}", d.id * 1_000_000 + d.version),
        "generation": d.version, "creationTimestamp": d.created,
        "labels": {"grafana.app/deprecatedInternalID": d.id.to_string()},
        "annotations": annotations,
    })
}

fn apis_object(d: &Dash, version: &str) -> Value {
    let mut spec = d.data.clone();
    if let Value::Object(m) = &mut spec {
        // The spec is the dashboard model; id and version live in metadata.
        m.remove("id");
        m.remove("version");
    }
    json!({"kind": "Dashboard", "apiVersion": format!("{APIS_GROUP}/{version}"),
           "metadata": apis_metadata(d), "spec": spec, "status": {}})
}

/// `GET /apis/dashboard.grafana.app/{version}/namespaces/{ns}/dashboards`:
/// a `DashboardList` in name order, `limit` items (none or 0: all) and a
/// `metadata.continue` token while more remain (Kubernetes "Retrieving
/// large results sets in chunks",
/// https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks);
/// with `Accept: …;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` a
/// `PartialObjectMetadataList` of metadata only (what k8s.io/client-go's
/// metadata client asks for).
async fn apis_list(
    AxState(state): AxState<Shared>,
    UrlPath((version, namespace)): UrlPath<(String, String)>,
    Query(pairs): Query<Pairs>,
    headers: HeaderMap,
) -> Response {
    let st = lock(&state);
    if let Some(r) = apis_off_or_unknown(&st, &version, &namespace) {
        return r;
    }
    let limit = first(&pairs, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let start = match first(&pairs, "continue").filter(|c| !c.is_empty()) {
        None => 0,
        Some(token) => match base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("offset:").and_then(|n| n.parse::<usize>().ok()))
        {
            Some(n) => n,
            None => {
                return k8s_status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "continue key is not valid: illegal base64 data",
                    None,
                )
            }
        },
    };
    let metadata_only = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| first.contains("as=PartialObjectMetadataList"));
    let all: Vec<&Dash> = st.dashboards.values().collect();
    let end = start.saturating_add(limit).min(all.len());
    let items: Vec<Value> = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            if metadata_only {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": apis_metadata(d)})
            } else {
                apis_object(d, &version)
            }
        })
        .collect();
    let mut list_meta = json!({"resourceVersion": format!("{}", st.next_id)});
    if end < all.len() {
        list_meta["continue"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("offset:{end}")));
    }
    let (kind, api_version) = if metadata_only {
        ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string())
    } else {
        ("DashboardList".to_string(), format!("{APIS_GROUP}/{version}"))
    };
    Json(json!({"kind": kind, "apiVersion": api_version, "metadata": list_meta, "items": items})).into_response()
}

/// `GET …/dashboards/{name}`: one `Dashboard`, or a `NotFound` Status.
async fn apis_get(
    AxState(state): AxState<Shared>,
    UrlPath((version, namespace, name)): UrlPath<(String, String, String)>,
) -> Response {
    let st = lock(&state);
    if let Some(r) = apis_off_or_unknown(&st, &version, &namespace) {
        return r;
    }
    match st.dashboards.get(&name) {
        Some(d) => Json(apis_object(d, &version)).into_response(),
        None => k8s_status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("dashboards.{APIS_GROUP} \"{name}\" not found"),
            Some(&name),
        ),
    }
}

/// Query parameters as pairs, so repeated keys (`tag=a&tag=b`) survive.
type Pairs = Vec<(String, String)>;

fn values<'a>(pairs: &'a Pairs, key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

fn first<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `limit`: default 1000, at most 5000, an invalid value means 1000; `page`
/// starts at 1 (docs: folder_dashboard_search.md).
fn paging(pairs: &Pairs) -> (usize, usize) {
    let limit = match first(pairs, "limit").map(str::parse::<i64>) {
        Some(Ok(n)) if n > 0 => (n as usize).min(5000),
        _ => 1000,
    };
    let page = match first(pairs, "page").map(str::parse::<i64>) {
        Some(Ok(n)) if n > 1 => n as usize,
        _ => 1,
    };
    (limit, page)
}

async fn search(AxState(state): AxState<Shared>, Query(pairs): Query<Pairs>) -> Response {
    let st = lock(&state);
    let kind = first(&pairs, "type");
    let query = first(&pairs, "query").unwrap_or_default().to_lowercase();
    let tags = values(&pairs, "tag");
    let uids = values(&pairs, "dashboardUIDs");
    let folder_uids: Vec<String> = values(&pairs, "folderUIDs")
        .into_iter()
        .map(normalize_folder_param)
        .collect();
    let starred = first(&pairs, "starred") == Some("true");
    let (limit, page) = paging(&pairs);

    // (sort key, hit): folders before dashboards, each alphabetical by
    // title, as Grafana's default `alpha-asc` sort lists them.
    let mut hits: Vec<((u8, String, String), Value)> = Vec::new();
    if starred {
        // No stars in the simulator: a starred-only search finds nothing.
        return Json(Vec::<Value>::new()).into_response();
    }
    if kind.is_none() || kind == Some("dash-folder") {
        for f in st.folders.values() {
            if !query.is_empty() && !f.title.to_lowercase().contains(&query) {
                continue;
            }
            if !tags.is_empty() || !uids.is_empty() {
                continue;
            }
            let parent = f.parent_uid.clone().unwrap_or_default();
            if !folder_uids.is_empty() && !folder_uids.contains(&parent) {
                continue;
            }
            let mut hit = json!({
                "id": f.id, "uid": f.uid, "orgId": 1, "title": f.title,
                "uri": format!("db/{}", slugify(&f.title)), "url": st.folder_url(f), "slug": "",
                "type": "dash-folder", "tags": [], "isStarred": false, "sortMeta": 0,
            });
            // Nested folders carry their parent as folderUid.
            if let Some(p) = f.parent_uid.as_ref().and_then(|p| st.folders.get(p)) {
                hit["folderUid"] = json!(p.uid);
                hit["folderTitle"] = json!(p.title);
                hit["folderUrl"] = json!(st.folder_url(p));
                hit["folderId"] = json!(p.id);
            }
            hits.push(((0, f.title.to_lowercase(), f.uid.clone()), hit));
        }
    }
    if kind.is_none() || kind == Some("dash-db") {
        for d in st.dashboards.values() {
            let title = title_of(&d.data);
            if !query.is_empty() && !title.to_lowercase().contains(&query) {
                continue;
            }
            let dtags: Vec<&str> = d
                .data
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !tags.iter().all(|t| dtags.contains(t)) {
                continue;
            }
            if !uids.is_empty() && !uids.contains(&d.uid.as_str()) {
                continue;
            }
            if !folder_uids.is_empty() && !folder_uids.contains(&d.folder_uid) {
                continue;
            }
            let mut hit = json!({
                "id": d.id, "uid": d.uid, "orgId": 1, "title": title,
                "uri": format!("db/{}", slugify(&title)), "url": st.dash_url(d), "slug": "",
                "type": "dash-db", "tags": dtags, "isStarred": false, "sortMeta": 0,
            });
            // Root dashboards have no folder fields at all (omitempty in
            // pkg/services/search/model: Hit.FolderUID).
            if let Some(f) = st.folders.get(&d.folder_uid) {
                hit["folderId"] = json!(f.id);
                hit["folderUid"] = json!(f.uid);
                hit["folderTitle"] = json!(f.title);
                hit["folderUrl"] = json!(st.folder_url(f));
            }
            hits.push(((1, title.to_lowercase(), d.uid.clone()), hit));
        }
    }
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    let page: Vec<Value> = hits
        .into_iter()
        .skip(limit.saturating_mul(page - 1))
        .take(limit)
        .map(|(_, h)| h)
        .collect();
    Json(page).into_response()
}

fn dashboard_meta(st: &State, d: &Dash, role: Role) -> Value {
    let (folder_id, folder_title, folder_url) = match st.folders.get(&d.folder_uid) {
        Some(f) => (f.id, f.title.clone(), st.folder_url(f)),
        None => (0, "General".to_string(), String::new()),
    };
    let can_write = role >= Role::Editor && d.provisioned.is_none();
    json!({
        "type": "db", "canSave": can_write, "canEdit": role >= Role::Editor, "canAdmin": role >= Role::Admin,
        "canStar": true, "canDelete": can_write, "slug": slugify(&title_of(&d.data)), "url": st.dash_url(d),
        "expires": "0001-01-01T00:00:00Z", "created": d.created, "updated": d.updated,
        "updatedBy": d.updated_by, "createdBy": d.created_by, "version": d.version,
        "hasAcl": false, "isFolder": false,
        // The root folder: folderId 0, folderUid "" and title "General"
        // (pkg/api/dashboard.go GetDashboard fills folderTitle "General").
        "folderId": folder_id, "folderUid": d.folder_uid, "folderTitle": folder_title, "folderUrl": folder_url,
        "provisioned": d.provisioned.is_some(),
        "provisionedExternalId": d.provisioned.clone().unwrap_or_default(),
    })
}

async fn get_dashboard(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
) -> Response {
    let st = lock(&state);
    match st.dashboards.get(&uid) {
        Some(d) => Json(json!({"dashboard": d.data, "meta": dashboard_meta(&st, d, who.role)})).into_response(),
        None => error(StatusCode::NOT_FOUND, "Dashboard not found", None),
    }
}

async fn dashboard_versions(
    AxState(state): AxState<Shared>,
    UrlPath(uid): UrlPath<String>,
    Query(pairs): Query<Pairs>,
) -> Response {
    let st = lock(&state);
    let Some(d) = st.dashboards.get(&uid) else {
        return error(StatusCode::NOT_FOUND, "Dashboard not found", None);
    };
    let limit = first(&pairs, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100);
    let versions: Vec<Value> = d
        .versions
        .iter()
        .rev()
        .take(limit)
        .map(|v| {
            json!({"dashboardId": d.id, "uid": d.uid, "version": v.version, "parentVersion": v.version - 1,
                   "restoredFrom": 0, "created": v.created, "createdBy": v.created_by, "message": v.message})
        })
        .collect();
    Json(json!({"continueToken": "", "versions": versions})).into_response()
}

/// `POST /api/dashboards/db` (docs: dashboard.md "Create / Update dashboard";
/// validation as in pkg/services/dashboards/service/dashboard_service.go
/// `BuildSaveDashboardCommand` and the legacy store's
/// `getExistingDashboardByIDOrUIDForUpdate`).
async fn save_dashboard(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    // pkg/api/api.go guards POST /api/dashboards/db with
    // EvalAny(dashboards:create, dashboards:write).
    if who.role < Role::Editor {
        return forbidden("any of dashboards:create, dashboards:write");
    }
    let Ok(cmd) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad request data", None);
    };
    let Some(mut dashboard) = cmd.get("dashboard").filter(|d| d.is_object()).cloned() else {
        return error(StatusCode::BAD_REQUEST, "bad request data", None);
    };
    let overwrite = cmd.get("overwrite").and_then(Value::as_bool).unwrap_or(false);
    let message = cmd
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // folderUid wins over folderId; neither means the root (docs: "if you do
    // not define the folderId or the folderUid property, then the
    // dashboard(s) are moved to the root level").
    let folder_uid = normalize_folder_param(cmd.get("folderUid").and_then(Value::as_str).unwrap_or_default());

    let mut st = lock(&state);
    let title = title_of(&dashboard);
    if title.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Dashboard title cannot be empty",
            Some("empty-name"),
        );
    }
    let uid = dashboard
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if uid.len() > 40 {
        return error(
            StatusCode::BAD_REQUEST,
            "uid too long, max 40 characters",
            Some("uid-too-long"),
        );
    }
    if !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return error(
            StatusCode::BAD_REQUEST,
            "uid contains illegal characters",
            Some("uid-invalid"),
        );
    }
    if !folder_uid.is_empty() && !st.folders.contains_key(&folder_uid) {
        return error(StatusCode::BAD_REQUEST, "folder not found", Some("folder-not-found"));
    }
    let body_id = dashboard.get("id").and_then(Value::as_i64);
    let body_version = dashboard.get("version").and_then(Value::as_i64);
    let existing = if uid.is_empty() {
        match body_id {
            Some(id) => match st.dashboards.values().find(|d| d.id == id) {
                Some(d) => Some(d.clone()),
                None => return error(StatusCode::NOT_FOUND, "Dashboard not found", Some("not-found")),
            },
            None => None,
        }
    } else {
        st.dashboards.get(&uid).cloned()
    };
    if let Some(existing) = &existing {
        if existing.provisioned.is_some() {
            return error(StatusCode::BAD_REQUEST, "Cannot save provisioned dashboard", None);
        }
        if !overwrite {
            if body_id.is_some_and(|id| id != existing.id) || body_id.is_none() {
                return error(
                    StatusCode::PRECONDITION_FAILED,
                    "A dashboard with the same uid already exists",
                    Some("name-exists"),
                );
            }
            if body_version != Some(existing.version) {
                return error(
                    StatusCode::PRECONDITION_FAILED,
                    "The dashboard has been changed by someone else",
                    Some("version-mismatch"),
                );
            }
        }
    }
    if !overwrite {
        let same_name = st.dashboards.values().any(|d| {
            d.folder_uid == folder_uid
                && title_of(&d.data).eq_ignore_ascii_case(&title)
                && existing.as_ref().is_none_or(|e| e.uid != d.uid)
        });
        if same_name {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "A dashboard with the same name in the folder already exists",
                Some("name-exists"),
            );
        }
    }
    if let Some(existing) = &existing {
        dashboard["uid"] = json!(existing.uid);
    }
    let (id, uid, version) = insert_dashboard(&mut st, &folder_uid, dashboard, &who.login, &message);
    let url = st.dashboards.get(&uid).map(|d| st.dash_url(d)).unwrap_or_default();
    Json(
        json!({"id": id, "uid": uid, "url": url, "status": "success", "version": version,
                "slug": slugify(&title), "folderUid": folder_uid}),
    )
    .into_response()
}

async fn delete_dashboard(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
) -> Response {
    if who.role < Role::Editor {
        return forbidden("dashboards:delete");
    }
    let mut st = lock(&state);
    match st.dashboards.get(&uid) {
        None => error(StatusCode::NOT_FOUND, "Dashboard not found", None),
        // pkg/services/dashboards/errors.go
        // ErrDashboardCannotDeleteProvisionedDashboard.
        Some(d) if d.provisioned.is_some() => {
            error(StatusCode::BAD_REQUEST, "provisioned dashboard cannot be deleted", None)
        }
        Some(d) => {
            let title = title_of(&d.data);
            let id = d.id;
            st.dashboards.remove(&uid);
            Json(json!({"title": title, "message": format!("Dashboard {title} deleted"), "id": id})).into_response()
        }
    }
}

async fn list_folders(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    Query(pairs): Query<Pairs>,
) -> Response {
    let st = lock(&state);
    let (limit, page) = paging(&pairs);
    // Nested folders: without parentUid, the folders directly below the
    // root; with it, that folder's children (docs: folder.md "Get all
    // folders").
    let parent = first(&pairs, "parentUid").filter(|p| !p.is_empty()).map(str::to_string);
    if let Some(p) = &parent {
        if !st.folders.contains_key(p) {
            return error(StatusCode::NOT_FOUND, "folder not found", None);
        }
    }
    let mut list: Vec<&Folder> = st.folders.values().filter(|f| f.parent_uid == parent).collect();
    list.sort_by(|a, b| (a.title.to_lowercase(), &a.uid).cmp(&(b.title.to_lowercase(), &b.uid)));
    let page: Vec<Value> = list
        .into_iter()
        .skip(limit.saturating_mul(page - 1))
        .take(limit)
        .map(|f| {
            let full = st.folder_json(f, who.role);
            let mut v = json!({"id": f.id, "uid": f.uid, "title": f.title});
            if let Some(p) = full.get("parentUid") {
                v["parentUid"] = p.clone();
            }
            v
        })
        .collect();
    Json(page).into_response()
}

async fn get_folder(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
) -> Response {
    let st = lock(&state);
    match st.folders.get(&uid) {
        Some(f) => Json(st.folder_json(f, who.role)).into_response(),
        None => error(StatusCode::NOT_FOUND, "folder not found", None),
    }
}

/// `POST /api/folders` (docs: folder.md "Create folder": 409 when the uid
/// exists; pkg/services/dashboards/errors.go ErrFolderWithSameUIDExists).
async fn create_folder(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    if who.role < Role::Editor {
        return forbidden("folders:create");
    }
    let Ok(cmd) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad request data", None);
    };
    let title = cmd.get("title").and_then(Value::as_str).unwrap_or_default().to_string();
    if title.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "folder title cannot be empty", None);
    }
    let mut st = lock(&state);
    let uid = match cmd.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => st.uid(),
    };
    if uid.len() > 40 {
        return error(StatusCode::BAD_REQUEST, "uid too long, max 40 characters", None);
    }
    if st.folders.contains_key(&uid) {
        return error(StatusCode::CONFLICT, "a folder with the same uid already exists", None);
    }
    let parent = cmd.get("parentUid").and_then(Value::as_str).filter(|p| !p.is_empty());
    if let Some(p) = parent {
        if !st.folders.contains_key(p) {
            return error(StatusCode::NOT_FOUND, "parent folder not found", None);
        }
    }
    let id = st.id();
    let t = now();
    let folder = Folder {
        id,
        uid: uid.clone(),
        title,
        parent_uid: parent.map(str::to_string),
        version: 1,
        created: t.clone(),
        updated: t,
        created_by: who.login.clone(),
        updated_by: who.login.clone(),
    };
    let v = st.folder_json(&folder, who.role);
    st.folders.insert(uid, folder);
    Json(v).into_response()
}

/// The JSON body of a folder write, or the answer refusing it: 403 below
/// Editor (Grafana's `folders:write` action), 400 for a body that is not JSON.
#[allow(clippy::result_large_err)]
fn folder_write_command(who: &Principal, body: &[u8]) -> Result<Value, Response> {
    if who.role < Role::Editor {
        return Err(forbidden("folders:write"));
    }
    serde_json::from_slice::<Value>(body).map_err(|_| error(StatusCode::BAD_REQUEST, "bad request data", None))
}

/// `PUT /api/folders/{uid}`: `version` must match unless `overwrite`
/// (docs: folder.md "Update folder", 412 version-mismatch).
async fn update_folder(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let cmd = match folder_write_command(&who, &body) {
        Ok(cmd) => cmd,
        Err(refusal) => return refusal,
    };
    let mut st = lock(&state);
    let Some(mut folder) = st.folders.get(&uid).cloned() else {
        return error(StatusCode::NOT_FOUND, "folder not found", None);
    };
    let overwrite = cmd.get("overwrite").and_then(Value::as_bool).unwrap_or(false);
    if !overwrite && cmd.get("version").and_then(Value::as_i64) != Some(folder.version) {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "The folder has been changed by someone else",
            Some("version-mismatch"),
        );
    }
    if let Some(title) = cmd.get("title").and_then(Value::as_str) {
        if title.trim().is_empty() {
            return error(StatusCode::BAD_REQUEST, "folder title cannot be empty", None);
        }
        folder.title = title.to_string();
    }
    folder.version += 1;
    folder.updated = now();
    folder.updated_by = who.login.clone();
    let v = st.folder_json(&folder, who.role);
    st.folders.insert(uid, folder);
    Json(v).into_response()
}

async fn move_folder(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let cmd = match folder_write_command(&who, &body) {
        Ok(cmd) => cmd,
        Err(refusal) => return refusal,
    };
    let mut st = lock(&state);
    let Some(mut folder) = st.folders.get(&uid).cloned() else {
        return error(StatusCode::NOT_FOUND, "folder not found", None);
    };
    let parent = cmd
        .get("parentUid")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if let Some(p) = &parent {
        if !st.folders.contains_key(p) {
            return error(StatusCode::NOT_FOUND, "parent folder not found", None);
        }
        if p == &uid || st.is_descendant(p, &uid) {
            return error(StatusCode::BAD_REQUEST, "circular reference detected", None);
        }
    }
    folder.parent_uid = parent;
    folder.version += 1;
    folder.updated = now();
    folder.updated_by = who.login.clone();
    let v = st.folder_json(&folder, who.role);
    st.folders.insert(uid, folder);
    Json(v).into_response()
}

/// Deletes a folder with its subfolders and dashboards (docs: folder.md
/// "Delete folder").
async fn delete_folder(
    AxState(state): AxState<Shared>,
    Extension(who): Extension<Principal>,
    UrlPath(uid): UrlPath<String>,
) -> Response {
    if who.role < Role::Editor {
        return forbidden("folders:delete");
    }
    let mut st = lock(&state);
    let Some(folder) = st.folders.get(&uid).cloned() else {
        return error(StatusCode::NOT_FOUND, "folder not found", None);
    };
    let doomed: Vec<String> = st
        .folders
        .keys()
        .filter(|f| **f == uid || st.is_descendant(f, &uid))
        .cloned()
        .collect();
    st.dashboards.retain(|_, d| !doomed.contains(&d.folder_uid));
    st.folders.retain(|k, _| !doomed.contains(k));
    Json(json!({"message": "Folder deleted", "id": folder.id, "title": folder.title})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_grafana() {
        assert_eq!(slugify("Production Overview"), "production-overview");
        assert_eq!(slugify("  K8s / Nodes!! "), "k8s-nodes");
    }
}
