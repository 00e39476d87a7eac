//! The Grafana provider against its simulator: desired-state parsing and
//! its errors, live reads, normalisation, who-changed-it, reconcile,
//! import, faults, and the round trip of the 47 real dashboards of the
//! corpus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_grafana::sim::{Fault, Role, Sim, SimOptions};
use plumb_grafana::GrafanaProvider;
use plumb_model::{Action, ApplyChange, Authority, Ctx, Desired, Live, Outcome, Pair, Provider, ProviderError};
use serde_json::{json, Value};

const CORPUS: &str = "../../../shared/corpus/grafana-dashboards";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Each test uses its own variable names: tests run in parallel threads of
/// one process, which share the environment.
fn provider(sim: &Sim, token_var: &str, token: &str) -> GrafanaProvider {
    std::env::set_var(token_var, token);
    plumb_grafana::build(&json!({"url": sim.url(), "token_env": token_var}), Path::new(".")).unwrap()
}

fn ctx() -> Ctx {
    let mut ctx = Ctx::new("grafana-test", std::env::temp_dir());
    ctx.timeout = Duration::from_secs(30);
    ctx.commit = Some("0123abcd4567".into());
    ctx.commit_subject = Some("Fix the latency panel".into());
    ctx
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn dashboard(uid: &str, title: &str, expr: &str) -> Value {
    json!({
        "uid": uid, "title": title, "schemaVersion": 39, "tags": ["team-a"],
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "job", "type": "query", "query": "label_values(up, job)"}]},
        "panels": [
            {"id": 1, "type": "timeseries", "title": "Latency", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
             "datasource": {"type": "prometheus", "uid": "prom"}, "targets": [{"refId": "A", "expr": expr}]},
            {"id": 2, "type": "stat", "title": "Up", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
             "targets": [{"refId": "A", "expr": "up"}]}
        ]
    })
}

/// A small repo: folder `team-a` (from _folder.yaml) with a nested
/// `team-a/sub` (derived uid), and a root dashboard.
fn small_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "team-a/_folder.yaml", "uid: team-a\ntitle: Team A\n");
    write(
        d,
        "team-a/latency.json",
        &dashboard("api-latency", "API latency", "histogram_quantile(0.99, rate(x[5m]))").to_string(),
    );
    write(
        d,
        "team-a/sub/errors.json",
        &dashboard("api-errors", "API errors", "rate(errors[5m])").to_string(),
    );
    let wrapped = json!({"dashboard": dashboard("home", "Home", "up"), "folderUid": "", "overwrite": true});
    write(d, "home.json", &serde_json::to_string_pretty(&wrapped).unwrap());
    dir
}

/// The engine's comparison in miniature: ids that differ after
/// normalisation, desired ids missing live, live ids Git lacks.
#[derive(Debug, Default, PartialEq)]
struct Diff {
    changed: Vec<String>,
    missing: Vec<String>,
    extra: Vec<String>,
}

fn compare(p: &GrafanaProvider, desired: &Desired, live: &Live) -> Diff {
    let live_by_id: BTreeMap<&str, &plumb_model::Resource> =
        live.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut diff = Diff::default();
    for d in &desired.resources {
        match live_by_id.get(d.id.as_str()) {
            None => diff.missing.push(d.id.clone()),
            Some(l) => {
                let (mut dv, mut lv) = (d.body(), l.body());
                p.normalize(Pair {
                    id: &d.id,
                    kind: &d.kind,
                    desired: Some(&mut dv),
                    live: Some(&mut lv),
                });
                if dv != lv {
                    diff.changed.push(d.id.clone());
                }
            }
        }
    }
    for l in &live.resources {
        if !desired.resources.iter().any(|d| d.id == l.id) {
            diff.extra.push(l.id.clone());
        }
    }
    diff
}

/// What the engine would hand to apply for `diff`.
fn changes(desired: &Desired, live: &Live, diff: &Diff) -> Vec<ApplyChange> {
    let find = |set: &[plumb_model::Resource], id: &str| set.iter().find(|r| r.id == id).cloned();
    let mut out = Vec::new();
    for id in &diff.missing {
        out.push(ApplyChange {
            id: id.clone(),
            action: Action::Create,
            desired: find(&desired.resources, id),
            live: None,
        });
    }
    for id in &diff.changed {
        out.push(ApplyChange {
            id: id.clone(),
            action: Action::Update,
            desired: find(&desired.resources, id),
            live: find(&live.resources, id),
        });
    }
    out
}

fn assert_all_applied(results: &[plumb_model::ChangeResult]) {
    for r in results {
        assert_eq!(r.outcome, Outcome::Applied, "{} {:?}", r.id, r.outcome);
    }
}

#[tokio::test]
async fn corpus_round_trips_through_the_simulator_without_drift() {
    init();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let p = provider(&sim, "PLUMB_T_CORPUS", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(&corpus, &corpus, &ctx).unwrap();
    let dashboards = desired.resources.iter().filter(|r| r.kind == "dashboard").count();
    assert_eq!(dashboards, 47);

    let live = p.live(&desired, &ctx).await.unwrap();
    assert!(live.resources.is_empty());
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.missing.len(), desired.resources.len());
    let results = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    assert_all_applied(&results);

    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
    // Grafana's own history names the commit.
    let messages = sim.version_messages("k8s_views_nodes");
    assert!(
        messages[0].contains(r#"commit 0123abcd4567 "Fix the latency panel""#),
        "{messages:?}"
    );
    // Folders follow directories, nested.
    let folders = sim.folders();
    let dashboards_dir = folders
        .iter()
        .find(|(_, (title, parent))| title == "dashboards" && parent.as_deref() == Some("kube-prometheus"))
        .map(|(uid, _)| uid.clone())
        .expect("kube-prometheus/dashboards is a nested folder");
    assert_eq!(dashboards_dir, "kube-prometheus-dashboards");
    // kube-prometheus/manifests holds no dashboard: no folder.
    assert!(!folders.values().any(|(t, _)| t == "manifests"));
}

#[tokio::test]
async fn hand_edit_is_drift_with_who_and_when_and_apply_converges() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    let p = provider(&sim, "PLUMB_T_EDIT", "sim-editor-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());

    assert!(sim.edit_dashboard("api-latency", "alice", |d| {
        d["panels"][0]["targets"][0]["expr"] = json!("rate(x[1m])");
    }));
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.changed, vec!["dashboard/api-latency".to_string()]);
    let edited = live.resources.iter().find(|r| r.id == "dashboard/api-latency").unwrap();
    let who = edited.changed_by.as_ref().unwrap();
    assert_eq!(who.who, "alice");
    assert!(who.when.as_deref().is_some_and(|w| w.starts_with("20")), "{who:?}");
    assert_eq!(edited.version.as_deref(), Some("2"));

    let results = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    assert_all_applied(&results);
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
    let after = live.resources.iter().find(|r| r.id == "dashboard/api-latency").unwrap();
    assert_eq!(after.changed_by.as_ref().unwrap().who, "sa-plumb-editor");

    // Grafana's version history (GET /api/dashboards/uid/{uid}/versions,
    // newest first) names the commit id and its subject for plumb's save,
    // and nothing for alice's hand edit.
    let (status, history) = raw(
        &sim,
        reqwest::Method::GET,
        "/api/dashboards/uid/api-latency/versions",
        Some("Bearer sim-viewer-token"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{history}");
    assert_eq!(versions[0]["version"], 3);
    assert_eq!(versions[0]["createdBy"], "sa-plumb-editor");
    assert_eq!(
        versions[0]["message"],
        r#"plumb: sync from Git commit 0123abcd4567 "Fix the latency panel" (target grafana-test)"#
    );
    assert_eq!(versions[1]["createdBy"], "alice");
    assert_eq!(versions[1]["message"], "");
}

#[tokio::test]
async fn a_moved_dashboard_is_an_update_of_its_folder_and_is_moved_back() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_folder("elsewhere", "Elsewhere", None);
    assert!(sim.move_dashboard("api-errors", "elsewhere", "bob"));
    let p = provider(&sim, "PLUMB_T_MOVE", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.changed, vec!["dashboard/api-errors".to_string()]);
    assert!(diff.missing.is_empty() && diff.extra.is_empty(), "{diff:?}");
    let results = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    assert_all_applied(&results);
    let (_, folder) = sim.dashboard("api-errors").unwrap();
    assert_eq!(folder, desired_folder_of(&desired, "dashboard/api-errors"));
    // The General folder stays General: the root dashboard was saved with
    // folderUid "" and is still there.
    assert_eq!(sim.dashboard("home").unwrap().1, "");
}

fn desired_folder_of(desired: &Desired, id: &str) -> String {
    desired.resources.iter().find(|r| r.id == id).unwrap().body()["folderUid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn not_drift_ids_versions_panel_ids_nulls_library_panels_schema_version() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    assert!(sim.edit_dashboard("api-latency", "carol", |d| {
        d["iteration"] = json!(1712345678901u64);
        d["panels"][0]["id"] = json!(77);
        d["description"] = Value::Null;
        d["schemaVersion"] = json!(41);
        d["__requires"] = json!([{"type": "grafana", "id": "grafana"}]);
    }));
    let p = provider(&sim, "PLUMB_T_NOISE", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
    let warning = live
        .findings
        .iter()
        .find(|f| f.id == "dashboard/api-latency")
        .expect("schemaVersion warning");
    assert!(warning.message.contains("schemaVersion"), "{}", warning.message);

    // ...but a title, a tag, a variable or the time range is drift.
    for (who, edit) in [
        (
            "t",
            Box::new(|d: &mut Value| d["title"] = json!("Renamed")) as Box<dyn FnOnce(&mut Value)>,
        ),
        ("g", Box::new(|d: &mut Value| d["tags"] = json!(["team-b"]))),
        (
            "v",
            Box::new(|d: &mut Value| d["templating"]["list"][0]["query"] = json!("x")),
        ),
        ("r", Box::new(|d: &mut Value| d["time"]["from"] = json!("now-1h"))),
    ] {
        sim.edit_dashboard("api-errors", who, edit);
        let live = p.live(&desired, &ctx).await.unwrap();
        assert_eq!(
            compare(&p, &desired, &live).changed,
            vec!["dashboard/api-errors".to_string()],
            "{who}"
        );
        sim.put_dashboard(
            &desired_folder_of(&desired, "dashboard/api-errors"),
            desired
                .resources
                .iter()
                .find(|r| r.id == "dashboard/api-errors")
                .unwrap()
                .body()["dashboard"]
                .clone(),
            "reset",
        );
    }
}

#[tokio::test]
async fn unmanaged_in_managed_folder_and_prune_with_guard_only() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_dashboard("team-a", dashboard("hand-made", "Hand made", "up"), "dave");
    sim.put_folder("other", "Other team", None);
    sim.put_dashboard("other", dashboard("not-ours", "Not ours", "up"), "erin");
    sim.put_dashboard("", dashboard("root-extra", "Root extra", "up"), "erin");
    let p = provider(&sim, "PLUMB_T_UNMANAGED", "sim-admin-token");
    let mut ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    // Only the one inside a folder this target manages is in scope.
    assert_eq!(diff.extra, vec!["dashboard/hand-made".to_string()]);
    let extra = live.resources.iter().find(|r| r.id == "dashboard/hand-made").unwrap();
    assert_eq!(extra.authority, Authority::Foreign);
    // Without the guard a delete is refused.
    let delete = ApplyChange {
        id: extra.id.clone(),
        action: Action::Delete,
        desired: None,
        live: Some(extra.clone()),
    };
    let r = p.apply(std::slice::from_ref(&delete), &ctx).await.unwrap();
    assert!(matches!(r[0].outcome, Outcome::Refused(_)), "{r:?}");
    assert!(sim.dashboard("hand-made").is_some());

    ctx.guards.insert("authoritative_folders".into(), json!(true));
    let live = p.live(&desired, &ctx).await.unwrap();
    let extra = live.resources.iter().find(|r| r.id == "dashboard/hand-made").unwrap();
    assert_eq!(extra.authority, Authority::Owned);
    let delete = ApplyChange {
        live: Some(extra.clone()),
        ..delete
    };
    let r = p.apply(&[delete], &ctx).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Applied);
    assert!(sim.dashboard("hand-made").is_none());
    assert!(sim.dashboard("not-ours").is_some() && sim.dashboard("root-extra").is_some());
}

#[tokio::test]
async fn provisioned_dashboards_are_findings_never_unmanaged_or_saved() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_dashboard("team-a", dashboard("from-file", "From file", "up"), "admin");
    sim.set_provisioned("from-file", "/etc/grafana/dashboards/x.json");
    sim.edit_dashboard("api-latency", "x", |d| d["title"] = json!("changed"));
    sim.set_provisioned("api-latency", "/etc/grafana/dashboards/y.json");
    let p = provider(&sim, "PLUMB_T_PROV", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    assert!(!live.resources.iter().any(|r| r.id == "dashboard/from-file"));
    let ids: Vec<&str> = live
        .findings
        .iter()
        .filter(|f| f.message.contains("managed elsewhere"))
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{:?}", live.findings);
    let diff = compare(&p, &desired, &live);
    let r = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    assert!(
        matches!(&r[0].outcome, Outcome::Refused(m) if m.contains("provisioned")),
        "{r:?}"
    );
    assert_eq!(sim.dashboard("api-latency").unwrap().0["title"], "changed");
}

#[tokio::test]
async fn folders_are_created_first_and_renamed() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let p = provider(&sim, "PLUMB_T_FOLDERS", "sim-editor-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    // Give apply the changes in the worst order: dashboards first, the
    // nested folder before its parent.
    let mut all = changes(&desired, &live, &diff);
    all.reverse();
    assert_all_applied(&p.apply(&all, &ctx).await.unwrap());
    let folders = sim.folders();
    assert_eq!(folders["team-a"], ("Team A".to_string(), None));
    assert_eq!(folders["team-a-sub"], ("sub".to_string(), Some("team-a".to_string())));

    write(
        repo.path(),
        "team-a/_folder.yaml",
        "uid: team-a\ntitle: Team A (renamed)\n",
    );
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.changed, vec!["folder/team-a".to_string()]);
    assert_all_applied(&p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap());
    assert_eq!(sim.folders()["team-a"].0, "Team A (renamed)");
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
}

#[tokio::test]
async fn import_then_plan_is_empty() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_folder("deep", "Deep", Some("team-a-sub"));
    sim.put_dashboard("deep", dashboard("deep-one", "Deep one", "up"), "x");
    sim.put_dashboard("", dashboard("root-two", "Root two", "up"), "x");
    let p = provider(&sim, "PLUMB_T_IMPORT", "sim-viewer-token");
    let ctx = ctx();
    let everything = p.live(&Desired::default(), &ctx).await.unwrap();
    assert_eq!(everything.resources.iter().filter(|r| r.kind == "dashboard").count(), 5);
    let out = tempfile::tempdir().unwrap();
    let files = p.import(&everything, out.path(), &ctx).await.unwrap();
    assert!(files.iter().any(|f| f.ends_with("team-a/_folder.yaml")), "{files:?}");
    let text = std::fs::read_to_string(out.path().join("team-a/api-latency.json")).unwrap();
    let model: Value = serde_json::from_str(&text).unwrap();
    assert!(model.get("id").is_none() && model.get("version").is_none(), "{text}");
    assert_eq!(model["uid"], "api-latency");
    let desired = p.desired(out.path(), out.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
}

// --- bad input -------------------------------------------------------------

fn desired_err(files: &[(&str, &str)]) -> ProviderError {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    let p = plumb_grafana::build(&json!({"url": "http://127.0.0.1:1", "token_env": "X"}), Path::new(".")).unwrap();
    p.desired(dir.path(), dir.path(), &ctx()).unwrap_err()
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let e = desired_err(&[(
        "f/broken.json",
        "{\n  \"uid\": \"a\",\n  \"title\": \"x\"\n  \"panels\": []\n}\n",
    )]);
    let text = e.to_string();
    assert!(text.starts_with("f/broken.json:4: invalid JSON at column 3"), "{text}");
}

#[test]
fn missing_uid_names_file_and_suggests_one() {
    let e = desired_err(&[("Team X/API Latency.json", r#"{"title": "API latency", "panels": []}"#)]);
    let text = e.to_string();
    assert!(text.starts_with("Team X/API Latency.json:1:"), "{text}");
    assert!(text.contains("\"uid\": \"api-latency\""), "{text}");
}

#[test]
fn bad_uid_and_missing_title_are_errors() {
    let e = desired_err(&[("a.json", r#"{"uid": "has space", "title": "t"}"#)]).to_string();
    assert!(e.contains("a.json") && e.contains("not valid"), "{e}");
    let e = desired_err(&[("a.json", r#"{"uid": "ok"}"#)]).to_string();
    assert!(e.contains("a.json") && e.contains("no title"), "{e}");
}

#[test]
fn duplicate_uid_names_both_files() {
    let d = r#"{"uid": "same", "title": "t"}"#;
    let e = desired_err(&[("one/a.json", d), ("two/b.json", d)]);
    let ProviderError::DuplicateId { id, first, second } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(id, "dashboard/same");
    assert_eq!(first.file, PathBuf::from("one/a.json"));
    assert_eq!(second.file, PathBuf::from("two/b.json"));
}

#[test]
fn folder_file_with_unknown_key_is_an_error() {
    let e = desired_err(&[
        ("f/_folder.yaml", "uid: f\ntitel: F\n"),
        ("f/a.json", r#"{"uid":"a","title":"a"}"#),
    ]);
    let text = e.to_string();
    assert!(text.contains("f/_folder.yaml") && text.contains("titel"), "{text}");
}

// --- API failures ------------------------------------------------------------

#[tokio::test]
async fn rejected_token_is_named_by_variable_never_printed() {
    init();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let p = provider(&sim, "PLUMB_T_401", "glsa_secret_value_123");
    let e = p.live(&Desired::default(), &ctx()).await.unwrap_err().to_string();
    assert!(e.contains("HTTP 401"), "{e}");
    assert!(e.contains("$PLUMB_T_401") && e.contains("Invalid API key"), "{e}");
    assert!(e.contains("GET http://127.0.0.1:"), "{e}");
    assert!(!e.contains("glsa_secret_value_123"), "{e}");

    std::env::set_var("PLUMB_T_401_U", "admin");
    std::env::set_var("PLUMB_T_401_P", "wrong-password-xyz");
    let p = plumb_grafana::build(
        &json!({"url": sim.url(), "username_env": "PLUMB_T_401_U", "password_env": "PLUMB_T_401_P"}),
        Path::new("."),
    )
    .unwrap();
    let e = p.live(&Desired::default(), &ctx()).await.unwrap_err().to_string();
    assert!(
        e.contains("Invalid username or password") && !e.contains("wrong-password-xyz"),
        "{e}"
    );
    std::env::set_var("PLUMB_T_401_P", "admin");
    assert!(p.live(&Desired::default(), &ctx()).await.is_ok());
}

#[tokio::test]
async fn viewer_token_gets_403_on_apply() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let p = provider(&sim, "PLUMB_T_403", "sim-viewer-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    let results = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    assert!(!results.is_empty());
    for r in &results {
        let Outcome::Failed(m) = &r.outcome else {
            panic!("{r:?}")
        };
        assert!(m.contains("HTTP 403") && m.contains("additional permissions"), "{m}");
        assert!(m.contains("POST http://127.0.0.1:"), "{m}");
        // Grafana's wording for the save route's EvalAny (see sim.rs).
        if r.id.starts_with("dashboard/") {
            assert!(
                m.contains("Permissions needed: any of dashboards:create, dashboards:write"),
                "{m}"
            );
        } else {
            assert!(m.contains("Permissions needed: folders:create"), "{m}");
        }
    }
    assert_eq!(sim.dashboard_count(), 0);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    let p = provider(&sim, "PLUMB_T_5XX", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    // Two failures, then success: retried away.
    sim.inject(Fault::status("/api/search", 503, 2));
    sim.reset_requests();
    let live = p.live(&desired, &ctx).await.unwrap();
    assert_eq!(compare(&p, &desired, &live), Diff::default());
    assert_eq!(sim.requests()["GET /api/search"], 3);
    // Always failing: reported with request and status after 1 + 3 tries.
    sim.inject(Fault::status("/api/dashboards/uid/api-errors", 502, 100));
    sim.reset_requests();
    let e = p.live(&desired, &ctx).await.unwrap_err().to_string();
    assert!(
        e.contains("GET http://") && e.contains("/api/dashboards/uid/api-errors") && e.contains("HTTP 502"),
        "{e}"
    );
    assert_eq!(sim.requests()["GET /api/dashboards/uid/api-errors"], 4);
}

#[tokio::test]
async fn rate_limits_wait_as_retry_after_says() {
    init();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let p = provider(&sim, "PLUMB_T_429", "sim-admin-token");
    sim.inject(Fault {
        retry_after: Some(1),
        ..Fault::status("/api/search", 429, 1)
    });
    let started = std::time::Instant::now();
    p.live(&Desired::default(), &ctx()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.requests()["GET /api/search"], 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    init();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    std::env::set_var("PLUMB_T_TIMEOUT", "sim-admin-token");
    let p = plumb_grafana::build(
        &json!({"url": sim.url(), "token_env": "PLUMB_T_TIMEOUT", "request_timeout": "200ms", "retries": 2}),
        Path::new("."),
    )
    .unwrap();
    // One slow answer: retried away.
    sim.inject(Fault::delay("/api/folders", Duration::from_secs(2), 1));
    p.live(&Desired::default(), &ctx()).await.unwrap();
    // Always slow: reported as a timeout naming the request.
    sim.inject(Fault::delay("/api/folders", Duration::from_secs(2), 100));
    let e = p.live(&Desired::default(), &ctx()).await.unwrap_err().to_string();
    assert!(
        e.contains("GET http://") && e.contains("/api/folders") && e.contains("timed out after 200ms"),
        "{e}"
    );
}

#[tokio::test]
async fn a_412_on_apply_is_reported_with_its_message() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.edit_dashboard("api-latency", "x", |d| d["title"] = json!("changed"));
    let p = provider(&sim, "PLUMB_T_412", "sim-admin-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let live = p.live(&desired, &ctx).await.unwrap();
    let diff = compare(&p, &desired, &live);
    sim.inject(Fault {
        body: Some(json!({"message": "The dashboard has been changed by someone else", "status": "version-mismatch"})),
        ..Fault::status("/api/dashboards/db", 412, 1)
    });
    let r = p.apply(&changes(&desired, &live, &diff), &ctx).await.unwrap();
    let Outcome::Failed(m) = &r[0].outcome else {
        panic!("{r:?}")
    };
    assert!(
        m.contains("HTTP 412") && m.contains("changed by someone else (version-mismatch)"),
        "{m}"
    );
}

#[tokio::test]
async fn sub_path_urls_work() {
    init();
    let sim = Sim::start(SimOptions {
        sub_path: Some("/grafana".into()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    assert!(sim.url().ends_with("/grafana"));
    sim.put_dashboard("", dashboard("a", "A", "up"), "x");
    let p = provider(&sim, "PLUMB_T_SUB", "sim-admin-token");
    let live = p.live(&Desired::default(), &ctx()).await.unwrap();
    assert_eq!(live.resources.len(), 1);
}

// --- the simulator follows Grafana's documented answers ---------------------

async fn raw(sim: &Sim, method: reqwest::Method, path: &str, auth: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{path}", sim.url()));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn simulator_save_assigns_versions_and_answers_412s() {
    init();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let admin = Some("Bearer sim-admin-token");
    let (s, v) = raw(
        &sim,
        reqwest::Method::POST,
        "/api/dashboards/db",
        admin,
        Some(json!({"dashboard": {"id": null, "uid": null, "title": "Prod"}, "overwrite": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["version"].as_i64()),
        (Some("success"), Some(1))
    );
    let uid = v["uid"].as_str().unwrap().to_string();
    let id = v["id"].as_i64().unwrap();
    // Stale version without overwrite.
    let (s, v) = raw(
        &sim,
        reqwest::Method::POST,
        "/api/dashboards/db",
        admin,
        Some(json!({"dashboard": {"id": id, "uid": uid, "title": "Prod", "version": 0}})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (412, Some("version-mismatch")), "{v}");
    // Current version: saved as version 2.
    let (s, v) = raw(
        &sim,
        reqwest::Method::POST,
        "/api/dashboards/db",
        admin,
        Some(json!({"dashboard": {"id": id, "uid": uid, "title": "Prod", "version": 1}, "message": "m"})),
    )
    .await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    // Same title in the same folder, another dashboard.
    let (s, v) = raw(
        &sim,
        reqwest::Method::POST,
        "/api/dashboards/db",
        admin,
        Some(json!({"dashboard": {"title": "prod"}})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (412, Some("name-exists")), "{v}");
    // Read back with meta.
    let (s, v) = raw(
        &sim,
        reqwest::Method::GET,
        &format!("/api/dashboards/uid/{uid}"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["meta"]["version"], 2);
    assert_eq!(v["meta"]["folderUid"], "");
    assert_eq!(v["meta"]["updatedBy"], "sa-plumb-admin");
    assert_eq!(v["dashboard"]["version"], 2);
    let (_, v) = raw(
        &sim,
        reqwest::Method::GET,
        &format!("/api/dashboards/uid/{uid}/versions"),
        admin,
        None,
    )
    .await;
    assert_eq!(v["versions"][0]["message"], "m");
    let (s, v) = raw(&sim, reqwest::Method::GET, "/api/dashboards/uid/nope", admin, None).await;
    assert_eq!((s, v["message"].as_str()), (404, Some("Dashboard not found")));
    let (s, v) = raw(
        &sim,
        reqwest::Method::DELETE,
        &format!("/api/dashboards/uid/{uid}"),
        admin,
        None,
    )
    .await;
    assert_eq!((s, v["message"].as_str()), (200, Some("Dashboard Prod deleted")));
}

#[tokio::test]
async fn simulator_auth_search_paging_and_nested_folders() {
    init();
    let sim = Sim::start(SimOptions {
        tokens: vec![("t".into(), "viewer".into(), Role::Viewer)],
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let (s, _) = raw(&sim, reqwest::Method::GET, "/api/health", None, None).await;
    assert_eq!(s, 200);
    let (s, v) = raw(&sim, reqwest::Method::GET, "/api/search", None, None).await;
    assert_eq!((s, v["messageId"].as_str()), (401, Some("auth.unauthorized")));
    let (s, v) = raw(&sim, reqwest::Method::GET, "/api/search", Some("Bearer nope"), None).await;
    assert_eq!((s, v["message"].as_str()), (401, Some("Invalid API key")));
    let (s, v) = raw(
        &sim,
        reqwest::Method::POST,
        "/api/folders",
        Some("Bearer t"),
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!((s, v["title"].as_str()), (403, Some("Access denied")));

    sim.put_folder("top", "Top", None);
    sim.put_folder("child", "Child", Some("top"));
    for i in 0..25 {
        sim.put_dashboard(
            if i % 2 == 0 { "top" } else { "" },
            dashboard(&format!("d{i:02}"), &format!("D {i:02}"), "up"),
            "x",
        );
    }
    let v = Some("Bearer t");
    let (_, page) = raw(
        &sim,
        reqwest::Method::GET,
        "/api/search?type=dash-db&limit=10&page=3",
        v,
        None,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 5);
    assert_eq!(page[0]["title"], "D 20");
    let (_, all) = raw(
        &sim,
        reqwest::Method::GET,
        "/api/search?type=dash-db&limit=abc",
        v,
        None,
    )
    .await;
    assert_eq!(all.as_array().unwrap().len(), 25);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .filter(|h| h.get("folderUid").is_none())
            .count()
            == 12
    );
    let (_, top) = raw(
        &sim,
        reqwest::Method::GET,
        "/api/search?folderUIDs=top&type=dash-db",
        v,
        None,
    )
    .await;
    assert_eq!(top.as_array().unwrap().len(), 13);
    let (_, root) = raw(&sim, reqwest::Method::GET, "/api/folders", v, None).await;
    assert_eq!(root, json!([{"id": 1, "uid": "top", "title": "Top"}]));
    let (_, kids) = raw(&sim, reqwest::Method::GET, "/api/folders?parentUid=top", v, None).await;
    assert_eq!(kids[0]["uid"], "child");
    assert_eq!(kids[0]["parentUid"], "top");
    let (_, child) = raw(&sim, reqwest::Method::GET, "/api/folders/child", v, None).await;
    assert_eq!(child["parents"][0]["uid"], "top");
}

/// Dashboards another tool manages through Grafana 12's `/apis`
/// (`grafana.app/managedBy`) are findings: never unmanaged, saved,
/// deleted or pruned, even inside a folder Git owns.
#[tokio::test]
async fn dashboards_managed_through_apis_are_findings_never_unmanaged_saved_or_pruned() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_dashboard("team-a", dashboard("git-synced", "Git synced", "up"), "sa-git-sync");
    assert!(sim.set_managed("git-synced", "repo", "dashboards", "team-a/git-synced.json"));
    // One Git has too, drifted, and owned by Terraform now.
    sim.edit_dashboard("api-latency", "bob", |d| d["title"] = json!("changed by terraform"));
    assert!(sim.set_managed("api-latency", "terraform", "", ""));
    let p = provider(&sim, "PLUMB_T_APIS", "sim-admin-token");
    let mut ctx = ctx();
    ctx.guards.insert("authoritative_folders".into(), json!(true));
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    sim.reset_requests();
    let live = p.live(&desired, &ctx).await.unwrap();
    let requests = sim.requests();
    assert_eq!(requests["GET /apis/dashboard.grafana.app"], 1, "{requests:?}");
    assert_eq!(
        requests["GET /apis/dashboard.grafana.app/v1beta1/namespaces/default/dashboards"],
        1
    );

    assert!(!live.resources.iter().any(|r| r.id == "dashboard/git-synced"));
    let finding = |id: &str| {
        live.findings
            .iter()
            .find(|f| f.id == id && f.message.contains("managed elsewhere"))
            .unwrap_or_else(|| panic!("no finding for {id}: {:?}", live.findings))
            .message
            .clone()
    };
    let synced = finding("dashboard/git-synced");
    assert!(
        synced.contains("Git Sync repository dashboards")
            && synced.contains("grafana.app/managedBy: repo")
            && synced.contains("team-a/git-synced.json"),
        "{synced}"
    );
    assert!(finding("dashboard/api-latency").contains("Terraform"));
    // Still compared (the drift shows), but foreign and never saved.
    let latency = live.resources.iter().find(|r| r.id == "dashboard/api-latency").unwrap();
    assert_eq!(latency.authority, Authority::Foreign);
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.changed, vec!["dashboard/api-latency".to_string()]);
    assert!(diff.extra.is_empty(), "{diff:?}");

    // What a careless engine might hand over: the update, and a prune of
    // the managed dashboard.
    let mut apply = changes(&desired, &live, &diff);
    let synced_live = plumb_model::Resource::new(
        "dashboard/git-synced",
        "dashboard",
        json!({"folderUid": "team-a", "dashboard": {"uid": "git-synced"}}),
    )
    .with_authority(Authority::Owned);
    apply.push(ApplyChange {
        id: "dashboard/git-synced".into(),
        action: Action::Delete,
        desired: None,
        live: Some(synced_live),
    });
    sim.reset_requests();
    let results = p.apply(&apply, &ctx).await.unwrap();
    for r in &results {
        assert!(
            matches!(&r.outcome, Outcome::Refused(m) if m.contains("managed elsewhere")),
            "{results:?}"
        );
    }
    assert_eq!(sim.total_requests(), 0, "{:?}", sim.requests());
    assert_eq!(sim.dashboard("api-latency").unwrap().0["title"], "changed by terraform");
    assert!(sim.dashboard("git-synced").is_some());
}

/// A Grafana before 12 answers 404 for `/apis`: the read goes on with the
/// legacy API alone (file provisioning is still recognised).
#[tokio::test]
async fn grafana_without_apis_falls_back_to_the_legacy_api() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions {
        apis: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.put_dashboard("team-a", dashboard("from-file", "From file", "up"), "admin");
    sim.set_provisioned("from-file", "/etc/grafana/dashboards/x.json");
    sim.put_dashboard("team-a", dashboard("hand-made", "Hand made", "up"), "alice");
    let p = provider(&sim, "PLUMB_T_NOAPIS", "sim-viewer-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    sim.reset_requests();
    let live = p.live(&desired, &ctx).await.unwrap();
    let requests = sim.requests();
    assert_eq!(requests["GET /apis/dashboard.grafana.app"], 1, "{requests:?}");
    assert!(!requests.keys().any(|k| k.contains("/namespaces/")), "{requests:?}");
    let managed: Vec<&str> = live
        .findings
        .iter()
        .filter(|f| f.message.contains("managed elsewhere"))
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(managed, vec!["dashboard/from-file"]);
    let diff = compare(&p, &desired, &live);
    assert_eq!(diff.extra, vec!["dashboard/hand-made".to_string()]);
    assert!(diff.changed.is_empty() && diff.missing.is_empty(), "{diff:?}");
}

/// The `/apis` list is paged with `limit` and `continue`; a manager on the
/// last page is found.
#[tokio::test]
async fn apis_list_is_followed_through_continue_tokens() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    for i in 0..1100 {
        sim.put_dashboard(
            "",
            json!({"uid": format!("root-{i:04}"), "title": format!("Root {i}")}),
            "admin",
        );
    }
    sim.put_dashboard("team-a", dashboard("zz-managed", "Managed", "up"), "admin");
    sim.set_managed("zz-managed", "kubectl", "", "");
    let p = provider(&sim, "PLUMB_T_APIS_PAGES", "sim-viewer-token");
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    sim.reset_requests();
    let live = p.live(&desired, &ctx).await.unwrap();
    // 1,104 dashboards at 500 a page.
    assert_eq!(
        sim.requests()["GET /apis/dashboard.grafana.app/v1beta1/namespaces/default/dashboards"],
        3
    );
    assert!(live
        .findings
        .iter()
        .any(|f| f.id == "dashboard/zz-managed" && f.message.contains("managed by kubectl")));
    assert!(!live.resources.iter().any(|r| r.id == "dashboard/zz-managed"));
}

#[tokio::test]
async fn apis_errors_name_the_request_and_the_namespace() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    std::env::set_var("PLUMB_T_APIS_NS", "sim-viewer-token");
    let p = plumb_grafana::build(
        &json!({"url": sim.url(), "token_env": "PLUMB_T_APIS_NS", "namespace": "org-2"}),
        Path::new("."),
    )
    .unwrap();
    let ctx = ctx();
    let desired = p.desired(repo.path(), repo.path(), &ctx).unwrap();
    let e = p.live(&desired, &ctx).await.unwrap_err().to_string();
    assert!(
        e.contains("GET http://") && e.contains("/namespaces/org-2/dashboards") && e.contains("404"),
        "{e}"
    );
    assert!(e.contains("connection.namespace"), "{e}");
    assert!(!e.contains("sim-viewer-token"), "{e}");

    // A refusal is an error, not a silent fallback.
    let p = provider(&sim, "PLUMB_T_APIS_403", "sim-viewer-token");
    sim.inject(Fault::status("/apis/dashboard.grafana.app/v1beta1", 403, 1));
    let e = p.live(&desired, &ctx).await.unwrap_err().to_string();
    assert!(
        e.contains("/apis/dashboard.grafana.app/v1beta1/namespaces/default/dashboards"),
        "{e}"
    );
    assert!(e.contains("403"), "{e}");
}

#[tokio::test]
async fn simulator_serves_apis_dashboards_like_grafana_12() {
    init();
    let repo = small_repo();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(repo.path()).unwrap();
    sim.set_managed("api-errors", "repo", "dashboards", "team-a/sub/errors.json");
    let auth = Some("Bearer sim-viewer-token");
    let (status, group) = raw(&sim, reqwest::Method::GET, "/apis/dashboard.grafana.app", auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");

    let base = "/apis/dashboard.grafana.app/v1beta1/namespaces/default/dashboards";
    let (status, list) = raw(&sim, reqwest::Method::GET, &format!("{base}?limit=2"), auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "DashboardList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let token = list["metadata"]["continue"].as_str().unwrap().to_string();
    assert!(list["items"][0]["spec"]["title"].is_string());
    assert!(list["items"][0]["spec"].get("id").is_none());
    let (_, rest) = raw(
        &sim,
        reqwest::Method::GET,
        &format!("{base}?limit=2&continue={token}"),
        auth,
        None,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["metadata"].get("continue").is_none());

    // Metadata only, as Kubernetes' metadata client asks.
    let resp = reqwest::Client::new()
        .get(format!("{}{base}", sim.url()))
        .header("authorization", "Bearer sim-viewer-token")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
        )
        .send()
        .await
        .unwrap();
    let partial: Value = resp.json().await.unwrap();
    assert_eq!(partial["kind"], "PartialObjectMetadataList");
    let errors = partial["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "api-errors")
        .unwrap();
    assert!(errors.get("spec").is_none());
    let annotations = &errors["metadata"]["annotations"];
    assert_eq!(annotations["grafana.app/managedBy"], "repo");
    assert_eq!(annotations["grafana.app/managerId"], "dashboards");
    assert_eq!(annotations["grafana.app/folder"], "team-a-sub");

    let (status, one) = raw(&sim, reqwest::Method::GET, &format!("{base}/api-errors"), auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(one["kind"], "Dashboard");
    assert_eq!(one["metadata"]["generation"], 1);
    let (status, missing) = raw(&sim, reqwest::Method::GET, &format!("{base}/nope"), auth, None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(
        missing["message"],
        r#"dashboards.dashboard.grafana.app "nope" not found"#
    );

    let old = Sim::start(SimOptions {
        apis: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let (status, body) = raw(&old, reqwest::Method::GET, "/apis/dashboard.grafana.app", auth, None).await;
    assert_eq!((status, body), (404, json!({"message": "Not found"})));
}
