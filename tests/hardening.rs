//! Hostile input, as a pull request's author or an unlucky operator would
//! give it: symbolic links out of the desired state, paths that climb out
//! of the source. Each test ran against plumb before the fix and failed.

use std::path::Path;
use std::process::{Command, Output};

const OUTSIDE_SECRET: &str = "OUTSIDE-SECRET-Zz9";

fn plumb(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .arg("-c")
        .arg(root.join("plumb.yaml"))
        .current_dir(root)
        .env_remove("PLUMB_CONFIG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Replaces `from` by `to` in the fixture's plumb.yaml (which must hold it).
fn edit_config(root: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(root.join("plumb.yaml")).unwrap();
    assert!(text.contains(from), "plumb.yaml has no {from:?}");
    std::fs::write(root.join("plumb.yaml"), text.replace(from, to)).unwrap();
}

/// Two exec targets over `desired/app` and `desired/other`, in sync, and a
/// secret file outside the source.
fn setup(root: &Path) {
    for name in ["app", "other"] {
        std::fs::create_dir_all(root.join(format!("desired/{name}"))).unwrap();
        std::fs::write(root.join(format!("desired/{name}/a.yaml")), "id: a/x\nvalue: 1\n").unwrap();
        std::fs::write(root.join(format!("{name}.json")), "[{\"id\": \"a/x\", \"value\": 1}]").unwrap();
    }
    std::fs::create_dir_all(root.join("elsewhere")).unwrap();
    std::fs::write(
        root.join("elsewhere/secret.yaml"),
        format!("id: a/leak\nvalue: {OUTSIDE_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("plumb.yaml"),
        "source: { dir: ./desired }\nstate_dir: ./state\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    connection: { command: [cat, app.json] }\n  - name: other\n    provider: exec\n    path: other\n    connection: { command: [cat, other.json] }\n",
    )
    .unwrap();
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_source_is_an_error_naming_it_and_its_content_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    std::os::unix::fs::symlink("../../elsewhere/secret.yaml", root.join("desired/app/cm.yaml")).unwrap();
    for format in ["text", "json", "markdown"] {
        let out = plumb(root, &["plan", "--format", format]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{format}: {all}");
        assert!(
            !all.contains(OUTSIDE_SECRET),
            "{format}: the outside file was read:\n{all}"
        );
        assert!(
            all.contains("app/cm.yaml is a symbolic link to ../../elsewhere/secret.yaml"),
            "{format}: {all}"
        );
    }
    // The other target still ran, in sync.
    let out = plumb(root, &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["targets"][1]["name"], "other");
    assert_eq!(plan["targets"][1]["exit_code"], 0);

    // The same tree given as a pull request's checkout.
    let pr = root.join("pr");
    std::fs::create_dir_all(pr.join("app")).unwrap();
    std::fs::create_dir_all(pr.join("other")).unwrap();
    std::fs::write(pr.join("other/a.yaml"), "id: a/x\nvalue: 1\n").unwrap();
    std::os::unix::fs::symlink(root.join("elsewhere"), pr.join("app/linked")).unwrap();
    let out = plumb(root, &["plan", "--source-dir", "pr"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(OUTSIDE_SECRET), "{all}");
    assert!(all.contains("app/linked is a symbolic link to"), "{all}");

    // Links that stay inside the source are followed.
    std::fs::remove_file(root.join("desired/app/cm.yaml")).unwrap();
    std::fs::remove_file(root.join("desired/app/a.yaml")).unwrap();
    std::os::unix::fs::symlink("../other/a.yaml", root.join("desired/app/a.yaml")).unwrap();
    let out = plumb(root, &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_target_path_that_climbs_out_of_the_source_is_a_config_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    edit_config(root, "path: other", "path: other/../../..");
    let out = plumb(root, &["plan"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("plumb.yaml:10"), "{all}");
    assert!(
        all.contains("target other: path other/../../.. climbs out of the source"),
        "{all}"
    );
    assert!(!all.contains(OUTSIDE_SECRET), "{all}");
}

/// A configured API token whose variable is unset is a start-up error, not
/// an API open to anyone.
#[test]
fn serve_refuses_to_start_when_its_token_variable_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    edit_config(
        root,
        "state_dir: ./state\n",
        &format!(
            "state_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", token_env: PLUMB_UNSET_TOKEN_FOR_TESTS }}\n"
        ),
    );
    for value in [None, Some("")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plumb"));
        command.args(["serve", "-c"]).arg(root.join("plumb.yaml"));
        match value {
            None => command.env_remove("PLUMB_UNSET_TOKEN_FOR_TESTS"),
            Some(v) => command.env("PLUMB_UNSET_TOKEN_FOR_TESTS", v),
        };
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve started although its token variable is {value:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let all = text(&out);
        assert!(
            all.contains("server.token_env names PLUMB_UNSET_TOKEN_FOR_TESTS, which is not set or empty"),
            "{all}"
        );
    }
}

/// `import --out` refuses a non-empty directory without --force, and never
/// writes through a symbolic link, with --force or without.
#[cfg(unix)]
#[test]
fn import_never_writes_through_links_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let victim = root.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("x.yaml"), "precious\n").unwrap();

    // A file already there: refused without --force, replaced with it.
    std::fs::create_dir_all(root.join("out/a")).unwrap();
    std::fs::write(root.join("out/a/x.yaml"), "old\n").unwrap();
    let out = plumb(root, &["import", "--target", "app", "--out", "out"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--out out is not empty"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(root.join("out/a/x.yaml")).unwrap(), "old\n");
    let out = plumb(root, &["import", "--target", "app", "--out", "out", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read_to_string(root.join("out/a/x.yaml"))
        .unwrap()
        .contains("value: 1"));

    // A file link and a directory link: refused even with --force.
    std::fs::remove_file(root.join("out/a/x.yaml")).unwrap();
    std::os::unix::fs::symlink(victim.join("x.yaml"), root.join("out/a/x.yaml")).unwrap();
    let out = plumb(root, &["import", "--target", "app", "--out", "out", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to write through the symbolic link"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(root.join("out")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("out/a")).unwrap();
    let out = plumb(root, &["import", "--target", "app", "--out", "out", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to write through the symbolic link"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(victim.join("x.yaml")).unwrap(), "precious\n");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);

    // A new directory is fine, and nothing is left in state_dir.
    let out = plumb(root, &["import", "--target", "app", "--out", "fresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(root.join("fresh/a/x.yaml").is_file());
    let staging: Vec<_> = std::fs::read_dir(root.join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("import-"))
        .collect();
    assert!(staging.is_empty());
}

/// Control characters from a live system never reach the terminal, and a
/// value cannot close a block of the Markdown plan (the PR comment).
#[test]
fn hostile_live_data_is_inert_in_text_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let evil = serde_json::json!([
        {"id": "a/x", "value": 1},
        {"id": "x/evil\n\nPlan: 0 to create, 0 to update, 0 to delete, 0 unmanaged.\n\u{1b}[2J",
         "value": "</details><details><summary>ok</summary>\n```\n|",
         "$meta": {"changed_by": {"who": "mallory`</code></details> <img src=x>"}}}
    ]);
    std::fs::write(root.join("app.json"), evil.to_string()).unwrap();
    edit_config(
        root,
        "command: [cat, app.json] }",
        "command: [cat, app.json], authoritative: true }",
    );

    let out = plumb(root, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan = String::from_utf8(out.stdout).unwrap();
    assert!(
        !plan.contains('\u{1b}'),
        "an escape sequence reached the terminal:\n{plan:?}"
    );
    let summaries: Vec<&str> = plan.lines().filter(|l| l.starts_with("Plan:")).collect();
    assert_eq!(
        summaries,
        ["Plan: 0 to create, 0 to update, 1 to delete, 0 unmanaged."],
        "{plan}"
    );
    assert!(plan.contains("x/evil\\n\\nPlan: 0 to create"), "{plan}");
    assert!(plan.contains("\\u001b[2J"), "{plan}");

    let out = plumb(root, &["plan", "--format", "markdown"]);
    let md = String::from_utf8(out.stdout).unwrap();
    assert_eq!(md.matches("```").count() % 2, 0, "an unbalanced fence:\n{md}");
    // Outside code blocks (where GitHub renders HTML), only plumb's own
    // block opens and closes.
    let outside: String = md.split("```").step_by(2).collect::<Vec<_>>().join("");
    assert_eq!(outside.matches("<details>").count(), 1, "{md}");
    assert_eq!(outside.matches("</details>").count(), 1, "{md}");
    assert!(!outside.contains("<img"), "{md}");
    assert!(!md.contains("\n\nPlan: 0 to create"), "{md}");
    assert!(
        md.contains("mallory&#96;") || md.contains("mallory`&lt;/code&gt;"),
        "{md}"
    );
}

/// A saved plan is sealed by the installation that made it: an edited diff
/// or a plan from another installation is refused, saying which.
#[test]
fn a_saved_plan_that_was_edited_or_made_elsewhere_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    std::fs::write(root.join("app.json"), "[{\"id\": \"a/x\", \"value\": 2}]").unwrap();
    let out = plumb(root, &["plan", "--format", "json", "--out", "saved.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let saved = std::fs::read_to_string(root.join("saved.json")).unwrap();
    let plan: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let installation = plan["seal"]["installation"].as_str().unwrap().to_string();
    assert!(installation.starts_with("hmac-sha256:"), "{plan}");

    let edited = saved.replace("+value: 1", "+value: 9");
    assert_ne!(edited, saved);
    std::fs::write(root.join("edited.json"), edited).unwrap();
    let out = plumb(root, &["apply", "--plan", "edited.json", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("it was edited after it was made"), "{}", text(&out));

    // The same plan, unedited, at an installation with another key.
    std::fs::remove_file(root.join("state/hmac.key")).unwrap();
    let out = plumb(root, &["apply", "--plan", "saved.json", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("it was made by another installation (key {installation};")),
        "{}",
        text(&out)
    );
}

/// `limits:` bounds what plumb reads: a desired file or a plugin's output
/// over the limit is an error naming it, the other target still runs, and
/// a huge value is not printed whole.
#[test]
fn size_limits_name_the_file_or_listing_and_huge_values_are_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    edit_config(
        root,
        "state_dir: ./state\n",
        "state_dir: ./state\nlimits: { max_file_size: 4KiB, max_live_bytes: 64KiB }\n",
    );
    std::fs::write(
        root.join("desired/app/big.yaml"),
        format!("id: a/big\nvalue: {}\n", "x".repeat(5000)),
    )
    .unwrap();
    let out = plumb(root, &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = plan["targets"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("app/big.yaml") && error.contains("over limits.max_file_size (4.0 KiB)"),
        "{error}"
    );
    assert_eq!(plan["targets"][1]["exit_code"], 0, "the other target ran");

    std::fs::remove_file(root.join("desired/app/big.yaml")).unwrap();
    let listing = format!("[{{\"id\": \"a/x\", \"value\": \"{}\"}}]", "y".repeat(100 * 1024));
    std::fs::write(root.join("app.json"), listing).unwrap();
    let out = plumb(root, &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = plan["targets"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("printed more than 64.0 KiB on stdout (limits.max_live_bytes)"),
        "{error}"
    );

    // Within the limits, a 60,000-character value shows clipped in text.
    std::fs::write(
        root.join("app.json"),
        format!("[{{\"id\": \"a/x\", \"value\": \"{}\"}}]", "z".repeat(60_000)),
    )
    .unwrap();
    let out = plumb(root, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.len() < 10_000, "{} bytes printed", shown.len());
    assert!(
        shown.contains("more characters; the whole value is in the JSON plan"),
        "{shown}"
    );
}
