//! The bodies of plumb's fuzz targets (`fuzz/`), one per parser of input
//! plumb does not control: desired files from Git, `plumb.yaml` and
//! policies, PromQL, LogQL and Go templates in rules, Grafana dashboards,
//! peribolos org files, Kubernetes manifests and quantities, exec plugin
//! output, saved plans, history records and digests, and webhook bodies.
//! They live here, not in `fuzz/`, so that a stable test runs every
//! corpus and regression input through them on every build
//! (`tests/fuzz_corpus.rs`) while `cargo fuzz` explores with the same code.
//! Each must never panic, whatever the bytes; errors are fine.

use std::collections::BTreeMap;
use std::path::Path;

/// One fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` calls them.
pub const TARGETS: &[(&str, Target)] = &[
    ("desired_documents", desired_documents),
    ("plumb_config", plumb_config),
    ("policy", policy),
    ("promql", promql),
    ("logql", logql),
    ("go_templates", go_templates),
    ("rule_files", rule_files),
    ("grafana_dashboard", grafana_dashboard),
    ("peribolos", peribolos),
    ("kubernetes_manifests", kubernetes_manifests),
    ("quantity", quantity),
    ("exec_output", exec_output),
    ("saved_plan", saved_plan),
    ("history_objects", history_objects),
    ("webhook", webhook),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// YAML (multi-document) and JSON desired files.
pub fn desired_documents(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = plumb_model::files::parse_yaml_documents(Path::new("f.yaml"), text);
    let _ = plumb_model::files::parse_json(Path::new("f.json"), text);
}

/// `plumb.yaml`.
pub fn plumb_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = crate::config::Config::parse(Path::new("/fuzz/plumb.yaml"), text);
}

/// A policy file.
pub fn policy(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = crate::policy::Policy::parse(Path::new("p.yaml"), text, chrono_tz::UTC);
}

/// A PromQL expression, and its comparison with itself.
pub fn promql(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if plumb_prometheus::promql::canonical(text).is_ok() {
        assert!(plumb_prometheus::promql::same_meaning(text, text));
    }
    let _ = plumb_prometheus::promql::parse_duration(text);
}

/// A LogQL expression.
pub fn logql(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = plumb_prometheus::logql::check(text);
    let normal = plumb_prometheus::logql::normalise(text);
    assert!(plumb_prometheus::logql::same_text(&normal, &normal));
}

/// A Go template in an annotation or label.
pub fn go_templates(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = plumb_prometheus::templates::check(text);
}

/// A Prometheus, Mimir or Loki rule file.
pub fn rule_files(data: &[u8]) {
    let Some(text) = text(data) else { return };
    use plumb_prometheus::rules::{parse_rule_file_as, Dialect};
    for dialect in [Dialect::Prometheus, Dialect::Mimir, Dialect::Loki] {
        let _ = parse_rule_file_as("rules.yml", text, dialect);
    }
}

/// Writes `data` as `name` in a fresh directory and hands it to `read`.
fn in_dir(name: &str, data: &[u8], read: impl FnOnce(&Path, &Path)) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let target = dir.path().join("t");
    if std::fs::create_dir_all(&target).is_err() || std::fs::write(target.join(name), data).is_err() {
        return;
    }
    read(dir.path(), &target);
}

/// A Grafana dashboard (JSON) as kept in Git.
pub fn grafana_dashboard(data: &[u8]) {
    in_dir("dashboard.json", data, |root, dir| {
        let _ = plumb_grafana::desired::read(root, dir);
    });
}

/// A peribolos org file.
pub fn peribolos(data: &[u8]) {
    in_dir("org.yaml", data, |root, dir| {
        let _ = plumb_github::desired::read(root, dir);
    });
}

/// Kubernetes manifests.
pub fn kubernetes_manifests(data: &[u8]) {
    in_dir("manifests.yaml", data, |root, dir| {
        let options = plumb_kubernetes::desired::Options {
            default_namespace: "default",
            timeout: std::time::Duration::from_secs(5),
        };
        let _ = plumb_kubernetes::desired::read(root, dir, &options);
    });
}

/// A Kubernetes quantity (`100m`, `1.5Gi`, `1e3`).
pub fn quantity(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = plumb_kubernetes::quantity::parse(text);
}

/// What an exec plugin prints: a JSON array of documents with `$meta`.
pub fn exec_output(data: &[u8]) {
    let sensitive = vec!["/password".to_string()];
    for authority in [plumb_model::Authority::Owned, plumb_model::Authority::Foreign] {
        let _ = plumb_exec::documents::parse_live(
            data,
            plumb_exec::documents::Shape {
                sensitive: &sensitive,
                authority,
            },
        );
    }
}

/// The JSON plan `apply --plan` reads: parsed, its seal checked, and
/// compared with itself as the staleness check does.
pub fn saved_plan(data: &[u8]) {
    let Ok(plan) = serde_json::from_slice::<crate::plan::Plan>(data) else {
        return;
    };
    let _ = crate::apply::check_saved(&plan);
    let masker = fuzz_masker();
    let _ = plan.seal_problem(&masker);
    for target in &plan.targets {
        assert!(crate::apply::stale_changes(&target.changes, &target.changes).is_empty());
    }
}

fn fuzz_masker() -> crate::mask::Masker {
    static DIR: std::sync::OnceLock<Option<tempfile::TempDir>> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().ok());
    match dir {
        Some(d) => crate::mask::Masker::load_or_create(d.path()).unwrap_or_else(|_| crate::mask::Masker::fixed()),
        None => crate::mask::Masker::fixed(),
    }
}

/// A history store whose objects are the fuzzer's: the bytes are split at
/// `\0` into the objects of a small chain (records, digests, a summary),
/// and `report --verify` and a report run over it.
pub fn history_objects(data: &[u8]) {
    use crate::history::record::{digest_key, record_key, summary_key};
    let mut objects = BTreeMap::new();
    for (n, part) in data.split(|b| *b == 0).take(8).enumerate() {
        let key = match n % 3 {
            0 => record_key("t", (n / 3 + 1) as u64),
            1 => digest_key("t", (n / 3 + 1) as u64),
            _ => summary_key("t", "2026/01/01"),
        };
        objects.insert(key, part.to_vec());
    }
    let _ = crate::history::digest::Opened::parse(data);
    let _ = serde_json::from_slice::<crate::history::Record>(data);
    let store = MemoryStore(std::sync::Mutex::new(objects));
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    runtime.block_on(async {
        let options = crate::history::verify::Options {
            trusted: Vec::new(),
            trust: "fuzz".into(),
            keep: Some(std::time::Duration::from_secs(86_400)),
            hints: None,
            now: chrono::Utc::now(),
        };
        if let Ok(verdict) = crate::history::verify::verify(&store, &["t".into()], &options).await {
            let _ = crate::history::verify::text(&verdict);
        }
        let now = chrono::Utc::now();
        let _ = crate::history::report::build(
            &store,
            &["t".into()],
            now - chrono::Duration::days(400),
            now,
            chrono::Duration::hours(1),
        )
        .await;
    });
}

struct MemoryStore(std::sync::Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait::async_trait]
impl crate::history::Store for MemoryStore {
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), crate::history::HistoryError> {
        let mut objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if objects.contains_key(key) {
            return Err(crate::history::HistoryError::Exists { key: key.to_string() });
        }
        objects.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, crate::history::HistoryError> {
        self.get_opt(key)
            .await?
            .ok_or_else(|| crate::history::HistoryError::store_message("memory", format!("no {key}")))
    }
    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, crate::history::HistoryError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, crate::history::HistoryError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// A webhook delivery: the signature check and the JSON body.
pub fn webhook(data: &[u8]) {
    let (signature, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let signature = String::from_utf8_lossy(signature);
    assert!(!crate::serve::http::signature_valid(b"fuzz-secret", body, &signature) || signature.starts_with("sha256="));
    let _ = serde_json::from_slice::<serde_json::Value>(body);
}
