//! End-to-end tests of the exec provider against little bash plugins written
//! into a temporary directory. Scripts are run as `bash <file>` rather than
//! executed directly, which avoids "text file busy" races when another test
//! thread forks while a script is still open for writing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plumb_exec::{build, ExecProvider, NAME};
use plumb_model::{
    Action, ApplyChange, Authority, ChangedBy, Ctx, Desired, ListKey, Outcome, Provider, ProviderError, Resource,
    Sensitivity,
};
use serde_json::{json, Value};
use tempfile::TempDir;

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn ctx() -> Ctx {
    let mut ctx = Ctx::new("plugins", "/nonexistent-cache");
    ctx.commit = Some("0123abcd".into());
    ctx
}

fn provider(connection: Value) -> ExecProvider {
    build(&connection, Path::new(".")).unwrap()
}

async fn live_of(connection: Value) -> Result<Vec<Resource>, ProviderError> {
    provider(connection)
        .live(&Desired::default(), &ctx())
        .await
        .map(|l| l.resources)
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn desired_of(p: &ExecProvider, root: &Path, dir: &Path) -> Result<Vec<Resource>, ProviderError> {
    p.desired(root, dir, &ctx()).map(|d| d.resources)
}

#[test]
fn name_is_exec() {
    assert_eq!(NAME, "exec");
}

// ---------------------------------------------------------------- connection

#[test]
fn unknown_connection_key_is_rejected_by_name() {
    let err = build(&json!({"command": ["x"], "comand_timeout": "5s"}), Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("comand_timeout"), "{err}");
    assert!(err.starts_with("connection:"), "{err}");
}

#[test]
fn missing_command_is_a_clear_config_error() {
    for connection in [Value::Null, json!({}), json!({"apply_command": ["x"]})] {
        let err = build(&connection, Path::new(".")).unwrap_err();
        assert!(matches!(err, ProviderError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("needs `command`"), "{err}");
    }
}

#[test]
fn list_keys_come_from_the_connection() {
    let p = provider(json!({
        "command": ["x"],
        "list_keys": [{"kind": "team", "path": "/members", "keys": ["login"]}]
    }));
    assert_eq!(p.list_keys(), vec![ListKey::new("team", "/members", &["login"])]);
    assert!(provider(json!({"command": ["x"]})).list_keys().is_empty());
}

// ---------------------------------------------------------------- live

#[tokio::test]
async fn live_reads_documents_meta_env_and_workdir() {
    let tmp = TempDir::new().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let list = script(
        tmp.path(),
        "list.sh",
        r#"cat <<EOF
[
  {"id": "user/alice", "role": "admin",
   "\$meta": {"version": "v7", "changed_by": {"who": "bob", "when": "2024-05-01T10:00:00Z"}}},
  {"id": "config", "kind": "settings", "region": "$REGION", "target": "$PLUMB_TARGET",
   "commit": "$PLUMB_COMMIT", "cwd": "$(pwd)", "arg": "$1"}
]
EOF"#,
    );
    let live = live_of(json!({
        "command": ["bash", list, "two words"],
        "env": {"REGION": "eu-west-1"},
        "workdir": work,
    }))
    .await
    .unwrap();
    assert_eq!(live.len(), 2);
    let alice = &live[0];
    assert_eq!(alice.id, "user/alice");
    assert_eq!(alice.kind, "user");
    assert_eq!(alice.body(), json!({"id": "user/alice", "role": "admin"}));
    assert_eq!(alice.version.as_deref(), Some("v7"));
    assert_eq!(
        alice.changed_by,
        Some(ChangedBy {
            who: "bob".into(),
            when: Some("2024-05-01T10:00:00Z".into())
        })
    );
    assert_eq!(alice.authority, Authority::Foreign);
    assert!(alice.origin.is_none());

    let config = &live[1];
    assert_eq!(config.kind, "settings");
    assert_eq!(config.body()["region"], "eu-west-1");
    assert_eq!(config.body()["target"], "plugins");
    assert_eq!(config.body()["commit"], "0123abcd");
    assert_eq!(config.body()["arg"], "two words");
    let cwd = PathBuf::from(config.body()["cwd"].as_str().unwrap());
    assert_eq!(cwd.canonicalize().unwrap(), work.canonicalize().unwrap());
}

#[cfg(unix)]
#[tokio::test]
async fn relative_program_is_found_in_workdir() {
    let tmp = TempDir::new().unwrap();
    // A symlink, not a freshly written executable, so no "text file busy".
    std::os::unix::fs::symlink(which("cat"), tmp.path().join("mycat")).unwrap();
    std::fs::write(tmp.path().join("live.json"), r#"[{"id": "x"}]"#).unwrap();
    let live = live_of(json!({"command": ["./mycat", "live.json"], "workdir": tmp.path()}))
        .await
        .unwrap();
    assert_eq!(live[0].id, "x");
}

#[cfg(unix)]
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap()
}

#[tokio::test]
async fn authoritative_and_sensitive_paths_mark_every_document() {
    let tmp = TempDir::new().unwrap();
    let list = script(tmp.path(), "list.sh", r#"echo '[{"id": "a", "password": "x"}]'"#);
    write(tmp.path(), "desired/a.yaml", "id: a\npassword: y\n");
    let p = provider(json!({
        "command": ["bash", list],
        "authoritative": true,
        "sensitive_paths": ["/password"],
    }));
    let live = p.live(&Desired::default(), &ctx()).await.unwrap().resources;
    let desired = desired_of(&p, tmp.path(), &tmp.path().join("desired")).unwrap();
    for r in [&live[0], &desired[0]] {
        assert_eq!(r.authority, Authority::Owned, "{}", r.id);
        assert_eq!(r.sensitive, Sensitivity::Paths(vec!["/password".into()]));
    }
}

#[tokio::test]
async fn live_command_gets_closed_stdin() {
    let tmp = TempDir::new().unwrap();
    // Would wait for input forever if stdin were inherited.
    let list = script(tmp.path(), "list.sh", "cat >/dev/null\necho '[]'");
    let started = Instant::now();
    let live = live_of(json!({"command": ["bash", list], "timeout": "5s"}))
        .await
        .unwrap();
    assert!(live.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn nonzero_exit_quotes_command_and_stderr() {
    let tmp = TempDir::new().unwrap();
    let list = script(
        tmp.path(),
        "fail.sh",
        "for i in $(seq 1 40); do echo \"noise $i\" >&2; done\necho 'cannot reach api.example.com: connection refused' >&2\nexit 3",
    );
    let err = live_of(json!({"command": ["bash", &list]})).await.unwrap_err();
    let ProviderError::Command {
        command,
        message,
        stderr,
    } = &err
    else {
        panic!("expected a Command error, got {err:?}")
    };
    assert!(command.contains("fail.sh"), "{command}");
    assert_eq!(message, "exited with status 3");
    assert!(
        stderr.ends_with("cannot reach api.example.com: connection refused"),
        "{stderr}"
    );
    // Only the tail: not the first noise lines.
    assert!(!stderr.contains("noise 1\n"), "{stderr}");
    assert!(stderr.lines().count() <= 20, "{stderr}");
    let text = err.to_string();
    assert!(text.contains("fail.sh exited with status 3: "), "{text}");
}

#[tokio::test]
async fn invalid_json_names_command_position_and_stderr() {
    let tmp = TempDir::new().unwrap();
    let list = script(
        tmp.path(),
        "bad.sh",
        "echo 'warning: token expires soon' >&2\nprintf '[\\n  {\"id\": \"a\"},\\n  {\"id\": oops}\\n]\\n'",
    );
    let err = live_of(json!({"command": ["bash", list]})).await.unwrap_err();
    let ProviderError::Command {
        command,
        message,
        stderr,
    } = &err
    else {
        panic!("expected a Command error, got {err:?}")
    };
    assert!(command.contains("bad.sh"), "{command}");
    assert!(message.contains("invalid JSON"), "{message}");
    assert!(message.contains("line 3, column"), "{message}");
    assert_eq!(stderr, "warning: token expires soon");
}

#[tokio::test]
async fn live_document_without_id_is_an_error() {
    let tmp = TempDir::new().unwrap();
    let list = script(tmp.path(), "list.sh", r#"echo '[{"id": "a"}, {"name": "b"}]'"#);
    let err = live_of(json!({"command": ["bash", list]}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("`id`"), "{err}");
}

#[tokio::test]
async fn hanging_command_is_killed_at_its_timeout() {
    let tmp = TempDir::new().unwrap();
    let pidfile = tmp.path().join("sleep.pid");
    // The script starts a grandchild that holds stdout open; the whole
    // process group must go.
    let list = script(
        tmp.path(),
        "hang.sh",
        &format!("sleep 30 &\necho $! > {}\nwait", pidfile.display()),
    );
    let started = Instant::now();
    let err = live_of(json!({"command": ["bash", list], "timeout": "300ms"}))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        ProviderError::Timeout { what, after } => {
            assert!(what.starts_with("command "), "{what}");
            assert!(what.contains("hang.sh"), "{what}");
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().ends_with("timed out after 300ms"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    #[cfg(target_os = "linux")]
    {
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let gone = (0..50).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it.
            let dead = state.is_empty() || state.contains(") Z");
            if !dead {
                std::thread::sleep(Duration::from_millis(100));
            }
            dead
        });
        assert!(gone, "the plugin's `sleep 30` (pid {pid}) survived the timeout");
    }
}

#[tokio::test]
async fn ctx_timeout_caps_the_connection_timeout() {
    let tmp = TempDir::new().unwrap();
    let list = script(tmp.path(), "hang.sh", "sleep 30");
    let p = provider(json!({"command": ["bash", list], "timeout": "10m"}));
    let mut ctx = ctx();
    ctx.timeout = Duration::from_millis(200);
    let err = p.live(&Desired::default(), &ctx).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_program_is_a_command_error_with_the_os_error() {
    let err = live_of(json!({"command": ["/nonexistent/plumb-plugin", "--list"]}))
        .await
        .unwrap_err();
    let ProviderError::Command { command, message, .. } = &err else {
        panic!("expected a Command error, got {err:?}")
    };
    assert_eq!(command, "/nonexistent/plumb-plugin --list");
    assert!(message.contains("could not be started"), "{message}");
    assert!(message.contains("No such file"), "{message}");
}

// ---------------------------------------------------------------- desired

#[test]
fn desired_reads_yaml_json_lists_and_multi_documents() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    write(
        root,
        "t/users.yaml",
        "- id: user/alice\n  role: admin\n- id: user/bob\n  role: member\n",
    );
    write(root, "t/sub/config.yml", "id: config\nkind: settings\n---\nid: other\n");
    write(root, "t/teams.json", r#"[{"id": "team/a", "members": ["alice"]}]"#);
    write(root, "t/one.json", r#"{"id": "solo"}"#);
    write(root, "t/notes.txt", "id: ignored");
    write(root, "t/.hidden/x.yaml", "id: hidden");
    let p = provider(json!({"command": ["x"]}));
    let desired = desired_of(&p, root, &root.join("t")).unwrap();
    let got: Vec<(&str, &str, String)> = desired
        .iter()
        .map(|r| (r.id.as_str(), r.kind.as_str(), r.origin.as_ref().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("solo", "document", "t/one.json:1".to_string()),
            ("config", "settings", "t/sub/config.yml:1".to_string()),
            ("other", "document", "t/sub/config.yml:4".to_string()),
            ("team/a", "team", "t/teams.json:1".to_string()),
            ("user/alice", "user", "t/users.yaml:1".to_string()),
            ("user/bob", "user", "t/users.yaml:3".to_string()),
        ]
    );
    assert_eq!(desired[4].body(), json!({"id": "user/alice", "role": "admin"}));
    assert!(desired.iter().all(|r| r.authority == Authority::Foreign));
}

#[test]
fn duplicate_ids_name_both_files() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    write(root, "t/a.yaml", "id: one\n---\nid: user/alice\n");
    write(root, "t/b/c.json", "{\n  \"id\": \"user/alice\"\n}\n");
    let p = provider(json!({"command": ["x"]}));
    let err = desired_of(&p, root, &root.join("t")).unwrap_err();
    let ProviderError::DuplicateId { id, first, second } = &err else {
        panic!("expected DuplicateId, got {err:?}")
    };
    assert_eq!(id, "user/alice");
    assert_eq!(first.to_string(), "t/a.yaml:3");
    assert_eq!(second.to_string(), "t/b/c.json:1");
    let text = err.to_string();
    assert!(text.contains("t/a.yaml:3") && text.contains("t/b/c.json:1"), "{text}");
}

#[test]
fn duplicate_ids_within_one_list_name_their_lines() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    write(
        root,
        "users.yaml",
        "# users\n- id: alice\n  role: a\n- id: bob\n- name: x\n  id: alice\n",
    );
    let p = provider(json!({"command": ["x"]}));
    let err = desired_of(&p, root, root).unwrap_err();
    let ProviderError::DuplicateId { first, second, .. } = &err else {
        panic!("expected DuplicateId, got {err:?}")
    };
    assert_eq!(first.to_string(), "users.yaml:2");
    assert_eq!(second.to_string(), "users.yaml:6");
}

#[test]
fn missing_id_names_file_and_line() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    write(root, "t/a.yaml", "id: fine\n---\n# second\nname: no-id\n");
    let p = provider(json!({"command": ["x"]}));
    let err = desired_of(&p, root, &root.join("t")).unwrap_err();
    let ProviderError::Parse { origin, message } = &err else {
        panic!("expected Parse, got {err:?}")
    };
    assert_eq!(origin.to_string(), "t/a.yaml:4");
    assert!(message.contains("`id`"), "{message}");
    assert!(err.to_string().starts_with("t/a.yaml:4: "), "{err}");

    // A non-string id, and a list item: the item number is named.
    write(root, "u/b.json", "[{\"id\": \"x\"}, {\"id\": 42}]");
    let err = desired_of(&p, root, &root.join("u")).unwrap_err().to_string();
    assert!(err.starts_with("u/b.json:1: list item 2: "), "{err}");
    assert!(err.contains("`id` must be a string"), "{err}");
}

#[test]
fn meta_is_refused_in_desired_state() {
    let tmp = TempDir::new().unwrap();
    write(tmp.path(), "a.yaml", "id: a\n$meta: {version: '1'}\n");
    let p = provider(json!({"command": ["x"]}));
    let err = desired_of(&p, tmp.path(), tmp.path()).unwrap_err().to_string();
    assert!(err.starts_with("a.yaml:1: "), "{err}");
    assert!(err.contains("$meta"), "{err}");
}

#[test]
fn bad_yaml_is_a_parse_error_with_file() {
    let tmp = TempDir::new().unwrap();
    write(tmp.path(), "a.yaml", "id: a\nlist: [unclosed\n");
    let p = provider(json!({"command": ["x"]}));
    let err = desired_of(&p, tmp.path(), tmp.path()).unwrap_err();
    assert!(matches!(err, ProviderError::Parse { .. }), "{err:?}");
    assert!(err.to_string().starts_with("a.yaml:"), "{err}");
}

// ---------------------------------------------------------------- apply

fn res(id: &str, body: Value) -> Resource {
    Resource::new(id, id.split('/').next().unwrap(), body)
}

fn change(id: &str, action: Action, desired: Option<Value>, live: Option<Value>) -> ApplyChange {
    ApplyChange {
        id: id.into(),
        action,
        desired: desired.map(|b| res(id, b)),
        live: live.map(|b| res(id, b)),
    }
}

fn log_entries(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn apply_sends_one_change_per_run_in_order() {
    let tmp = TempDir::new().unwrap();
    let log = tmp.path().join("applied.log");
    let apply = script(
        tmp.path(),
        "apply.sh",
        &format!("cat >> {log}\necho >> {log}\necho done", log = log.display()),
    );
    let p = provider(json!({"command": ["true"], "apply_command": ["bash", apply]}));
    let mut live_alice = res("user/alice", json!({"id": "user/alice", "role": "member"}));
    live_alice.version = Some("v7".into());
    let changes = vec![
        change(
            "user/carol",
            Action::Create,
            Some(json!({"id": "user/carol", "role": "admin"})),
            None,
        ),
        ApplyChange {
            id: "user/alice".into(),
            action: Action::Update,
            desired: Some(res("user/alice", json!({"id": "user/alice", "role": "admin"}))),
            live: Some(live_alice),
        },
        change("user/dave", Action::Delete, None, Some(json!({"id": "user/dave"}))),
    ];
    let results = p.apply(&changes, &ctx()).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let ids: Vec<_> = results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["user/carol", "user/alice", "user/dave"]);

    let entries = log_entries(&log);
    assert_eq!(
        entries,
        vec![
            json!({"id": "user/carol", "action": "create",
                   "desired": {"id": "user/carol", "role": "admin"}, "live": null,
                   "live_version": null, "target": "plugins", "commit": "0123abcd"}),
            json!({"id": "user/alice", "action": "update",
                   "desired": {"id": "user/alice", "role": "admin"},
                   "live": {"id": "user/alice", "role": "member"},
                   "live_version": "v7", "target": "plugins", "commit": "0123abcd"}),
            json!({"id": "user/dave", "action": "delete", "desired": null,
                   "live": {"id": "user/dave"}, "live_version": null,
                   "target": "plugins", "commit": "0123abcd"}),
        ]
    );
}

#[tokio::test]
async fn failing_apply_quotes_stderr_and_the_rest_still_runs() {
    let tmp = TempDir::new().unwrap();
    let log = tmp.path().join("applied.log");
    let apply = script(
        tmp.path(),
        "apply.sh",
        &format!(
            "input=$(cat)\nif [[ $input == *'\"id\":\"bad\"'* ]]; then echo 'permission denied for bad' >&2; exit 4; fi\necho \"$input\" >> {}",
            log.display()
        ),
    );
    let p = provider(json!({"command": ["true"], "apply_command": ["bash", apply]}));
    let changes = vec![
        change("bad", Action::Create, Some(json!({"id": "bad"})), None),
        change("good", Action::Create, Some(json!({"id": "good"})), None),
    ];
    let results = p.apply(&changes, &ctx()).await.unwrap();
    match &results[0].outcome {
        Outcome::Failed(message) => {
            assert!(message.contains("apply.sh"), "{message}");
            assert!(message.contains("exited with status 4"), "{message}");
            assert!(message.ends_with("permission denied for bad"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(results[1].outcome, Outcome::Applied);
    let entries = log_entries(&log);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], "good");
}

#[tokio::test]
async fn hanging_apply_fails_with_a_timeout_message() {
    let tmp = TempDir::new().unwrap();
    let apply = script(tmp.path(), "apply.sh", "sleep 30");
    let p = provider(json!({
        "command": ["true"], "apply_command": ["bash", apply], "timeout": "300ms"
    }));
    let started = Instant::now();
    let results = p
        .apply(&[change("a", Action::Create, Some(json!({"id": "a"})), None)], &ctx())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &results[0].outcome {
        Outcome::Failed(message) => {
            assert!(message.contains("apply.sh"), "{message}");
            assert!(message.ends_with("timed out after 300ms"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_without_apply_command_is_refused() {
    let p = provider(json!({"command": ["true"]}));
    let err = p
        .apply(&[change("a", Action::Create, Some(json!({"id": "a"})), None)], &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("exec target has no connection.apply_command; it can only be audited"),
        "{err}"
    );
}

#[tokio::test]
async fn unmanaged_changes_are_refused_not_passed_on() {
    let tmp = TempDir::new().unwrap();
    let log = tmp.path().join("applied.log");
    let apply = script(tmp.path(), "apply.sh", &format!("cat >> {}", log.display()));
    let p = provider(json!({"command": ["true"], "apply_command": ["bash", apply]}));
    let results = p
        .apply(
            &[change("x", Action::Unmanaged, None, Some(json!({"id": "x"})))],
            &ctx(),
        )
        .await
        .unwrap();
    assert!(matches!(results[0].outcome, Outcome::Refused(_)), "{results:?}");
    assert!(!log.exists(), "the plugin was called for an unmanaged object");
}

// ---------------------------------------------------------------- import

#[tokio::test]
async fn import_then_desired_reads_back_exactly_the_live_state() {
    let tmp = TempDir::new().unwrap();
    let list = script(
        tmp.path(),
        "list.sh",
        r#"cat <<'EOF'
[
  {"id": "user/alice", "role": "admin", "$meta": {"version": "3"}},
  {"id": "user/a b", "note": "clashes with user/a_b on disk"},
  {"id": "user/a_b"},
  {"id": "../../escape", "kind": "evil"},
  {"id": "/abs/path"},
  {"id": ".hidden"},
  {"id": "settings", "tricky": {
     "yes": "yes", "no": "no", "on": "on", "null": "null", "tilde": "~", "empty": "",
     "int_string": "123", "float_string": "1.5", "exp": "1e3", "hex": "0x1F", "date": "2024-01-01",
     "colon": "a: b", "hash": "a #b", "lead": " spaced ", "multi": "line1\nline2\n", "star": "*x",
     "<<": "merge key", "1": "numeric key", "true": 1, "unicode": "ünïcödé ✓",
     "numbers": [0, -1, 1.5, 1e300, 18446744073709551615, -9223372036854775808],
     "bools": [true, false], "nothing": null, "nested": [[], {}, [{"a": []}]]
  }}
]
EOF"#,
    );
    let p = provider(json!({"command": ["bash", list]}));
    let live = p.live(&Desired::default(), &ctx()).await.unwrap();
    let out = tmp.path().join("imported");
    let written = p.import(&live, &out, &ctx()).await.unwrap();
    assert_eq!(written.len(), live.resources.len());

    let canonical_out = out.canonicalize().unwrap();
    for path in &written {
        let canonical = path.canonicalize().unwrap();
        assert!(canonical.starts_with(&canonical_out), "{} escaped", path.display());
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("$meta"), "{text}");
    }
    assert!(out.join("user/alice.yaml").is_file());
    assert!(!tmp.path().join("escape.yaml").exists());

    let desired = desired_of(&p, &out, &out).unwrap();
    let mut want: Vec<(String, String, Value)> = live
        .resources
        .iter()
        .map(|r| (r.id.clone(), r.kind.clone(), r.body().clone()))
        .collect();
    let mut got: Vec<(String, String, Value)> = desired
        .iter()
        .map(|r| (r.id.clone(), r.kind.clone(), r.body().clone()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}

#[tokio::test]
async fn commands_run_in_the_config_directory_unless_workdir_says_otherwise() {
    let base = tempfile::tempdir().unwrap();
    write(base.path(), "live.json", r#"[{"id": "a/from-base"}]"#);
    write(base.path(), "sub/live.json", r#"[{"id": "a/from-sub"}]"#);
    let ids = |p: ExecProvider| async move {
        p.live(&Desired::default(), &ctx())
            .await
            .unwrap()
            .resources
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let default = build(&json!({"command": ["cat", "live.json"]}), base.path()).unwrap();
    assert_eq!(ids(default).await, vec!["a/from-base"]);
    let relative = build(&json!({"command": ["cat", "live.json"], "workdir": "sub"}), base.path()).unwrap();
    assert_eq!(ids(relative).await, vec!["a/from-sub"]);
}
