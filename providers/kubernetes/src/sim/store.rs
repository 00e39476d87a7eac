//! The simulator's storage and write path: objects by resource and key,
//! resourceVersions, server-set metadata, managed fields for Update and
//! Apply operations, defaulting, list with selectors and pagination, and the
//! watch event stream. Errors are metav1 `Status` values with the reasons,
//! codes and wording of k8s.io/apimachinery `pkg/api/errors/errors.go`.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::fields::{self, FieldSet};
use super::types::{self, ResourceType};
use super::{defaults, quantity};

/// A metav1 Status failure.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn details(rt: &ResourceType, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": rt.plural});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d
    }

    /// errors.go NewNotFound: `deployments.apps "x" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Self::details(rt, name),
            ..Self::new(404, "NotFound", format!("{} \"{name}\" not found", rt.group_resource()))
        }
    }

    /// errors.go NewAlreadyExists.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Self::details(rt, name),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.group_resource()),
            )
        }
    }

    /// errors.go NewConflict with registry's OptimisticLockErrorMsg.
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Self::details(rt, name),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.group_resource()
                ),
            )
        }
    }

    /// errors.go NewInvalid: `Deployment.apps "x" is invalid: <field>: <detail>`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[(&str, &str, String)]) -> Self {
        let gk = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let texts: Vec<String> = causes.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
        let msg = if texts.len() == 1 {
            format!("{gk} \"{name}\" is invalid: {}", texts[0])
        } else {
            format!("{gk} \"{name}\" is invalid: [{}]", texts.join(", "))
        };
        let mut details = json!({"name": name, "kind": rt.kind, "causes": causes.iter().map(|(r, f, m)| json!({"reason": r, "message": m, "field": f})).collect::<Vec<_>>()});
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        ApiError {
            details,
            ..Self::new(422, "Invalid", msg)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// The metav1 Status body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

/// One watch event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// A parsed label selector (k8s.io/apimachinery `pkg/labels/selector.go`
/// grammar: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Selector(Vec<Req>);

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, ApiError> {
        let mut reqs = Vec::new();
        // split on commas outside parentheses
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let bad = |p: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{p}', expected: identifier"
            ))
        };
        for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(rest).ok_or_else(|| bad(p))?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Req::In(k.trim().into(), set_values(rest).ok_or_else(|| bad(p))?)
            } else if p.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Req::Exists(p.to_string())
            } else {
                return Err(bad(p));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Field selectors: only `metadata.name` and `metadata.namespace`, which
/// every resource supports (k8s.io/apiserver `registry/generic` DefaultClusterScopedAttr).
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = p.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{p}'"
                )));
            };
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(ApiError::bad_request(format!("field label not supported: {k}")));
            }
            out.push((k.to_string(), eq, v.to_string()));
        }
        Ok(FieldSelector(out))
    }

    fn matches(&self, o: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = match k.as_str() {
                "metadata.name" => o.pointer("/metadata/name"),
                _ => o.pointer("/metadata/namespace"),
            }
            .and_then(Value::as_str)
            .unwrap_or("");
            (actual == v) == *eq
        })
    }
}

/// What list returns besides items.
pub(crate) struct ListQuery<'a> {
    pub namespace: Option<&'a str>,
    pub labels: Selector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
}

/// The stored world.
pub(crate) struct Store {
    pub types: Vec<ResourceType>,
    objects: HashMap<(String, String), BTreeMap<(String, String), Value>>,
    rv: u64,
    uid_seq: u64,
    next_ip: u32,
    next_node_port: u32,
    pub events: broadcast::Sender<(u64, Event)>,
}

type Key = (String, String);

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Store {
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(4096);
        Store {
            types: types::builtin(),
            objects: HashMap::new(),
            rv: 1000,
            uid_seq: 0,
            // the default service CIDR 10.96.0.0/12 (kube-apiserver
            // --service-cluster-ip-range default); .1 is the `kubernetes` Service
            next_ip: (10 << 24) | (96 << 16) | 1,
            // --service-node-port-range default 30000-32767
            next_node_port: 30000,
            events,
        }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<Key, Value>> {
        self.objects.get(&(rt.group.clone(), rt.plural.clone()))
    }

    pub fn count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
        (
            if rt.namespaced {
                ns.unwrap_or("default").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }

    /// The object as clients see it (apiVersion of the request's version).
    fn present(rt: &ResourceType, o: &Value) -> Value {
        let mut o = o.clone();
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        o
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.bucket(rt)
            .and_then(|b| b.get(&Self::key(rt, ns, name)))
            .map(|o| Self::present(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// A list page. The continue token has the real server's shape:
    /// base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>\u0000"}`
    /// (k8s.io/apiserver `storage/etcd3` continue.go encodeContinue).
    pub fn list(&self, rt: &ResourceType, q: &ListQuery) -> Result<Value, ApiError> {
        let start: Option<Key> = match q.continue_token {
            None | Some("") => None,
            Some(tok) => Some(decode_continue(tok)?),
        };
        let empty = BTreeMap::new();
        let bucket = self.bucket(rt).unwrap_or(&empty);
        let range: Box<dyn Iterator<Item = (&Key, &Value)>> = match &start {
            Some(k) => Box::new(bucket.range(k.clone()..)),
            None => Box::new(bucket.iter()),
        };
        let mut items = Vec::new();
        let mut next: Option<Key> = None;
        let mut remaining = 0usize;
        let limit = q.limit.filter(|l| *l > 0);
        for (k, o) in range {
            if let Some(ns) = q.namespace {
                if rt.namespaced && k.0 != ns {
                    continue;
                }
            }
            if !q
                .labels
                .matches(o.pointer("/metadata/labels").and_then(Value::as_object))
                || !q.fields.matches(o)
            {
                continue;
            }
            if let Some(l) = limit {
                if items.len() == l {
                    if next.is_none() {
                        next = Some(k.clone());
                    }
                    remaining += 1;
                    continue;
                }
            }
            let mut item = o.clone();
            if rt.custom {
                item["apiVersion"] = json!(rt.api_version());
                item["kind"] = json!(rt.kind);
            } else if let Some(m) = item.as_object_mut() {
                // Built-in list items carry no apiVersion/kind on the wire.
                m.remove("apiVersion");
                m.remove("kind");
            }
            items.push(item);
        }
        let mut meta = json!({"resourceVersion": self.rv.to_string()});
        if let Some(k) = next {
            let start = format!("{}/{}\u{0}", k.0, k.1);
            let tok = json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": start}).to_string();
            meta["continue"] = json!(base64::engine::general_purpose::STANDARD.encode(tok));
            // remainingItemCount is only exact without selectors (apiserver
            // omits it when a label or field selector is set).
            if q.labels.0.is_empty() && q.fields.0.is_empty() {
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(
            json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": items}),
        )
    }

    fn check_namespace(&self, rt: &ResourceType, ns: Option<&str>) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or("default");
        let exists = self
            .objects
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_string())));
        if exists {
            Ok(())
        } else {
            let nsrt = self
                .find("", "v1", "namespaces")
                .ok_or_else(|| ApiError::new(500, "InternalError", "no namespaces"))?;
            Err(ApiError::not_found(&nsrt, ns))
        }
    }

    /// Validation the simulator performs (a small part of
    /// pkg/apis/*/validation): name syntax, containers need name and image,
    /// a Deployment needs a selector matching its template.
    fn validate(rt: &ResourceType, o: &Value) -> Result<(), ApiError> {
        let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let mut causes: Vec<(&str, &str, String)> = Vec::new();
        let valid_name = !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || c == '-'
                    || c == '.'
                    || (rt.custom && c == ':')
                    || (rt.group == "rbac.authorization.k8s.io")
            })
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if name.is_empty() {
            causes.push((
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required".into(),
            ));
        } else if !valid_name {
            causes.push((
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
            ));
        }
        let pod_spec = match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Pod") => Some("/spec"),
            ("apps", _) | ("batch", "Job") | ("", "ReplicationController") => Some("/spec/template/spec"),
            ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
            _ => None,
        };
        let mut fields_owned: Vec<String> = Vec::new();
        if let Some(p) = pod_spec {
            let field_base = p.trim_start_matches('/').replace('/', ".");
            match o.pointer(&format!("{p}/containers")).and_then(Value::as_array) {
                Some(cs) if !cs.is_empty() => {
                    for (i, c) in cs.iter().enumerate() {
                        if c["image"].as_str().unwrap_or("").is_empty() {
                            fields_owned.push(format!("{field_base}.containers[{i}].image"));
                        }
                        if c["name"].as_str().unwrap_or("").is_empty() {
                            fields_owned.push(format!("{field_base}.containers[{i}].name"));
                        }
                    }
                }
                _ => fields_owned.push(format!("{field_base}.containers")),
            }
        }
        for f in &fields_owned {
            causes.push(("FieldValueRequired", f.as_str(), "Required value".into()));
        }
        if rt.group == "apps" && rt.kind != "ControllerRevision" {
            let sel = o.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
            let tl = o.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
            match (sel, tl) {
                (None, _) if o.pointer("/spec/selector/matchExpressions").is_none() => {
                    causes.push(("FieldValueRequired", "spec.selector", "Required value".into()))
                }
                (Some(s), t) if !s.iter().all(|(k, v)| t.and_then(|t| t.get(k)) == Some(v)) => causes.push((
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`".into(),
                )),
                _ => {}
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt, name, &causes))
        }
    }

    /// Server-side work on a new or changed object: Secret stringData,
    /// defaulting, quantity canonical form, registry allocations.
    fn prepare(&mut self, rt: &ResourceType, o: &mut Value, old: Option<&Value>) {
        if !rt.custom {
            // ObjectMeta `Labels`/`Annotations` are Go maps tagged
            // `omitempty` (apimachinery pkg/apis/meta/v1/types.go): a built-in
            // object decoded into its Go type and encoded again has no
            // `labels: {}` (after a JSON patch removed the last label, say),
            // so no manager owns an empty `f:labels`.
            if let Some(Value::Object(meta)) = o.get_mut("metadata") {
                for key in ["labels", "annotations"] {
                    if meta
                        .get(key)
                        .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()) || v.is_null())
                    {
                        meta.remove(key);
                    }
                }
            }
        }
        if rt.group.is_empty() && rt.kind == "Secret" {
            // core/v1 conversion.go Convert_v1_Secret_To_core_Secret:
            // stringData entries overwrite data (base64-encoded), and
            // stringData itself is never stored.
            if let Some(Value::Object(sd)) = o.as_object_mut().and_then(|m| m.remove("stringData")) {
                let data = o.as_object_mut().and_then(|m| {
                    m.entry("data").or_insert_with(|| json!({}));
                    m.get_mut("data").and_then(Value::as_object_mut)
                });
                if let Some(data) = data {
                    for (k, v) in sd {
                        let text = v.as_str().unwrap_or_default().to_string();
                        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                    }
                }
            }
        }
        if !rt.custom {
            defaults::apply(&rt.group, &rt.kind, o);
            if rt.kind != "CustomResourceDefinition" {
                quantity::canonicalise_object(o);
            }
        }
        if rt.group.is_empty() && rt.kind == "Service" {
            self.allocate_service(o, old);
        }
        if rt.group == "batch" && rt.kind == "Job" {
            job_selector(o);
        }
        if rt.kind == "CustomResourceDefinition" {
            // apiextensions-apiserver establishing controller: accepted
            // names and the Established condition.
            let names = o.pointer("/spec/names").cloned().unwrap_or(json!({}));
            o["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()}
                ],
                "storedVersions": o.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
            });
        }
    }

    /// pkg/registry/core/service/ipallocator and portallocator: a cluster
    /// IP from 10.96.0.0/12 (kept across updates), clusterIPs, single-stack
    /// IPv4 families, node ports for NodePort/LoadBalancer, and
    /// `status.loadBalancer: {}`.
    fn allocate_service(&mut self, o: &mut Value, old: Option<&Value>) {
        let ty = o
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty == "ExternalName" {
            return;
        }
        let old_ip = old.and_then(|x| x.pointer("/spec/clusterIP")).cloned();
        let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if spec.get("clusterIP").and_then(Value::as_str).is_none_or(str::is_empty) {
            let ip = match old_ip {
                Some(ip) => ip,
                None => {
                    self.next_ip += 1;
                    let n = self.next_ip;
                    json!(format!(
                        "{}.{}.{}.{}",
                        n >> 24,
                        (n >> 16) & 255,
                        (n >> 8) & 255,
                        n & 255
                    ))
                }
            };
            spec.insert("clusterIP".into(), ip);
        }
        let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
        spec.entry("clusterIPs").or_insert_with(|| json!([ip]));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
        if ty == "NodePort" || ty == "LoadBalancer" {
            let old_ports = old
                .and_then(|x| x.pointer("/spec/ports"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    if p.get("nodePort").is_none() {
                        let prev = old_ports
                            .iter()
                            .find(|op| op["port"] == p["port"])
                            .and_then(|op| op.get("nodePort"))
                            .cloned();
                        let np = prev.unwrap_or_else(|| {
                            let n = self.next_node_port;
                            self.next_node_port = if n >= 32767 { 30000 } else { n + 1 };
                            json!(n)
                        });
                        p.insert("nodePort".into(), np);
                    }
                }
            }
        }
        o["status"] = json!({"loadBalancer": {}});
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn put(&mut self, rt: &ResourceType, key: Key, o: Value, kind: &'static str) {
        let ns = key.0.clone();
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
            .insert(key, o.clone());
        let _ = self.events.send((
            self.rv,
            Event {
                group: rt.group.clone(),
                plural: rt.plural.clone(),
                namespace: ns,
                kind,
                object: Self::present(rt, &o),
            },
        ));
    }

    fn generation_tracked(rt: &ResourceType) -> bool {
        // Kinds whose strategy maintains metadata.generation: apps, batch,
        // networking, policy, autoscaling, CRDs and custom resources;
        // core kinds (ConfigMap, Service, Namespace, ...) do not.
        rt.custom || !rt.group.is_empty()
    }

    /// Create (POST) or the create half of an apply.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut o: Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !o.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was in an unknown format",
            ));
        }
        if o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            if let Some(prefix) = o
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                self.uid_seq += 1;
                o["metadata"]["name"] = json!(format!("{prefix}{:05x}", self.uid_seq));
            }
        }
        Self::validate(rt, &o)?;
        self.check_namespace(rt, ns)?;
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = Self::key(rt, ns, &name);
        if self.bucket(rt).is_some_and(|b| b.contains_key(&key)) {
            return Err(ApiError::already_exists(rt, &name));
        }
        if let Some(m) = o.as_object_mut() {
            if !rt.custom {
                m.remove("status");
            }
        }
        self.prepare(rt, &mut o, None);
        let mut entries = Vec::new();
        record_update(&mut entries, manager, &rt.api_version(), &json!({}), &o, rt.custom);
        self.finish_create(rt, ns, o, entries, dry_run)
    }

    fn finish_create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut o: Value,
        entries: Vec<Value>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = Self::key(rt, ns, &name);
        self.uid_seq += 1;
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", self.uid_seq, self.uid_seq);
        let meta = o.as_object_mut().and_then(|m| {
            m.entry("metadata").or_insert_with(|| json!({}));
            m.get_mut("metadata").and_then(Value::as_object_mut)
        });
        let Some(meta) = meta else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        if rt.namespaced {
            meta.insert("namespace".into(), json!(key.0));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now()));
        if Self::generation_tracked(rt) {
            meta.insert("generation".into(), json!(1));
        }
        meta.insert("managedFields".into(), Value::Array(entries));
        if dry_run {
            return Ok(Self::present(rt, &o));
        }
        let rv = self.next_rv();
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            for t in types::from_crd(&o) {
                if !self
                    .types
                    .iter()
                    .any(|x| x.group == t.group && x.version == t.version && x.plural == t.plural)
                {
                    self.types.push(t);
                }
            }
        }
        if rt.group.is_empty() && rt.kind == "Namespace" {
            self.put(rt, key, o.clone(), "ADDED");
            self.namespace_controllers(&name);
            return Ok(Self::present(rt, &o));
        }
        self.put(rt, key, o.clone(), "ADDED");
        Ok(Self::present(rt, &o))
    }

    /// What controllers create in every new namespace: the `default`
    /// ServiceAccount (serviceaccounts-controller) and the `kube-root-ca.crt`
    /// ConfigMap (root-ca-cert-publisher, kube-controller-manager).
    fn namespace_controllers(&mut self, ns: &str) {
        let (Some(sa), Some(cm)) = (
            self.find("", "v1", "serviceaccounts"),
            self.find("", "v1", "configmaps"),
        ) else {
            return;
        };
        let objs = [
            (
                sa,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
            ),
            (
                cm,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n(simulator)\n-----END CERTIFICATE-----\n"}}),
            ),
        ];
        for (rt, o) in objs {
            let _ = self.create(&rt, Some(ns), o, "kube-controller-manager", false);
        }
    }

    fn current(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<(Key, Value), ApiError> {
        let key = Self::key(rt, ns, name);
        let o = self
            .bucket(rt)
            .and_then(|b| b.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        Ok((key, o))
    }

    /// Update (PUT, and every non-apply PATCH once the patch is applied):
    /// optimistic concurrency on a given resourceVersion, managed fields by
    /// diff for `manager` with operation Update.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut o: Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let (key, old) = self.current(rt, ns, name)?;
        if let Some(rv) = o.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            if !rv.is_empty() && Some(rv) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                return Err(ApiError::stale(rt, name));
            }
        }
        if o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        o["metadata"]["name"] = json!(name);
        if !rt.custom {
            // status is reset from the main resource (every built-in
            // strategy's PrepareForUpdate keeps the old status)
            match old.get("status") {
                Some(s) => o["status"] = s.clone(),
                None => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        Self::validate(rt, &o)?;
        self.prepare(rt, &mut o, Some(&old));
        let mut entries = old
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        record_update(
            &mut entries,
            manager,
            &rt.api_version(),
            &strip_server(&old),
            &strip_server(&o),
            rt.custom,
        );
        self.finish_update(rt, key, old, o, entries, dry_run)
    }

    fn finish_update(
        &mut self,
        rt: &ResourceType,
        key: Key,
        old: Value,
        mut o: Value,
        entries: Vec<Value>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        for f in ["uid", "creationTimestamp", "generation", "namespace", "resourceVersion"] {
            match old.pointer(&format!("/metadata/{f}")) {
                Some(v) => o["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(f);
                    }
                }
            }
        }
        o["metadata"]["managedFields"] = Value::Array(entries);
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        if Self::generation_tracked(rt) && strip_meta_status(&old) != strip_meta_status(&o) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            o["metadata"]["generation"] = json!(g);
        }
        // A no-op write does not bump resourceVersion (etcd3 store
        // GuaranteedUpdate skips unchanged objects).
        let unchanged = o == old;
        if dry_run || unchanged {
            return Ok(Self::present(rt, if unchanged { &old } else { &o }));
        }
        let rv = self.next_rv();
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            for t in types::from_crd(&o) {
                if !self.types.contains(&t) {
                    self.types.push(t);
                }
            }
        }
        self.put(rt, key, o.clone(), "MODIFIED");
        Ok(Self::present(rt, &o))
    }

    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        cfg: Value,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if cfg.get("apiVersion").and_then(Value::as_str).is_none() || cfg.get("kind").and_then(Value::as_str).is_none()
        {
            return Err(ApiError::bad_request(
                "error decoding YAML: Object 'Kind' is missing in the patch (apiVersion and kind are required)",
            ));
        }
        if cfg
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH requests with Content-Type application/apply-patch+yaml must set a fieldManager",
            ));
        }
        let mut cfg = cfg;
        cfg["metadata"]["name"] = json!(name);
        if !rt.custom {
            if let Some(m) = cfg.as_object_mut() {
                m.remove("status");
            }
        }
        let applied = fields::set_of(&cfg, rt.custom);
        let api_version = rt.api_version();
        match self.current(rt, ns, name) {
            Err(_) => {
                // Apply to a missing object creates it; the applier owns
                // exactly the fields it sent.
                Self::validate(rt, &cfg)?;
                self.check_namespace(rt, ns)?;
                let mut o = cfg.clone();
                self.prepare(rt, &mut o, None);
                let entries = vec![entry(manager, "Apply", &api_version, applied)];
                self.finish_create(rt, ns, o, entries, dry_run)
            }
            Ok((key, old)) => {
                let mut entries = old
                    .pointer("/metadata/managedFields")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mine = |e: &Value| e["manager"] == json!(manager) && e["operation"] == json!("Apply");
                // 1. conflicts with every other manager over a field whose
                //    value would change
                let mut conflicts: Vec<(String, Value, Vec<String>)> = Vec::new();
                let applied_leaves = fields::leaves(&applied);
                for e in entries.iter().filter(|e| !mine(e)) {
                    let Some(set) = e.get("fieldsV1").and_then(Value::as_object) else {
                        continue;
                    };
                    for leaf in &applied_leaves {
                        if leaf.last().map(String::as_str) == Some(".") || !fields::contains(set, leaf) {
                            continue;
                        }
                        if fields::get_at(&old, leaf, rt.custom) != fields::get_at(&cfg, leaf, rt.custom) {
                            conflicts.push((e["manager"].as_str().unwrap_or("").to_string(), e.clone(), leaf.clone()));
                        }
                    }
                }
                if !conflicts.is_empty() && !force {
                    return Err(conflict_error(&conflicts));
                }
                // forced: the others lose the conflicting fields
                for (_, owner, leaf) in &conflicts {
                    for e in entries.iter_mut().filter(|e| *e == owner) {
                        if let Some(Value::Object(set)) = e.get_mut("fieldsV1") {
                            fields::remove(set, leaf);
                        }
                    }
                }
                // 2. fields this manager applied before and no longer does,
                //    and that nobody else owns, are removed
                let mut o = old.clone();
                let previous: Option<FieldSet> = entries
                    .iter()
                    .find(|e| mine(e))
                    .and_then(|e| e["fieldsV1"].as_object().cloned());
                if let Some(prev) = previous {
                    for leaf in fields::leaves(&prev) {
                        if fields::contains(&applied, &leaf) {
                            continue;
                        }
                        let owned_elsewhere = entries
                            .iter()
                            .filter(|e| !mine(e))
                            .any(|e| e["fieldsV1"].as_object().is_some_and(|s| fields::contains(s, &leaf)));
                        if !owned_elsewhere {
                            fields::remove_at(&mut o, &leaf, rt.custom);
                        }
                    }
                }
                // 3. merge, default, and record ownership
                let mut cfg_merge = cfg.clone();
                if let Some(m) = cfg_merge.get_mut("metadata").and_then(Value::as_object_mut) {
                    for f in [
                        "resourceVersion",
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "managedFields",
                    ] {
                        m.remove(f);
                    }
                }
                fields::merge(&mut o, &cfg_merge, rt.custom);
                Self::validate(rt, &o)?;
                self.prepare(rt, &mut o, Some(&old));
                entries.retain(|e| !mine(e));
                entries.push(entry(manager, "Apply", &api_version, applied));
                entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|s| !s.is_empty()));
                self.finish_update(rt, key, old, o, entries, dry_run)
            }
        }
    }

    /// Delete. Deleting a Namespace removes everything in it at once (the
    /// real namespace controller does so asynchronously, with the
    /// namespace `Terminating` meanwhile); deleting a CRD removes its
    /// kind and objects.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let (key, old) = self.current(rt, ns, name)?;
        if dry_run {
            return Ok(Self::present(rt, &old));
        }
        let rv = self.next_rv();
        if let Some(b) = self.objects.get_mut(&(rt.group.clone(), rt.plural.clone())) {
            b.remove(&key);
        }
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        let _ = self.events.send((
            rv,
            Event {
                group: rt.group.clone(),
                plural: rt.plural.clone(),
                namespace: key.0.clone(),
                kind: "DELETED",
                object: Self::present(rt, &gone),
            },
        ));
        if rt.group.is_empty() && rt.kind == "Namespace" {
            for b in self.objects.values_mut() {
                b.retain(|k, _| k.0 != name);
            }
        }
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            let defined = types::from_crd(&old);
            if let Some(t) = defined.first() {
                self.objects.remove(&(t.group.clone(), t.plural.clone()));
            }
            self.types.retain(|t| !defined.contains(t));
        }
        if rt.group.is_empty() && rt.kind == "Namespace" {
            let mut o = Self::present(rt, &gone);
            o["status"]["phase"] = json!("Terminating");
            return Ok(o);
        }
        Ok(Self::present(rt, &gone))
    }
}

fn decode_continue(tok: &str) -> Result<Key, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != json!("meta.k8s.io/v1") {
        return Err(bad());
    }
    let start = v["start"].as_str().ok_or_else(bad)?.trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

/// pkg/registry/batch/job/strategy.go generateSelector: a Job without
/// `manualSelector` gets `batch.kubernetes.io/controller-uid` and
/// `batch.kubernetes.io/job-name` labels on its template and a selector on
/// the first; the uid is filled in once known (here: the Job's name stands
/// in, since the simulator assigns the uid later in the same write).
fn job_selector(o: &mut Value) {
    if o.pointer("/spec/manualSelector") == Some(&json!(true)) || o.pointer("/spec/selector").is_some() {
        return;
    }
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let uid = format!("job-{name}");
    if let Some(t) = o.pointer_mut("/spec/template").and_then(Value::as_object_mut) {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", &uid),
                ("batch.kubernetes.io/job-name", &name),
                ("controller-uid", &uid),
                ("job-name", &name),
            ] {
                labels[k] = json!(v);
            }
        }
    }
    if let Some(spec) = o.get_mut("spec") {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
}

/// An object without the metadata the server owns, for field diffs.
fn strip_server(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            m.remove(f);
        }
    }
    o
}

fn strip_meta_status(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// A managedFields entry.
pub(crate) fn entry(manager: &str, operation: &str, api_version: &str, set: FieldSet) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": now(),
           "fieldsType": "FieldsV1", "fieldsV1": set})
}

/// Update-operation ownership: `manager` takes every field that changed
/// from `old` to `new`; other managers lose those; removed fields leave
/// every set; managers left with nothing are dropped (structured-merge-diff
/// `Updater.Update`, apiserver fieldmanager `managedfields` pruning).
pub(crate) fn record_update(
    entries: &mut Vec<Value>,
    manager: &str,
    api_version: &str,
    old: &Value,
    new: &Value,
    custom: bool,
) {
    let (changed, removed) = fields::changed(old, new, custom);
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let is_mine = |e: &Value| e["manager"] == json!(manager) && e["operation"] == json!("Update");
    for e in entries.iter_mut() {
        let mine = is_mine(e);
        if let Some(Value::Object(set)) = e.get_mut("fieldsV1") {
            for p in &removed {
                fields::remove(set, p);
            }
            if !mine {
                for p in &changed {
                    fields::remove(set, p);
                }
            }
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| is_mine(e)) {
            Some(e) => {
                if let Some(Value::Object(set)) = e.get_mut("fieldsV1") {
                    for p in &changed {
                        fields::insert(set, p);
                    }
                }
                e["time"] = json!(now());
                e["apiVersion"] = json!(api_version);
            }
            None => {
                let mut set = FieldSet::new();
                for p in &changed {
                    fields::insert(&mut set, p);
                }
                entries.push(entry(manager, "Update", api_version, set));
            }
        }
    }
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|s| !s.is_empty()));
}

/// apiserver fieldmanager `internal/conflict.go` NewConflictError: one
/// cause per conflicting field, message `Apply failed with N conflicts:
/// conflicts with "mgr" using apps/v1:\n- .spec.replicas`.
fn conflict_error(conflicts: &[(String, Value, Vec<String>)]) -> ApiError {
    let describe = |e: &Value| {
        let m = format!("{:?}", e["manager"].as_str().unwrap_or(""));
        if e["operation"] == json!("Update") {
            format!("{m} using {}", e["apiVersion"].as_str().unwrap_or(""))
        } else {
            m
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(_, e, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", describe(e)), "field": fields::path_string(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (_, e, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            describe(e),
            fields::path_string(p)
        )
    } else {
        let mut by: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for (m, e, p) in conflicts {
            by.entry(m.clone())
                .or_insert_with(|| (describe(e), Vec::new()))
                .1
                .push(fields::path_string(p));
        }
        let mut lines = Vec::new();
        for (_, (d, paths)) in by {
            lines.push(format!("conflicts with {d}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    ApiError {
        details: json!({"causes": causes}),
        ..ApiError::new(409, "Conflict", message)
    }
}
