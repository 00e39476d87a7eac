//! Reading desired state: every `.yaml`/`.yml`/`.json` below the target's
//! directory (multi-document, `List` kinds unwrapped), with directories that
//! hold a `kustomization.yaml` rendered whole by `kustomize build` or
//! `kubectl kustomize` and not descended into (as Argo CD does).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plumb_model::files::{self, Document};
use plumb_model::{Origin, ProviderError, Resource, Sensitivity};
use serde_json::Value;

use crate::ids;

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// What reading needs besides the files.
pub struct Options<'a> {
    /// Namespace for namespaced objects that name none.
    pub default_namespace: &'a str,
    /// Upper bound for one kustomize run.
    pub timeout: Duration,
}

/// Paths masked in Secrets: their values, and kubectl's last-applied copy
/// of them.
pub fn secret_sensitivity() -> Sensitivity {
    Sensitivity::Paths(vec![
        "/data/*".into(),
        "/stringData/*".into(),
        "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration".into(),
    ])
}

/// Reads every manifest below `dir`; origins are relative to `root`.
pub fn read(root: &Path, dir: &Path, options: &Options<'_>) -> Result<Vec<Resource>, ProviderError> {
    let mut documents = Vec::new();
    visit(root, dir, options, &mut documents)?;
    // CustomResourceDefinitions in the same desired state say whether their
    // kinds are namespaced, so a CRD and its objects can be planned against
    // a cluster that has neither.
    let mut crd_scopes: HashMap<(String, String), bool> = HashMap::new();
    for doc in &documents {
        if doc.value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
            let group = doc
                .value
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = doc
                .value
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cluster = doc.value.pointer("/spec/scope").and_then(Value::as_str) == Some("Cluster");
            crd_scopes.insert((group.to_string(), kind.to_string()), cluster);
        }
    }
    let mut resources = Vec::with_capacity(documents.len());
    for doc in documents {
        resources.push(to_resource(doc, options, &crd_scopes)?);
    }
    Ok(resources)
}

fn to_resource(
    doc: Document,
    options: &Options<'_>,
    crd_scopes: &HashMap<(String, String), bool>,
) -> Result<Resource, ProviderError> {
    let Document { mut value, origin } = doc;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ProviderError::Parse {
            origin: origin.clone(),
            message: format!("{api_version} {kind} has no metadata.name"),
        })?;
    let (group, _) = ids::split_api_version(&api_version);
    let cluster_scoped = crd_scopes
        .get(&(group.to_string(), kind.clone()))
        .copied()
        .unwrap_or_else(|| ids::cluster_scoped_builtin(&kind));
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(ProviderError::Parse {
            origin,
            message: format!("{kind} {name}: metadata is not a map"),
        });
    };
    let namespace = if cluster_scoped {
        // The API server ignores a namespace on cluster-scoped objects.
        meta.remove("namespace");
        None
    } else {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(options.default_namespace)
            .to_string();
        meta.insert("namespace".into(), Value::String(ns.clone()));
        Some(ns)
    };
    let id = ids::id(&api_version, &kind, namespace.as_deref(), &name);
    let mut resource = Resource::new(id, kind.clone(), value).with_origin(origin);
    if kind == "Secret" {
        resource.sensitive = secret_sensitivity();
    }
    Ok(resource)
}

/// Collects manifests below `dir` (or its rendering, for a kustomization).
fn visit(root: &Path, dir: &Path, options: &Options<'_>, out: &mut Vec<Document>) -> Result<(), ProviderError> {
    if let Some(kfile) = KUSTOMIZATION_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
        let text = kustomize(dir, options.timeout)?;
        let file = files::relative(root, &kfile);
        for doc in files::parse_yaml_documents(&file, &text)? {
            // Lines of rendered output point nowhere a person can edit.
            let origin = Origin {
                file: file.clone(),
                line: None,
            };
            push_manifests(doc.value, origin, out);
        }
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ProviderError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            visit(root, &path, options, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            for doc in files::read_documents(root, &path)? {
                push_manifests(doc.value, doc.origin, out);
            }
        }
    }
    Ok(())
}

/// Adds one document: a manifest, the items of a `List`, or nothing (a
/// file that is not a manifest).
fn push_manifests(value: Value, origin: Origin, out: &mut Vec<Document>) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
    let is_manifest =
        value.is_object() && value.get("apiVersion").and_then(Value::as_str).is_some() && !kind.is_empty();
    if !is_manifest {
        tracing::debug!(%origin, "skipping a document that is not a Kubernetes manifest (no apiVersion/kind)");
        return;
    }
    if kind.ends_with("List") {
        if let Some(Value::Array(items)) = value.get("items") {
            for item in items {
                push_manifests(item.clone(), origin.clone(), out);
            }
            return;
        }
    }
    out.push(Document { value, origin });
}

/// A program on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Renders a kustomization with `kustomize build`, else `kubectl kustomize`.
fn kustomize(dir: &Path, timeout: Duration) -> Result<String, ProviderError> {
    let (program, args): (PathBuf, Vec<&str>) = if let Some(p) = on_path("kustomize") {
        (p, vec!["build"])
    } else if let Some(p) = on_path("kubectl") {
        (p, vec!["kustomize"])
    } else {
        return Err(ProviderError::Command {
            command: format!("kustomize build {}", dir.display()),
            message: "cannot run: neither kustomize nor kubectl is on PATH (one is needed to render \
                      a directory holding kustomization.yaml)"
                .into(),
            stderr: String::new(),
        });
    };
    let command = format!("{} {} {}", program.display(), args.join(" "), dir.display());
    let mut child = Command::new(&program)
        .args(&args)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProviderError::Command {
            command: command.clone(),
            message: format!("could not be started: {e}"),
            stderr: String::new(),
        })?;
    // Read both pipes while waiting so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let status = match wait_timeout::ChildExt::wait_timeout(&mut child, timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProviderError::Timeout {
                what: command,
                after: timeout,
            });
        }
        Err(e) => {
            return Err(ProviderError::Command {
                command,
                message: format!("failed: {e}"),
                stderr: String::new(),
            })
        }
    };
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err).trim().to_string();
        return Err(ProviderError::Command {
            command,
            message: format!("exited with {status}"),
            stderr,
        });
    }
    String::from_utf8(out).map_err(|_| ProviderError::Command {
        command,
        message: "printed output that is not UTF-8".into(),
        stderr: String::new(),
    })
}
