//! Reading desired state: multi-document files, List kinds, non-manifests,
//! default namespaces, errors with file and line, kustomize, and every
//! entry point of the real corpus.

use std::path::{Path, PathBuf};

use plumb_kubernetes::build;
use plumb_model::{Ctx, Provider, ProviderError};
use serde_json::json;

fn provider(connection: serde_json::Value) -> plumb_kubernetes::KubernetesProvider {
    build(&connection, Path::new(".")).unwrap()
}

fn ctx() -> Ctx {
    Ctx::new("t", std::env::temp_dir())
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn documents_lists_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app/all.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# comment only\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ServiceAccount, metadata: {name: sa, namespace: other}}\n\
         - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: r, namespace: ignored}}\n",
    );
    write(dir.path(), "app/values.yaml", "replicas: 3\nimage: x\n");
    write(
        dir.path(),
        "ns.json",
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}"#,
    );
    let p = provider(json!({"namespace": "shop"}));
    let desired = p.desired(dir.path(), dir.path(), &ctx()).unwrap();
    let ids: Vec<&str> = desired.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "core/v1/ConfigMap/shop/a",
            "core/v1/ServiceAccount/other/sa",
            "rbac.authorization.k8s.io/v1/ClusterRole/r",
            "core/v1/Namespace/shop"
        ]
    );
    assert_eq!(desired.resources[0].body()["metadata"]["namespace"], "shop");
    assert_eq!(
        desired.resources[0].origin.as_ref().unwrap().to_string(),
        "app/all.yaml:1"
    );
    assert!(desired.resources[2].body()["metadata"].get("namespace").is_none());
}

#[test]
fn default_namespace_is_default() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    let desired = provider(json!({})).desired(dir.path(), dir.path(), &ctx()).unwrap();
    assert_eq!(desired.resources[0].id, "core/v1/ConfigMap/default/a");
}

#[test]
fn missing_name_is_an_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {labels: {a: b}}\n",
    );
    let err = provider(json!({})).desired(dir.path(), dir.path(), &ctx()).unwrap_err();
    assert!(matches!(err, ProviderError::Parse { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("x.yaml:5:") && text.contains("metadata.name"),
        "{text}"
    );
}

#[test]
fn invalid_yaml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    let text = provider(json!({}))
        .desired(dir.path(), dir.path(), &ctx())
        .unwrap_err()
        .to_string();
    assert!(text.starts_with("bad.yaml:") && text.contains("invalid YAML"), "{text}");
}

#[test]
fn kustomization_is_rendered_whole_and_not_descended_into() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n",
    );
    write(dir.path(), "base/kustomization.yaml", "resources: [cm.yaml]\n");
    write(
        dir.path(),
        "overlay/kustomization.yaml",
        "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\n",
    );
    let desired = provider(json!({}))
        .desired(dir.path(), &dir.path().join("overlay"), &ctx())
        .unwrap();
    let ids: Vec<&str> = desired.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["core/v1/ConfigMap/prod/prod-cfg"]);
    assert_eq!(
        desired.resources[0].origin.as_ref().unwrap().file,
        PathBuf::from("overlay/kustomization.yaml")
    );
}

/// Every plain directory and every topmost kustomization below `dir`.
fn entry_points(dir: &Path, out: &mut Vec<PathBuf>) {
    let is_kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| dir.join(f).is_file());
    if is_kustomization {
        out.push(dir.to_path_buf());
        return;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    if entries
        .iter()
        .any(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
    {
        out.push(dir.to_path_buf());
    }
    for e in entries {
        if e.is_dir() {
            entry_points(&e, out);
        }
    }
}

#[test]
fn every_corpus_entry_point_loads() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/kubernetes");
    let corpus = corpus.as_path();
    assert!(
        corpus.is_dir(),
        "the corpus belongs at ../shared/corpus beside the work tree: {}",
        corpus.display()
    );
    let mut entries = Vec::new();
    entry_points(corpus, &mut entries);
    assert!(entries.len() > 10, "{entries:?}");
    let p = provider(json!({}));
    let mut failures = Vec::new();
    let mut total = 0;
    for entry in &entries {
        // Components (kind: Component) are only meant to be included by
        // a kustomization, never built alone.
        let k = std::fs::read_to_string(entry.join("kustomization.yaml")).unwrap_or_default();
        if k.contains("kind: Component") {
            continue;
        }
        match p.desired(corpus, entry, &ctx()) {
            Ok(d) => total += d.resources.len(),
            Err(e) => failures.push(format!("{}: {e}", entry.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total > 300, "{total} objects");
}
