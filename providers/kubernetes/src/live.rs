//! Reading live state: discovery of each desired kind, one paginated list
//! per kind and namespace (500 a page, never one GET per object), the scope
//! rules for what counts as unmanaged, and `changed_by` from managedFields.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::Method;
use plumb_model::{Authority, ChangedBy, Desired, Finding, ProviderError, Resource};
use serde_json::Value;

use crate::client::{Api, ApiResource};
use crate::desired::secret_sensitivity;
use crate::managed::{self, Cursor};
use crate::normalize::{self, LAST_APPLIED, MARK_LABEL};
use crate::{ids, keys};

/// Items per list page.
pub const PAGE_SIZE: usize = 500;

/// Kinds `plumb import` reads when the connection names none.
pub const DEFAULT_IMPORT_KINDS: &[&str] = &[
    "v1/ConfigMap",
    "v1/Secret",
    "v1/Service",
    "v1/ServiceAccount",
    "v1/PersistentVolumeClaim",
    "apps/v1/Deployment",
    "apps/v1/StatefulSet",
    "apps/v1/DaemonSet",
    "batch/v1/CronJob",
    "networking.k8s.io/v1/Ingress",
    "networking.k8s.io/v1/NetworkPolicy",
    "rbac.authorization.k8s.io/v1/Role",
    "rbac.authorization.k8s.io/v1/RoleBinding",
    "policy/v1/PodDisruptionBudget",
    "autoscaling/v2/HorizontalPodAutoscaler",
];

/// What to read.
pub struct Scope<'a> {
    pub target: &'a str,
    /// Namespaces for namespaced kinds.
    pub namespaces: Vec<String>,
    /// Cluster-scoped kinds whose unmanaged objects are reported (policy
    /// guard `unmanaged_cluster_kinds`).
    pub cluster_kinds_opted_in: BTreeSet<String>,
}

/// Reads the live objects of every kind in `desired` (or `import_kinds`
/// when it is empty) within the scope.
pub async fn read(
    api: &Api,
    desired: &Desired,
    scope: &Scope<'_>,
    import_kinds: &[String],
) -> Result<(Vec<Resource>, Vec<Finding>), ProviderError> {
    // Kinds to list, with the first file that uses each (for messages).
    let mut kinds: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in &desired.resources {
        let body = r.body();
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let origin = r.origin.as_ref().map(|o| o.to_string()).unwrap_or_default();
        kinds.entry((api_version, r.kind.clone())).or_insert(origin);
    }
    if desired.resources.is_empty() {
        let wanted: Vec<String> = if import_kinds.is_empty() {
            DEFAULT_IMPORT_KINDS.iter().map(|s| s.to_string()).collect()
        } else {
            import_kinds.to_vec()
        };
        for k in wanted {
            let (api_version, kind) = k.rsplit_once('/').unwrap_or(("v1", k.as_str()));
            kinds.insert(
                (api_version.to_string(), kind.to_string()),
                "connection.import_kinds".into(),
            );
        }
    }
    let crds_in_git: BTreeSet<(String, String)> = desired
        .resources
        .iter()
        .filter(|r| r.kind == "CustomResourceDefinition")
        .map(|r| {
            let b = r.body();
            let s = |p: &str| b.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            (s("/spec/group"), s("/spec/names/kind"))
        })
        .collect();
    let desired_ids: HashMap<&str, &Resource> = desired.resources.iter().map(|r| (r.id.as_str(), r)).collect();

    let mut resolved = Vec::new();
    let mut unknown = Vec::new();
    for ((api_version, kind), origin) in &kinds {
        match api.resolve(api_version, kind).await? {
            Some(res) => resolved.push(res),
            None => {
                let (group, _) = ids::split_api_version(api_version);
                if crds_in_git.contains(&(group.to_string(), kind.clone())) {
                    tracing::debug!(%api_version, %kind, "kind not served yet; its CRD is in the desired state");
                } else {
                    unknown.push(format!("{api_version} {kind} (first used in {origin})"));
                }
            }
        }
    }
    if !unknown.is_empty() {
        return Err(ProviderError::Other(format!(
            "the cluster does not serve these kinds: {}",
            unknown.join(", ")
        )));
    }

    let mut namespaces: Vec<String> = scope.namespaces.clone();
    if namespaces.is_empty() {
        let mut from_desired: BTreeSet<String> = BTreeSet::new();
        for r in &desired.resources {
            if let Some(ns) = r.body().pointer("/metadata/namespace").and_then(Value::as_str) {
                from_desired.insert(ns.to_string());
            }
        }
        namespaces = from_desired.into_iter().collect();
    }

    let mut resources = Vec::new();
    let findings = Vec::new();
    for res in &resolved {
        let lists: Vec<Option<&str>> = if res.namespaced {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        } else {
            vec![None]
        };
        for namespace in lists {
            for object in list_all(api, res, namespace).await? {
                let Some(id) = ids::id_of(&object) else { continue };
                let desired_match = desired_ids.get(id.as_str()).copied();
                if desired_match.is_none() && !in_scope(res, &object, scope) {
                    continue;
                }
                resources.push(to_resource(id, res, object, desired_match, scope.target));
            }
        }
    }
    Ok((resources, findings))
}

/// Lists every object of `res` (in `namespace`), page by page.
pub async fn list_all(api: &Api, res: &ApiResource, namespace: Option<&str>) -> Result<Vec<Value>, ProviderError> {
    let base = res.path(namespace, None);
    let mut items = Vec::new();
    let mut continue_token: Option<String> = None;
    // Bounded: a server that keeps answering with a continue token stops
    // after a million objects' worth of pages.
    for _ in 0..2000 {
        let path = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(token) = &continue_token {
                query.append_pair("continue", token);
            }
            format!("{base}?{}", query.finish())
        };
        let response = api.request(Method::GET, &path, None).await?;
        if response.status != 200 {
            let mut err = api.status_error(&Method::GET, &path, &response);
            if response.status == 403 {
                if let ProviderError::Api { message, .. } = &mut err {
                    let place = namespace
                        .map(|n| format!(" in namespace {n}"))
                        .unwrap_or_else(|| " cluster-wide".into());
                    let group = if res.group.is_empty() {
                        "core"
                    } else {
                        res.group.as_str()
                    };
                    *message = format!("cannot list {} (group {group}){place}: {message}", res.plural);
                }
            }
            return Err(err);
        }
        let list = response.json().map_err(|message| ProviderError::Api {
            request: api.describe(&Method::GET, &path),
            status: Some(200),
            message,
        })?;
        if let Some(Value::Array(page)) = list.get("items") {
            for item in page {
                let mut item = item.clone();
                // Items of built-in lists come without apiVersion and kind.
                if let Value::Object(map) = &mut item {
                    map.entry("apiVersion")
                        .or_insert_with(|| Value::String(res.api_version()));
                    map.entry("kind").or_insert_with(|| Value::String(res.kind.clone()));
                }
                items.push(item);
            }
        }
        continue_token = list
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if continue_token.is_none() {
            return Ok(items);
        }
    }
    Err(ProviderError::Api {
        request: api.describe(&Method::GET, &base),
        status: None,
        message: "the list did not end after 2000 pages".into(),
    })
}

/// Whether a live object Git lacks belongs in the plan (as `unmanaged`, or
/// `delete` when it carries plumb's mark).
fn in_scope(res: &ApiResource, object: &Value, scope: &Scope<'_>) -> bool {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let marked = object
        .pointer(&format!("/metadata/labels/{}", MARK_LABEL.replace('/', "~1")))
        .and_then(Value::as_str)
        == Some(scope.target);
    if marked {
        return true;
    }
    // Controllers' objects (ReplicaSets of a Deployment, Jobs of a CronJob,
    // Pods) belong to their owner.
    if object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty())
    {
        return false;
    }
    if system_object(res, object, name) {
        return false;
    }
    if !res.namespaced {
        return scope.cluster_kinds_opted_in.contains(&res.kind) || scope.cluster_kinds_opted_in.contains("*");
    }
    true
}

/// What Kubernetes creates by itself: the `default` ServiceAccount of every
/// namespace (serviceaccounts controller), the `kube-root-ca.crt` ConfigMap
/// (root-ca-cert-publisher), the `kubernetes` Service in `default`
/// (apiserver), service-account token Secrets, and cluster-scoped `system:*`
/// RBAC objects and `kube-*`/`default` namespaces (bootstrap policy,
/// plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
fn system_object(res: &ApiResource, object: &Value, name: &str) -> bool {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match res.kind.as_str() {
        "ServiceAccount" => name == "default",
        "ConfigMap" => name == "kube-root-ca.crt",
        "Service" => name == "kubernetes" && namespace == "default",
        "Secret" => object.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token"),
        "ClusterRole" | "ClusterRoleBinding" => name.starts_with("system:"),
        "Role" | "RoleBinding" => name.starts_with("system:"),
        "Namespace" => name.starts_with("kube-") || name == "default",
        "Endpoints" | "EndpointSlice" | "Event" | "Lease" => true,
        _ => false,
    }
}

fn to_resource(id: String, res: &ApiResource, mut object: Value, desired: Option<&Resource>, target: &str) -> Resource {
    let marked = object
        .pointer(&format!("/metadata/labels/{}", MARK_LABEL.replace('/', "~1")))
        .and_then(Value::as_str)
        == Some(target);
    if res.kind == "Secret" {
        // kubectl's last-applied copy holds the Secret's values in clear;
        // it is never compared, so it is not kept at all.
        if let Some(Value::Object(a)) = object.pointer_mut("/metadata/annotations") {
            a.remove(LAST_APPLIED);
        }
    }
    let version = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let changed_by = changed_by(&res.kind, desired.map(|d| d.body()), &object);
    let mut resource = Resource::new(id, res.kind.clone(), object).with_authority(if marked {
        Authority::Owned
    } else {
        Authority::Foreign
    });
    resource.version = version;
    resource.changed_by = changed_by;
    if res.kind == "Secret" {
        resource.sensitive = secret_sensitivity();
    }
    resource
}

/// The field manager behind the drift, and when it last wrote: the owner
/// of the drifted fields that wrote last (a client such as `kubectl-edit`,
/// not a person). For an object Git lacks, its last writer.
pub fn changed_by(kind: &str, desired: Option<Value>, live: &Value) -> Option<ChangedBy> {
    let entries = managed::entries(live);
    if entries.is_empty() {
        return None;
    }
    let owners: Vec<usize> = match desired {
        Some(mut d) => {
            let mut l = live.clone();
            normalize::normalize_pair(kind, Some(&mut d), Some(&mut l));
            let mut out = Vec::new();
            drift_owners(
                kind,
                Some(&d),
                Some(&l),
                Cursor::root(&entries),
                &mut Vec::new(),
                &mut out,
            );
            out
        }
        None => (0..entries.len()).collect(),
    };
    owners
        .into_iter()
        .map(|i| &entries[i])
        .max_by(|a, b| a.time.cmp(&b.time))
        .map(|e| ChangedBy {
            who: e.manager.clone(),
            when: e.time.clone(),
        })
}

/// Owners of the live fields where the normalised pair differs.
fn drift_owners(
    kind: &str,
    d: Option<&Value>,
    l: Option<&Value>,
    own: Cursor<'_>,
    fields: &mut Vec<String>,
    out: &mut Vec<usize>,
) {
    if d == l {
        return;
    }
    match (d, l) {
        (Some(Value::Object(dm)), Some(Value::Object(lm))) => {
            let keys: BTreeSet<&String> = dm.keys().chain(lm.keys()).collect();
            for k in keys {
                fields.push(k.clone());
                drift_owners(kind, dm.get(k), lm.get(k), own.field(k), fields, out);
                fields.pop();
            }
        }
        (Some(Value::Array(da)), Some(Value::Array(la))) => {
            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
            match keys::keyed_list(kind, &f) {
                Some(list) => {
                    for (i, le) in la.iter().enumerate() {
                        let de = da.iter().find(|de| keys::same_key(list, de, le));
                        drift_owners(kind, de, Some(le), own.element(le, i), fields, out);
                    }
                }
                None => out.extend(own.owners()),
            }
        }
        (_, Some(_)) => out.extend(own.owners()),
        (_, None) => {}
    }
}
