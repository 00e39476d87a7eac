//! What the API server fills in by itself, by kind and path: the defaults
//! it applies (so a live field Git leaves out is not drift when it holds the
//! default), and fields it sets or allocates whatever their value.
//!
//! Sources, cited per rule below:
//! - [core] k8s.io/kubernetes pkg/apis/core/v1/defaults.go
//! - [apps] k8s.io/kubernetes pkg/apis/apps/v1/defaults.go
//! - [batch] k8s.io/kubernetes pkg/apis/batch/v1/defaults.go
//! - [net] k8s.io/kubernetes pkg/apis/networking/v1/defaults.go
//! - [rbac] k8s.io/kubernetes pkg/apis/rbac/v1/defaults.go
//! - [storage] k8s.io/kubernetes pkg/apis/storage/v1/defaults.go
//! - [ext] k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1/defaults.go
//! - [api] the API reference, <https://kubernetes.io/docs/reference/kubernetes-api/>,
//!   whose field docs state these defaults ("Defaults to ...") and which
//!   k8s-openapi 0.29 (v1_34) repeats in its doc comments.
//!
//! A default only hides a live value equal to it, and only where Git does
//! not set the field: `dnsPolicy: Default` set by hand still shows.

use serde_json::{Map, Value};

/// Where a field sits, for rules that depend on their surroundings.
pub struct Context<'a> {
    pub kind: &'a str,
    /// The object's name (the Namespace name label equals it).
    pub name: &'a str,
    /// A ClusterRole with an `aggregationRule` (its rules are controller-made).
    pub aggregated: bool,
    /// The live object holding the field.
    pub parent: Option<&'a Map<String, Value>>,
}

/// int-or-string fields (k8s.io/apimachinery pkg/util/intstr) by name.
pub const INT_OR_STRING_FIELDS: &[&str] = &[
    "targetPort",
    "port",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
    "partition",
];

/// Annotations controllers write on objects they act on.
fn server_annotation(key: &str) -> bool {
    // deployment controller: pkg/controller/deployment/util/deployment_util.go
    // (RevisionAnnotation); PV binder: pkg/controller/volume/persistentvolume
    // (pv.kubernetes.io/*, volume.kubernetes.io/*, volume.beta.kubernetes.io/*);
    // endpoints controller (EndpointsLastChangeTriggerTime).
    key == "deployment.kubernetes.io/revision"
        || key == "deployment.kubernetes.io/desired-replicas"
        || key == "deployment.kubernetes.io/max-replicas"
        || key.starts_with("pv.kubernetes.io/")
        || key.starts_with("volume.kubernetes.io/")
        || key.starts_with("volume.beta.kubernetes.io/")
        || key == "endpoints.kubernetes.io/last-change-trigger-time"
        || key == "control-plane.alpha.kubernetes.io/leader"
}

/// Fields the server (or a built-in controller) sets whatever their value;
/// never drift when Git leaves them out.
pub fn server_set(cx: &Context<'_>, f: &[&str], value: &Value) -> bool {
    match (cx.kind, f) {
        // ObjectMeta: "Populated by the system" / set by controllers (garbage
        // collector owner references, finalizers) [api ObjectMeta].
        (_, ["metadata", "ownerReferences" | "finalizers" | "generateName"]) => true,
        (_, ["metadata", "annotations", key]) => server_annotation(key),
        // Allocated by the service IP/port allocators
        // (pkg/registry/core/service/storage/alloc.go) and defaulted by
        // SetDefaults_Service's dual-stack logic [core].
        ("Service", ["spec", "clusterIP" | "clusterIPs" | "ipFamilies" | "ipFamilyPolicy" | "healthCheckNodePort"]) => {
            true
        }
        ("Service", ["spec", "ports", "nodePort"]) => true,
        // Namespace: spec.finalizers ["kubernetes"] (pkg/registry/core/namespace/strategy.go
        // PrepareForCreate) and the immutable name label
        // kubernetes.io/metadata.name (same file, since 1.21).
        ("Namespace", ["spec", "finalizers"]) => true,
        ("Namespace", ["metadata", "labels", "kubernetes.io/metadata.name"]) => value.as_str() == Some(cx.name),
        // Bound by the PV controller; storage class filled by the
        // DefaultStorageClass admission plugin.
        ("PersistentVolumeClaim", ["spec", "volumeName" | "storageClassName"]) => true,
        // Job selector and labels are generated (pkg/registry/batch/job/strategy.go
        // generateSelector) unless manualSelector.
        ("Job", ["spec", "selector"]) => true,
        (
            "Job",
            ["spec", "template", "metadata", "labels", "controller-uid" | "batch.kubernetes.io/controller-uid" | "job-name" | "batch.kubernetes.io/job-name"],
        ) => true,
        // Legacy token Secrets listed by the token controller.
        ("ServiceAccount", ["secrets"]) => true,
        // "rules ... controller-managed" when aggregationRule is set [api ClusterRole].
        ("ClusterRole", ["rules"]) => cx.aggregated,
        ("StatefulSet", ["spec", "volumeClaimTemplates", "status"]) => true,
        _ => false,
    }
}

/// Where the pod spec sits in a kind's documents, so pod defaults apply to
/// every workload's template.
fn pod_spec_relative<'a, 'b>(kind: &str, f: &'b [&'a str]) -> Option<&'b [&'a str]> {
    let prefix: &[&str] = match kind {
        "Pod" => &["spec"],
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "PodTemplate" => &["template", "spec"],
        _ => return None,
    };
    f.strip_prefix(prefix)
}

/// Whether `value` at `f` is what the server would have filled in.
pub fn is_default(cx: &Context<'_>, f: &[&str], value: &Value) -> bool {
    if crate::normalize::is_empty_collection(value) {
        return true;
    }
    let s = |x: &str| value.as_str() == Some(x);
    let n = |x: i64| value.as_i64() == Some(x);
    let b = |x: bool| value.as_bool() == Some(x);
    let sibling = |name: &str| cx.parent.and_then(|p| p.get(name));
    if let Some(p) = pod_spec_relative(cx.kind, f) {
        let hit = match p {
            // SetDefaults_PodSpec [core]
            ["dnsPolicy"] => s("ClusterFirst"),
            ["restartPolicy"] => s("Always"),
            ["terminationGracePeriodSeconds"] => n(30),
            ["schedulerName"] => s("default-scheduler"),
            ["enableServiceLinks"] => b(true),
            // serviceAccount is the deprecated alias the server copies from
            // serviceAccountName (pkg/apis/core/v1/conversion.go,
            // Convert_core_PodSpec_To_v1_PodSpec).
            ["serviceAccount"] => sibling("serviceAccountName") == Some(value),
            // SetDefaults_Container [core]
            ["containers" | "initContainers", "terminationMessagePath"] => s("/dev/termination-log"),
            ["containers" | "initContainers", "terminationMessagePolicy"] => s("File"),
            ["containers" | "initContainers", "imagePullPolicy"] => {
                sibling("image").and_then(Value::as_str).map(image_pull_policy_default) == value.as_str()
            }
            // SetDefaults_ContainerPort... protocol TCP [core]
            ["containers" | "initContainers", "ports", "protocol"] => s("TCP"),
            // SetDefaults_Probe [core]
            ["containers" | "initContainers", "livenessProbe" | "readinessProbe" | "startupProbe", field] => {
                match *field {
                    "timeoutSeconds" => n(1),
                    "periodSeconds" => n(10),
                    "successThreshold" => n(1),
                    "failureThreshold" => n(3),
                    _ => false,
                }
            }
            // SetDefaults_HTTPGetAction: scheme HTTP, path "/" [core]
            ["containers" | "initContainers", "livenessProbe" | "readinessProbe" | "startupProbe", "httpGet", "scheme"]
            | ["containers" | "initContainers", "lifecycle", "postStart" | "preStop", "httpGet", "scheme"] => s("HTTP"),
            ["containers" | "initContainers", "livenessProbe" | "readinessProbe" | "startupProbe", "httpGet", "path"] => {
                s("/")
            }
            // SetDefaults_ObjectFieldSelector: apiVersion v1 [core]
            ["containers" | "initContainers", "env", "valueFrom", "fieldRef", "apiVersion"] => s("v1"),
            // SetDefaults_ResourceFieldRef... divisor "0" (served as "0") [api EnvVarSource]
            ["containers" | "initContainers", "env", "valueFrom", "resourceFieldRef", "divisor"] => s("0") || n(0),
            // SetDefaults_{Secret,ConfigMap,DownwardAPI,Projected}VolumeSource:
            // defaultMode 0644 = 420 [core]
            ["volumes", "secret" | "configMap" | "downwardAPI" | "projected", "defaultMode"] => n(420),
            // SetDefaults_HostPathVolumeSource: type "" [core]
            ["volumes", "hostPath", "type"] => s(""),
            _ => false,
        };
        if hit {
            return true;
        }
    }
    match (cx.kind, f) {
        // SetDefaults_Deployment [apps]
        ("Deployment", ["spec", "replicas"]) => n(1),
        ("Deployment", ["spec", "revisionHistoryLimit"]) => n(10),
        ("Deployment", ["spec", "progressDeadlineSeconds"]) => n(600),
        ("Deployment", ["spec", "strategy", "type"]) => s("RollingUpdate"),
        ("Deployment", ["spec", "strategy", "rollingUpdate", "maxUnavailable" | "maxSurge"]) => s("25%"),
        // SetDefaults_StatefulSet [apps]
        ("StatefulSet", ["spec", "replicas"]) => n(1),
        ("StatefulSet", ["spec", "podManagementPolicy"]) => s("OrderedReady"),
        ("StatefulSet", ["spec", "updateStrategy", "type"]) => s("RollingUpdate"),
        ("StatefulSet", ["spec", "updateStrategy", "rollingUpdate", "partition"]) => n(0),
        ("StatefulSet", ["spec", "revisionHistoryLimit"]) => n(10),
        ("StatefulSet", ["spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted" | "whenScaled"]) => s("Retain"),
        // volumeClaimTemplates are PersistentVolumeClaims: SetDefaults_PersistentVolumeClaimSpec
        // volumeMode Filesystem [core]; apiVersion/kind are filled on read.
        ("StatefulSet", ["spec", "volumeClaimTemplates", "spec", "volumeMode"]) => s("Filesystem"),
        ("StatefulSet", ["spec", "volumeClaimTemplates", "apiVersion"]) => s("v1"),
        ("StatefulSet", ["spec", "volumeClaimTemplates", "kind"]) => s("PersistentVolumeClaim"),
        // SetDefaults_DaemonSet [apps]
        ("DaemonSet", ["spec", "updateStrategy", "type"]) => s("RollingUpdate"),
        ("DaemonSet", ["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"]) => n(1) || s("1"),
        ("DaemonSet", ["spec", "updateStrategy", "rollingUpdate", "maxSurge"]) => n(0) || s("0"),
        ("DaemonSet", ["spec", "revisionHistoryLimit"]) => n(10),
        // SetDefaults_ReplicaSet [apps]; SetDefaults_ReplicationController [core]
        ("ReplicaSet" | "ReplicationController", ["spec", "replicas"]) => n(1),
        // SetDefaults_Job [batch]
        ("Job", ["spec", "backoffLimit"]) => n(6),
        ("Job", ["spec", "completions" | "parallelism"]) => n(1),
        ("Job", ["spec", "completionMode"]) => s("NonIndexed"),
        ("Job", ["spec", "suspend" | "manualSelector"]) => b(false),
        ("Job", ["spec", "podReplacementPolicy"]) => s("TerminatingOrFailed"),
        // SetDefaults_CronJob [batch]
        ("CronJob", ["spec", "concurrencyPolicy"]) => s("Allow"),
        ("CronJob", ["spec", "suspend"]) => b(false),
        ("CronJob", ["spec", "successfulJobsHistoryLimit"]) => n(3),
        ("CronJob", ["spec", "failedJobsHistoryLimit"]) => n(1),
        // SetDefaults_Service [core]
        ("Service", ["spec", "type"]) => s("ClusterIP"),
        ("Service", ["spec", "sessionAffinity"]) => s("None"),
        ("Service", ["spec", "ports", "protocol"]) => s("TCP"),
        ("Service", ["spec", "ports", "targetPort"]) => sibling("port").is_some_and(|p| same_int(p, value)),
        ("Service", ["spec", "internalTrafficPolicy" | "externalTrafficPolicy"]) => s("Cluster"),
        ("Service", ["spec", "allocateLoadBalancerNodePorts"]) => b(true),
        // SetDefaults_Secret: type Opaque [core]
        ("Secret", ["type"]) => s("Opaque"),
        // SetDefaults_PersistentVolume / ...Claim [core]
        ("PersistentVolume", ["spec", "persistentVolumeReclaimPolicy"]) => s("Retain"),
        ("PersistentVolume" | "PersistentVolumeClaim", ["spec", "volumeMode"]) => s("Filesystem"),
        // SetDefaults_NetworkPolicy: policyTypes [Ingress] plus Egress when
        // egress rules exist; SetDefaults_NetworkPolicyPort: protocol TCP [net]
        ("NetworkPolicy", ["spec", "policyTypes"]) => {
            let has_egress = sibling("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            let mut expected = vec![Value::from("Ingress")];
            if has_egress {
                expected.push(Value::from("Egress"));
            }
            value.as_array() == Some(&expected)
        }
        ("NetworkPolicy", ["spec", "ingress" | "egress", "ports", "protocol"]) => s("TCP"),
        // SetDefaults_Subject: apiGroup rbac.authorization.k8s.io for User and
        // Group, "" for ServiceAccount [rbac]
        ("RoleBinding" | "ClusterRoleBinding", ["subjects", "apiGroup"]) => {
            match sibling("kind").and_then(Value::as_str) {
                Some("User" | "Group") => s("rbac.authorization.k8s.io"),
                Some("ServiceAccount") => s(""),
                _ => false,
            }
        }
        // SetDefaults_StorageClass [storage]
        ("StorageClass", ["reclaimPolicy"]) => s("Delete"),
        ("StorageClass", ["volumeBindingMode"]) => s("Immediate"),
        // SetDefaults_CustomResourceDefinitionSpec: conversion strategy None [ext]
        ("CustomResourceDefinition", ["spec", "conversion", "strategy"]) => s("None"),
        // SetDefaults_IngressClass... none; Ingress pathType has no default in v1.
        _ => false,
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`
/// (SetDefaults_Container [core]; a digest counts as a tag).
pub fn image_pull_policy_default(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn same_int(a: &Value, b: &Value) -> bool {
    let i = |v: &Value| match v {
        Value::Number(n) => n.as_i64().map(|x| x.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    i(a).is_some() && i(a) == i(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(image_pull_policy_default("nginx"), "Always");
        assert_eq!(image_pull_policy_default("nginx:latest"), "Always");
        assert_eq!(image_pull_policy_default("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy_default("registry:5000/app"), "Always");
        assert_eq!(image_pull_policy_default("registry:5000/app:v1"), "IfNotPresent");
        assert_eq!(image_pull_policy_default("app@sha256:abc"), "IfNotPresent");
    }
}
