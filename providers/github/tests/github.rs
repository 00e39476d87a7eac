//! End-to-end tests of the GitHub provider against its simulator: corpus
//! loading, no drift on a seeded simulator, drift kinds, apply and re-plan,
//! guards, conditional requests, rate limits, faults and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_github::sim::{Fault, Sim, SimOptions};
use plumb_github::{build, GithubProvider};
use plumb_model::{Action, ApplyChange, Ctx, Desired, Live, Outcome, Pair, Provider, ProviderError};
use serde_json::json;

const CORPUS: &str = "../../../shared/corpus/github-org";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS)
}

fn provider(sim: &Sim, org: &str, token_var: &str) -> GithubProvider {
    build(
        &json!({"org": org, "token_env": token_var, "api_url": sim.url(), "retries": 2}),
        Path::new("."),
    )
    .unwrap()
}

fn ctx(cache: &Path) -> Ctx {
    let mut c = Ctx::new("t", cache);
    c.timeout = Duration::from_secs(20);
    c
}

fn setup_env() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::env::set_var("PLUMB_TEST_GH_ADMIN", "sim-admin-token");
    std::env::set_var("PLUMB_TEST_GH_MEMBER", "sim-member-token");
    std::env::set_var("PLUMB_TEST_GH_BAD", "not-a-token");
}

/// What the engine would do: match ids, normalize, compare.
fn plan(p: &GithubProvider, desired: &Desired, live: &Live) -> BTreeMap<String, Action> {
    let mut out = BTreeMap::new();
    let d: BTreeMap<&str, _> = desired.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let l: BTreeMap<&str, _> = live.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, r) in &d {
        match l.get(id) {
            None => {
                out.insert(id.to_string(), Action::Create);
            }
            Some(lr) => {
                let (mut db, mut lb) = (r.body(), lr.body());
                p.normalize(Pair {
                    id,
                    kind: &r.kind,
                    desired: Some(&mut db),
                    live: Some(&mut lb),
                });
                if db != lb {
                    out.insert(id.to_string(), Action::Update);
                }
            }
        }
    }
    for id in l.keys() {
        if !d.contains_key(id) {
            out.insert(id.to_string(), Action::Delete);
        }
    }
    out
}

fn changes(desired: &Desired, live: &Live, plan: &BTreeMap<String, Action>) -> Vec<ApplyChange> {
    plan.iter()
        .map(|(id, action)| ApplyChange {
            id: id.clone(),
            action: *action,
            desired: desired.resources.iter().find(|r| &r.id == id).cloned(),
            live: live.resources.iter().find(|r| &r.id == id).cloned(),
        })
        .collect()
}

async fn audit(p: &GithubProvider, dir: &Path, c: &Ctx) -> (Desired, Live, BTreeMap<String, Action>) {
    let desired = p.desired(dir, dir, c).unwrap();
    let live = p.live(&desired, c).await.unwrap();
    let pl = plan(p, &desired, &live);
    (desired, live, pl)
}

#[test]
fn corpus_both_layouts_load_all_orgs_and_logins() {
    for dir in [corpus().join("kubernetes-org/config"), corpus().join("merged")] {
        let (orgs, _) = plumb_github::desired::read(&dir, &dir).unwrap();
        assert_eq!(orgs.len(), 8, "{}", dir.display());
        let teams: usize = orgs.iter().map(|o| o.teams.len()).sum();
        assert_eq!(teams, 766);
        let logins: std::collections::HashSet<String> = orgs
            .iter()
            .flat_map(|o| o.admins.iter().chain(&o.members))
            .map(|e| e.login.to_lowercase())
            .collect();
        // 1,512 logins as written; three differ only in case between orgs.
        let written: std::collections::HashSet<&str> = orgs
            .iter()
            .flat_map(|o| o.admins.iter().chain(&o.members))
            .map(|e| e.login.as_str())
            .collect();
        assert_eq!(written.len(), 1512);
        assert_eq!(logins.len(), 1509);
        let k = orgs.iter().find(|o| o.org == "kubernetes").unwrap();
        assert_eq!((k.admins.len(), k.members.len(), k.teams.len()), (10, 1266, 284));
        assert!(
            k.teams.iter().any(|t| t.parent.is_some()),
            "nested teams are flattened with a parent"
        );
    }
}

#[tokio::test]
async fn corpus_seeded_simulator_has_no_drift_and_second_audit_is_cheap() {
    setup_env();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = corpus().join("kubernetes-org/config");
    assert_eq!(sim.seed_dir(&dir).unwrap(), 8);
    let cache = tempfile::tempdir().unwrap();
    let c = ctx(cache.path());
    for org in ["kubernetes", "etcd-io", "kubernetes-sigs", "kubernetes-nightly"] {
        let p = provider(&sim, org, "PLUMB_TEST_GH_ADMIN");
        let (desired, _live, pl) = audit(&p, &dir, &c).await;
        // The simulator adds plumb-bot as an owner so it can administer;
        // nothing else differs.
        let rest: Vec<_> = pl.iter().filter(|(id, _)| !id.ends_with("/member/plumb-bot")).collect();
        assert!(rest.is_empty(), "{org}: {rest:?}");
        assert!(desired.resources.len() > 10);
    }
    // The merged layout describes the same orgs: no drift either.
    let merged = corpus().join("merged");
    let p = provider(&sim, "kubernetes-sigs", "PLUMB_TEST_GH_ADMIN");
    let (_, _, pl) = audit(&p, &merged, &c).await;
    assert_eq!(
        pl.keys().collect::<Vec<_>>(),
        vec!["github/kubernetes-sigs/member/plumb-bot"]
    );
    // Cold vs warm for the kubernetes org: same requests, all 304, no points.
    let p = provider(&sim, "kubernetes", "PLUMB_TEST_GH_ADMIN");
    let cold_cache = tempfile::tempdir().unwrap();
    let c = ctx(cold_cache.path());
    let before = sim.rate_remaining("sim-admin-token");
    audit(&p, &dir, &c).await;
    let cold = p.last_stats();
    let cold_points = before - sim.rate_remaining("sim-admin-token");
    let before = sim.rate_remaining("sim-admin-token");
    let (_, _, pl) = audit(&p, &dir, &c).await;
    let warm = p.last_stats();
    let warm_points = before - sim.rate_remaining("sim-admin-token");
    assert_eq!(pl.len(), 1);
    assert_eq!(cold.requests, warm.requests);
    assert_eq!(warm.not_modified, warm.requests);
    assert!(
        warm_points * 20 < cold_points.max(1),
        "warm {warm_points} vs cold {cold_points}"
    );
    println!(
        "kubernetes org: cold {} requests / {cold_points} points, warm {} requests / {warm_points} points",
        cold.requests, warm.requests
    );
}

async fn small() -> (Sim, tempfile::TempDir) {
    setup_env();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(&fixture("small")).unwrap();
    (sim, tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn drift_is_found_applied_and_gone() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let dir = fixture("small");
    let (_, _, pl) = audit(&p, &dir, &c).await;
    assert!(pl.is_empty(), "{pl:?}");

    // Drift by hand.
    sim.set_member("acme", "mallory", "member");
    sim.remove_member("acme", "dave");
    sim.add_user("dave");
    sim.set_member("acme", "carol", "admin");
    sim.set_team_member("acme", "platform", "bob", "maintainer");
    sim.set_team_repo("acme", "platform", "infra", Some("write"));
    sim.set_setting("acme", "default_repository_permission", json!("write"));
    sim.add_team("acme", "shadow", None);
    let (desired, live, pl) = audit(&p, &dir, &c).await;
    let expect = [
        ("github/acme/member/mallory", Action::Delete),
        ("github/acme/member/dave", Action::Create),
        ("github/acme/team/docs-writers/member/dave", Action::Create),
        ("github/acme/member/carol", Action::Update),
        ("github/acme/team/platform/member/bob", Action::Update),
        ("github/acme/team/platform/repo/infra", Action::Update),
        ("github/acme/settings", Action::Update),
        ("github/acme/team/shadow", Action::Delete),
    ];
    for (id, action) in expect {
        assert_eq!(pl.get(id), Some(&action), "{id}: {pl:?}");
    }
    let results = p.apply(&changes(&desired, &live, &pl), &c).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    // dave was invited (he had left): pending, shown as invited, not drift.
    assert_eq!(sim.member_role("acme", "dave").as_deref(), Some("pending"));
    let desired = p.desired(&dir, &dir, &c).unwrap();
    let live = p.live(&desired, &c).await.unwrap();
    assert!(plan(&p, &desired, &live).is_empty(), "{:?}", plan(&p, &desired, &live));
    assert!(live
        .findings
        .iter()
        .any(|f| f.kind == "invitation" && f.message.contains("dave is invited")));
    assert_eq!(sim.team_members("acme", "docs-writers").get("dave"), None);
    // Accepting joins the org and the team the invitation carried.
    assert!(sim.accept_invitation("acme", "dave"));
    let (_, _, pl) = audit(&p, &dir, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(
        sim.team_members("acme", "docs-writers").get("dave").map(String::as_str),
        Some("member")
    );
}

#[tokio::test]
async fn nested_teams_and_owner_maintainers_do_not_flip_flop() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let dir = fixture("small");
    // carol is only in the child team; GitHub lists her in the parent too.
    // root-admin is an org owner listed as a plain team member; GitHub
    // reports owners as maintainers.
    let (_, live, pl) = audit(&p, &dir, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert!(!live
        .resources
        .iter()
        .any(|r| r.id == "github/acme/team/platform/member/carol"));
    // A hand-added direct member of the parent still shows.
    sim.set_team_member("acme", "platform", "dave", "member");
    let (_, _, pl) = audit(&p, &dir, &c).await;
    assert_eq!(pl.get("github/acme/team/platform/member/dave"), Some(&Action::Delete));
}

#[tokio::test]
async fn rename_with_previously_is_an_update() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("acme")).unwrap();
    let text = std::fs::read_to_string(fixture("small/acme/org.yaml"))
        .unwrap()
        .replace("  platform:\n", "  platform-team:\n    previously:\n    - platform\n");
    std::fs::write(dir.path().join("acme/org.yaml"), text).unwrap();
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (desired, live, pl) = audit(&p, dir.path(), &c).await;
    assert_eq!(
        pl.get("github/acme/team/platform-team"),
        Some(&Action::Update),
        "{pl:?}"
    );
    assert!(!pl.contains_key("github/acme/team/platform"), "{pl:?}");
    let results = p.apply(&changes(&desired, &live, &pl), &c).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    assert!(sim.teams("acme").contains(&"platform-team".to_string()));
    let (_, _, pl) = audit(&p, dir.path(), &c).await;
    assert!(pl.is_empty(), "{pl:?}");
}

#[tokio::test]
async fn created_team_loses_the_automatic_creator_maintainer() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("acme")).unwrap();
    let text = std::fs::read_to_string(fixture("small/acme/org.yaml")).unwrap()
        + "  new-team:\n    description: fresh\n    privacy: closed\n    members:\n    - dave\n";
    std::fs::write(dir.path().join("acme/org.yaml"), text).unwrap();
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (desired, live, pl) = audit(&p, dir.path(), &c).await;
    assert_eq!(pl.get("github/acme/team/new-team"), Some(&Action::Create));
    let results = p.apply(&changes(&desired, &live, &pl), &c).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    assert_eq!(
        sim.team_members("acme", "new-team").keys().collect::<Vec<_>>(),
        vec!["dave"]
    );
    let (_, _, pl) = audit(&p, dir.path(), &c).await;
    assert!(pl.is_empty(), "{pl:?}");
}

#[tokio::test]
async fn guards_refuse_the_whole_plan() {
    let (sim, cache) = small().await;
    let dir = fixture("small");
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    // max_removals
    for i in 0..7 {
        sim.set_member("acme", &format!("extra{i}"), "member");
    }
    let mut c = ctx(cache.path());
    let (desired, live, pl) = audit(&p, &dir, &c).await;
    let err = p.apply(&changes(&desired, &live, &pl), &c).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Refused(_)) && err.to_string().contains("max_removals = 5"),
        "{err}"
    );
    assert_eq!(sim.member_count("acme"), 13, "nothing was removed");
    c.guards.insert("max_removals".into(), json!(10));
    assert!(p.apply(&changes(&desired, &live, &pl), &c).await.is_ok());

    // required_admins: Git must have them, plans must not demote them.
    c.guards.insert("required_admins".into(), json!(["carol"]));
    let err = p.desired(&dir, &dir, &c).unwrap_err().to_string();
    assert!(
        err.contains("required admin carol") && err.contains("org.yaml"),
        "{err}"
    );
    c.guards.insert("required_admins".into(), json!(["root-admin"]));
    sim.set_member("acme", "root-admin", "admin");
    let (desired, mut live, _) = audit(&p, &dir, &c).await;
    // A plan that would demote root-admin (as if Git said member).
    let mut d = desired.clone();
    for r in &mut d.resources {
        if r.id == "github/acme/member/root-admin" {
            r.set_body(&json!({"login": "Root-Admin", "role": "member"}));
        }
    }
    live.resources.retain(|r| r.id == "github/acme/member/root-admin");
    let pl: BTreeMap<String, Action> = [("github/acme/member/root-admin".to_string(), Action::Update)].into();
    let err = p.apply(&changes(&d, &live, &pl), &c).await.unwrap_err().to_string();
    assert!(err.contains("required admin") && err.contains("demote"), "{err}");

    // never the token's own user
    let c = ctx(cache.path());
    let (desired, live, _) = audit(&p, &dir, &c).await;
    let pl: BTreeMap<String, Action> = [("github/acme/member/plumb-bot".to_string(), Action::Delete)].into();
    let err = p
        .apply(&changes(&desired, &live, &pl), &c)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("plumb-bot") && err.contains("own user"), "{err}");
    assert_eq!(sim.member_role("acme", "plumb-bot").as_deref(), Some("admin"));
}

#[tokio::test]
async fn empty_org_file_is_never_acted_on() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("acme")).unwrap();
    std::fs::write(dir.path().join("acme/org.yaml"), "admins: []\nmembers: []\n").unwrap();
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (desired, live, pl) = audit(&p, dir.path(), &c).await;
    assert!(desired
        .findings
        .iter()
        .any(|f| f.message.contains("no admins and no members")));
    let err = p
        .apply(&changes(&desired, &live, &pl), &c)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty org file"), "{err}");
}

#[tokio::test]
async fn import_then_plan_is_empty() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    sim.set_member("acme", "mallory", "member");
    sim.set_team_repo("acme", "platform", "extra", Some("maintain"));
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let live = p.live(&Desired::default(), &c).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let written = p.import(&live, out.path(), &c).await.unwrap();
    assert_eq!(written, vec![out.path().join("acme/org.yaml")]);
    let (_, _, pl) = audit(&p, out.path(), &c).await;
    assert!(pl.is_empty(), "{pl:?}");
}

#[tokio::test]
async fn invitations_expired_failed_and_outside_collaborators_are_findings() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    sim.remove_member("acme", "bob");
    sim.invite("acme", "bob", "member", 9);
    sim.invite("acme", "eve", "member", 1);
    sim.fail_invitation("acme", "eve", "Invitation expired");
    sim.add_outside_collaborator("acme", "contractor");
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (_, live, pl) = audit(&p, &fixture("small"), &c).await;
    assert_eq!(
        pl.get("github/acme/member/bob"),
        Some(&Action::Create),
        "an expired invitation grants nothing"
    );
    let msgs: Vec<&str> = live.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("Bob") && m.contains("expired")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("eve") && m.contains("failed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("contractor") && m.contains("outside collaborator")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn enterprise_prefix_and_pagination() {
    setup_env();
    let sim = Sim::start(SimOptions {
        path_prefix: Some("/api/v3".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    sim.add_org("big", "plumb-bot");
    for i in 0..250 {
        sim.set_member("big", &format!("user{i:03}"), "member");
    }
    assert!(sim.url().ends_with("/api/v3"));
    let cache = tempfile::tempdir().unwrap();
    let c = ctx(cache.path());
    let p = provider(&sim, "big", "PLUMB_TEST_GH_ADMIN");
    let live = p.live(&Desired::default(), &c).await.unwrap();
    assert_eq!(live.resources.iter().filter(|r| r.kind == "member").count(), 251);
    let pages = sim
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/orgs/big/members?"))
        .count();
    assert_eq!(pages, 1 + 3, "one page of admins, three of members");
}

#[tokio::test]
async fn bad_token_non_admin_token_and_missing_variable() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let err = provider(&sim, "acme", "PLUMB_TEST_GH_BAD")
        .live(&Desired::default(), &c)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("Bad credentials") && text.contains("GET http://"),
        "{text}"
    );
    assert!(!text.contains("not-a-token"));
    // A member's token may not read invitations or outside collaborators:
    // each is a warning naming the request and the permission, and the
    // memberships are still audited.
    sim.set_member("acme", "octo-member", "member");
    let live = provider(&sim, "acme", "PLUMB_TEST_GH_MEMBER")
        .live(&Desired::default(), &c)
        .await
        .unwrap();
    assert!(
        live.resources.iter().any(|r| r.kind == "member"),
        "memberships were read"
    );
    let permission: Vec<&str> = live
        .findings
        .iter()
        .filter(|f| f.kind == "permission")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(permission.len(), 3, "{permission:?}");
    for path in [
        "/orgs/acme/invitations",
        "/orgs/acme/failed_invitations",
        "/orgs/acme/outside_collaborators",
    ] {
        assert!(
            permission
                .iter()
                .any(|m| m.contains(path) && m.contains("403") && m.contains("\"Members\" organisation permission")),
            "{path}: {permission:?}"
        );
    }
    let err = provider(&sim, "acme", "PLUMB_TEST_GH_SURELY_UNSET")
        .live(&Desired::default(), &c)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PLUMB_TEST_GH_SURELY_UNSET"), "{err}");
}

#[tokio::test]
async fn rate_limit_exhausted_fails_with_reset_time() {
    let (sim, cache) = small().await;
    let mut c = ctx(cache.path());
    c.timeout = Duration::from_secs(5);
    sim.set_rate_limit("sim-admin-token", 0, 3600);
    let err = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN")
        .live(&Desired::default(), &c)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rate limit") && text.contains("resets at"), "{text}");
    // Exactly one request was made: no tight loop.
    assert_eq!(sim.log().len(), 1, "{:?}", sim.log());
}

#[tokio::test]
async fn server_errors_and_secondary_limits_are_retried() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    sim.inject(Fault::status("/orgs/acme/members", 502, 2));
    sim.inject(Fault::secondary_limit("/orgs/acme/teams", 1, 1));
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (_, _, pl) = audit(&p, &fixture("small"), &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert!(p.last_stats().retries >= 3);
    // Beyond the retries the request and status are named.
    sim.inject(Fault::status("/orgs/acme/members", 502, 10));
    let err = p.live(&Desired::default(), &c).await.unwrap_err().to_string();
    assert!(
        err.contains("GET http://") && err.contains("/orgs/acme/members") && err.contains("502"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_user_on_apply_is_reported_and_the_rest_goes_on() {
    let (sim, cache) = small().await;
    let c = ctx(cache.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("acme")).unwrap();
    let text = std::fs::read_to_string(fixture("small/acme/org.yaml"))
        .unwrap()
        .replace("- dave\n", "- dave\n- no-such-user-xyz\n- frank\n");
    std::fs::write(dir.path().join("acme/org.yaml"), text).unwrap();
    sim.add_user("frank");
    let p = provider(&sim, "acme", "PLUMB_TEST_GH_ADMIN");
    let (desired, live, pl) = audit(&p, dir.path(), &c).await;
    let results = p.apply(&changes(&desired, &live, &pl), &c).await.unwrap();
    let bad = results.iter().find(|r| r.id.ends_with("no-such-user-xyz")).unwrap();
    let Outcome::Failed(msg) = &bad.outcome else {
        panic!("{bad:?}")
    };
    assert!(
        msg.contains("PUT http://") && msg.contains("404") && msg.contains("Not Found"),
        "{msg}"
    );
    let frank = results.iter().find(|r| r.id.ends_with("frank")).unwrap();
    assert_eq!(frank.outcome, Outcome::Applied);
}

#[test]
fn bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let org = dir.path().join("acme");
    std::fs::create_dir_all(&org).unwrap();
    let cases = [
        ("admins:\n- a\nmembers: [b\n", "org.yaml:4"),
        ("admins:\n- alice\nmembers:\n- bob\n- Alice\n", "org.yaml:5"),
        ("admins:\n- a\nmembrs:\n- b\n", "org.yaml:3"),
        ("admins:\n- a\nteams:\n  t:\n    privacy: public\n", "org.yaml:5"),
        (
            "admins:\n- a\nteams:\n  t:\n    members:\n    - x\n    maintainers:\n    - X\n",
            "org.yaml:8",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(org.join("org.yaml"), text).unwrap();
        let err = plumb_github::desired::read(dir.path(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    // Both places of a duplicate are named.
    std::fs::write(org.join("org.yaml"), "admins:\n- alice\nmembers:\n- bob\n- Alice\n").unwrap();
    let err = plumb_github::desired::read(dir.path(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("org.yaml:2") && err.contains("org.yaml:5"), "{err}");
    // A team defined in two teams.yaml files.
    std::fs::write(org.join("org.yaml"), "admins:\n- a\n").unwrap();
    for sub in ["x", "y"] {
        std::fs::create_dir_all(org.join(sub)).unwrap();
        std::fs::write(org.join(sub).join("teams.yaml"), "teams:\n  same:\n    members: [a]\n").unwrap();
    }
    let err = plumb_github::desired::read(dir.path(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x/teams.yaml:2") && err.contains("y/teams.yaml:2"),
        "{err}"
    );
}

#[tokio::test]
async fn github_app_with_unreadable_key_names_the_file() {
    setup_env();
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        &json!({"org": "acme", "app_id": 1, "private_key_file": "missing.pem", "api_url": "http://127.0.0.1:9"}),
        dir.path(),
    )
    .unwrap();
    let err = p
        .live(&Desired::default(), &ctx(dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let p = build(
        &json!({"org": "acme", "app_id": 1, "private_key_file": "bad.pem", "api_url": "http://127.0.0.1:9"}),
        dir.path(),
    )
    .unwrap();
    let err = p
        .live(&Desired::default(), &ctx(dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.pem") && err.contains("PEM"), "{err}");
}
