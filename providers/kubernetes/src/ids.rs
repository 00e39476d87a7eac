//! Ids and scope of Kubernetes objects: `group/version/Kind/namespace/name`
//! (`core` for the empty group, no namespace segment for cluster-scoped
//! kinds), e.g. `apps/v1/Deployment/shop/cart`.

use serde_json::Value;

/// Group and version of an `apiVersion` (`apps/v1` → `("apps", "v1")`,
/// `v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// The id of an object of `api_version`/`kind` named `name`, in `namespace`
/// when the kind is namespaced.
pub fn id(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    let (group, version) = split_api_version(api_version);
    let group = if group.is_empty() { "core" } else { group };
    match namespace {
        Some(ns) => format!("{group}/{version}/{kind}/{ns}/{name}"),
        None => format!("{group}/{version}/{kind}/{name}"),
    }
}

/// The id of a full object (apiVersion, kind, metadata.name/namespace).
pub fn id_of(object: &Value) -> Option<String> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let name = object.pointer("/metadata/name")?.as_str()?;
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str);
    Some(id(api_version, kind, namespace, name))
}

/// Built-in cluster-scoped kinds, for reading desired state offline
/// (before discovery): from the API reference's resource lists
/// (<https://kubernetes.io/docs/reference/kubernetes-api/>, "Cluster"
/// scoped resources) plus widely used cluster-scoped custom resources.
/// Live reads use discovery's answer instead.
pub const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "ComponentStatus",
    "ServiceCIDR",
    "IPAddress",
    "DeviceClass",
    "VolumeAttributesClass",
    "TokenReview",
    "SelfSubjectReview",
    "SubjectAccessReview",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "ClusterIssuer",
    "ClusterSecretStore",
    "ClusterPolicy",
    "GatewayClass",
];

/// Whether a kind is cluster-scoped, as far as is known offline.
pub fn cluster_scoped_builtin(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_contract() {
        assert_eq!(
            id("apps/v1", "Deployment", Some("shop"), "cart"),
            "apps/v1/Deployment/shop/cart"
        );
        assert_eq!(id("v1", "ConfigMap", Some("a"), "b"), "core/v1/ConfigMap/a/b");
        assert_eq!(id("v1", "Namespace", None, "shop"), "core/v1/Namespace/shop");
        assert_eq!(
            id("rbac.authorization.k8s.io/v1", "ClusterRole", None, "view"),
            "rbac.authorization.k8s.io/v1/ClusterRole/view"
        );
    }
}
