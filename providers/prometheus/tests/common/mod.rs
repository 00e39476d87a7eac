//! Shared by the integration tests: a real Prometheus started on a free
//! loopback port with a temporary rules directory and storage path, and a
//! small stand-in for the core's engine (match by id, normalise, compare)
//! so the provider's verdicts can be checked without the core.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plumb_model::{Action, ApplyChange, Ctx, Desired, Live, Pair, Provider, Resource};
use serde_json::Value;
use tempfile::TempDir;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// The binary installs ring at start-up; tests do the same before any
/// client is built.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn ctx() -> Ctx {
    init();
    let mut ctx = Ctx::new("rules", "/nonexistent-cache");
    ctx.timeout = Duration::from_secs(20);
    ctx
}

/// A running Prometheus; killed on drop.
pub struct Prom {
    child: Child,
    pub url: String,
    pub dir: TempDir,
    pub rules_dir: PathBuf,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the real binaries are here; tests print why they skip.
pub fn have_prometheus() -> bool {
    if Path::new(PROMETHEUS).exists() {
        true
    } else {
        eprintln!("SKIP: {PROMETHEUS} is missing (the test script installs Debian's prometheus package)");
        false
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts Prometheus with `rule_files: [<rules_dir>/*]`, after writing
/// `files` (name → text) into the rules directory. Waits (bounded) until
/// `/-/ready` answers.
pub async fn start_prometheus(files: &[(&str, &str)]) -> Prom {
    init();
    let dir = TempDir::new().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for (name, text) in files {
        std::fs::write(rules_dir.join(name), text).unwrap();
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1m\nrule_files:\n  - {}/*\n",
            rules_dir.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-lifecycle")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let url = format!("http://127.0.0.1:{port}");
    let mut prom = Prom {
        child,
        url: url.clone(),
        dir,
        rules_dir,
    };
    let client = reqwest::Client::new();
    // Bounded readiness poll: Prometheus says when it is ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = prom.child.try_wait() {
            panic!("prometheus exited with {status}");
        }
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                return prom;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus did not become ready within 30s");
}

/// Sends `POST /-/reload` directly (a person editing files on the server).
pub async fn reload(url: &str) {
    init();
    let r = reqwest::Client::new()
        .post(format!("{url}/-/reload"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "reload: {}", r.text().await.unwrap());
}

/// What the core's engine would propose: create / update / delete (owned) /
/// unmanaged (foreign), after the provider's normalisation.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    pub action: Action,
    pub desired: Option<Value>,
    pub live: Option<Value>,
    pub change: ApplyChange,
}

pub fn plan(p: &dyn Provider, desired: &Desired, live: &Live) -> Vec<Change> {
    let d: BTreeMap<&str, &Resource> = desired.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let l: BTreeMap<&str, &Resource> = live.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(d.len(), desired.resources.len(), "desired ids are unique");
    assert_eq!(l.len(), live.resources.len(), "live ids are unique");
    let mut ids: Vec<&str> = d.keys().chain(l.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let (dr, lr) = (d.get(id).copied(), l.get(id).copied());
        let mut dv = dr.map(Resource::body);
        let mut lv = lr.map(Resource::body);
        let kind = dr.or(lr).map(|r| r.kind.clone()).unwrap_or_default();
        if dr.map(Resource::body_json) != lr.map(Resource::body_json) {
            p.normalize(Pair {
                id,
                kind: &kind,
                desired: dv.as_mut(),
                live: lv.as_mut(),
            });
        }
        let action = match (dr, lr) {
            (Some(_), None) => Action::Create,
            (None, Some(l)) if l.authority == plumb_model::Authority::Owned => Action::Delete,
            (None, Some(_)) => Action::Unmanaged,
            _ if dv != lv => Action::Update,
            _ => continue,
        };
        out.push(Change {
            id: id.to_string(),
            action,
            desired: dv.clone(),
            live: lv.clone(),
            change: ApplyChange {
                id: id.to_string(),
                action,
                desired: dr.cloned(),
                live: lr.cloned(),
            },
        });
    }
    out
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
