//! End-to-end tests of the `plumb` binary: real processes, real Git
//! repositories made with the `git` CLI, and exec plugins that are `cat` of a
//! JSON file (the live system) plus a recording apply plugin in Python that
//! appends every change it receives to a log and updates the live file. The
//! log proves what was, and was not, written.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The apply plugin: `record.py LIVE LOG` reads one change on stdin, appends
/// it to LOG as one JSON line and makes LIVE (a JSON array) match it.
const RECORD_PY: &str = r#"import json, sys
live_path, log_path = sys.argv[1], sys.argv[2]
change = json.load(sys.stdin)
with open(log_path, "a") as f:
    f.write(json.dumps(change, sort_keys=True) + "\n")
with open(live_path) as f:
    docs = json.load(f)
docs = [d for d in docs if d["id"] != change["id"]]
if change["action"] in ("create", "update"):
    docs.append(change["desired"])
with open(live_path, "w") as f:
    json.dump(docs, f, indent=1)
"#;

/// A secret that must never be shown anywhere.
const DESIRED_SECRET: &str = "desired-pw-Zq81x";
const LIVE_SECRET: &str = "live-pw-Kk22y";

// -- fixture ---------------------------------------------------------------

/// One exec target of a fixture's config.
#[derive(Clone)]
struct Target {
    name: String,
    /// Extra lines of the target entry (4-space indented keys).
    lines: Vec<String>,
    /// Extra keys of `connection:`.
    connection: Vec<String>,
    /// Policy file contents, written to `policies/<name>.yaml`.
    policy: Option<String>,
    command: String,
}

/// An exec target `name` reading `live/<name>.json`, desired state at
/// `<source>/<name>`, with the recording apply plugin.
fn target(name: &str) -> Target {
    Target {
        name: name.to_string(),
        lines: Vec::new(),
        connection: Vec::new(),
        policy: None,
        command: format!("[cat, live/{name}.json]"),
    }
}

impl Target {
    fn line(mut self, line: &str) -> Self {
        self.lines.push(line.to_string());
        self
    }
    fn conn(mut self, line: &str) -> Self {
        self.connection.push(line.to_string());
        self
    }
    fn policy(mut self, text: &str) -> Self {
        self.policy = Some(text.to_string());
        self
    }
    fn command(mut self, argv: &str) -> Self {
        self.command = argv.to_string();
        self
    }

    fn yaml(&self) -> String {
        let mut out = format!("  - name: {n}\n    provider: exec\n    path: {n}\n", n = self.name);
        if self.policy.is_some() {
            out.push_str(&format!("    policy: policies/{}.yaml\n", self.name));
        }
        for l in &self.lines {
            out.push_str(&format!("    {l}\n"));
        }
        out.push_str(&format!(
            "    connection:\n      command: {}\n      apply_command: [python3, plugins/record.py, live/{n}.json, log/{n}.log]\n",
            self.command,
            n = self.name
        ));
        for c in &self.connection {
            out.push_str(&format!("      {c}\n"));
        }
        out
    }
}

/// A temporary directory holding `plumb.yaml`, `desired/`, `live/`,
/// `plugins/record.py`, `log/` and `state/`.
struct Fixture {
    tmp: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fx = Fixture {
            tmp: tempfile::tempdir().unwrap(),
        };
        fx.write("plugins/record.py", RECORD_PY);
        std::fs::create_dir_all(fx.path("log")).unwrap();
        fx
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn write_json(&self, rel: &str, value: &Value) {
        self.write(rel, &serde_json::to_string_pretty(value).unwrap());
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// The live system of target `name`.
    fn live(&self, name: &str, docs: Value) {
        self.write_json(&format!("live/{name}.json"), &docs);
    }

    /// The desired state of target `name` (below `desired/`).
    fn desired(&self, name: &str, docs: Value) {
        self.write_json(&format!("desired/{name}/docs.json"), &docs);
    }

    /// The changes the apply plugin of `name` received, in order.
    fn applied(&self, name: &str) -> Vec<Value> {
        match std::fs::read_to_string(self.path(&format!("log/{name}.log"))) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes `plumb.yaml` with the desired state in `./desired`.
    fn config(&self, targets: &[Target]) -> String {
        self.config_with("source:\n  dir: ./desired\n", targets)
    }

    /// Writes `plumb.yaml` with `source` (the YAML of the `source:` key) and
    /// the policies of `targets`. Returns the config's text.
    fn config_with(&self, source: &str, targets: &[Target]) -> String {
        let mut text = format!("{source}state_dir: ./state\ntargets:\n");
        for t in targets {
            text.push_str(&t.yaml());
            if let Some(p) = &t.policy {
                self.write(&format!("policies/{}.yaml", t.name), p);
            }
        }
        self.write("plumb.yaml", &text);
        text
    }

    /// `plumb` run in the fixture, without `-c`, `PLUMB_CONFIG` or `NO_COLOR`.
    fn bare(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
        cmd.current_dir(self.root())
            .env_remove("PLUMB_CONFIG")
            .env_remove("NO_COLOR")
            .env_remove("PLUMB_LOG")
            .timeout(Duration::from_secs(60));
        cmd
    }

    /// `plumb ARGS -c <fixture>/plumb.yaml`.
    fn plumb(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.args(args).arg("-c").arg(self.path("plumb.yaml"));
        cmd
    }

    /// Runs `plumb ARGS` and returns its output.
    fn run(&self, args: &[&str]) -> Output {
        self.plumb(args).output().unwrap()
    }

    /// Runs `plan --format json` (plus `args`) and returns the exit code and plan.
    fn json_plan(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["plan", "--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "plan is not JSON ({e}):\nstdout: {}\nstderr: {}",
                stdout(&out),
                stderr(&out)
            )
        });
        (code(&out), plan)
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("plumb was killed by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout and stderr together, for messages whose stream does not matter.
fn both(out: &Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

#[track_caller]
fn assert_code(out: &Output, expected: i32) {
    assert_eq!(
        code(out),
        expected,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// The target called `name` in a JSON plan.
fn target_of<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {plan:#}"))
}

/// The ids of a target's changes, in plan order.
fn change_ids(target: &Value) -> Vec<String> {
    target["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

const RECONCILE: &str = "mode: reconcile\n";
const RECONCILE_PRUNE: &str = "mode: reconcile\nprune: true\n";

/// A target `app` whose live system differs from Git: `user/a` changed by
/// hand (update) and `user/b` missing (create).
fn drifting_app(fx: &Fixture, policy: &str) -> Target {
    fx.desired(
        "app",
        json!([
            {"id": "user/a", "role": "admin"},
            {"id": "user/b", "role": "dev"}
        ]),
    );
    fx.live(
        "app",
        json!([{"id": "user/a", "role": "owner", "$meta": {"version": "1"}}]),
    );
    target("app").policy(policy)
}

// -- git -------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Commits `role` as the desired role of `user/a` (target path `app`).
fn commit_role(repo: &Path, role: &str, subject: &str) -> String {
    std::fs::create_dir_all(repo.join("app")).unwrap();
    std::fs::write(repo.join("app/users.yaml"), format!("id: user/a\nrole: {role}\n")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", subject]);
    git(repo, &["rev-parse", "HEAD"])
}

/// The commits of a Git repository made by [`git_repo`].
struct Repo {
    path: PathBuf,
    /// `main`'s first commit, tagged `v1` (role: first).
    first: String,
    /// `main`'s head (role: second).
    second: String,
    /// Branch `feature`, off `first` (role: feature).
    feature: String,
}

/// A repository with two commits on `main`, a tag and a branch.
fn git_repo(fx: &Fixture) -> Repo {
    let path = fx.path("repo");
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    let first = commit_role(&path, "first", "Start with the first role");
    git(&path, &["tag", "-a", "v1", "-m", "release 1"]);
    git(&path, &["checkout", "-q", "-b", "feature"]);
    let feature = commit_role(&path, "feature", "Try a feature role");
    git(&path, &["checkout", "-q", "main"]);
    let second = commit_role(&path, "second", "Promote to the second role");
    Repo {
        path,
        first,
        second,
        feature,
    }
}

fn git_source(url: &str, reference: &str) -> String {
    format!("source:\n  git:\n    url: {url}\n    ref: {reference}\n")
}

// -- 1. exit codes and failure isolation -------------------------------------

#[test]
fn plan_exit_codes_follow_the_worst_target_and_a_failed_target_stops_no_other() {
    let fx = Fixture::new();
    fx.desired("broken", json!([]));
    fx.write("desired/broken/bad.yaml", "id: x\nrole: [unclosed\n");
    fx.live("broken", json!([]));
    fx.desired("synced", json!([{"id": "user/s", "role": "dev"}]));
    fx.live("synced", json!([{"id": "user/s", "role": "dev"}]));
    fx.desired("drifting", json!([{"id": "user/d", "role": "dev"}]));
    fx.live("drifting", json!([{"id": "user/d", "role": "admin"}]));
    // The broken target comes first: it must not stop the others.
    fx.config(&[target("broken"), target("synced"), target("drifting")]);

    fx.plumb(&["plan", "--target", "synced"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("synced (exec): in sync"));
    fx.plumb(&["plan", "--target", "synced", "--target", "drifting"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("~ user/d (update)"));

    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 1, "{plan:#}");
    assert_eq!(plan["exit_code"], 1);
    let broken = target_of(&plan, "broken");
    assert_eq!(broken["exit_code"], 1);
    assert!(
        broken["error"].as_str().unwrap().contains("broken/bad.yaml"),
        "{broken:#}"
    );
    assert_eq!(target_of(&plan, "synced")["exit_code"], 0);
    assert_eq!(target_of(&plan, "synced")["summary"]["in_sync"], 1);
    let drifting = target_of(&plan, "drifting");
    assert_eq!(drifting["exit_code"], 2);
    assert_eq!(change_ids(drifting), ["user/d"]);
    assert_eq!(drifting["changes"][0]["action"], "update");

    // An unknown target is an error naming the known ones.
    fx.plumb(&["plan", "--target", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nope").and(predicate::str::contains("drifting")));
}

// -- 2.-5. errors name file and line ---------------------------------------

#[test]
fn broken_yaml_is_reported_with_file_and_line() {
    let fx = Fixture::new();
    fx.write("desired/apps/good.yaml", "id: app/ok\nrole: fine\n");
    fx.write(
        "desired/apps/bad.yaml",
        "id: app/x\nname: ok\nrole: admin: yes\nother: 1\n",
    );
    fx.live("apps", json!([]));
    fx.config(&[target("apps")]);
    let out = fx.run(&["plan"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("apps/bad.yaml:3"), "{}", both(&out));
    let out = fx.run(&["validate"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("apps/bad.yaml:3"), "{}", both(&out));
}

#[test]
fn a_duplicate_id_names_both_files() {
    let fx = Fixture::new();
    fx.write("desired/apps/a.yaml", "id: app/x\nrole: one\n");
    fx.write("desired/apps/b.yaml", "# the same object again\nid: app/x\nrole: two\n");
    fx.live("apps", json!([]));
    fx.config(&[target("apps")]);
    for cmd in ["plan", "validate"] {
        let out = fx.run(&[cmd]);
        assert_code(&out, 1);
        let text = both(&out);
        assert!(text.contains("duplicate id app/x"), "{cmd}: {text}");
        assert!(text.contains("apps/a.yaml:1"), "{cmd}: {text}");
        assert!(text.contains("apps/b.yaml:2"), "{cmd}: {text}");
    }
}

#[test]
fn an_unknown_provider_is_named_with_its_config_line() {
    let fx = Fixture::new();
    fx.desired("good", json!([]));
    fx.live("good", json!([]));
    fx.desired("odd", json!([]));
    let text = fx.config(&[target("good"), target("odd")]);
    let text = text.replacen(
        "name: odd\n    provider: exec",
        "name: odd\n    provider: kubernetez",
        1,
    );
    fx.write("plumb.yaml", &text);
    let line = line_of(&text, "provider: kubernetez");
    for cmd in ["plan", "validate"] {
        let out = fx.run(&[cmd]);
        assert_code(&out, 1);
        let all = both(&out);
        assert!(all.contains("unknown provider \"kubernetez\""), "{cmd}: {all}");
        assert!(all.contains(&format!("plumb.yaml:{line}")), "{cmd}: line {line}: {all}");
    }
}

#[test]
fn an_unknown_key_in_plumb_yaml_is_named_with_its_line() {
    let fx = Fixture::new();
    fx.desired("app", json!([]));
    fx.live("app", json!([]));
    let text = fx.config(&[target("app")]);
    let text = text.replace("    path: app\n", "    path: app\n    scheduel: \"* * * * *\"\n");
    fx.write("plumb.yaml", &text);
    let line = line_of(&text, "scheduel");
    for cmd in ["plan", "validate", "apply"] {
        let out = fx.run(&[cmd]);
        assert_code(&out, 1);
        let all = both(&out);
        assert!(all.contains("scheduel"), "{cmd}: {all}");
        assert!(all.contains(&format!("plumb.yaml:{line}")), "{cmd}: line {line}: {all}");
    }
    assert!(fx.applied("app").is_empty());
}

#[test]
fn an_unknown_key_in_a_connection_is_named_with_its_line() {
    let fx = Fixture::new();
    fx.desired("app", json!([]));
    fx.live("app", json!([]));
    let text = fx.config(&[target("app").conn("apply_comand: [true]")]);
    let line = line_of(&text, "apply_comand");
    for cmd in ["plan", "validate"] {
        let out = fx.run(&[cmd]);
        assert_code(&out, 1);
        let all = both(&out);
        assert!(all.contains("apply_comand"), "{cmd}: {all}");
        assert!(all.contains(&format!("plumb.yaml:{line}")), "{cmd}: line {line}: {all}");
    }
}

// -- 6.-8. Git ---------------------------------------------------------------

#[test]
fn a_missing_token_variable_is_named_and_a_token_is_never_shown() {
    let fx = Fixture::new();
    fx.live("app", json!([]));
    fx.config_with(
        "source:\n  git:\n    url: http://127.0.0.1:9/x.git\n    ref: main\n    auth: { token_env: SOME_UNSET_VAR }\n",
        &[target("app")],
    );
    let out = fx.plumb(&["plan"]).env_remove("SOME_UNSET_VAR").output().unwrap();
    assert_code(&out, 1);
    assert!(both(&out).contains("SOME_UNSET_VAR"), "{}", both(&out));

    // Set, the token goes nowhere near the output (the server is unreachable).
    let token = "tok-3f9a77e1c0ffee";
    for format in ["text", "json", "markdown"] {
        let out = fx
            .plumb(&["plan", "--format", format])
            .env("SOME_UNSET_VAR", token)
            .output()
            .unwrap();
        assert_code(&out, 1);
        assert!(!both(&out).contains(token), "{format}: {}", both(&out));
        assert!(stdout(&out).contains("127.0.0.1:9"), "{format}: {}", both(&out));
    }

    // Credentials someone put in the URL are not repeated either.
    fx.config_with(
        &git_source("http://bob:hunter2-pw@127.0.0.1:9/x.git", "main"),
        &[target("app")],
    );
    for format in ["text", "json", "markdown"] {
        let out = fx
            .plumb(&["plan", "--format", format, "--metrics-file", "m.prom"])
            .output()
            .unwrap();
        assert_code(&out, 1);
        assert!(!both(&out).contains("hunter2-pw"), "{format}: {}", both(&out));
        assert!(stdout(&out).contains("127.0.0.1:9/x.git"), "{format}: {}", both(&out));
        assert!(!fx.read("m.prom").contains("hunter2-pw"));
    }
}

#[test]
fn an_unreachable_git_url_and_an_unknown_ref_are_named() {
    let fx = Fixture::new();
    fx.live("app", json!([]));
    fx.config_with(&git_source("http://127.0.0.1:9/x.git", "main"), &[target("app")]);
    let out = fx.run(&["plan"]);
    assert_code(&out, 1);
    // The text plan shows the target's error on stdout.
    assert!(stdout(&out).contains("http://127.0.0.1:9/x.git"), "{}", both(&out));
    assert!(stdout(&out).contains("app (exec): error"), "{}", both(&out));

    let repo = git_repo(&fx);
    fx.config_with(
        &git_source(repo.path.to_str().unwrap(), "no-such-branch"),
        &[target("app")],
    );
    let out = fx.run(&["plan"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("no-such-branch"), "{}", both(&out));
    assert!(stdout(&out).contains(repo.path.to_str().unwrap()), "{}", both(&out));

    // The same through --ref on a good config.
    fx.config_with(&git_source(repo.path.to_str().unwrap(), "main"), &[target("app")]);
    let (code, plan) = fx.json_plan(&["--ref", "v9.9-missing"]);
    assert_eq!(code, 1);
    let error = target_of(&plan, "app")["error"].as_str().unwrap().to_string();
    assert!(error.contains("v9.9-missing"), "{error}");
    assert_eq!(plan["source"]["ref"], "v9.9-missing");
}

#[test]
fn ref_and_source_dir_choose_what_is_audited() {
    let fx = Fixture::new();
    let repo = git_repo(&fx);
    fx.live("app", json!([{"id": "user/a", "role": "second"}]));
    let url = repo.path.to_str().unwrap();
    fx.config_with(&git_source(url, "main"), &[target("app")]);

    // main's head matches the live system.
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(plan["source"]["commit"], repo.second.as_str());
    assert_eq!(plan["source"]["ref"], "main");
    assert_eq!(plan["source"]["url"], url);

    // A tag: the first commit, whose role differs.
    let (code, plan) = fx.json_plan(&["--ref", "v1"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(plan["source"]["commit"], repo.first.as_str());
    assert_eq!(plan["source"]["ref"], "v1");
    assert_eq!(plan["source"]["subject"], "Start with the first role");
    assert!(
        plan["source"]["author"].as_str().unwrap().contains("Ada Lovelace"),
        "{plan:#}"
    );
    let diff = target_of(&plan, "app")["changes"][0]["diff"].as_str().unwrap();
    assert!(diff.contains("+role: first"), "{diff}");

    // A branch.
    let (code, plan) = fx.json_plan(&["--ref", "feature"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(plan["source"]["commit"], repo.feature.as_str());
    assert_eq!(plan["source"]["ref"], "feature");
    assert_eq!(plan["source"]["subject"], "Try a feature role");
    let diff = target_of(&plan, "app")["changes"][0]["diff"].as_str().unwrap();
    assert!(diff.contains("+role: feature"), "{diff}");

    // A commit id.
    let (code, plan) = fx.json_plan(&["--ref", &repo.first]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(plan["source"]["commit"], repo.first.as_str());

    // A local checkout instead of the configured Git source.
    fx.write("checkout/app/users.yaml", "id: user/a\nrole: local\n");
    let (code, plan) = fx.json_plan(&["--source-dir", fx.path("checkout").to_str().unwrap()]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(plan["source"]["commit"], Value::Null);
    assert!(
        plan["source"]["url"].as_str().unwrap().ends_with("checkout"),
        "{plan:#}"
    );
    let diff = target_of(&plan, "app")["changes"][0]["diff"].as_str().unwrap();
    assert!(diff.contains("+role: local"), "{diff}");
    // --ref and --source-dir exclude each other.
    fx.plumb(&["plan", "--ref", "v1", "--source-dir", "checkout"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot be used with"));
}

#[test]
fn a_target_may_have_its_own_source() {
    let fx = Fixture::new();
    let repo = git_repo(&fx);
    let url = repo.path.to_str().unwrap();
    fx.live("app", json!([{"id": "user/a", "role": "second"}]));
    fx.live("side", json!([{"id": "user/a", "role": "side"}]));
    fx.write("elsewhere/side/users.yaml", "id: user/a\nrole: side\n");
    // Global Git source, one target on a plain directory.
    fx.config_with(
        &git_source(url, "main"),
        &[target("app"), target("side").line("source: { dir: ./elsewhere }")],
    );
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(plan["source"]["commit"], repo.second.as_str());
    let side = target_of(&plan, "side");
    assert!(
        side["source"]["url"].as_str().unwrap().ends_with("elsewhere"),
        "{plan:#}"
    );
    // --ref changes the global source only.
    let (code, plan) = fx.json_plan(&["--ref", "v1"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(target_of(&plan, "app")["exit_code"], 2);
    assert_eq!(target_of(&plan, "side")["exit_code"], 0);

    // Global directory source, one target on a Git tag.
    fx.config_with(
        "source:\n  dir: ./elsewhere\n",
        &[
            target("side"),
            target("app").line(&format!("source: {{ git: {{ url: {url}, ref: v1 }} }}")),
        ],
    );
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    let app = target_of(&plan, "app");
    assert_eq!(app["source"]["commit"], repo.first.as_str(), "{plan:#}");
    assert_eq!(app["source"]["ref"], "v1");
    assert_eq!(plan["source"]["commit"], Value::Null);
    assert_eq!(target_of(&plan, "side")["exit_code"], 0);
}

// -- 9. a hanging plugin -------------------------------------------------------

#[test]
fn a_hanging_list_command_times_out_quickly() {
    let fx = Fixture::new();
    fx.desired("slow", json!([]));
    fx.desired("fine", json!([{"id": "user/f"}]));
    fx.live("fine", json!([{"id": "user/f"}]));
    // The plugin starts a child of its own that holds stdout: both must die.
    fx.config(&[
        target("slow")
            .command("[sh, -c, \"sleep 30 & echo $! > child.pid; wait\"]")
            .conn("timeout: 300ms"),
        target("fine"),
    ]);
    let started = Instant::now();
    let (code, plan) = fx.json_plan(&[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{plan:#}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let error = target_of(&plan, "slow")["error"].as_str().unwrap().to_string();
    assert!(error.contains("timed out after 300ms"), "{error}");
    assert!(error.contains("sleep 30"), "{error}");
    assert_eq!(target_of(&plan, "fine")["exit_code"], 0);
    let child = fx.read("child.pid").trim().to_string();
    assert!(!process_runs(&child), "the plugin's child {child} outlived the timeout");
}

/// Whether process `pid` exists and is not a zombie.
fn process_runs(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

// -- 10.-14. apply's guards --------------------------------------------------

#[test]
fn apply_refuses_a_plan_bigger_than_max_changes() {
    let fx = Fixture::new();
    let app = drifting_app(&fx, "mode: reconcile\nmax_changes: 1\n");
    fx.config(&[app]);
    let live_before = fx.read("live/app.json");
    let out = fx.run(&["apply", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("more than max_changes 1"), "{}", both(&out));
    assert!(fx.applied("app").is_empty());
    assert_eq!(fx.read("live/app.json"), live_before);
}

#[test]
fn apply_refuses_to_prune_everything_when_the_desired_state_is_empty() {
    let fx = Fixture::new();
    // The directory exists but holds no document.
    fx.write("desired/app/README.txt", "nothing here yet\n");
    fx.live("app", json!([{"id": "user/a"}, {"id": "user/b"}]));
    fx.config(&[target("app").conn("authoritative: true").policy(RECONCILE_PRUNE)]);
    fx.plumb(&["plan"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("- user/a (delete)"));
    let live_before = fx.read("live/app.json");
    let out = fx.run(&["apply", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("desired state of app is empty"), "{}", both(&out));
    assert!(fx.applied("app").is_empty());
    assert_eq!(fx.read("live/app.json"), live_before);
}

#[test]
fn audit_mode_and_plan_never_write() {
    let fx = Fixture::new();
    let audit = drifting_app(&fx, "mode: audit\n");
    fx.config(std::slice::from_ref(&audit));
    fx.plumb(&["plan"]).assert().code(2);
    let out = fx.run(&["apply", "--auto-approve"]);
    assert_code(&out, 2);
    assert!(stdout(&out).contains("policy mode is audit"), "{}", both(&out));
    // No policy at all is audit too.
    let mut no_policy = audit;
    no_policy.policy = None;
    fx.config(&[no_policy]);
    fx.plumb(&["apply", "--auto-approve"]).assert().code(2);
    // Reconcile, but suspended (break-glass): audits go on, nothing is written.
    fx.config(&[target("app")
        .policy("mode: reconcile\nsuspend:\n  until: 2099-01-01T00:00:00Z\n  reason: \"INC-1050 freeze\"\n")]);
    fx.plumb(&["apply", "--auto-approve"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("suspended").and(predicate::str::contains("INC-1050 freeze")));
    // Reconcile allowed, but plan and dry runs are read-only.
    fx.config(&[target("app").policy(RECONCILE_PRUNE)]);
    fx.plumb(&["plan"]).assert().code(2);
    fx.plumb(&["apply", "--dry-run", "--auto-approve"]).assert().code(2);
    assert!(fx.applied("app").is_empty());
    // ... while apply does write: the plugin is wired correctly.
    fx.plumb(&["apply", "--auto-approve"]).assert().code(0);
    assert_eq!(fx.applied("app").len(), 2);
    fx.plumb(&["plan"]).assert().code(0);
}

#[test]
fn apply_without_a_terminal_refuses_unless_auto_approved() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    let live_before = fx.read("live/app.json");
    let out = fx.plumb(&["apply"]).write_stdin("yes\n").output().unwrap();
    assert_code(&out, 1);
    assert!(stderr(&out).contains("--auto-approve"), "{}", both(&out));
    assert!(fx.applied("app").is_empty());
    assert_eq!(fx.read("live/app.json"), live_before);
}

#[test]
fn apply_dry_run_shows_what_policy_allows_and_exits_like_plan() {
    let fx = Fixture::new();
    fx.desired(
        "app",
        json!([{"id": "user/a", "role": "admin"}, {"id": "user/b", "role": "dev"}]),
    );
    fx.live(
        "app",
        json!([{"id": "user/a", "role": "owner"}, {"id": "user/c", "role": "dev"}]),
    );
    fx.desired("ok", json!([{"id": "user/o"}]));
    fx.live("ok", json!([{"id": "user/o"}]));
    fx.config(&[
        target("app").conn("authoritative: true").policy(RECONCILE),
        target("ok").policy(RECONCILE),
    ]);
    let out = fx.run(&["apply", "--dry-run"]);
    assert_code(&out, 2);
    let text = stdout(&out);
    assert!(text.contains("allow  update user/a"), "{text}");
    assert!(text.contains("allow  create user/b"), "{text}");
    assert!(
        text.contains("refuse delete user/c (deleting needs `prune: true`"),
        "{text}"
    );
    assert!(text.contains("ok: nothing to do"), "{text}");
    assert!(fx.applied("app").is_empty());

    fx.plumb(&["apply", "--dry-run", "--target", "ok"]).assert().code(0);
    // An error wins.
    fx.write("desired/ok/bad.yaml", "id: [\n");
    fx.plumb(&["apply", "--dry-run"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("ok: error"));
    assert!(fx.applied("app").is_empty());
}

// -- 12. saved plans ------------------------------------------------------------

#[test]
fn apply_plan_applies_exactly_the_saved_plan() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    fx.plumb(&["plan", "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());
    let saved: Value = serde_json::from_str(&fx.read("plan.json")).unwrap();
    let saved_ids = change_ids(target_of(&saved, "app"));
    assert_eq!(saved_ids, ["user/a", "user/b"]);

    fx.plumb(&["apply", "--plan", "plan.json", "--auto-approve"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Apply complete: 2 applied"));
    let applied = fx.applied("app");
    let got: Vec<(String, String)> = applied
        .iter()
        .map(|c| (c["id"].as_str().unwrap().into(), c["action"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        got,
        [
            ("user/a".to_string(), "update".to_string()),
            ("user/b".into(), "create".into())
        ]
    );
    assert_eq!(applied[0]["live_version"], "1");
    assert_eq!(applied[0]["desired"], json!({"id": "user/a", "role": "admin"}));
    assert_eq!(applied[0]["target"], "app");
    fx.plumb(&["plan"]).assert().code(0);
}

#[test]
fn apply_plan_leaves_out_what_the_plan_did_not_have() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    fx.plumb(&["plan", "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);
    // Git gained a document after the plan was made.
    fx.write("desired/app/late.yaml", "id: user/late\nrole: dev\n");
    fx.plumb(&["apply", "--plan", "plan.json", "--auto-approve"])
        .assert()
        .code(0);
    let ids: Vec<Value> = fx.applied("app").iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids, [json!("user/a"), json!("user/b")]);
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 2);
    assert_eq!(change_ids(target_of(&plan, "app")), ["user/late"]);
}

#[test]
fn apply_plan_refuses_when_a_live_object_moved() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    fx.plumb(&["plan", "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);

    // Someone edits the object by hand between plan and apply.
    fx.live(
        "app",
        json!([{"id": "user/a", "role": "root", "$meta": {"version": "2"}}]),
    );
    let out = fx.run(&["apply", "--plan", "plan.json", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(both(&out).contains("user/a: the live object changed"), "{}", both(&out));
    assert!(fx.applied("app").is_empty());

    // Only the version token moved: still refused.
    fx.live(
        "app",
        json!([{"id": "user/a", "role": "owner", "$meta": {"version": "2"}}]),
    );
    let out = fx.run(&["apply", "--plan", "plan.json", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(both(&out).contains("user/a: the live object changed"), "{}", both(&out));
    assert!(fx.applied("app").is_empty());

    // Back as planned: applies.
    fx.live(
        "app",
        json!([{"id": "user/a", "role": "owner", "$meta": {"version": "1"}}]),
    );
    fx.plumb(&["apply", "--plan", "plan.json", "--auto-approve"])
        .assert()
        .code(0);
    assert_eq!(fx.applied("app").len(), 2);
}

#[test]
fn apply_plan_refuses_when_the_git_branch_moved() {
    let fx = Fixture::new();
    let repo = git_repo(&fx);
    fx.live("app", json!([{"id": "user/a", "role": "old"}]));
    fx.config_with(
        &git_source(repo.path.to_str().unwrap(), "main"),
        &[target("app").policy(RECONCILE)],
    );
    fx.plumb(&["plan", "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);
    let saved: Value = serde_json::from_str(&fx.read("plan.json")).unwrap();
    assert_eq!(saved["source"]["commit"], repo.second.as_str());

    let third = commit_role(&repo.path, "third", "Move on to a third role");
    let out = fx.run(&["apply", "--plan", "plan.json", "--auto-approve"]);
    assert_code(&out, 1);
    let all = both(&out);
    assert!(all.contains("the source moved"), "{all}");
    assert!(all.contains(&repo.second), "{all}");
    assert!(all.contains(&third), "{all}");
    assert!(fx.applied("app").is_empty());
    assert!(fx.read("live/app.json").contains("\"old\""));

    // A fresh plan at the new commit applies, with that commit passed on.
    fx.plumb(&["plan", "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);
    fx.plumb(&["apply", "--plan", "plan.json", "--auto-approve"])
        .assert()
        .code(0);
    let applied = fx.applied("app");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0]["desired"]["role"], "third");
    assert_eq!(applied[0]["commit"], third.as_str());
}

#[test]
fn apply_plan_made_from_a_source_dir_checks_that_directory_again() {
    let fx = Fixture::new();
    let repo = git_repo(&fx);
    fx.live("app", json!([{"id": "user/a", "role": "old"}]));
    fx.config_with(
        &git_source(repo.path.to_str().unwrap(), "main"),
        &[target("app").policy(RECONCILE)],
    );
    // A pull request's checkout: differs from main.
    let pr = fx.path("pr");
    std::fs::create_dir_all(pr.join("app")).unwrap();
    std::fs::write(pr.join("app/users.yaml"), "id: user/a\nrole: from-pr\n").unwrap();
    let pr_dir = pr.to_str().unwrap();
    fx.plumb(&["plan", "--source-dir", pr_dir, "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);
    fx.plumb(&["apply", "--plan", "plan.json", "--auto-approve"])
        .assert()
        .code(0);
    let applied = fx.applied("app");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0]["desired"]["role"], "from-pr");

    // The directory changed after the plan: refused, naming the document.
    fx.live("app", json!([{"id": "user/a", "role": "old"}]));
    fx.plumb(&["plan", "--source-dir", pr_dir, "--format", "json", "--out", "plan.json"])
        .assert()
        .code(2);
    std::fs::write(pr.join("app/users.yaml"), "id: user/a\nrole: edited\n").unwrap();
    let out = fx.run(&["apply", "--plan", "plan.json", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(
        both(&out).contains("user/a: the desired document changed"),
        "{}",
        both(&out)
    );
    assert_eq!(fx.applied("app").len(), 1);
}

// -- 15.-17. outputs --------------------------------------------------------------

#[test]
fn the_json_plan_has_every_field_of_the_spec() {
    let fx = Fixture::new();
    fx.desired(
        "app",
        json!([{"id": "user/a", "role": "admin", "shell": "bash"}, {"id": "user/b"}]),
    );
    fx.live(
        "app",
        json!([
            {"id": "user/a", "role": "owner", "shell": "zsh",
             "$meta": {"version": "7", "changed_by": {"who": "mallory", "when": "2026-01-02T03:04:05Z"}}},
            {"id": "user/stray"}
        ]),
    );
    fx.config(&[target("app").policy(
        "ignore:\n  - id: user/a\n    paths: [/shell]\n    reason: \"INC-7: shells are migrating\"\n    until: 2099-12-31\n",
    )]);
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 2, "{plan:#}");

    let has = |obj: &Value, keys: &[&str], what: &str| {
        let map = obj
            .as_object()
            .unwrap_or_else(|| panic!("{what} is not an object: {obj}"));
        for k in keys {
            assert!(map.contains_key(*k), "{what} lacks {k}: {obj:#}");
        }
    };
    has(
        &plan,
        &[
            "format_version",
            "plumb_version",
            "source",
            "started_at",
            "finished_at",
            "exit_code",
            "targets",
        ],
        "plan",
    );
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["plumb_version"], env!("CARGO_PKG_VERSION"));
    has(&plan["source"], &["url", "ref", "commit"], "source");
    for t in ["started_at", "finished_at"] {
        let s = plan[t].as_str().unwrap();
        assert!(
            s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T'),
            "{t} is not RFC 3339: {s}"
        );
    }
    assert_eq!(plan["exit_code"], 2);
    let t = target_of(&plan, "app");
    has(
        t,
        &[
            "name",
            "provider",
            "exit_code",
            "error",
            "summary",
            "changes",
            "findings",
            "acknowledged",
        ],
        "target",
    );
    assert_eq!(t["provider"], "exec");
    assert_eq!(t["error"], Value::Null);
    assert_eq!(
        t["summary"],
        json!({"in_sync": 0, "create": 1, "update": 1, "delete": 0, "unmanaged": 1})
    );
    assert!(t["findings"].is_array());
    let changes = t["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    for c in changes {
        has(c, &["id", "kind", "action", "diff", "paths", "changed_by"], "change");
        assert!(c["diff"].is_string() && c["paths"].is_array(), "{c:#}");
        if let Some(by) = c.get("confirmed_by") {
            assert!(
                ["offline", "dry-run", "unconfirmed"].contains(&by.as_str().unwrap()),
                "{c:#}"
            );
        }
    }
    let a = changes.iter().find(|c| c["id"] == "user/a").unwrap();
    assert_eq!(a["kind"], "user");
    assert_eq!(a["action"], "update");
    assert_eq!(a["paths"], json!(["/role"]));
    assert_eq!(
        a["changed_by"],
        json!({"who": "mallory", "when": "2026-01-02T03:04:05Z"})
    );
    let actions: Vec<&str> = changes.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"create") && actions.contains(&"unmanaged"),
        "{actions:?}"
    );
    let ack = &t["acknowledged"].as_array().unwrap()[0];
    has(ack, &["id", "paths", "reason", "until"], "acknowledged");
    assert_eq!(ack["id"], "user/a");
    assert_eq!(ack["paths"], json!(["/shell"]));
    assert_eq!(ack["reason"], "INC-7: shells are migrating");

    // A failed target still has every field.
    fx.write("desired/app/bad.yaml", "id: [\n");
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 1);
    let t = target_of(&plan, "app");
    has(
        t,
        &[
            "name",
            "provider",
            "exit_code",
            "error",
            "summary",
            "changes",
            "findings",
            "acknowledged",
        ],
        "failed target",
    );
    assert!(t["error"].is_string());
    has(
        &t["summary"],
        &["in_sync", "create", "update", "delete", "unmanaged"],
        "summary",
    );
}

#[test]
fn markdown_of_a_huge_plan_stays_within_githubs_limit() {
    let fx = Fixture::new();
    let big_desired = "a".repeat(200_000);
    let big_live = "b".repeat(200_000);
    fx.desired("big", json!([{"id": "doc/huge", "text": big_desired}]));
    fx.live("big", json!([{"id": "doc/huge", "text": big_live}]));
    let many: Vec<Value> = (0..3000)
        .map(|i| json!({"id": format!("doc/{i:04}"), "n": i}))
        .collect();
    let many_live: Vec<Value> = (0..3000)
        .map(|i| json!({"id": format!("doc/{i:04}"), "n": i + 1}))
        .collect();
    fx.desired("many", Value::Array(many));
    fx.live("many", Value::Array(many_live));
    fx.config(&[target("big"), target("many")]);

    for selection in [&["--target", "big"][..], &["--target", "many"], &[]] {
        let mut args = vec!["plan", "--format", "markdown"];
        args.extend_from_slice(selection);
        let out = fx.run(&args);
        assert_code(&out, 2);
        let md = stdout(&out);
        assert!(
            md.chars().count() < 65_536,
            "{selection:?}: {} chars",
            md.chars().count()
        );
        assert!(md.contains("| target | provider | status |"), "{selection:?}");
        // A huge value is clipped to a line with a note; many changes are
        // cut at the section boundary with a note.
        if selection.is_empty() || selection[1] == "many" {
            assert!(
                md.contains("cut to stay within GitHub's comment limit"),
                "{selection:?}"
            );
        }
        if selection.is_empty() || selection[1] == "big" {
            assert!(
                md.contains("more characters; the whole value is in the JSON plan"),
                "{selection:?}"
            );
        }
        if selection.is_empty() || selection[1] == "big" {
            assert!(md.contains("| big | exec | ⚠️ drift | 0 | 1 | 0 | 0 | 0 |"), "{md}");
        }
        if selection.is_empty() || selection[1] == "many" {
            assert!(
                md.contains("| many | exec | ⚠️ drift | 0 | 3000 | 0 | 0 | 0 |"),
                "{}",
                md.chars().take(2000).collect::<String>()
            );
        }
    }
}

#[test]
fn text_has_no_colour_off_a_terminal_and_metrics_are_written() {
    let fx = Fixture::new();
    fx.desired("app", json!([{"id": "user/a", "role": "admin"}, {"id": "user/n"}]));
    fx.live("app", json!([{"id": "user/a", "role": "owner"}]));
    fx.desired("quiet", json!([{"id": "user/q"}]));
    fx.live("quiet", json!([{"id": "user/q"}]));
    fx.config(&[target("app").line("labels: { team: identity }"), target("quiet")]);
    // A stale file is replaced whole.
    fx.write("metrics/m.prom", "garbage that is not a metric\n");

    let out = fx.run(&["plan", "--metrics-file", "metrics/m.prom"]);
    assert_code(&out, 2);
    let text = stdout(&out);
    assert!(text.contains("~ user/a (update)"), "{text}");
    assert!(text.contains("+ user/n (create)"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI codes in {text:?}");
    assert!(!stderr(&out).contains('\x1b'), "ANSI codes in stderr");

    let metrics = fx.read("metrics/m.prom");
    assert!(!metrics.contains("garbage"));
    // Every line is a comment or `name{labels} value`.
    let mut samples = Vec::new();
    for line in metrics.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        assert!(!series.contains('{') || series.ends_with('}'), "bad labels in {line:?}");
        samples.push((series.to_string(), value));
    }
    let find = |name: &str, labels: &[&str]| -> f64 {
        samples
            .iter()
            .find(|(s, _)| s.starts_with(&format!("{name}{{")) && labels.iter().all(|l| s.contains(l)))
            .unwrap_or_else(|| panic!("no {name} with {labels:?} in\n{metrics}"))
            .1
    };
    assert_eq!(
        find(
            "plumb_plan_exit_code",
            &["target=\"app\"", "provider=\"exec\"", "team=\"identity\""]
        ),
        2.0
    );
    assert_eq!(find("plumb_plan_exit_code", &["target=\"quiet\"", "team=\"\""]), 0.0);
    assert_eq!(
        find("plumb_drifted_resources", &["target=\"app\"", "action=\"create\""]),
        1.0
    );
    assert_eq!(
        find("plumb_drifted_resources", &["target=\"app\"", "action=\"update\""]),
        1.0
    );
    assert_eq!(find("plumb_managed_resources", &["target=\"quiet\""]), 1.0);
    assert!(find("plumb_drift_since_timestamp_seconds", &["target=\"app\""]) > 1.6e9);
    assert_eq!(find("plumb_drift_since_timestamp_seconds", &["target=\"quiet\""]), 0.0);
    assert!(find("plumb_last_run_timestamp_seconds", &["target=\"quiet\""]) > 1.6e9);
    assert_eq!(
        find(
            "plumb_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Atomic: nothing but the file is left in its directory.
    let entries: Vec<_> = std::fs::read_dir(fx.path("metrics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, ["m.prom"]);

    // Drift keeps the time it was first seen across runs (and restarts)...
    let state_file = fx.path("state/target-state.json");
    let mut state: Value = serde_json::from_str(&fx.read("state/target-state.json")).unwrap();
    state["targets"]["app"]["drift_since"] = json!(1_700_000_000);
    std::fs::write(&state_file, state.to_string()).unwrap();
    fx.plumb(&["plan", "--metrics-file", "metrics/m.prom"]).assert().code(2);
    let metrics = fx.read("metrics/m.prom");
    assert!(
        metrics.contains("plumb_drift_since_timestamp_seconds{target=\"app\",team=\"identity\"} 1700000000"),
        "{metrics}"
    );
    // ... until it is gone.
    fx.live("app", json!([{"id": "user/a", "role": "admin"}, {"id": "user/n"}]));
    fx.plumb(&["plan", "--metrics-file", "metrics/m.prom"]).assert().code(0);
    let metrics = fx.read("metrics/m.prom");
    assert!(
        metrics.contains("plumb_drift_since_timestamp_seconds{target=\"app\",team=\"identity\"} 0"),
        "{metrics}"
    );

    // An error shows in the gauges.
    fx.write("desired/quiet/bad.yaml", "id: [\n");
    fx.plumb(&["plan", "--metrics-file", "metrics/m.prom"]).assert().code(1);
    let metrics = fx.read("metrics/m.prom");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("plumb_plan_exit_code{") && l.contains("target=\"quiet\"") && l.ends_with(" 1")),
        "{metrics}"
    );
}

// -- 18. secrets -----------------------------------------------------------------

#[test]
fn sensitive_values_never_appear_in_any_output() {
    let fx = Fixture::new();
    fx.desired(
        "vault",
        json!([
            {"id": "account/svc", "password": DESIRED_SECRET, "owner": "ops",
             "tokens": {"ci": format!("{DESIRED_SECRET}-ci"), "deploy": "same-token-Pp09"}},
            {"id": "account/new", "password": DESIRED_SECRET}
        ]),
    );
    fx.live(
        "vault",
        json!([{"id": "account/svc", "password": LIVE_SECRET, "owner": "ops",
                "tokens": {"ci": format!("{LIVE_SECRET}-ci"), "deploy": "same-token-Pp09"}}]),
    );
    fx.config(&[target("vault")
        .conn("sensitive_paths: [/password, /tokens/*]")
        .policy(RECONCILE)]);

    let mut seen = String::new();
    let mut run = |args: &[&str], expected: i32| {
        let mut all = args.to_vec();
        all.extend(["--log-level", "trace"]);
        let out = fx.run(&all);
        assert_code(&out, expected);
        seen.push_str(&both(&out));
        stdout(&out)
    };
    let text = run(&["plan"], 2);
    assert!(text.contains("(sensitive, hmac-sha256:"), "{text}");
    let json_text = run(&["plan", "--format", "json"], 2);
    let plan: Value = serde_json::from_str(&json_text).unwrap();
    let svc = target_of(&plan, "vault")["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "account/svc")
        .unwrap()
        .clone();
    // The changed secret is a change of /password, shown as two different HMACs.
    assert_eq!(svc["paths"], json!(["/password", "/tokens/ci"]), "{svc:#}");
    let diff = svc["diff"].as_str().unwrap();
    let masked: Vec<&str> = diff
        .lines()
        .filter(|l| l.contains("password: (sensitive, hmac-sha256:"))
        .collect();
    assert_eq!(masked.len(), 2, "{diff}");
    assert_ne!(masked[0][1..], masked[1][1..], "{diff}");
    run(&["plan", "--format", "markdown"], 2);
    run(
        &[
            "plan",
            "--format",
            "json",
            "--out",
            "saved.json",
            "--metrics-file",
            "m.prom",
        ],
        2,
    );
    run(&["apply", "--dry-run"], 2);
    run(&["validate", "--live"], 0);

    for (what, text) in [
        ("outputs", seen.clone()),
        ("saved plan", fx.read("saved.json")),
        ("metrics", fx.read("m.prom")),
    ] {
        assert!(!text.contains(DESIRED_SECRET), "{what} shows the desired secret");
        assert!(!text.contains(LIVE_SECRET), "{what} shows the live secret");
        assert!(!text.contains("same-token-Pp09"), "{what} shows an unchanged secret");
    }
    assert!(fx.applied("vault").is_empty());
    // The apply plugin is one of the two places that must see it in clear.
    let out = fx.run(&["apply", "--auto-approve", "--log-level", "trace"]);
    assert_code(&out, 0);
    assert!(!both(&out).contains(DESIRED_SECRET) && !both(&out).contains(LIVE_SECRET));
    let applied = fx.applied("vault");
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0]["desired"]["password"], DESIRED_SECRET);
}

// -- 19.-22. other commands ----------------------------------------------------

#[test]
fn validate_reports_every_broken_target_and_runs_no_plugin() {
    let fx = Fixture::new();
    fx.write("desired/yaml/bad.yaml", "id: x\nrole: a: b\n");
    fx.desired("typo", json!([]));
    fx.desired("good", json!([{"id": "user/g"}]));
    // The list command would leave a mark if validate ran it.
    let mark = "[sh, -c, \"touch ran-list; cat live/good.json\"]";
    let targets = [
        target("yaml").command(mark).policy(RECONCILE),
        target("typo").command(mark).conn("sensitive_pahts: [/x]"),
        target("good").command(mark).policy(RECONCILE),
    ];
    fx.config(&targets);
    let out = fx.run(&["validate"]);
    assert_code(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("yaml: ") && text.contains("yaml/bad.yaml:2"), "{text}");
    assert!(text.contains("typo: ") && text.contains("sensitive_pahts"), "{text}");
    assert!(text.contains("good: ok"), "{text}");
    assert!(text.contains("2 of 3 target(s) have problems"), "{text}");

    fx.config(&targets[2..]);
    fx.plumb(&["validate"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("good: ok (1 desired document(s))"));
    assert!(!fx.path("ran-list").exists(), "validate ran the list command");
    assert!(fx.applied("good").is_empty());
    assert!(fx.applied("yaml").is_empty());

    // A broken policy is a problem too.
    fx.write("policies/good.yaml", "mode: reconcile\nprnue: true\n");
    fx.plumb(&["validate"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("prnue"));
}

#[test]
fn an_imported_target_plans_empty() {
    let fx = Fixture::new();
    fx.desired("dir", json!([]));
    fx.live(
        "dir",
        json!([
            {"id": "user/alice", "groups": ["sre", "oncall"], "admin": true,
             "$meta": {"version": "3", "changed_by": {"who": "bob"}}},
            {"id": "group/sre", "members": [{"login": "alice", "role": "lead"}]},
            {"id": "odd id/with spaces:and:colons", "n": 1.5, "nothing": null}
        ]),
    );
    fx.config(&[target("dir").conn("authoritative: true")]);
    fx.plumb(&["plan"]).assert().code(2);
    fx.plumb(&["import", "--target", "dir", "--out", "imported/dir"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Imported 3 live document(s)"));
    let alice = fx.read("imported/dir/user/alice.yaml");
    assert!(alice.contains("admin: true") && !alice.contains("meta"), "{alice}");

    let (code, plan) = fx.json_plan(&["--source-dir", fx.path("imported").to_str().unwrap()]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(target_of(&plan, "dir")["summary"]["in_sync"], 3);
    assert!(fx.applied("dir").is_empty());
}

#[test]
fn the_demo_shows_every_kind_of_change() {
    let fx = Fixture::new();
    let out = fx
        .bare()
        .args(["demo", "--once", "--dir"])
        .arg(fx.path("demo"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = stdout(&out);
    for needle in [
        "+ user/carol (create)",
        "~ user/alice (update)",
        "- user/dave (delete)",
        "? service/debug-shell (unmanaged)",
        "(sensitive, hmac-sha256:",
        // The simulators, with hand-made drift of each kind.
        "cluster (kubernetes): drift",
        "~ apps/v1/Deployment/shop/cart (update), last changed by kubectl-set",
        "paths: /spec/template/spec/containers[name=cart]/image",
        "+ core/v1/Service/shop/cart (create)",
        "? apps/v1/Deployment/shop/debug-shell (unmanaged)",
        "~ core/v1/Secret/shop/cart-db (update), last changed by kubectl-edit",
        "dashboards (grafana): drift",
        "~ dashboard/cart-latency (update), last changed by alice",
        "? dashboard/scratch (unmanaged)",
        "rules (prometheus): drift",
        "~ rule/shop/cart/CartHighErrorRate (update)",
        "github (github): drift",
        "- github/acme/member/mallory (delete)",
        "~ github/acme/team/platform/member/carol (update)",
        "github/acme/outside-collaborator/eve",
        "Plan: 2 to create, 7 to update, 2 to delete, 3 unmanaged.",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert!(!text.contains("alice-key-LEAKED"), "{text}");
    for secret in ["hunter2", "aHVudGVyMg", "correct-horse", "Y29ycmVjdC1ob3Jz"] {
        assert!(!text.contains(secret), "secret {secret} in\n{text}");
    }
    assert!(!text.contains('\x1b'));
}

#[test]
fn plumb_config_names_the_config_when_c_is_not_given() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    let elsewhere = fx.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    fx.bare()
        .current_dir(&elsewhere)
        .args(["plan"])
        .env("PLUMB_CONFIG", fx.path("plumb.yaml"))
        .assert()
        .code(2)
        .stdout(predicate::str::contains("~ user/a (update)"));
    // Neither: ./plumb.yaml, which is not there.
    fx.bare()
        .current_dir(&elsewhere)
        .args(["plan"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("plumb.yaml"));
    // -c wins over the variable.
    fx.bare()
        .current_dir(&elsewhere)
        .args(["plan", "-c"])
        .arg(fx.path("plumb.yaml"))
        .env("PLUMB_CONFIG", elsewhere.join("missing.yaml"))
        .assert()
        .code(2);
    fx.bare()
        .current_dir(&elsewhere)
        .args(["validate"])
        .env("PLUMB_CONFIG", elsewhere.join("missing.yaml"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("missing.yaml"));
}

// -- policy and apply outcomes -----------------------------------------------------

#[test]
fn policy_decides_what_counts_as_drift() {
    let fx = Fixture::new();
    fx.desired("app", json!([{"id": "user/a"}]));
    fx.live("app", json!([{"id": "user/a"}, {"id": "user/stray", "x": 1}]));
    let cases = [
        ("unmanaged: drift\n", 2, 1, 0),
        ("unmanaged: finding\n", 0, 0, 1),
        ("unmanaged: ignore\n", 0, 0, 0),
    ];
    for (policy, exit, unmanaged, findings) in cases {
        fx.config(&[target("app").policy(policy)]);
        let (code, plan) = fx.json_plan(&[]);
        let t = target_of(&plan, "app");
        assert_eq!(code, exit, "{policy}: {plan:#}");
        assert_eq!(t["summary"]["unmanaged"], unmanaged, "{policy}: {plan:#}");
        assert_eq!(t["findings"].as_array().unwrap().len(), findings, "{policy}: {plan:#}");
    }

    // An acknowledgement holds until its date, then the drift is back.
    let ack = |until: &str| format!("ignore:\n  - id: user/stray\n    reason: \"INC-9 cleanup\"\n    until: {until}\n");
    fx.config(&[target("app").policy(&ack("2099-12-31"))]);
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(target_of(&plan, "app")["acknowledged"][0]["status"], "in_force");
    fx.config(&[target("app").policy(&ack("2001-01-01"))]);
    let (code, plan) = fx.json_plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    let t = target_of(&plan, "app");
    assert_eq!(t["acknowledged"][0]["status"], "expired");
    assert_eq!(change_ids(t), ["user/stray"]);
}

#[test]
fn apply_fails_when_the_plugin_fails_or_nothing_converges() {
    let fx = Fixture::new();
    // The plugin fails on user/a and records the rest.
    let app = drifting_app(&fx, RECONCILE);
    let failing = "[sh, -c, \"if grep -q user/a; then echo cannot reach the directory >&2; exit 3; fi\"]";
    let text = fx.config(std::slice::from_ref(&app));
    fx.write(
        "plumb.yaml",
        &text.replace(
            "apply_command: [python3, plugins/record.py, live/app.json, log/app.log]",
            &format!("apply_command: {failing}"),
        ),
    );
    let out = fx.run(&["apply", "--auto-approve"]);
    assert_code(&out, 1);
    let text_out = stdout(&out);
    assert!(text_out.contains("FAILED  update user/a"), "{text_out}");
    assert!(text_out.contains("exited with status 3"), "{text_out}");
    assert!(text_out.contains("cannot reach the directory"), "{text_out}");
    // The failure of one change does not stop the next.
    assert!(text_out.contains("applied create user/b"), "{text_out}");

    // A plugin that says yes but changes nothing: the re-audit catches it.
    fx.write(
        "plumb.yaml",
        &text.replace("[python3, plugins/record.py, live/app.json, log/app.log]", "[\"true\"]"),
    );
    let out = fx.run(&["apply", "--auto-approve"]);
    assert_code(&out, 1);
    assert!(
        stdout(&out).contains("still differs after apply: user/a"),
        "{}",
        both(&out)
    );

    // The real plugin converges: 0, and then nothing is left.
    fx.config(&[app]);
    fx.plumb(&["apply", "--auto-approve"]).assert().code(0);
    fx.plumb(&["apply", "--auto-approve"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("app: nothing to do"));
    assert_eq!(fx.applied("app").len(), 2);
}

/// Runs `plumb ARGS` on a pseudo-terminal through util-linux `script`,
/// feeding `input`; None when `script` is not installed.
fn on_terminal(fx: &Fixture, args: &str, input: &str, no_color: bool) -> Option<Output> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let line = format!(
        "{} {args} -c {}",
        env!("CARGO_BIN_EXE_plumb"),
        fx.path("plumb.yaml").display()
    );
    let mut cmd = Command::new(script);
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(fx.root())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .write_stdin(input)
        .timeout(Duration::from_secs(60));
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    Some(cmd.output().unwrap())
}

#[test]
fn on_a_terminal_plan_is_coloured_and_apply_asks() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    let Some(out) = on_terminal(&fx, "plan", "", false) else {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    };
    assert_code(&out, 2);
    assert!(stdout(&out).contains("\x1b[33m~\x1b[0m user/a"), "{}", stdout(&out));
    let out = on_terminal(&fx, "plan", "", true).unwrap();
    assert_code(&out, 2);
    assert!(!stdout(&out).contains('\x1b'), "NO_COLOR ignored: {:?}", stdout(&out));

    // Anything but "yes" cancels.
    let out = on_terminal(&fx, "apply", "y\n", true).unwrap();
    assert_code(&out, 1);
    assert!(stdout(&out).contains("Only 'yes' will be accepted"), "{}", stdout(&out));
    assert!(fx.applied("app").is_empty());
    let out = on_terminal(&fx, "apply", "yes\n", true).unwrap();
    assert_code(&out, 0);
    assert_eq!(fx.applied("app").len(), 2);
}

// -- history -----------------------------------------------------------------

#[test]
fn recorded_plans_make_a_report_and_a_verifiable_chain() {
    let fx = Fixture::new();
    fx.config(&[drifting_app(&fx, RECONCILE)]);
    fx.plumb(&["plan", "--record"]).assert().code(2);
    fx.plumb(&["plan", "--record"]).assert().code(2);
    fx.plumb(&["apply", "--auto-approve", "--record"]).assert().code(0);
    fx.plumb(&["plan", "--record"]).assert().code(0);

    let out = fx.run(&["report", "--since", "1d", "--format", "json"]);
    assert_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = &report["targets"][0];
    assert_eq!(app["target"], "app");
    // The apply records its own audit too.
    assert_eq!(app["audits"], 4);
    assert_eq!(app["reconciles_applied"], 2);
    assert_eq!(app["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(app["incidents"][0]["resources"], json!(["user/a", "user/b"]));

    let md = fx.run(&["report", "--format", "markdown"]);
    assert!(stdout(&md).contains("| app | exec | 4 | 0 |"), "{}", stdout(&md));
    fx.plumb(&["report", "--format", "html", "--out", "report.html"])
        .assert()
        .code(0);
    assert!(fx.read("report.html").contains("<svg"));

    let verify = fx.run(&["report", "--verify"]);
    assert_code(&verify, 0);
    assert!(
        stdout(&verify).contains("verified 4 record(s) and 4 digest(s) of 1 target(s)"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains("app: records 1–4, 4 digest(s); vouched for through record 4"),
        "{}",
        stdout(&verify)
    );

    // The installation's public key, kept by an auditor, verifies; the key
    // of another installation does not, and is named.
    let own = fx.run(&["history", "public-key"]);
    assert_code(&own, 0);
    std::fs::write(fx.path("auditor.pub"), &own.stdout).unwrap();
    let with_key = fx.run(&["report", "--verify", "--public-key", "auditor.pub"]);
    assert_code(&with_key, 0);
    let elsewhere = Fixture::new();
    elsewhere.config(&[drifting_app(&elsewhere, RECONCILE)]);
    let foreign = elsewhere.run(&["history", "public-key"]);
    assert_code(&foreign, 0);
    assert_ne!(foreign.stdout, own.stdout);
    std::fs::write(fx.path("foreign.pub"), &foreign.stdout).unwrap();
    let refused = fx.run(&["report", "--verify", "--public-key", "foreign.pub", "--format", "json"]);
    assert_code(&refused, 1);
    let verdict: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(verdict["intact"], false);
    let own_id = String::from_utf8_lossy(&own.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let problem = &verdict["targets"][0]["problems"][0];
    assert_eq!(problem["kind"], "unknown_key");
    assert!(problem["message"].as_str().unwrap().contains(&own_id), "{problem}");

    // Remove the second record: named with its key, and verification goes
    // on to the end.
    std::fs::remove_file(fx.path("plumb-history/app/records/000000000002.json")).unwrap();
    let verify = fx.run(&["report", "--verify"]);
    assert_code(&verify, 1);
    let text = stdout(&verify);
    assert!(
        text.contains("PROBLEM app app/records/000000000002.json: removed: record 2 is gone"),
        "{text}"
    );
    assert!(text.contains("verified 3 record(s) and 4 digest(s)"), "{text}");
}

#[test]
fn the_demo_serves_until_terminated() {
    let fx = Fixture::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .current_dir(fx.root())
        .args(["demo", "--listen", &listen, "--dir"])
        .arg(fx.path("demo"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let metrics = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never served seven audited targets"
        );
        if let Some(text) = get("/metrics") {
            if text.matches("plumb_plan_exit_code{").count() == 7 {
                break text;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for target in ["cluster", "dashboards", "rules", "github", "accounts", "services"] {
        assert!(
            metrics.lines().any(|l| l.starts_with("plumb_plan_exit_code{")
                && l.contains(&format!("target=\"{target}\""))
                && l.ends_with(" 2")),
            "{target} not drifting in\n{metrics}"
        );
    }
    let page = get("/").unwrap();
    assert!(page.contains("apps/v1/Deployment/shop/cart"), "{page}");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exited with {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the demo did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
