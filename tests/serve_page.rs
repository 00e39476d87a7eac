//! The status page in a real browser: Debian's headless Chromium (installed
//! by scripts/test.sh) loads `/` of a running `plumb serve` whose exec
//! target drifts, dumps the DOM as rendered and takes a screenshot. The
//! test checks what a person would read (the target, its state, relative
//! times, the drifted id and its diff) and that the screenshot is a PNG of
//! the requested size.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("chromium not found; scripts/test.sh installs Debian's chromium")
}

/// Headless Chromium with the flags that keep it from phoning home, with a
/// fresh profile; killed if it takes longer than a minute.
fn browse(profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("desired/app")).unwrap();
    std::fs::write(
        d.join("desired/app/users.yaml"),
        "id: user/a\nrole: admin\npassword: hunter2\n---\nid: user/b\nrole: viewer\n",
    )
    .unwrap();
    std::fs::write(
        d.join("live.json"),
        r#"[{"id": "user/a", "role": "owner", "password": "hunter3"}, {"id": "user/b", "role": "viewer"}]"#,
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        d.join("plumb.yaml"),
        format!(
            "source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory: {{ dir: ./history }}\n\
             server: {{ listen: \"127.0.0.1:{port}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n\
             \x20   schedule: \"*/2 * * * * *\"\n    connection: {{ command: [cat, live.json], sensitive_paths: [/password] }}\n"
        ),
    )
    .unwrap();
    let _serve = Proc(
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["serve", "-c"])
            .arg(d.join("plumb.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");

    // Wait (bounded) until the first audit shows drift, over plain HTTP.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: serde_json::Value = match http.get(format!("{base}/api/v1/targets")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if body["targets"][0]["state"] == "drift" {
            break;
        }
        assert!(Instant::now() < deadline, "no drift reported: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().to_path_buf();
    let url = format!("{base}/");
    let out = tokio::task::spawn_blocking(move || browse(&p, &["--dump-dom".into()], &url))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The rendered document, as the browser built it.
    assert!(dom.contains("<title>plumb</title>"), "{dom}");
    assert!(dom.contains("<td class=\"drift\">drift"), "state cell: {dom}");
    assert!(dom.contains(">app</a>"), "{dom}");
    assert!(dom.contains("s ago</td>"), "relative times: {dom}");
    assert!(dom.contains("<code>user/a</code>"), "the drifted id: {dom}");
    assert!(!dom.contains("<code>user/b</code>"), "user/b is in sync: {dom}");
    assert!(
        dom.contains("<span class=\"del\">-role: owner</span>")
            && dom.contains("<span class=\"add\">+role: admin</span>"),
        "coloured diff lines: {dom}"
    );
    assert!(dom.contains("<details"), "collapsible diffs: {dom}");
    assert!(!dom.contains("hunter"), "a secret on the page");

    // A screenshot: a real PNG of the window size asked for.
    let shot = profile.path().join("page.png");
    let (p, url, args) = (
        profile.path().to_path_buf(),
        format!("{base}/"),
        [
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,800".into(),
        ],
    );
    let out = tokio::task::spawn_blocking(move || browse(&p, &args, &url))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("no screenshot written");
    assert!(png.len() > 1000, "screenshot too small: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 800));
    if let Some(keep) = std::env::var_os("PLUMB_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
