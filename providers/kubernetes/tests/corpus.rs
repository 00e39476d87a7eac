//! Every entry point of the real public manifests in
//! `shared/corpus/kubernetes/` (each directory of plain manifests,
//! each topmost kustomization) applied to a fresh simulator the way
//! `kubectl apply --server-side` would (field manager `kubectl`), then
//! planned as its own target: no drift, no errors. Entry points that define
//! an id twice are the error they should be, and are listed.
//!
//! Kinds no CRD in the entry point defines (Istio's, the Prometheus
//! operator's `Alertmanager`) get a minimal CRD first, as a cluster running
//! those operators would have. Namespaces the objects name are created
//! first, as a real cluster needs them to exist.
//!
//! `cargo test -p plumb-kubernetes --test corpus -- --nocapture` prints a
//! table per entry point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plumb_kubernetes::build;
use plumb_kubernetes::sim::{Sim, SimConfig, SimError};
use plumb_model::{Ctx, Provider};
use serde_json::{json, Value};

mod common;

/// `shared/` sits beside the work tree (here and in CI).
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/kubernetes")
        .canonicalize()
        .expect("the corpus at ../shared/corpus/kubernetes beside the work tree")
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn kustomization(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn dirs(root: &Path, out: &mut Vec<PathBuf>) {
    out.push(root.to_path_buf());
    let mut children: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    children.sort();
    for c in children {
        dirs(&c, out);
    }
}

/// The entry points: kustomizations no other kustomization refers to
/// (`resources`, `bases`, `components`), that are not `Component`s (which
/// cannot be built alone); and directories holding manifests outside any
/// kustomization tree.
fn entry_points(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    dirs(root, &mut all);
    let mut referenced = BTreeSet::new();
    let mut components = BTreeSet::new();
    let kustomized: Vec<PathBuf> = all.iter().filter(|d| kustomization(d).is_some()).cloned().collect();
    for d in &kustomized {
        let text = std::fs::read_to_string(kustomization(d).unwrap()).unwrap();
        let k: Value = serde_yaml_ng::from_str(&text).unwrap();
        if k["kind"] == "Component" {
            components.insert(d.clone());
        }
        for field in ["resources", "bases", "components"] {
            for r in k[field].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let p = d.join(r);
                if p.is_dir() {
                    referenced.insert(p.canonicalize().unwrap());
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in &all {
        let inside_kustomize = kustomized.iter().any(|k| d.starts_with(k))
            || referenced.iter().any(|r| d.canonicalize().unwrap().starts_with(r));
        if kustomization(d).is_some() {
            if !referenced.contains(&d.canonicalize().unwrap()) && !components.contains(d) {
                out.push(d.clone());
            }
        } else if !inside_kustomize
            && std::fs::read_dir(d)
                .unwrap()
                .any(|e| e.as_ref().is_ok_and(|e| e.path().is_file() && is_manifest(&e.path())))
        {
            out.push(d.clone());
        }
    }
    out
}

/// A minimal CRD serving `api_version`/`kind`, namespaced.
fn crd_for(api_version: &str, kind: &str) -> Value {
    let (group, version) = api_version.split_once('/').unwrap();
    let singular = kind.to_lowercase();
    let plural = if singular.ends_with('y') {
        format!("{}ies", &singular[..singular.len() - 1])
    } else {
        format!("{singular}s")
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": singular, "listKind": format!("{kind}List")},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// Server-side apply as kubectl, creating a missing CRD or namespace first.
fn kubectl_apply(sim: &Sim, object: &Value) {
    if let Some(ns) = object.pointer("/metadata/namespace").and_then(Value::as_str) {
        if sim.get("v1", "Namespace", None, ns).is_err() {
            sim.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .unwrap();
        }
    }
    match sim.apply(object.clone()) {
        Ok(_) => {}
        Err(SimError::UnknownKind { api_version, kind }) => {
            sim.apply(crd_for(&api_version, &kind)).unwrap();
            sim.apply(object.clone()).unwrap();
        }
        Err(e) => panic!("{e}: {object}"),
    }
}

#[derive(Debug)]
struct Row {
    entry: String,
    objects: usize,
    outcome: String,
    requests: usize,
    millis: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_entry_point_applies_and_plans_empty() {
    let root_buf = corpus();
    let root = root_buf.as_path();
    let entries = entry_points(root);
    assert!(entries.len() >= 20, "{entries:?}");
    let mut rows = Vec::new();
    let mut duplicates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let started_all = Instant::now();
    for dir in &entries {
        let name = dir.strip_prefix(root).unwrap().display().to_string();
        let started = Instant::now();
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("kubeconfig"), sim.kubeconfig_yaml(None)).unwrap();
        let provider = build(&json!({"kubeconfig": "kubeconfig"}), tmp.path()).unwrap();
        let mut ctx = Ctx::new("corpus", tmp.path().join("cache"));
        ctx.timeout = Duration::from_secs(30);
        let desired = provider
            .desired(dir, dir, &ctx)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut seen = BTreeSet::new();
        let twice: Vec<String> = desired
            .resources
            .iter()
            .filter(|r| !seen.insert(r.id.clone()))
            .map(|r| r.id.clone())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        if !twice.is_empty() {
            duplicates.insert(name.clone(), twice.clone());
            rows.push(Row {
                entry: name,
                objects: desired.resources.len(),
                outcome: format!("error: {} ids defined twice", twice.len()),
                requests: 0,
                millis: started.elapsed().as_millis(),
            });
            continue;
        }
        let mut bodies: Vec<Value> = desired.resources.iter().map(|r| r.body()).collect();
        bodies.sort_by_key(|b| match b["kind"].as_str() {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            _ => 2,
        });
        for b in &bodies {
            kubectl_apply(&sim, b);
        }
        sim.clear_requests();
        let changes = common::plan(&provider, dir, &ctx)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shown: Vec<_> = changes.iter().map(|c| (&c.id, c.action, &c.paths)).collect();
        assert!(changes.is_empty(), "{name}: {shown:#?}");
        rows.push(Row {
            entry: name,
            objects: bodies.len(),
            outcome: "in sync".into(),
            requests: sim.requests().len(),
            millis: started.elapsed().as_millis(),
        });
    }
    println!("| entry point | objects | plan | API requests | ms (apply + plan) |");
    println!("|---|---:|---|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.entry, r.objects, r.outcome, r.requests, r.millis
        );
    }
    println!(
        "{} entry points, {} objects, {:.2}s",
        rows.len(),
        rows.iter().map(|r| r.objects).sum::<usize>(),
        started_all.elapsed().as_secs_f64()
    );
    for (entry, ids) in &duplicates {
        println!("{entry}: defined twice: {}", ids.join(", "));
    }
    // The entry points whose files define an id twice: guestbook's
    // directory holds both the split manifests and `all-in-one/` copies of
    // them (and `all-in-one/` itself holds both `frontend.yaml` and
    // `guestbook-all-in-one.yaml`); vllm-deployment's `hpa/` defines the
    // same ServiceMonitor in two files.
    let with_duplicates: Vec<&str> = duplicates.keys().map(String::as_str).collect();
    assert_eq!(with_duplicates, EXPECTED_DUPLICATES, "{duplicates:#?}");
}

const EXPECTED_DUPLICATES: &[&str] = &[
    "kubernetes-examples/AI/vllm-deployment",
    "kubernetes-examples/AI/vllm-deployment/hpa",
    "kubernetes-examples/web/guestbook",
    "kubernetes-examples/web/guestbook/all-in-one",
];
