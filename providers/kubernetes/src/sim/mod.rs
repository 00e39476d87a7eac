//! A kube-apiserver simulator for tests, benchmarks and `plumb demo`.
//!
//! It serves, over HTTP or TLS on a loopback port, what plumb and `kubectl`
//! use of a real API server: the unaggregated discovery documents, list
//! (label and field selectors, `limit`/`continue` pagination), get, create,
//! update, patch (JSON merge, strategic merge for the keyed lists of
//! built-in kinds, JSON patch, server-side apply with `dryRun=All` and
//! `force`), delete and watch, for the built-in kinds in `types.rs` and for
//! every kind a CustomResourceDefinition adds. Writes get the server-set
//! metadata (uid, resourceVersion, generation, creationTimestamp,
//! managedFields per manager for Apply and Update operations), the
//! defaulting of `defaults.rs` (each rule cites its Kubernetes source),
//! canonical quantities, and metav1 `Status` errors with real reasons and
//! wording. Faults (status codes, delays) can be injected and every request
//! is recorded, so tests can count API calls and prove that a plan writes
//! nothing.
//!
//! What it leaves out, on purpose: controllers (no ReplicaSets or Pods
//! appear, `status` stays as written by defaulting; namespaces are deleted
//! at once instead of going `Terminating`), admission webhooks, RBAC
//! evaluation (403s come only from [`Sim::deny`] rules), most validation
//! (only names, container images, Deployment-style selectors), protobuf and
//! CBOR, aggregated discovery and OpenAPI documents (clients fall back to
//! unaggregated discovery; `kubectl` then skips client-side schema
//! validation), subresources (`status`, `scale`), `deletecollection`, list
//! snapshots at a resourceVersion (pages are read from the current state),
//! watch history (a watch from a resourceVersion gets only later events),
//! CRD schema validation, pruning, defaulting and `x-kubernetes-list-type`
//! (custom resources merge their lists atomically), version conversion,
//! finalizers and garbage collection by ownerReferences, HTTP/2.

mod defaults;
mod fields;
mod http;
mod patch;
mod quantity;
mod store;
mod types;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use base64::Engine;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use store::{ApiError, Store};
pub use types_public::*;

/// Public value types of the simulator API.
mod types_public {
    use std::time::Duration;

    /// How to start the simulator.
    #[derive(Debug, Clone, Default)]
    pub struct SimConfig {
        /// Serve TLS with this certificate when given (plain HTTP otherwise).
        pub tls: Option<SimTls>,
        /// Require `Authorization: Bearer <token>` when given (401 otherwise).
        pub token: Option<String>,
    }

    /// The server certificate and key, PEM (a test generates a CA and a
    /// certificate for `127.0.0.1`/`localhost` with rcgen).
    #[derive(Debug, Clone)]
    pub struct SimTls {
        pub cert_pem: String,
        pub key_pem: String,
    }

    /// One request as the simulator saw it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RequestRecord {
        pub method: String,
        pub path: String,
        /// The raw query string.
        pub query: String,
        /// `dryRun=All` was given.
        pub dry_run: bool,
        pub status: u16,
    }

    impl RequestRecord {
        /// Whether this request changed (or would have changed) state:
        /// POST, PUT, PATCH or DELETE without `dryRun=All`.
        pub fn is_write(&self) -> bool {
            !self.dry_run && matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
        }
    }

    /// A fault to inject: the next `times` requests whose path contains
    /// `path_contains` (and whose method is `method`, when given) wait
    /// `delay` and then answer `status` with a metav1 Status body (status
    /// 0: only the delay, then the normal answer). 429 answers carry
    /// `Retry-After: 1`.
    #[derive(Debug, Clone)]
    pub struct Fault {
        pub method: Option<String>,
        pub path_contains: String,
        pub status: u16,
        pub times: usize,
        pub delay: Option<Duration>,
    }

    /// An authorisation rule: requests matching it are refused with 403 and
    /// the real RBAC wording. `None` matches anything.
    #[derive(Debug, Clone, Default)]
    pub struct Deny {
        /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
        pub verb: Option<String>,
        /// The API group (`""` for core).
        pub group: Option<String>,
        /// The plural resource name (`deployments`).
        pub resource: Option<String>,
        pub namespace: Option<String>,
    }
}

/// Errors of the simulator's own API (start-up, seeding, direct edits).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: cannot bind 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
    #[error("simulator: bad TLS material: {0}")]
    Tls(String),
    #[error("simulator: unknown kind {api_version}/{kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("simulator: {code} {reason}: {message}")]
    Api { code: u16, reason: String, message: String },
    #[error("simulator: {path}: {message}")]
    Seed { path: String, message: String },
    #[error("simulator: {0}")]
    Invalid(String),
}

impl From<ApiError> for SimError {
    fn from(e: ApiError) -> Self {
        SimError::Api {
            code: e.code,
            reason: e.reason.to_string(),
            message: e.message,
        }
    }
}

/// State shared by the server tasks and the [`Sim`] handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    token: Option<String>,
    addr: SocketAddr,
    user: Mutex<String>,
    records: Mutex<Vec<RequestRecord>>,
    faults: Mutex<Vec<Fault>>,
    denies: Mutex<Vec<Deny>>,
    races: Mutex<Vec<Race>>,
}

/// A concurrent writer: before the next PATCH with `content_type`, the
/// object it names is edited by `manager` (see [`Sim::race`]).
pub(crate) struct Race {
    pub(crate) content_type: String,
    pub(crate) manager: String,
    pub(crate) edit: Box<dyn FnOnce(&mut Value) + Send>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the data usable for a
    // simulator; recover it rather than poisoning every later request.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        lock(&self.records).push(r);
    }

    pub(crate) fn take_race(&self, content_type: &str) -> Option<Race> {
        let mut races = lock(&self.races);
        let i = races.iter().position(|r| r.content_type == content_type)?;
        Some(races.remove(i))
    }

    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| {
            f.times > 0
                && path.contains(&f.path_contains)
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        faults[i].times -= 1;
        let f = faults[i].clone();
        if faults[i].times == 0 {
            faults.remove(i);
        }
        Some(f)
    }

    /// The RBAC authorizer's refusal (k8s.io/apiserver
    /// `endpoints/handlers/responsewriters/errors.go` forbiddenMessage):
    /// `deployments.apps "cart" is forbidden: User "u" cannot patch resource
    /// "deployments" in API group "apps" in the namespace "shop"`.
    pub(crate) fn forbidden(
        &self,
        verb: &str,
        rt: &types::ResourceType,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Option<ApiError> {
        let denies = lock(&self.denies);
        let hit = denies.iter().any(|d| {
            d.verb.as_deref().is_none_or(|v| v == verb)
                && d.group.as_deref().is_none_or(|g| g == rt.group)
                && d.resource.as_deref().is_none_or(|r| r == rt.plural)
                && d.namespace.as_deref().is_none_or(|n| Some(n) == ns)
        });
        if !hit {
            return None;
        }
        let user = lock(&self.user).clone();
        let subject = match name {
            Some(n) => format!("{} \"{n}\"", rt.group_resource()),
            None => rt.group_resource(),
        };
        let scope = match ns {
            Some(n) if rt.namespaced => format!("in the namespace \"{n}\""),
            _ => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            rt.plural, rt.group
        );
        let mut details = json!({"kind": rt.plural});
        if let Some(n) = name {
            details["name"] = json!(n);
        }
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        Some(ApiError {
            details,
            ..ApiError::new(403, "Forbidden", message)
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    shared: Arc<Shared>,
    tls: bool,
    server: Option<JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

async fn entry(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    http::handle(shared, method, uri, headers, body).await
}

/// kube-apiserver's request body limit (`--max-request-bytes`' 3 MiB
/// default, k8s.io/apiserver `pkg/server/config.go` MaxRequestBodyBytes).
const MAX_BODY: usize = 3 * 1024 * 1024;

impl Sim {
    /// Binds 127.0.0.1:0 and serves until dropped or [`Sim::shutdown`].
    /// The cluster starts like a fresh one: namespaces `default`,
    /// `kube-system`, `kube-public`, `kube-node-lease` (each with its
    /// `default` ServiceAccount and `kube-root-ca.crt` ConfigMap), the
    /// `kubernetes` Service in `default`, and the bootstrap ClusterRoles.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let acceptor = match &config.tls {
            Some(tls) => Some(tls_acceptor(tls)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            token: config.token.clone(),
            addr,
            user: Mutex::new("system:serviceaccount:plumb:plumb".to_string()),
            records: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            denies: Mutex::new(Vec::new()),
            races: Mutex::new(Vec::new()),
        });
        bootstrap(&shared)?;
        let router = axum::Router::new()
            .fallback(entry)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator accept failed");
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acc) => match acc.accept(stream).await {
                            Ok(tls) => {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Err(e) => tracing::debug!(error = %e, "simulator TLS handshake failed"),
                        },
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Sim {
            shared,
            tls: config.tls.is_some(),
            server: Some(server),
        })
    }

    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.shared.addr)
    }

    /// A kubeconfig with one cluster, user and context, all named `sim`,
    /// with the given CA (PEM) as `certificate-authority-data` and the
    /// bearer token when one is configured.
    pub fn kubeconfig_yaml(&self, ca_pem: Option<&str>) -> String {
        let mut cluster = json!({"server": self.url()});
        if let Some(ca) = ca_pem {
            cluster["certificate-authority-data"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        let mut user = json!({});
        if let Some(t) = &self.shared.token {
            user["token"] = json!(t);
        }
        let cfg = json!({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "sim", "cluster": cluster}],
            "users": [{"name": "sim", "user": user}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim", "namespace": "default"}}],
            "current-context": "sim",
        });
        serde_yaml_ng::to_string(&cfg).unwrap_or_default()
    }

    /// Server-side apply as field manager `kubectl` (what `kubectl apply
    /// --server-side` does), forced, returning the stored object.
    pub fn apply(&self, manifest: Value) -> Result<Value, SimError> {
        self.apply_as(manifest, "kubectl", true)
    }

    /// Server-side apply as `manager`; conflicts are an error unless `force`.
    pub fn apply_as(&self, manifest: Value, manager: &str, force: bool) -> Result<Value, SimError> {
        let api_version = manifest["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = manifest["kind"].as_str().unwrap_or_default().to_string();
        let name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = manifest
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut store = self.shared.lock();
        let rt = store
            .find_kind(&api_version, &kind)
            .ok_or(SimError::UnknownKind { api_version, kind })?;
        let ns = if rt.namespaced {
            Some(ns.unwrap_or_else(|| "default".into()))
        } else {
            None
        };
        Ok(store.apply(&rt, ns.as_deref(), &name, manifest, manager, force, false)?)
    }

    /// A hand edit by `manager` (e.g. `kubectl-edit`): `f` changes the
    /// stored object, and the change is written as an Update operation, so
    /// `manager` becomes the owner of exactly the fields that changed.
    pub fn edit(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<(), SimError> {
        let mut store = self.shared.lock();
        let rt = store
            .find_kind(api_version, kind)
            .ok_or_else(|| SimError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })?;
        let mut o = store.get(&rt, namespace, name)?;
        f(&mut o);
        store.update(&rt, namespace, name, o, manager, false)?;
        Ok(())
    }

    /// Someone else writes first: just before the next PATCH request whose
    /// content type is `content_type` is handled, the object it targets is
    /// changed by `edit` as an Update by `manager`, as if another client's
    /// write had landed between the caller's read and its patch. Tests use
    /// it for optimistic-concurrency paths (a JSON patch's `test` on
    /// resourceVersion failing).
    pub fn race(&self, content_type: &str, manager: &str, edit: impl FnOnce(&mut Value) + Send + 'static) {
        lock(&self.shared.races).push(Race {
            content_type: content_type.to_string(),
            manager: manager.to_string(),
            edit: Box::new(edit),
        });
    }

    /// Deletes an object (as someone running `kubectl delete` would).
    pub fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Result<(), SimError> {
        let mut store = self.shared.lock();
        let rt = store
            .find_kind(api_version, kind)
            .ok_or_else(|| SimError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })?;
        store.delete(&rt, namespace, name, false)?;
        Ok(())
    }

    /// The stored object, as a GET would return it.
    pub fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Result<Value, SimError> {
        let store = self.shared.lock();
        let rt = store
            .find_kind(api_version, kind)
            .ok_or_else(|| SimError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })?;
        Ok(store.get(&rt, namespace, name)?)
    }

    /// How many objects are stored, over all kinds.
    pub fn object_count(&self) -> usize {
        self.shared.lock().count()
    }

    /// Applies every manifest below `dir` (`.yaml`, `.yml`, `.json`,
    /// multi-document, `List` kinds unwrapped, non-manifests skipped):
    /// CRDs and Namespaces first, namespaces that objects name but nobody
    /// defines are created, then the rest. Returns how many objects were
    /// applied. For `plumb demo` and benchmarks; a real server would refuse
    /// objects in missing namespaces.
    pub fn seed_dir(&self, dir: &Path) -> Result<usize, SimError> {
        let mut docs = Vec::new();
        read_manifests(dir, &mut docs)?;
        docs.sort_by_key(|d| match d["kind"].as_str() {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            _ => 2,
        });
        let mut n = 0;
        for d in docs {
            let ns = d
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(ns) = ns {
                if self.get("v1", "Namespace", None, &ns).is_err() {
                    self.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
                }
            }
            self.apply(d)?;
            n += 1;
        }
        Ok(n)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.records).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.records).clear();
    }

    /// Adds a fault; faults are matched in the order they were added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Refuses matching requests with 403 from now on.
    pub fn deny(&self, rule: Deny) {
        lock(&self.shared.denies).push(rule);
    }

    /// Drops every [`Sim::deny`] rule.
    pub fn allow_all(&self) {
        lock(&self.shared.denies).clear();
    }

    /// The user name 403 messages name.
    pub fn set_user(&self, user: &str) {
        *lock(&self.shared.user) = user.to_string();
    }

    /// Stops serving and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(h) = self.server.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

fn tls_acceptor(tls: &SimTls) -> Result<tokio_rustls::TlsAcceptor, SimError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| SimError::Tls(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| SimError::Tls(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// What a fresh kubeadm-style cluster holds before anyone applies anything.
fn bootstrap(shared: &Shared) -> Result<(), SimError> {
    let mut store = shared.lock();
    let ns_rt = store
        .find("", "v1", "namespaces")
        .ok_or_else(|| SimError::Invalid("no namespaces".into()))?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        store.create(
            &ns_rt,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            "kube-apiserver",
            false,
        )?;
    }
    let svc_rt = store
        .find("", "v1", "services")
        .ok_or_else(|| SimError::Invalid("no services".into()))?;
    // The `kubernetes` Service the apiserver maintains (controlplane
    // controller, pkg/controlplane/controller/kubernetesservice).
    store.create(
        &svc_rt,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
        "kube-apiserver",
        false,
    )?;
    // Bootstrap RBAC (plugin/pkg/auth/authorizer/rbac/bootstrappolicy):
    // a few of the roles every cluster has, with their marker label.
    let cr_rt = store
        .find("rbac.authorization.k8s.io", "v1", "clusterroles")
        .ok_or_else(|| SimError::Invalid("no clusterroles".into()))?;
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:node",
    ] {
        let rules = if name == "cluster-admin" {
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}])
        } else {
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
        };
        store.create(
            &cr_rt,
            None,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                "rules": rules}),
            "kube-apiserver",
            false,
        )?;
    }
    Ok(())
}

fn read_manifests(path: &Path, out: &mut Vec<Value>) -> Result<(), SimError> {
    let seed_err = |m: String| SimError::Seed {
        path: path.display().to_string(),
        message: m,
    };
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| seed_err(e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            read_manifests(&p, out)?;
        }
        return Ok(());
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "yaml" | "yml" | "json") {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| seed_err(e.to_string()))?;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| seed_err(e.to_string()))?;
        push_manifest(v, out);
    }
    Ok(())
}

fn push_manifest(v: Value, out: &mut Vec<Value>) {
    if v.get("apiVersion").is_none() || v.get("kind").is_none() {
        return;
    }
    if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
        if let Some(items) = v["items"].as_array() {
            for i in items {
                push_manifest(i.clone(), out);
            }
            return;
        }
    }
    out.push(v);
}

/// Starts a simulator seeded from `dir` (for `plumb demo`): plain HTTP, no
/// token. Inject drift afterwards with [`Sim::edit`], [`Sim::delete`] and
/// [`Sim::apply_as`].
pub async fn start_seeded(dir: &Path) -> Result<Sim, SimError> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.seed_dir(dir)?;
    Ok(sim)
}
