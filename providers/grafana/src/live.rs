//! Reading what is live: folders through `GET /api/folders` (walking nested
//! folders with `parentUid` only where the desired state needs it),
//! dashboards through paged `GET /api/search?type=dash-db` and then
//! `GET /api/dashboards/uid/{uid}` with bounded concurrency. The scope is
//! what the desired state implies: its dashboards wherever they are now,
//! and everything inside the folders it manages; with no desired state
//! (`plumb import`), everything. Dashboards another tool manages are
//! found from the legacy `meta.provisioned` and, where Grafana has them,
//! the `/apis` annotations (see `apis`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use futures_util::stream::{self, StreamExt};
use plumb_model::{Authority, ChangedBy, Ctx, Desired, Finding, Live, ProviderError, Resource, Severity};
use serde_json::{json, Value};

use crate::client::Client;
use crate::{dashboard_id, folder_id, normalize, DASHBOARD_KIND, FOLDER_KIND};

/// Page size for search: Grafana's maximum (folder_dashboard_search.md:
/// "max is 5000"), so a large instance needs few pages.
pub const SEARCH_LIMIT: usize = 5000;
/// Page size for folder lists (folder.md: "the default is 1000").
pub const FOLDER_LIMIT: usize = 1000;
/// No instance has this many pages; a server that never ends a listing
/// must not keep plumb reading forever.
const MAX_PAGES: usize = 10_000;

/// What the live read found, with what apply needs to remember.
pub struct LiveRead {
    pub live: Live,
    /// Dashboards managed elsewhere (file provisioning, or a manager named
    /// by `/apis`), uid → who manages them: never saved, deleted or pruned.
    pub provisioned: HashMap<String, String>,
}

/// The desired state's shape, as far as scoping needs it.
struct Scope {
    everything: bool,
    /// Desired dashboard uid → its `schemaVersion`.
    dashboards: BTreeMap<String, Option<Value>>,
    /// Folder uid → desired parent uid.
    folders: BTreeMap<String, Option<String>>,
    /// Managed folders and their desired ancestors: the folders to walk.
    walk: BTreeSet<String>,
}

impl Scope {
    fn of(desired: &Desired) -> Scope {
        let mut dashboards = BTreeMap::new();
        let mut folders = BTreeMap::new();
        for r in &desired.resources {
            let body = r.body();
            if r.kind == FOLDER_KIND {
                let uid = body["uid"].as_str().unwrap_or_default().to_string();
                let parent = body.get("parentUid").and_then(Value::as_str).map(str::to_string);
                folders.insert(uid, parent);
            } else if r.kind == DASHBOARD_KIND {
                let uid = body["dashboard"]["uid"].as_str().unwrap_or_default().to_string();
                dashboards.insert(uid, normalize::schema_version(&body).cloned());
            }
        }
        let walk = folders.keys().cloned().collect();
        Scope {
            everything: desired.resources.is_empty(),
            dashboards,
            folders,
            walk,
        }
    }

    fn manages(&self, folder: &str) -> bool {
        self.everything || (!folder.is_empty() && self.folders.contains_key(folder))
    }
}

/// A paged listing, stopping at the first short page.
async fn paged(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
    limit: usize,
) -> Result<Vec<Value>, ProviderError> {
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", limit.to_string()));
        q.push(("page", page.to_string()));
        let answer = client.get(path, &q).await?;
        let Value::Array(items) = answer else {
            return Err(ProviderError::Api {
                request: format!("GET {}", client.url(path, &q)?),
                status: Some(200),
                message: "expected a JSON array".into(),
            });
        };
        let n = items.len();
        all.extend(items);
        if n < limit {
            return Ok(all);
        }
    }
    Err(ProviderError::Other(format!(
        "GET {path}: more than {MAX_PAGES} pages; giving up"
    )))
}

/// Folders in scope: uid → (title, parent uid).
async fn read_folders(
    client: &Client,
    scope: &Scope,
) -> Result<BTreeMap<String, (String, Option<String>)>, ProviderError> {
    let mut found: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut queue: VecDeque<Option<String>> = VecDeque::from([None]);
    let mut expanded: HashSet<Option<String>> = HashSet::new();
    while let Some(parent) = queue.pop_front() {
        if !expanded.insert(parent.clone()) {
            continue;
        }
        let query: Vec<(&str, String)> = parent.iter().map(|p| ("parentUid", p.clone())).collect();
        let items = match paged(client, "api/folders", &query, FOLDER_LIMIT).await {
            Ok(items) => items,
            // The parent vanished between two requests.
            Err(ProviderError::Api { status: Some(404), .. }) if parent.is_some() => continue,
            Err(e) => return Err(e),
        };
        for item in items {
            let Some(uid) = item.get("uid").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if found.contains_key(&uid) {
                // A Grafana without nested folders ignores parentUid and
                // lists every folder again.
                continue;
            }
            let title = item
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let live_parent = item
                .get("parentUid")
                .map(normalize::folder_uid)
                .filter(|p| !p.is_empty())
                .or_else(|| parent.clone());
            if scope.everything || scope.walk.contains(&uid) {
                queue.push_back(Some(uid.clone()));
            }
            found.insert(uid, (title, live_parent));
        }
    }
    // A managed folder moved by hand below a folder we did not walk.
    for uid in scope.folders.keys() {
        if found.contains_key(uid) {
            continue;
        }
        match client.get(&format!("api/folders/{uid}"), &[]).await {
            Ok(f) => {
                let title = f.get("title").and_then(Value::as_str).unwrap_or_default().to_string();
                let parent = f.get("parentUid").map(normalize::folder_uid).filter(|p| !p.is_empty());
                found.insert(uid.clone(), (title, parent));
            }
            Err(fail) if fail.status == Some(404) => {}
            Err(fail) => return Err(fail.error),
        }
    }
    Ok(found)
}

/// Reads live state in the scope `desired` implies.
pub async fn read(
    client: &Client,
    concurrency: usize,
    namespace: &str,
    desired: &Desired,
    ctx: &Ctx,
) -> Result<LiveRead, ProviderError> {
    let scope = Scope::of(desired);
    let own_folders = ctx
        .guards
        .get(crate::GUARD_AUTHORITATIVE_FOLDERS)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut resources = Vec::new();
    let mut findings = Vec::new();

    let folders = read_folders(client, &scope).await?;
    for (uid, (title, parent)) in &folders {
        let parent_uid = parent.clone().unwrap_or_default();
        let in_scope = scope.everything || scope.folders.contains_key(uid) || scope.manages(&parent_uid);
        if !in_scope {
            continue;
        }
        let mut body = json!({"uid": uid, "title": title});
        if let Some(p) = parent {
            body["parentUid"] = json!(p);
        }
        let authority = if own_folders && !scope.everything && scope.manages(&parent_uid) {
            Authority::Owned
        } else {
            Authority::Foreign
        };
        resources.push(Resource::new(folder_id(uid), FOLDER_KIND, body).with_authority(authority));
    }

    let hits = paged(client, "api/search", &[("type", "dash-db".to_string())], SEARCH_LIMIT).await?;
    let wanted: Vec<String> = hits
        .iter()
        .filter_map(|h| {
            let uid = h.get("uid").and_then(Value::as_str)?;
            let folder = h.get("folderUid").map(normalize::folder_uid).unwrap_or_default();
            (scope.everything || scope.dashboards.contains_key(uid) || scope.manages(&folder)).then(|| uid.to_string())
        })
        .collect();
    tracing::debug!(target_name = %ctx.target, hits = hits.len(), fetching = wanted.len(), "grafana search done");
    // Dashboards managed through /apis (Git Sync, Terraform, …); empty on a
    // Grafana without those endpoints.
    let managers = crate::apis::managed_dashboards(client, namespace)
        .await?
        .unwrap_or_default();

    // Each answer is reduced to a compact resource as soon as it arrives,
    // so at most `concurrency` parsed dashboards are in memory at once.
    let fetched: Vec<Result<Option<Fetched>, ProviderError>> = stream::iter(wanted.into_iter().map(|uid| async move {
        match client.get(&format!("api/dashboards/uid/{uid}"), &[]).await {
            Ok(v) => Ok(Fetched::from_answer(v)),
            // Deleted between the search and this request.
            Err(fail) if fail.status == Some(404) => Ok(None),
            Err(fail) => Err(fail.error),
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;

    let mut provisioned = HashMap::new();
    for answer in fetched {
        let Some(f) = answer? else { continue };
        let Fetched {
            uid,
            folder,
            meta,
            schema_version,
            body,
        } = f;
        let id = dashboard_id(&uid);
        let in_git = scope.dashboards.contains_key(&uid);
        // One finding per dashboard: the /apis annotation names the manager
        // more precisely than the legacy flag, which only file
        // provisioning sets.
        let managed_by = match managers.get(&uid) {
            Some(m) => Some(m.describe()),
            None if meta.get("provisioned").and_then(Value::as_bool) == Some(true) => {
                let external = meta
                    .get("provisionedExternalId")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                Some(format!("provisioned into Grafana from a file{external}"))
            }
            None => None,
        };
        if let Some(who) = managed_by {
            findings.push(Finding {
                id: id.clone(),
                kind: DASHBOARD_KIND.into(),
                message: format!(
                    "managed elsewhere: {who}; plumb never saves, deletes or prunes it{}",
                    if in_git { ", although Git also has it" } else { "" }
                ),
                severity: Severity::Warning,
            });
            provisioned.insert(uid.clone(), who);
            if !in_git {
                continue;
            }
        }
        if let Some(wanted) = scope.dashboards.get(&uid) {
            let (d, l) = (wanted.as_ref(), schema_version.as_ref());
            if d.is_some() && l.is_some() && d != l {
                findings.push(Finding {
                    id: id.clone(),
                    kind: DASHBOARD_KIND.into(),
                    message: format!(
                        "schemaVersion differs (Git {}, Grafana {}); not drift on its own: the browser migrates dashboards when it loads them",
                        d.cloned().unwrap_or_default(),
                        l.cloned().unwrap_or_default()
                    ),
                    severity: Severity::Warning,
                });
            }
        }
        let version = meta.get("version").and_then(Value::as_i64).map(|v| v.to_string());
        let changed_by = meta
            .get("updatedBy")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|who| ChangedBy {
                who: who.to_string(),
                when: meta.get("updated").and_then(Value::as_str).map(str::to_string),
            });
        let authority = if own_folders && !scope.everything && scope.manages(&folder) && !provisioned.contains_key(&uid)
        {
            Authority::Owned
        } else {
            Authority::Foreign
        };
        let mut resource = body.with_authority(authority);
        resource.version = version;
        resource.changed_by = changed_by;
        resources.push(resource);
    }
    resources.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(LiveRead {
        live: Live { resources, findings },
        provisioned,
    })
}

/// One dashboard answer reduced to what the read needs: the resource
/// (compact text) and the few `meta` fields plumb uses.
struct Fetched {
    uid: String,
    folder: String,
    meta: Value,
    schema_version: Option<Value>,
    body: Resource,
}

impl Fetched {
    fn from_answer(mut answer: Value) -> Option<Fetched> {
        let model = answer.get_mut("dashboard").map(Value::take).unwrap_or(Value::Null);
        let uid = model.get("uid").and_then(Value::as_str)?.to_string();
        let full_meta = answer.get("meta").cloned().unwrap_or(Value::Null);
        let mut meta = serde_json::Map::new();
        for key in [
            "version",
            "updatedBy",
            "updated",
            "provisioned",
            "provisionedExternalId",
        ] {
            if let Some(v) = full_meta.get(key) {
                meta.insert(key.to_string(), v.clone());
            }
        }
        let meta = Value::Object(meta);
        let meta = if meta.get("version").is_none() {
            let mut m = meta;
            if let Some(v) = model.get("version") {
                m["version"] = v.clone();
            }
            m
        } else {
            meta
        };
        // The folder comes from meta, not the body (dashboard.md "Get
        // dashboard by uid": the folder's uid is in the metadata).
        let folder = full_meta
            .get("folderUid")
            .map(normalize::folder_uid)
            .unwrap_or_default();
        let schema_version = model.get("schemaVersion").cloned();
        let body = Resource::new(
            dashboard_id(&uid),
            DASHBOARD_KIND,
            json!({"folderUid": folder, "dashboard": model}),
        );
        Some(Fetched {
            uid,
            folder,
            meta,
            schema_version,
            body,
        })
    }
}
