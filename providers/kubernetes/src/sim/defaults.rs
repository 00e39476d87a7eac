//! API-server defaulting: the fields a real kube-apiserver fills in when an
//! object is written, so that the provider sees what it would see against a
//! real cluster. Every rule names its source: the `SetDefaults_*` function
//! in k8s.io/kubernetes `pkg/apis/<group>/<version>/defaults.go` (v1.34),
//! or the registry strategy that sets it, or the API reference.
//!
//! Registry-side allocation that needs the store (Service cluster IPs and
//! node ports, Job selectors, Secret `stringData`) lives in `store.rs`.

use serde_json::{json, Map, Value};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

/// Sets `key` to `value` when it is absent or null.
fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Returns the child object at `key`, creating `{}` when absent.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    default(m, key, json!({}));
    m.get_mut(key)?.as_object_mut()
}

fn at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object_mut()?.get_mut(*p)?;
    }
    cur.as_object_mut()
}

/// Applies every defaulting rule for `group`/`kind` to `o`.
pub(crate) fn apply(group: &str, kind: &str, o: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = at(o, &["spec"]) {
                pod_spec(spec);
                // core/v1 defaults.go SetDefaults_Pod: enableServiceLinks
                // (true) is set on Pods only, not on templates; so are
                // requests copied from limits when only limits are given.
                default(spec, "enableServiceLinks", json!(true));
                for list in ["containers", "initContainers"] {
                    if let Some(Value::Array(cs)) = spec.get_mut(list) {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            requests_from_limits(c);
                        }
                    }
                }
            }
        }
        ("", "ReplicationController") => {
            // core/v1 defaults.go SetDefaults_ReplicationController: selector
            // and labels default to the template's labels, replicas to 1.
            let labels = o.pointer("/spec/template/metadata/labels").cloned();
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "replicas", json!(1));
                if let Some(l) = &labels {
                    default(spec, "selector", l.clone());
                }
            }
            if let (Some(l), Some(meta)) = (labels, at(o, &["metadata"])) {
                default(meta, "labels", l);
            }
            template(o, &["spec", "template"]);
        }
        ("", "PodTemplate") => template(o, &["template"]),
        ("", "Service") => service(o),
        ("", "Namespace") => namespace(o),
        ("", "Secret") => {
            // core/v1 defaults.go SetDefaults_Secret: type Opaque.
            if let Some(m) = obj(o) {
                default(m, "type", json!("Opaque"));
            }
        }
        ("", "PersistentVolumeClaim") => pvc(o),
        ("", "PersistentVolume") => {
            // core/v1 defaults.go SetDefaults_PersistentVolume: reclaim policy
            // Retain, volumeMode Filesystem, status phase Pending.
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(m) = obj(o) {
                default(m, "status", json!({"phase": "Pending"}));
            }
        }
        ("apps", "Deployment") => {
            // apps/v1 defaults.go SetDefaults_Deployment.
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "replicas", json!(1));
                if let Some(strategy) = child(spec, "strategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type") == Some(&json!("RollingUpdate")) {
                        if let Some(ru) = child(strategy, "rollingUpdate") {
                            default(ru, "maxUnavailable", json!("25%"));
                            default(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
            }
            template(o, &["spec", "template"]);
        }
        ("apps", "ReplicaSet") => {
            // apps/v1 defaults.go SetDefaults_ReplicaSet: replicas 1.
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "replicas", json!(1));
            }
            template(o, &["spec", "template"]);
        }
        ("apps", "StatefulSet") => {
            // apps/v1 defaults.go SetDefaults_StatefulSet (PVC retention
            // policy: StatefulSetAutoDeletePVC, GA in 1.32).
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                if let Some(us) = child(spec, "updateStrategy") {
                    default(us, "type", json!("RollingUpdate"));
                    if us.get("type") == Some(&json!("RollingUpdate")) {
                        if let Some(ru) = child(us, "rollingUpdate") {
                            default(ru, "partition", json!(0));
                        }
                    }
                }
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(p) = child(spec, "persistentVolumeClaimRetentionPolicy") {
                    default(p, "whenDeleted", json!("Retain"));
                    default(p, "whenScaled", json!("Retain"));
                }
                // SetObjectDefaults_StatefulSet runs SetDefaults_PersistentVolumeClaim
                // on each claim template; the stored template also carries
                // its apiVersion/kind (apps/v1 conversion keeps TypeMeta).
                if let Some(Value::Array(ts)) = spec.get_mut("volumeClaimTemplates") {
                    for t in ts.iter_mut() {
                        pvc(t);
                        if let Some(m) = obj(t) {
                            default(m, "apiVersion", json!("v1"));
                            default(m, "kind", json!("PersistentVolumeClaim"));
                        }
                    }
                }
            }
            template(o, &["spec", "template"]);
        }
        ("apps", "DaemonSet") => {
            // apps/v1 defaults.go SetDefaults_DaemonSet.
            if let Some(spec) = at(o, &["spec"]) {
                if let Some(us) = child(spec, "updateStrategy") {
                    default(us, "type", json!("RollingUpdate"));
                    if us.get("type") == Some(&json!("RollingUpdate")) {
                        if let Some(ru) = child(us, "rollingUpdate") {
                            default(ru, "maxUnavailable", json!(1));
                            default(ru, "maxSurge", json!(0));
                        }
                    }
                }
                default(spec, "revisionHistoryLimit", json!(10));
            }
            template(o, &["spec", "template"]);
        }
        ("batch", "Job") => {
            if let Some(spec) = at(o, &["spec"]) {
                job_spec(spec);
            }
            template(o, &["spec", "template"]);
        }
        ("batch", "CronJob") => {
            // batch/v1 defaults.go SetDefaults_CronJob. The job template's
            // JobSpec is not defaulted (SetDefaults_Job takes a Job), only its
            // pod template.
            if let Some(spec) = at(o, &["spec"]) {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
            }
            template(o, &["spec", "jobTemplate", "spec", "template"]);
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            // networking/v1 defaults.go SetDefaults_NetworkPolicy and
            // SetDefaults_NetworkPolicyPort (protocol TCP).
            if let Some(spec) = at(o, &["spec"]) {
                let has_egress = spec
                    .get("egress")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty());
                let missing = spec
                    .get("policyTypes")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if missing {
                    let mut types = vec![json!("Ingress")];
                    if has_egress {
                        types.push(json!("Egress"));
                    }
                    spec.insert("policyTypes".into(), Value::Array(types));
                }
                for dir in ["ingress", "egress"] {
                    if let Some(Value::Array(rules)) = spec.get_mut(dir) {
                        for r in rules.iter_mut() {
                            if let Some(Value::Array(ports)) = r.get_mut("ports") {
                                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                                    default(p, "protocol", json!("TCP"));
                                }
                            }
                        }
                    }
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            // rbac/v1 defaults.go SetDefaults_ClusterRoleBinding,
            // SetDefaults_RoleBinding and SetDefaults_Subject.
            if let Some(rr) = at(o, &["roleRef"]) {
                if rr.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty) {
                    rr.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
                }
            }
            if let Some(Value::Array(subjects)) = o.get_mut("subjects") {
                for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
                    let group = match s.get("kind").and_then(Value::as_str) {
                        Some("ServiceAccount") => "",
                        Some("User") | Some("Group") => "rbac.authorization.k8s.io",
                        _ => continue,
                    };
                    if s.get("apiGroup").is_none() {
                        s.insert("apiGroup".into(), json!(group));
                    }
                }
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(o),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            // apiextensions/v1 defaults.go SetDefaults_CustomResourceDefinitionSpec:
            // singular is the lower-cased kind, listKind is <Kind>List,
            // conversion strategy None.
            if let Some(spec) = at(o, &["spec"]) {
                let kind = spec
                    .get("names")
                    .and_then(|n| n.get("kind"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Some(names) = child(spec, "names") {
                    default(names, "singular", json!(kind.to_lowercase()));
                    default(names, "listKind", json!(format!("{kind}List")));
                }
                if let Some(conv) = child(spec, "conversion") {
                    default(conv, "strategy", json!("None"));
                }
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            // storage/v1 defaults.go SetDefaults_StorageClass.
            if let Some(m) = obj(o) {
                default(m, "reclaimPolicy", json!("Delete"));
                default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            // scheduling/v1 defaults.go SetDefaults_PriorityClass.
            if let Some(m) = obj(o) {
                default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
            webhooks(kind == "MutatingWebhookConfiguration", o)
        }
        _ => {}
    }
}

/// A pod template at `path` (its `spec` is a PodSpec).
fn template(o: &mut Value, path: &[&str]) {
    let mut full: Vec<&str> = path.to_vec();
    full.push("spec");
    if let Some(spec) = at(o, &full) {
        pod_spec(spec);
    }
}

/// core/v1 defaults.go SetDefaults_PodSpec, plus the per-element defaults
/// its generated SetObjectDefaults walks into (containers, ports, probes,
/// volumes, env).
fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c, host_network);
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume(v);
        }
    }
}

/// core/v1 defaults.go SetDefaults_Container, SetDefaults_ContainerPort,
/// SetDefaults_Probe, SetDefaults_HTTPGetAction, SetDefaults_ObjectFieldSelector,
/// and defaultHostNetworkPorts (hostPort = containerPort under hostNetwork).
fn container(c: &mut Map<String, Value>, host_network: bool) {
    if let Some(image) = c.get("image").and_then(Value::as_str) {
        default(c, "imagePullPolicy", json!(pull_policy(image)));
    }
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if host_network {
                if let Some(cp) = p.get("containerPort").cloned() {
                    default(p, "hostPort", cp);
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
    if let Some(Value::Object(lc)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = lc.get_mut(hook).and_then(|h| h.get_mut("httpGet")) {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(Value::Object(f)) = e.pointer_mut("/valueFrom/fieldRef") {
                default(f, "apiVersion", json!("v1"));
            }
        }
    }
}

/// SetDefaults_Container's pull policy: `Always` for `:latest` or no tag,
/// `IfNotPresent` otherwise (a digest counts as pinned).
pub(crate) fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// core/v1 defaults.go SetDefaults_Pod: requests default to limits.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(Value::Object(res)) = c.get_mut("resources") else {
        return;
    };
    let Some(Value::Object(limits)) = res.get("limits").cloned() else {
        return;
    };
    if let Some(req) = child(res, "requests") {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// core/v1 defaults.go SetDefaults_ConfigMapVolumeSource,
/// SetDefaults_SecretVolumeSource, SetDefaults_ProjectedVolumeSource,
/// SetDefaults_DownwardAPIVolumeSource (defaultMode 0644 = 420),
/// SetDefaults_HostPathVolumeSource (type "").
fn volume(v: &mut Map<String, Value>) {
    for src in ["configMap", "secret", "projected", "downwardAPI"] {
        if let Some(Value::Object(s)) = v.get_mut(src) {
            default(s, "defaultMode", json!(420));
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        default(h, "type", json!(""));
    }
}

/// core/v1 defaults.go SetDefaults_PersistentVolumeClaimSpec (volumeMode
/// Filesystem) and SetDefaults_PersistentVolumeClaim (status phase Pending).
fn pvc(o: &mut Value) {
    if let Some(spec) = at(o, &["spec"]) {
        default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(m) = obj(o) {
        default(m, "status", json!({"phase": "Pending"}));
    }
}

/// core/v1 defaults.go SetDefaults_Service and SetDefaults_ServicePort:
/// sessionAffinity None, type ClusterIP, port protocol TCP, targetPort = port,
/// externalTrafficPolicy Cluster for NodePort/LoadBalancer, internalTrafficPolicy
/// Cluster for ClusterIP/NodePort/LoadBalancer, allocateLoadBalancerNodePorts
/// true for LoadBalancer.
fn service(o: &mut Value) {
    let Some(spec) = at(o, &["spec"]) else { return };
    default(spec, "sessionAffinity", json!("None"));
    default(spec, "type", json!("ClusterIP"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            let unset = matches!(p.get("targetPort"), None | Some(Value::Null))
                || p.get("targetPort") == Some(&json!(0))
                || p.get("targetPort") == Some(&json!(""));
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// core/v1 defaults.go SetDefaults_Namespace (the immutable
/// `kubernetes.io/metadata.name` label) and pkg/registry/core/namespace
/// strategy.go PrepareForCreate (finalizer `kubernetes`, phase Active).
fn namespace(o: &mut Value) {
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(meta) = at(o, &["metadata"]) {
        if let Some(labels) = child(meta, "labels") {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(m) = obj(o) {
        if let Some(spec) = child(m, "spec") {
            default(spec, "finalizers", json!(["kubernetes"]));
        }
        if let Some(status) = child(m, "status") {
            default(status, "phase", json!("Active"));
        }
    }
}

/// batch/v1 defaults.go SetDefaults_Job.
fn job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let policy = if spec.get("podFailurePolicy").is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(policy));
}

/// autoscaling/v2 defaults.go SetDefaults_HorizontalPodAutoscaler: minReplicas 1,
/// CPU at 80% when no metric is given, and (only when `behavior` is given)
/// the scale-up/scale-down rules of SetDefaults_HorizontalPodAutoscalerBehavior.
fn hpa(o: &mut Value) {
    let Some(spec) = at(o, &["spec"]) else { return };
    default(spec, "minReplicas", json!(1));
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(Value::Object(b)) = spec.get_mut("behavior") {
        if let Some(up) = child(b, "scaleUp") {
            default(up, "stabilizationWindowSeconds", json!(0));
            default(up, "selectPolicy", json!("Max"));
            default(
                up,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        if let Some(down) = child(b, "scaleDown") {
            default(down, "selectPolicy", json!("Max"));
            default(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

/// admissionregistration/v1 defaults.go SetDefaults_ValidatingWebhook /
/// SetDefaults_MutatingWebhook, SetDefaults_Rule, SetDefaults_ServiceReference.
fn webhooks(mutating: bool, o: &mut Value) {
    let Some(Value::Array(hooks)) = o.get_mut("webhooks") else {
        return;
    };
    for h in hooks.iter_mut().filter_map(Value::as_object_mut) {
        default(h, "failurePolicy", json!("Fail"));
        default(h, "matchPolicy", json!("Equivalent"));
        default(h, "namespaceSelector", json!({}));
        default(h, "objectSelector", json!({}));
        default(h, "timeoutSeconds", json!(10));
        if mutating {
            default(h, "reinvocationPolicy", json!("Never"));
        }
        if let Some(Value::Object(svc)) = h.get_mut("clientConfig").and_then(|c| c.get_mut("service")) {
            default(svc, "port", json!(443));
        }
        if let Some(Value::Array(rules)) = h.get_mut("rules") {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                default(r, "scope", json!("*"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_fill_template_and_strategy() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 80}}}]}}}});
        apply("apps", "Deployment", &mut d);
        assert_eq!(d.pointer("/spec/strategy/rollingUpdate/maxSurge"), Some(&json!("25%")));
        assert_eq!(d.pointer("/spec/progressDeadlineSeconds"), Some(&json!(600)));
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(
            d.pointer("/spec/template/spec/schedulerName"),
            Some(&json!("default-scheduler"))
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply("", "Service", &mut s);
        assert_eq!(s.pointer("/spec/ports/0/targetPort"), Some(&json!(80)));
        assert_eq!(s.pointer("/spec/ports/1/targetPort"), Some(&json!("https")));
        assert_eq!(s.pointer("/spec/sessionAffinity"), Some(&json!("None")));
    }
}
