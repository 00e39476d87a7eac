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
    let config = std::fs::read_to_string(root.join("plumb.yaml"))
        .unwrap()
        .replace("path: other", "path: other/../../..");
    std::fs::write(root.join("plumb.yaml"), config).unwrap();
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
    let config = std::fs::read_to_string(root.join("plumb.yaml")).unwrap().replace(
        "state_dir: ./state\n",
        &format!(
            "state_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", token_env: PLUMB_UNSET_TOKEN_FOR_TESTS }}\n"
        ),
    );
    std::fs::write(root.join("plumb.yaml"), config).unwrap();
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
