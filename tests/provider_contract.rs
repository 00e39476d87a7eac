//! Proves the provider trait against the hard cases the real providers
//! bring, through the engine, the renderers and `apply --plan`: a provider
//! with scoped, cached (ETag) reads, an asynchronous confirmation step that
//! can dismiss suspected drift, a whole-plan apply guarded by a policy
//! guard, findings, and import. Its live system is an in-memory store that
//! logs every request, so the tests can prove what was (not) written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use plumb::audit::{Auditor, SourceOverride};
use plumb::cli::{ApplyArgs, ConfigArg};
use plumb::config::Config;
use plumb::registry::Registry;
use plumb_model::{
    files, Action, ApplyChange, Authority, ChangeResult, ConfirmedBy, Ctx, Desired, Finding, Live, Outcome, Pair,
    Provider, ProviderError, Resource, Severity, Suspect, Verdict,
};
use serde_json::{json, Value};

/// The live system: objects by id with a version, and a request log.
#[derive(Default)]
struct Store {
    objects: BTreeMap<String, (Value, u64)>,
    log: Vec<String>,
    generation: u64,
}

impl Store {
    fn put(&mut self, id: &str, body: Value) {
        self.generation += 1;
        self.objects.insert(id.to_string(), (body, self.generation));
    }
    /// An ETag per kind: changes whenever an object of that kind does.
    fn etag(&self, kind: &str) -> String {
        let v: u64 = self
            .objects
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{kind}/")))
            .map(|(_, (_, g))| *g)
            .sum();
        let n = self
            .objects
            .keys()
            .filter(|id| id.starts_with(&format!("{kind}/")))
            .count();
        format!("\"{v}-{n}\"")
    }
    fn writes(&self) -> Vec<&String> {
        self.log.iter().filter(|l| !l.starts_with("LIST")).collect()
    }
}

fn stores() -> &'static Mutex<BTreeMap<String, Arc<Mutex<Store>>>> {
    static STORES: OnceLock<Mutex<BTreeMap<String, Arc<Mutex<Store>>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

fn store(name: &str) -> Arc<Mutex<Store>> {
    stores().lock().unwrap().entry(name.to_string()).or_default().clone()
}

/// The ledger provider: documents `{"id": "<kind>/<name>", ...}`.
struct Ledger {
    store: Arc<Mutex<Store>>,
}

fn build(connection: &Value, _base: &Path) -> Result<Box<dyn Provider>, ProviderError> {
    let name = connection
        .get("store")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Config("missing store".into()))?;
    Ok(Box::new(Ledger { store: store(name) }))
}

fn kind_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

#[async_trait]
impl Provider for Ledger {
    fn desired(&self, root: &Path, dir: &Path, _ctx: &Ctx) -> Result<Desired, ProviderError> {
        let mut desired = Desired::default();
        for file in files::walk(dir, &["json"])? {
            for doc in files::read_documents(root, &file)? {
                let id = doc.value["id"].as_str().unwrap_or_default().to_string();
                desired
                    .resources
                    .push(Resource::new(id.clone(), kind_of(&id), doc.value).with_origin(doc.origin));
            }
        }
        Ok(desired)
    }

    /// Lists only the kinds the desired state uses, once per kind, with a
    /// conditional request answered from the cache when nothing changed.
    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let mut kinds: BTreeSet<String> = desired.resources.iter().map(|r| kind_of(&r.id).to_string()).collect();
        if kinds.is_empty() {
            // Import: no desired state narrows the scope.
            kinds = self
                .store
                .lock()
                .unwrap()
                .objects
                .keys()
                .map(|id| kind_of(id).to_string())
                .collect();
        }
        std::fs::create_dir_all(&ctx.cache_dir).map_err(|e| ProviderError::io(&ctx.cache_dir, e))?;
        let mut live = Live::default();
        for kind in &kinds {
            let kind = kind.as_str();
            let cache = ctx.cache_dir.join(format!("{kind}.json"));
            let cached: Option<(String, Vec<Resource>)> =
                std::fs::read(&cache).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let items = {
                let mut s = self.store.lock().unwrap();
                let etag = s.etag(kind);
                match cached {
                    Some((tag, items)) if tag == etag => {
                        s.log.push(format!("LIST {kind} If-None-Match: {tag} -> 304"));
                        items
                    }
                    _ => {
                        s.log.push(format!("LIST {kind} -> 200"));
                        let items: Vec<Resource> = s
                            .objects
                            .iter()
                            .filter(|(id, _)| kind_of(id) == kind)
                            .map(|(id, (body, generation))| {
                                let mut r =
                                    Resource::new(id.clone(), kind, body.clone()).with_authority(Authority::Owned);
                                r.version = Some(generation.to_string());
                                r
                            })
                            .collect();
                        let bytes = serde_json::to_vec(&(etag, &items)).unwrap_or_default();
                        std::fs::write(&cache, bytes).map_err(|e| ProviderError::io(&cache, e))?;
                        items
                    }
                }
            };
            for r in &items {
                if r.body().get("broken").is_some() {
                    live.findings.push(Finding {
                        id: r.id.clone(),
                        kind: kind.to_string(),
                        message: "the live system cannot evaluate this object".into(),
                        severity: Severity::Warning,
                    });
                }
            }
            live.resources.extend(items);
        }
        Ok(live)
    }

    /// The live system fills in `server_default` by itself.
    fn normalize(&self, pair: Pair<'_>) {
        if let (Some(d), Some(l)) = (pair.desired, pair.live) {
            if d.get("server_default").is_none() {
                if let Some(map) = l.as_object_mut() {
                    map.remove("server_default");
                }
            }
        }
    }

    /// A "dry run": a difference only in `/cosmetic` is one the live system
    /// would not store, so it is dismissed.
    async fn confirm(&self, suspects: &[Suspect<'_>], _ctx: &Ctx) -> Result<Vec<Verdict>, ProviderError> {
        tokio::task::yield_now().await;
        Ok(suspects
            .iter()
            .map(|s| {
                if s.paths == ["/cosmetic".to_string()] {
                    Verdict::Dismissed {
                        why: "dry run: no change".into(),
                    }
                } else {
                    Verdict::Confirmed(ConfirmedBy::DryRun)
                }
            })
            .collect())
    }

    /// One batch; the `max_deletes` guard refuses the whole plan.
    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let deletes = changes.iter().filter(|c| c.action == Action::Delete).count();
        if let Some(max) = ctx.guards.get("max_deletes").and_then(Value::as_u64) {
            if deletes as u64 > max {
                return Err(ProviderError::Refused(format!(
                    "{deletes} deletes exceed the guard max_deletes {max}"
                )));
            }
        }
        let mut s = self.store.lock().unwrap();
        let mut results = Vec::new();
        for c in changes {
            match (&c.action, &c.desired) {
                (Action::Create | Action::Update, Some(d)) => {
                    s.log.push(format!("PUT {}", c.id));
                    s.put(&c.id, d.body());
                }
                (Action::Delete, _) => {
                    s.log.push(format!("DELETE {}", c.id));
                    s.objects.remove(&c.id);
                }
                _ => {}
            }
            results.push(ChangeResult {
                id: c.id.clone(),
                action: c.action,
                outcome: Outcome::Applied,
            });
        }
        Ok(results)
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        let mut written = Vec::new();
        for r in &live.resources {
            let file = out.join(format!("{}.json", r.id.replace('/', "_")));
            std::fs::write(&file, serde_json::to_vec_pretty(&r.body()).unwrap_or_default())
                .map_err(|e| ProviderError::io(&file, e))?;
            written.push(file);
        }
        Ok(written)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: Config,
    registry: Registry,
    store: Arc<Mutex<Store>>,
}

fn fixture(name: &str, policy: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("desired/ledger")).unwrap();
    let write =
        |file: &str, doc: Value| std::fs::write(root.join("desired/ledger").join(file), doc.to_string()).unwrap();
    write("a.json", json!({"id": "acct/alice", "role": "admin"}));
    write("b.json", json!({"id": "acct/bob", "role": "dev", "cosmetic": "x"}));
    write("c.json", json!({"id": "acct/carol", "role": "dev"}));
    write("d.json", json!({"id": "acct/dan", "role": "dev"}));
    std::fs::write(root.join("policy.yaml"), policy).unwrap();
    let config_text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\ntargets:\n  - name: ledger\n    provider: ledger\n    path: ledger\n    policy: policy.yaml\n    connection: {{ store: {name} }}\n"
    );
    std::fs::write(root.join("plumb.yaml"), &config_text).unwrap();
    let config = Config::load(&root.join("plumb.yaml")).unwrap();
    let store = store(name);
    {
        let mut s = store.lock().unwrap();
        *s = Store::default();
        s.put(
            "acct/alice",
            json!({"id": "acct/alice", "role": "admin", "server_default": 1}),
        ); // in sync
        s.put("acct/bob", json!({"id": "acct/bob", "role": "dev", "cosmetic": "y"})); // dismissed
        s.put(
            "acct/carol",
            json!({"id": "acct/carol", "role": "owner", "broken": true}),
        ); // update + finding
        s.put("acct/erin", json!({"id": "acct/erin", "role": "dev"})); // delete (owned)
        s.put("other/zed", json!({"id": "other/zed"})); // out of scope: never listed
                                                        // acct/dan is missing: create
    }
    let mut registry = Registry::builtin();
    registry.register("ledger", build);
    Fixture {
        _dir: dir,
        root,
        config,
        registry,
        store,
    }
}

#[tokio::test]
async fn engine_uses_scope_cache_confirmation_and_findings_and_never_writes_in_plan() {
    let f = fixture("contract-plan", "mode: reconcile\nprune: true\n");
    let auditor = Auditor::new(&f.config, &f.registry).unwrap();
    let targets = auditor.select(&[]).unwrap();
    let (plan, _) = auditor.run(&targets, &SourceOverride::default()).await;
    let t = &plan.targets[0];
    assert_eq!(t.error, None);
    let actions: Vec<(&str, Action)> = t.changes.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert_eq!(
        actions,
        vec![
            ("acct/carol", Action::Update),
            ("acct/dan", Action::Create),
            ("acct/erin", Action::Delete)
        ]
    );
    // alice in sync after normalisation, bob dismissed by the dry run.
    assert_eq!(t.summary.in_sync, 2);
    assert!(t.changes.iter().all(|c| c.confirmed_by == Some(ConfirmedBy::DryRun)));
    assert_eq!(t.findings.len(), 1);
    assert_eq!(t.findings[0].id, "acct/carol");
    assert_eq!(plan.exit_code, 2);

    // Scoped: only the kind the desired state uses was listed, once.
    let log = f.store.lock().unwrap().log.clone();
    assert_eq!(log, vec!["LIST acct -> 200"]);

    // Second run: answered from the cache.
    let (again, _) = auditor.run(&targets, &SourceOverride::default()).await;
    assert_eq!(again.targets[0].changes.len(), 3);
    let log = f.store.lock().unwrap().log.clone();
    assert!(log[1].contains("-> 304"), "{log:?}");
    assert!(f.store.lock().unwrap().writes().is_empty(), "plan wrote: {log:?}");

    // Every renderer reads it.
    let text = plumb::render::text(&plan, false);
    assert!(
        text.contains("Plan: 1 to create, 1 to update, 1 to delete, 0 unmanaged."),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colour without a terminal");
    let md = plumb::render::markdown(&plan);
    assert!(
        md.contains("| ledger | ledger | ⚠️ drift | 1 | 1 | 1 | 0 | 1 |"),
        "{md}"
    );
    let json: Value = serde_json::from_str(&plumb::render::json(&plan)).unwrap();
    assert_eq!(json["targets"][0]["summary"]["delete"], 1);
}

fn apply_args(f: &Fixture, plan: Option<PathBuf>) -> ApplyArgs {
    ApplyArgs {
        config: ConfigArg {
            config: f.root.join("plumb.yaml"),
        },
        targets: Vec::new(),
        plan,
        auto_approve: true,
        dry_run: false,
        record: false,
    }
}

async fn save_plan(f: &Fixture) -> PathBuf {
    let auditor = Auditor::new(&f.config, &f.registry).unwrap();
    let targets = auditor.select(&[]).unwrap();
    let (plan, _) = auditor.run(&targets, &SourceOverride::default()).await;
    let file = f.root.join("plan.json");
    std::fs::write(&file, plumb::render::json(&plan)).unwrap();
    file
}

#[tokio::test]
async fn apply_saved_plan_applies_exactly_it_and_converges() {
    let f = fixture("contract-apply", "mode: reconcile\nprune: true\n");
    let file = save_plan(&f).await;
    let code = plumb::commands::apply(&apply_args(&f, Some(file)), &f.registry)
        .await
        .unwrap();
    assert_eq!(code, 0);
    let s = f.store.lock().unwrap();
    let mut writes: Vec<&String> = s.writes();
    writes.sort();
    assert_eq!(writes, vec!["DELETE acct/erin", "PUT acct/carol", "PUT acct/dan"]);
    assert!(s.objects.contains_key("other/zed"), "out-of-scope object touched");
}

#[tokio::test]
async fn apply_saved_plan_refuses_when_a_live_object_moved() {
    let f = fixture("contract-stale", "mode: reconcile\nprune: true\n");
    let file = save_plan(&f).await;
    f.store
        .lock()
        .unwrap()
        .put("acct/carol", json!({"id": "acct/carol", "role": "root"}));
    let code = plumb::commands::apply(&apply_args(&f, Some(file)), &f.registry)
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(f.store.lock().unwrap().writes().is_empty());
}

#[tokio::test]
async fn whole_plan_guard_refuses_and_nothing_is_written() {
    let f = fixture(
        "contract-guard",
        "mode: reconcile\nprune: true\nguards: { max_deletes: 0 }\n",
    );
    let code = plumb::commands::apply(&apply_args(&f, None), &f.registry)
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(f.store.lock().unwrap().writes().is_empty());
}

#[tokio::test]
async fn audit_mode_and_prune_off_refuse_without_writing() {
    let f = fixture("contract-audit", "mode: audit\n");
    let code = plumb::commands::apply(&apply_args(&f, None), &f.registry)
        .await
        .unwrap();
    assert_eq!(code, 2, "drift that policy forbids to fix remains");
    assert!(f.store.lock().unwrap().writes().is_empty());

    let f = fixture("contract-noprune", "mode: reconcile\n");
    let code = plumb::commands::apply(&apply_args(&f, None), &f.registry)
        .await
        .unwrap();
    assert_eq!(code, 2);
    let s = f.store.lock().unwrap();
    assert!(s.objects.contains_key("acct/erin"), "deleted without prune");
    assert_eq!(s.writes().len(), 2);
}

#[tokio::test]
async fn import_then_plan_is_empty() {
    let f = fixture("contract-import", "");
    let out = f.root.join("desired/imported");
    std::fs::create_dir_all(&out).unwrap();
    let auditor = Auditor::new(&f.config, &f.registry).unwrap();
    let provider = f
        .registry
        .build("ledger", &json!({"store": "contract-import"}), &f.root)
        .unwrap();
    let ctx = Ctx::new("ledger", f.root.join("state/cache/import"));
    let live = provider.live(&Desired::default(), &ctx).await.unwrap();
    provider.import(&live, &out, &ctx).await.unwrap();
    let mut spec = f.config.targets[0].clone();
    spec.path = PathBuf::from("imported");
    spec.policy = None;
    let checkout = plumb::source::checkout_dir(&f.root.join("desired")).map_err(|e| e.to_string());
    let run = auditor.run_target(&spec, checkout, chrono::Utc::now()).await;
    assert_eq!(run.plan.error, None);
    assert_eq!(run.plan.exit_code, 0, "{:?}", run.plan.changes);
    assert_eq!(run.plan.summary.in_sync, 5);
}

/// A provider whose live read panics: a bug in one provider must cost only
/// its own target.
struct Boom;

#[async_trait]
impl Provider for Boom {
    fn desired(&self, _: &Path, _: &Path, _: &Ctx) -> Result<Desired, ProviderError> {
        Ok(Desired::default())
    }
    async fn live(&self, _: &Desired, _: &Ctx) -> Result<Live, ProviderError> {
        panic!("index out of bounds in the boom provider")
    }
    async fn apply(&self, _: &[ApplyChange], _: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        Ok(Vec::new())
    }
    async fn import(&self, _: &Live, _: &Path, _: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_panicking_provider_fails_only_its_own_target() {
    let mut f = fixture("contract-panic", "");
    f.registry.register("boom", |_, _| Ok(Box::new(Boom)));
    let text = std::fs::read_to_string(f.root.join("plumb.yaml")).unwrap()
        + "  - name: boom\n    provider: boom\n    path: ledger\n";
    std::fs::write(f.root.join("plumb.yaml"), text).unwrap();
    let config = Config::load(&f.root.join("plumb.yaml")).unwrap();
    let auditor = Auditor::new(&config, &f.registry).unwrap();
    let targets = auditor.select(&[]).unwrap();
    let (plan, _) = auditor.run(&targets, &SourceOverride::default()).await;
    assert_eq!(plan.exit_code, 1);
    let boom = plan.targets.iter().find(|t| t.name == "boom").unwrap();
    let error = boom.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("boom provider panicked") && error.contains("index out of bounds"),
        "{error}"
    );
    let ledger = plan.targets.iter().find(|t| t.name == "ledger").unwrap();
    assert_eq!(ledger.error, None);
    assert_eq!(ledger.changes.len(), 3);
}
