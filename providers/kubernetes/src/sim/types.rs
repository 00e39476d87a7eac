//! The resource types the simulator serves: the built-in kinds (group,
//! version, plural, scope, short names as `kubectl api-resources` shows them
//! on a v1.34 cluster) and those that CustomResourceDefinitions add.

use serde_json::{json, Value};

/// One servable resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Added by a CRD (lists keep `apiVersion`/`kind` on items; lists are
    /// atomic in managed fields).
    pub custom: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` / `configmaps`, as API error messages name it
    /// (k8s.io/apimachinery `schema.GroupResource.String()`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The APIResource entry of a discovery document.
    pub fn discovery(&self) -> Value {
        let mut r = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "storageVersionHash": "",
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        r
    }
}

/// (group, version, kind, plural, namespaced, short names)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
);

const BUILTIN: &[Builtin] = &[
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"]),
    ("", "v1", "Event", "events", true, &["ev"]),
    ("", "v1", "LimitRange", "limitranges", true, &["limits"]),
    ("", "v1", "Namespace", "namespaces", false, &["ns"]),
    ("", "v1", "Node", "nodes", false, &["no"]),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
    ),
    ("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"]),
    ("", "v1", "Pod", "pods", true, &["po"]),
    ("", "v1", "PodTemplate", "podtemplates", true, &[]),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
    ),
    ("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"]),
    ("", "v1", "Secret", "secrets", true, &[]),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
    ("", "v1", "Service", "services", true, &["svc"]),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
    ),
    ("apiregistration.k8s.io", "v1", "APIService", "apiservices", false, &[]),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[]),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"]),
    ("apps", "v1", "Deployment", "deployments", true, &["deploy"]),
    ("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"]),
    ("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"]),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
    ),
    ("batch", "v1", "CronJob", "cronjobs", true, &["cj"]),
    ("batch", "v1", "Job", "jobs", true, &[]),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, &[]),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"]),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[]),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
    ),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, &["sc"]),
];

pub(crate) fn builtin() -> Vec<ResourceType> {
    BUILTIN
        .iter()
        .map(|(g, v, k, p, ns, short)| ResourceType {
            group: g.to_string(),
            version: v.to_string(),
            kind: k.to_string(),
            plural: p.to_string(),
            singular: k.to_lowercase(),
            namespaced: *ns,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            custom: false,
        })
        .collect()
}

/// The resource types a CRD object defines (one per served version).
pub(crate) fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let plural = names["plural"].as_str().unwrap_or_default();
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let short: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .filter_map(|v| v["name"].as_str())
        .map(|version| ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            namespaced,
            short_names: short.clone(),
            custom: true,
        })
        .collect()
}
