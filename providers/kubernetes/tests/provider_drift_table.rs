//! The no-false-drift / no-missed-drift table: desired manifests against
//! live objects shaped like real API responses (server metadata, status,
//! server defaults, managedFields as the API server writes them after
//! `kubectl apply --server-side`, `kubectl create`/client-side apply, and
//! hand edits by `kubectl-edit`, `kubectl-label`, `kubectl-set`...).
//!
//! Shapes follow the API reference and the field-manager docs
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>):
//! an Apply entry owns exactly the applied fields; an Update entry made at
//! creation owns every field of the object including defaulted ones; an
//! Update entry made later owns the fields it changed.

use plumb_kubernetes::keys;
use plumb_kubernetes::live::changed_by;
use plumb_kubernetes::normalize::{diff_paths, normalize_pair};
use serde_json::{json, Map, Value};

/// fieldsV1 for every field of `v`, as structured-merge-diff writes it.
fn fields_v1(kind: &str, v: &Value, path: &mut Vec<String>) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                path.push(k.clone());
                out.insert(format!("f:{k}"), fields_v1(kind, c, path));
                path.pop();
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let f: Vec<&str> = path.iter().map(String::as_str).collect();
            match keys::keyed_list(kind, &f) {
                Some(list) => {
                    let mut out = Map::new();
                    for e in items {
                        let mut key = Map::new();
                        for k in list.keys {
                            key.insert(k.to_string(), keys::key_value(list, e, k));
                        }
                        let mut node = match fields_v1(kind, e, path) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        node.insert(".".into(), json!({}));
                        out.insert(format!("k:{}", Value::Object(key)), Value::Object(node));
                    }
                    Value::Object(out)
                }
                None => json!({}),
            }
        }
        _ => json!({}),
    }
}

fn entry(kind: &str, manager: &str, operation: &str, time: &str, owned: &Value) -> Value {
    let mut o = owned.clone();
    if let Value::Object(m) = &mut o {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.remove("name");
            meta.remove("namespace");
        }
    }
    json!({"manager": manager, "operation": operation, "apiVersion": "v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields_v1(kind, &o, &mut Vec::new())})
}

/// Deep-merges `extra` into `base` (objects merged, everything else replaced).
fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, e) => *b = e.clone(),
    }
}

/// A live object as the API server returns it after `kubectl apply
/// --server-side` of `desired`: server metadata, `defaults` filled in (not
/// owned by anyone), `status`, and one Apply entry owning `desired`.
fn applied(kind: &str, desired: &Value, defaults: &Value) -> Value {
    let mut live = desired.clone();
    merge(&mut live, defaults);
    merge(
        &mut live,
        &json!({"metadata": {"uid": "6b4f-1", "resourceVersion": "4711", "generation": 2,
            "creationTimestamp": "2025-03-01T10:00:00Z",
            "managedFields": [entry(kind, "kubectl", "Apply", "2025-03-01T10:00:00Z", desired)]},
            "status": {"observedGeneration": 2}}),
    );
    live
}

/// The same, created by `kubectl create`/client-side apply (an Update entry
/// that owns the defaults too, and the last-applied annotation).
fn created(kind: &str, desired: &Value, defaults: &Value) -> Value {
    let mut live = desired.clone();
    merge(&mut live, defaults);
    let owned = live.clone();
    merge(
        &mut live,
        &json!({"metadata": {"uid": "6b4f-2", "resourceVersion": "99", "generation": 1,
            "creationTimestamp": "2025-03-01T10:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": desired.to_string()},
            "managedFields": [entry(kind, "kubectl-client-side-apply", "Update", "2025-03-01T10:00:00Z", &owned)]}}),
    );
    live
}

/// A hand edit: `change` merged into the object, and a new Update entry of
/// `manager` owning exactly `change` (ownership moves to the editor).
fn edit(kind: &str, live: &mut Value, manager: &str, change: &Value) {
    merge(live, change);
    let e = entry(kind, manager, "Update", "2025-04-02T08:30:00Z", change);
    if let Some(Value::Array(mf)) = live.pointer_mut("/metadata/managedFields") {
        mf.push(e);
    }
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cart", "namespace": "shop", "labels": {"app": "cart"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cart"}},
            "template": {"metadata": {"labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "web", "image": "example/cart:1.4",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}}}})
}

/// What SetDefaults_Deployment/PodSpec/Container/Probe fill in.
fn deployment_defaults() -> Value {
    json!({"spec": {"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"creationTimestamp": null}, "spec": {
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30, "securityContext": {},
            "containers": [{"name": "web", "image": "example/cart:1.4",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "prod"}],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}}]}}}})
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
}

fn service_defaults() -> Value {
    json!({"spec": {"type": "ClusterIP", "sessionAffinity": "None", "clusterIP": "10.96.12.7",
        "clusterIPs": ["10.96.12.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}}})
}

fn configmap() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"},
        "data": {"LOG_LEVEL": "info", "FEATURE_X": "on"}})
}

fn secret_desired() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
        "type": "Opaque", "stringData": {"password": "hunter2"}})
}

fn secret_live() -> Value {
    // What the server stores for secret_desired(): stringData merged into data.
    let written = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
        "type": "Opaque", "data": {"password": "aHVudGVyMg=="}});
    applied("Secret", &written, &json!({}))
}

enum Expect {
    InSync,
    /// Paths that must be among the differences.
    Drift(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    kind: &'static str,
    desired: Value,
    live: Value,
    expect: Expect,
    /// The field manager changed_by must name, for drift cases.
    who: Option<&'static str>,
}

fn case(name: &'static str, kind: &'static str, desired: Value, live: Value, expect: Expect) -> Case {
    Case {
        name,
        kind,
        desired,
        live,
        expect,
        who: None,
    }
}

fn by(mut c: Case, who: &'static str) -> Case {
    c.who = Some(who);
    c
}

fn cases() -> Vec<Case> {
    let d = deployment();
    let dd = deployment_defaults();
    let mut v = Vec::new();

    // ---- not drift -------------------------------------------------------
    v.push(case(
        "ssa-created deployment with server defaults",
        "Deployment",
        d.clone(),
        applied("Deployment", &d, &dd),
        Expect::InSync,
    ));
    v.push(case(
        "client-side-applied deployment owning its defaults",
        "Deployment",
        d.clone(),
        created("Deployment", &d, &dd),
        Expect::InSync,
    ));
    {
        let mut live = applied("Deployment", &d, &dd);
        merge(
            &mut live,
            &json!({"status": {"replicas": 2, "readyReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}}),
        );
        v.push(case(
            "status is never compared",
            "Deployment",
            d.clone(),
            live,
            Expect::InSync,
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        merge(
            &mut live,
            &json!({"metadata": {"selfLink": "/apis/apps/v1/namespaces/shop/deployments/cart", "generation": 9, "resourceVersion": "123456"}}),
        );
        v.push(case("server metadata", "Deployment", d.clone(), live, Expect::InSync));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kube-controller-manager",
            &json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "3"}}}),
        );
        v.push(case(
            "revision annotation written by the deployment controller",
            "Deployment",
            d.clone(),
            live,
            Expect::InSync,
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        merge(
            &mut live,
            &json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"x\":1}"}}}),
        );
        v.push(case(
            "last-applied annotation",
            "Deployment",
            d.clone(),
            live,
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1000m");
        let mut live = applied("Deployment", &desired, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1");
        v.push(case("quantity 1000m = 1", "Deployment", desired, live, Expect::InSync));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1024Mi");
        let mut live = applied("Deployment", &desired, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi");
        v.push(case(
            "quantity 1024Mi = 1Gi",
            "Deployment",
            desired,
            live,
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!(0.5);
        let mut live = applied("Deployment", &desired, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("500m");
        v.push(case("quantity 0.5 = 500m", "Deployment", desired, live, Expect::InSync));
    }
    {
        let mut desired = service();
        desired["spec"]["ports"][0]["targetPort"] = json!("8080");
        let mut live = applied("Service", &desired, &service_defaults());
        live["spec"]["ports"][0]["targetPort"] = json!(8080);
        v.push(case(
            "int-or-string \"8080\" = 8080",
            "Service",
            desired,
            live,
            Expect::InSync,
        ));
    }
    v.push(case(
        "secret stringData against data",
        "Secret",
        secret_desired(),
        secret_live(),
        Expect::InSync,
    ));
    {
        let desired: Value = serde_json::from_str(
            r#"{"kind":"ConfigMap","data":{"FEATURE_X":"on","LOG_LEVEL":"info"},"metadata":{"namespace":"shop","name":"cfg"},"apiVersion":"v1"}"#,
        )
        .unwrap();
        v.push(case(
            "key order",
            "ConfigMap",
            desired,
            applied("ConfigMap", &configmap(), &json!({})),
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]);
        let mut live = applied("Deployment", &desired, &dd);
        live["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "b", "image": "b:1", "imagePullPolicy": "IfNotPresent"}, {"name": "a", "image": "a:1", "terminationMessagePath": "/dev/termination-log"}]);
        v.push(case("keyed list order", "Deployment", desired, live, Expect::InSync));
    }
    v.push(case(
        "service allocated and defaulted fields",
        "Service",
        service(),
        applied("Service", &service(), &service_defaults()),
        Expect::InSync,
    ));
    v.push(case(
        "service created client-side",
        "Service",
        service(),
        created("Service", &service(), &service_defaults()),
        Expect::InSync,
    ));
    {
        let desired = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let defaults = json!({"spec": {"type": "ClusterIP", "sessionAffinity": "None", "clusterIP": "10.0.0.1",
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}});
        v.push(case(
            "service targetPort defaults to port",
            "Service",
            desired.clone(),
            created("Service", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        let defaults = json!({"metadata": {"labels": {"kubernetes.io/metadata.name": "shop"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        v.push(case(
            "namespace finalizers and name label",
            "Namespace",
            desired.clone(),
            created("Namespace", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "job", "image": "busybox:1.36"}]}}}}}});
        let defaults = json!({"spec": {"concurrencyPolicy": "Allow", "suspend": false, "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1, "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": {"template": {
                "metadata": {"creationTimestamp": null},
                "spec": {"dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "job", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "resources": {}}]}}}}}});
        v.push(case(
            "cronjob defaults",
            "CronJob",
            desired.clone(),
            created("CronJob", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "10Gi"}}}}]}});
        let mut live = desired.clone();
        merge(
            &mut live,
            &json!({"spec": {"replicas": 1, "podManagementPolicy": "OrderedReady", "revisionHistoryLimit": 10,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}}}),
        );
        live["spec"]["volumeClaimTemplates"] = json!([{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "creationTimestamp": null}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}}, "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}]);
        let owned = live.clone();
        merge(
            &mut live,
            &json!({"metadata": {"managedFields": [entry("StatefulSet", "kubectl-client-side-apply", "Update", "2025-01-01T00:00:00Z", &owned)]}}),
        );
        v.push(case(
            "statefulset defaults and claim templates",
            "StatefulSet",
            desired,
            live,
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/cart");
        let mut defaults = dd.clone();
        defaults["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        defaults["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/cart");
        v.push(case(
            "imagePullPolicy Always for untagged image",
            "Deployment",
            desired.clone(),
            created("Deployment", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
        desired["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = json!({});
        v.push(case(
            "null timestamp and empty maps in Git",
            "Deployment",
            desired,
            applied("Deployment", &d, &dd),
            Expect::InSync,
        ));
    }
    v.push(case(
        "configmap as applied",
        "ConfigMap",
        configmap(),
        created("ConfigMap", &configmap(), &json!({})),
        Expect::InSync,
    ));
    {
        let desired = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "read", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}]});
        let mut live = desired.clone();
        live["subjects"] = json!([{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "shop", "apiGroup": ""}]);
        let owned = live.clone();
        merge(
            &mut live,
            &json!({"metadata": {"managedFields": [entry("RoleBinding", "kubectl-client-side-apply", "Update", "2025-01-01T00:00:00Z", &owned)]}}),
        );
        v.push(case(
            "rbac subject apiGroup defaults",
            "RoleBinding",
            desired,
            live,
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "cart"}}, "ingress": [{"ports": [{"port": 8080}]}]}});
        let defaults =
            json!({"spec": {"policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}]}});
        v.push(case(
            "networkpolicy policyTypes and port protocol",
            "NetworkPolicy",
            desired.clone(),
            created("NetworkPolicy", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"serviceAccountName": "agent", "containers": [{"name": "agent", "image": "agent:2"}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "agent"}}]}}}});
        let defaults = json!({"spec": {"revisionHistoryLimit": 10, "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"spec": {"serviceAccount": "agent", "volumes": [{"name": "cfg", "configMap": {"name": "agent", "defaultMode": 420}}]}}}});
        v.push(case(
            "daemonset defaults, serviceAccount alias, volume defaultMode",
            "DaemonSet",
            desired.clone(),
            created("DaemonSet", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let desired = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "shop"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}}});
        let defaults = json!({"spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1, "completionMode": "NonIndexed",
            "suspend": false, "podReplacementPolicy": "TerminatingOrFailed", "manualSelector": false,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "abc", "batch.kubernetes.io/job-name": "migrate",
                "controller-uid": "abc", "job-name": "migrate"}}}}});
        v.push(case(
            "job defaults and generated selector",
            "Job",
            desired.clone(),
            created("Job", &desired, &defaults),
            Expect::InSync,
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["metadata"]["labels"]["plumb.dev/target"] = json!("prod");
        edit(
            "Deployment",
            &mut live,
            "plumb",
            &json!({"metadata": {"labels": {"plumb.dev/target": "prod"}}}),
        );
        v.push(case("plumb's own mark", "Deployment", d.clone(), live, Expect::InSync));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["metadata"].as_object_mut().unwrap().remove("managedFields");
        v.push(case(
            "object without managedFields, defaults only",
            "Deployment",
            d.clone(),
            live,
            Expect::InSync,
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["replicas"] = json!(2.0);
        v.push(case(
            "2.0 = 2",
            "Deployment",
            desired,
            applied("Deployment", &d, &dd),
            Expect::InSync,
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        merge(
            &mut live,
            &json!({"metadata": {"ownerReferences": [], "finalizers": ["foregroundDeletion"]}}),
        );
        v.push(case(
            "finalizers set by the garbage collector",
            "Deployment",
            d.clone(),
            live,
            Expect::InSync,
        ));
    }

    // ---- drift -----------------------------------------------------------
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-set",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "example/cart:1.5"}]}}}}),
        );
        // merge replaced the containers list wholesale; restore the rest of it.
        let mut c = dd["spec"]["template"]["spec"]["containers"][0].clone();
        c["image"] = json!("example/cart:1.5");
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        v.push(by(
            case(
                "image changed with kubectl set image",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/template/spec/containers[name=web]/image"]),
            ),
            "kubectl-set",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-scale",
            &json!({"spec": {"replicas": 5}}),
        );
        v.push(by(
            case(
                "replicas scaled by hand",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/replicas"]),
            ),
            "kubectl-scale",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("debug");
        v.push(case(
            "env var value",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/env[name=MODE]/value"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        let mut c = live["spec"]["template"]["spec"]["containers"][0].clone();
        c["env"] = json!([{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}]);
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        edit(
            "Deployment",
            &mut live,
            "kubectl-set",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "DEBUG", "value": "1"}]}]}}}}),
        );
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        v.push(by(
            case(
                "env var added with kubectl set env",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/template/spec/containers[name=web]/env[name=DEBUG]"]),
            ),
            "kubectl-set",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-label",
            &json!({"metadata": {"labels": {"app": "basket"}}}),
        );
        v.push(by(
            case(
                "label changed",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/metadata/labels/app"]),
            ),
            "kubectl-label",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-label",
            &json!({"metadata": {"labels": {"team": "pay"}}}),
        );
        v.push(by(
            case(
                "label added by hand",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/metadata/labels/team"]),
            ),
            "kubectl-label",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-annotate",
            &json!({"metadata": {"annotations": {"note": "hotfix"}}}),
        );
        v.push(by(
            case(
                "annotation added by hand",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/metadata/annotations/note"]),
            ),
            "kubectl-annotate",
        ));
    }
    {
        let mut desired = d.clone();
        desired["metadata"]["annotations"] = json!({"owner": "team-a"});
        let mut live = applied("Deployment", &desired, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-annotate",
            &json!({"metadata": {"annotations": {"owner": "team-b"}}}),
        );
        v.push(by(
            case(
                "annotation changed",
                "Deployment",
                desired,
                live,
                Expect::Drift(&["/metadata/annotations/owner"]),
            ),
            "kubectl-annotate",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1");
        v.push(case(
            "cpu limit 500m -> 1",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/resources/limits/cpu"]),
        ));
    }
    {
        let mut live = applied("ConfigMap", &configmap(), &json!({}));
        edit(
            "ConfigMap",
            &mut live,
            "kubectl-edit",
            &json!({"data": {"LOG_LEVEL": "debug"}}),
        );
        v.push(by(
            case(
                "configmap value",
                "ConfigMap",
                configmap(),
                live,
                Expect::Drift(&["/data/LOG_LEVEL"]),
            ),
            "kubectl-edit",
        ));
    }
    {
        let mut live = applied("ConfigMap", &configmap(), &json!({}));
        edit("ConfigMap", &mut live, "kubectl-edit", &json!({"data": {"EXTRA": "1"}}));
        v.push(by(
            case(
                "configmap key added by hand",
                "ConfigMap",
                configmap(),
                live,
                Expect::Drift(&["/data/EXTRA"]),
            ),
            "kubectl-edit",
        ));
    }
    {
        let mut live = applied("ConfigMap", &configmap(), &json!({}));
        live["data"].as_object_mut().unwrap().remove("FEATURE_X");
        v.push(case(
            "configmap key deleted in the cluster",
            "ConfigMap",
            configmap(),
            live,
            Expect::Drift(&["/data/FEATURE_X"]),
        ));
    }
    {
        let mut live = secret_live();
        live["data"]["password"] = json!("b3RoZXI=");
        v.push(case(
            "secret value",
            "Secret",
            secret_desired(),
            live,
            Expect::Drift(&["/data/password"]),
        ));
    }
    {
        let mut live = secret_live();
        live["metadata"].as_object_mut().unwrap().remove("managedFields");
        live["data"]["token"] = json!("eA==");
        v.push(case(
            "secret key added, object without managedFields",
            "Secret",
            secret_desired(),
            live,
            Expect::Drift(&["/data/token"]),
        ));
    }
    {
        // Git dropped the sidecar; the earlier apply still owns it.
        let mut before = d.clone();
        before["spec"]["template"]["spec"]["containers"] = json!([
            d["spec"]["template"]["spec"]["containers"][0].clone(), {"name": "sidecar", "image": "envoy:1.30"}]);
        v.push(case(
            "container removed from Git",
            "Deployment",
            d.clone(),
            applied("Deployment", &before, &json!({})),
            Expect::Drift(&["/spec/template/spec/containers[name=sidecar]"]),
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
        let mut before = d.clone();
        before["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 8080}, {"containerPort": 9090}]);
        v.push(case(
            "port removed from Git",
            "Deployment",
            desired,
            applied("Deployment", &before, &json!({})),
            Expect::Drift(&["/spec/template/spec/containers[name=web]/ports[containerPort=9090,protocol=TCP]"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        let mut c = live["spec"]["template"]["spec"]["containers"][0].clone();
        c["ports"] = json!([{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "TCP"}]);
        edit(
            "Deployment",
            &mut live,
            "kubectl-edit",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 9090, "protocol": "TCP"}]}]}}}}),
        );
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        v.push(by(
            case(
                "extra container port added by hand",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/template/spec/containers[name=web]/ports[containerPort=9090,protocol=TCP]"]),
            ),
            "kubectl-edit",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-edit",
            &json!({"spec": {"template": {"spec": {"dnsPolicy": "Default"}}}}),
        );
        v.push(by(
            case(
                "defaulted field changed by hand",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/template/spec/dnsPolicy"]),
            ),
            "kubectl-edit",
        ));
    }
    {
        let mut live = applied("Service", &service(), &service_defaults());
        live["spec"]["ports"][0]["targetPort"] = json!(9090);
        v.push(case(
            "service targetPort",
            "Service",
            service(),
            live,
            Expect::Drift(&["/spec/ports[port=80,protocol=TCP]/targetPort"]),
        ));
    }
    {
        let mut live = applied("Service", &service(), &service_defaults());
        edit(
            "Service",
            &mut live,
            "kubectl-edit",
            &json!({"spec": {"selector": {"app": "other"}}}),
        );
        v.push(case(
            "service selector",
            "Service",
            service(),
            live,
            Expect::Drift(&["/spec/selector/app"]),
        ));
    }
    {
        let desired = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        let mut live = created(
            "Namespace",
            &desired,
            &json!({"metadata": {"labels": {"kubernetes.io/metadata.name": "shop"}}}),
        );
        edit(
            "Namespace",
            &mut live,
            "kubectl-label",
            &json!({"metadata": {"labels": {"istio-injection": "enabled"}}}),
        );
        v.push(by(
            case(
                "namespace label added by hand",
                "Namespace",
                desired,
                live,
                Expect::Drift(&["/metadata/labels/istio-injection"]),
            ),
            "kubectl-label",
        ));
    }
    {
        let mut before = d.clone();
        before["metadata"]["labels"]["tier"] = json!("web");
        v.push(case(
            "label Git removed, still owned by the earlier apply",
            "Deployment",
            d.clone(),
            applied("Deployment", &before, &dd),
            Expect::Drift(&["/metadata/labels/tier"]),
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"] = json!([
            d["spec"]["template"]["spec"]["containers"][0].clone(), {"name": "sidecar", "image": "envoy:1.30"}]);
        v.push(case(
            "container added in Git",
            "Deployment",
            desired,
            applied("Deployment", &d, &dd),
            Expect::Drift(&["/spec/template/spec/containers[name=sidecar]"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-edit",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "imagePullPolicy": "Always"}]}}}}),
        );
        let mut c = dd["spec"]["template"]["spec"]["containers"][0].clone();
        c["imagePullPolicy"] = json!("Always");
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        v.push(case(
            "imagePullPolicy Always on a tagged image",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/imagePullPolicy"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-edit",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "readinessProbe": {"periodSeconds": 30}}]}}}}),
        );
        let mut c = dd["spec"]["template"]["spec"]["containers"][0].clone();
        c["readinessProbe"]["periodSeconds"] = json!(30);
        live["spec"]["template"]["spec"]["containers"] = json!([c]);
        v.push(case(
            "probe period changed by hand",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/readinessProbe/periodSeconds"]),
        ));
    }
    {
        let mut desired = d.clone();
        desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1G");
        let mut live = applied("Deployment", &desired, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi");
        v.push(case(
            "1G is not 1Gi",
            "Deployment",
            desired,
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/resources/limits/memory"]),
        ));
    }
    {
        let desired = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "job", "image": "busybox:1.36"}]}}}}}});
        let mut live = applied("CronJob", &desired, &json!({}));
        edit(
            "CronJob",
            &mut live,
            "kubectl-patch",
            &json!({"spec": {"schedule": "0 4 * * *"}}),
        );
        v.push(by(
            case(
                "cronjob schedule",
                "CronJob",
                desired,
                live,
                Expect::Drift(&["/spec/schedule"]),
            ),
            "kubectl-patch",
        ));
    }
    {
        let desired = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "read", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "jane"}]});
        let mut live = applied("RoleBinding", &desired, &json!({}));
        live["subjects"] = json!([{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]);
        v.push(case(
            "rolebinding subject",
            "RoleBinding",
            desired,
            live,
            Expect::Drift(&["/subjects/0/name"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["metadata"].as_object_mut().unwrap().remove("managedFields");
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/cart:evil");
        v.push(case(
            "image changed, object without managedFields",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/image"]),
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "hpa-controller",
            &json!({"spec": {"replicas": 7}}),
        );
        v.push(by(
            case(
                "replicas owned by an autoscaler (ignorable by manager)",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/replicas"]),
            ),
            "hpa-controller",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        edit(
            "Deployment",
            &mut live,
            "kubectl-rollout",
            &json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-04-02T08:30:00Z"}}}}}),
        );
        v.push(by(
            case(
                "rollout restart annotation",
                "Deployment",
                d.clone(),
                live,
                Expect::Drift(&["/spec/template/metadata/annotations"]),
            ),
            "kubectl-rollout",
        ));
    }
    {
        let mut live = applied("Deployment", &d, &dd);
        live["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 8080, "protocol": "UDP"}]);
        v.push(case(
            "port protocol changed",
            "Deployment",
            d.clone(),
            live,
            Expect::Drift(&["/spec/template/spec/containers[name=web]/ports[containerPort=8080,protocol=TCP]"]),
        ));
    }
    v
}

#[test]
fn no_false_drift_and_no_missed_drift() {
    let cases = cases();
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut d = c.desired.clone();
        let mut l = c.live.clone();
        normalize_pair(c.kind, Some(&mut d), Some(&mut l));
        let paths = diff_paths(c.kind, &d, &l);
        match &c.expect {
            Expect::InSync if !paths.is_empty() => failures.push(format!(
                "{}: expected no drift, got {paths:?}\n  desired {d}\n  live    {l}",
                c.name
            )),
            Expect::Drift(wanted) => {
                for w in *wanted {
                    // The difference may be reported at the element or map that
                    // holds it (a whole map added) or below it.
                    let hit = paths
                        .iter()
                        .any(|p| p == w || p.starts_with(&format!("{w}/")) || w.starts_with(&format!("{p}/")));
                    if !hit {
                        failures.push(format!(
                            "{}: expected drift at {w}, got {paths:?}\n  desired {d}\n  live    {l}",
                            c.name
                        ));
                    }
                }
                if let Some(who) = c.who {
                    let got = changed_by(c.kind, Some(c.desired.clone()), &c.live);
                    if got.as_ref().map(|g| g.who.as_str()) != Some(who) {
                        failures.push(format!("{}: changed_by should be {who}, got {got:?}", c.name));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
