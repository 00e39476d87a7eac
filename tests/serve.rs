//! `plumb serve` as a process: scheduled audits of an exec target, the
//! metrics, the JSON API with its token rules, the status page, a break-glass
//! suspension, a live change picked up by the next audit, and a clean exit
//! on SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &Path) -> Serve {
    let port = free_port();
    start_with(
        dir,
        port,
        &format!(
            "source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", token_env: PLUMB_TEST_API_TOKEN }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"* * * * * *\"\n    labels: {{ team: platform }}\n    connection: {{ command: [cat, live.json], sensitive_paths: [/password] }}\n"
        ),
    )
}

/// `plumb serve` on `config` (listening on `port`), with the API token
/// the tests send in `PLUMB_TEST_API_TOKEN`.
fn start_with(dir: &Path, port: u16, config: &str) -> Serve {
    std::fs::write(dir.join("plumb.yaml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "-c"])
        .arg(dir.join("plumb.yaml"))
        .env("PLUMB_TEST_API_TOKEN", "t0ken-for-tests")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_audits_on_schedule_and_answers_metrics_api_and_page() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("desired/app")).unwrap();
    std::fs::write(
        dir.path().join("desired/app/users.yaml"),
        "id: user/a\nrole: admin\npassword: hunter2\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("live.json"),
        r#"[{"id": "user/a", "role": "owner", "password": "hunter3"}]"#,
    )
    .unwrap();
    let serve = start(dir.path());
    let http = reqwest::Client::new();
    let base = serve.base.clone();

    wait_for("readyz", async || {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);

    // The first audit shows drift.
    let exit_code = "plumb_plan_exit_code{provider=\"exec\",target=\"app\",team=\"platform\"}";
    wait_for("drift in /metrics", async || {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric(&text, exit_code) == Some(2.0)
    })
    .await;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("plumb_run_duration_seconds_bucket"), "{text}");
    assert!(text.contains("plumb_build_info{version="), "{text}");
    assert!(
        metric(
            &text,
            "plumb_drift_since_timestamp_seconds{target=\"app\",team=\"platform\"}"
        )
        .unwrap()
            > 0.0
    );
    assert!(!text.contains("hunter"), "a secret in /metrics");

    // The JSON API needs the token, since one is configured.
    assert_eq!(
        http.get(format!("{base}/api/v1/targets"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("t0ken-for-tests");
    let targets: serde_json::Value = auth(http.get(format!("{base}/api/v1/targets")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(targets["targets"][0]["name"], "app");
    assert_eq!(targets["targets"][0]["state"], "drift");
    let plan: serde_json::Value = auth(http.get(format!("{base}/api/v1/targets/app/plan")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["changes"][0]["id"], "user/a");
    assert!(!plan.to_string().contains("hunter"), "a secret in the plan API");
    assert_eq!(
        auth(http.get(format!("{base}/api/v1/targets/nope/plan")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // POST: 401 without the token, 404 for an unknown target, 202 with it.
    assert_eq!(
        http.post(format!("{base}/api/v1/targets/app/run"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        auth(http.post(format!("{base}/api/v1/targets/nope/run")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        auth(http.post(format!("{base}/api/v1/targets/app/run")))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    // Break-glass: recorded and shown.
    let bad = auth(http.post(format!("{base}/api/v1/targets/app/suspend")))
        .body("{\"until\": \"soon\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ok = auth(http.post(format!("{base}/api/v1/targets/app/suspend")))
        .body(r#"{"until": "2099-01-01", "reason": "INC-7 incident"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // A suspension that ended already is refused, and the one in force stays.
    let past = auth(http.post(format!("{base}/api/v1/targets/app/suspend")))
        .body(r#"{"until": "2001-01-01", "reason": "typo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 400);
    let why = past.text().await.unwrap();
    assert!(why.contains("is in the past"), "{why}");
    // With a token configured the page needs it too: a sign-in form, a
    // wrong token refused, the right one gives an HttpOnly, SameSite=Strict
    // cookie that is not the token.
    let anonymous = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let form = anonymous.text().await.unwrap();
    assert!(
        form.contains("<form method=\"post\" action=\"/login\">") && !form.contains("user/a"),
        "{form}"
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |token: &str| {
        no_redirects
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    let wrong = sign_in("guess").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let signed_in = sign_in("t0ken-for-tests").await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("t0ken-for-tests"),
        "the cookie holds the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    // The cookie reads, but never writes.
    let write = http
        .post(format!("{base}/api/v1/targets/app/run"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 401);
    let page = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Reconcile suspended") && page.contains("INC-7 incident"),
        "{page}"
    );
    assert!(page.contains("user/a") && page.contains("-role: owner"), "{page}");
    assert!(
        !page.contains("<script") && !page.contains("src="),
        "the page loads nothing from elsewhere"
    );
    assert!(!page.contains("hunter"));

    // Fix the live system: a later scheduled audit sees it in sync.
    std::fs::write(
        dir.path().join("live.json"),
        r#"[{"id": "user/a", "role": "admin", "password": "hunter2"}]"#,
    )
    .unwrap();
    wait_for("in sync in /metrics", async || {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric(&text, exit_code) == Some(0.0)
    })
    .await;

    // Every audit went to the history.
    let history = dir.path().join("plumb-history/app");
    assert!(history.exists(), "no history written");

    // SIGTERM: a clean, prompt exit.
    let mut serve = serve;
    let pid = serve.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn serve_refuses_a_bad_schedule_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("desired")).unwrap();
    std::fs::write(
        dir.path().join("plumb.yaml"),
        "source: { dir: ./desired }\ntargets:\n  - name: app\n    provider: exec\n    schedule: \"0 9 * *\"\n    connection: { command: [cat] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "-c"])
        .arg(dir.path().join("plumb.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plumb.yaml:3") && stderr.contains("has 4 fields"),
        "{stderr}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed push event fetches and audits at once; a bad signature is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_webhook_fetches_and_audits_now() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join("app")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("app/users.yaml"), "id: user/a\nrole: admin\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    std::fs::write(root.join("live.json"), r#"[{"id": "user/a", "role": "admin"}]"#).unwrap();
    let port = free_port();
    let config = format!(
        "source:\n  git: {{ url: {}, ref: main, poll: 1h }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", webhook_secret_env: PLUMB_TEST_HOOK_SECRET }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"0 0 1 1 *\"\n    connection: {{ command: [cat, live.json] }}\n",
        repo.display()
    );
    std::fs::write(root.join("plumb.yaml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "-c"])
        .arg(root.join("plumb.yaml"))
        .env("PLUMB_TEST_HOOK_SECRET", "s3cret-hook")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let exit_code = "plumb_plan_exit_code{provider=\"exec\",target=\"app\"}";
    wait_for("the start-up audit", async || {
        let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
            return false;
        };
        metric(&r.text().await.unwrap_or_default(), exit_code) == Some(0.0)
    })
    .await;

    // Git moves on; the poll is an hour away.
    std::fs::write(repo.join("app/users.yaml"), "id: user/a\nrole: owner\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "promote"]);
    let new_commit = git(&repo, &["rev-parse", "HEAD"]);
    let body = br#"{"ref": "refs/heads/main"}"#.to_vec();
    let hook = format!("{base}/api/v1/webhook/git");
    let unsigned = http.post(&hook).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let forged = http
        .post(&hook)
        .header("X-Hub-Signature-256", sign("wrong", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // A signed delivery, as GitHub sends it.
    let deliver = |id: String| {
        http.post(&hook)
            .header("X-Hub-Signature-256", sign("s3cret-hook", &body))
            .header("X-GitHub-Delivery", id)
            .body(body.clone())
            .send()
    };
    let signed = deliver("d-1".into()).await.unwrap();
    assert_eq!(signed.status(), 202);
    // The same delivery again (a replay) is acknowledged and does nothing.
    let replay = deliver("d-1".into()).await.unwrap();
    assert_eq!(replay.status(), 200);
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["duplicate"], true);
    // A burst of pushes coalesces: most are folded into the fetch running.
    let burst = (0..10).map(|n| deliver(format!("burst-{n}")));
    let mut coalesced = 0;
    for answer in futures_util::future::join_all(burst).await {
        let answer: serde_json::Value = answer.unwrap().json().await.unwrap();
        if answer["coalesced"] == true {
            coalesced += 1;
        }
    }
    assert!(coalesced >= 5, "only {coalesced} of 10 pushes coalesced");

    wait_for("the audit of the pushed commit", async || {
        let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
            return false;
        };
        let text = r.text().await.unwrap_or_default();
        metric(&text, exit_code) == Some(2.0) && text.contains(&new_commit)
    })
    .await;
}

fn spawn_serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A target whose audit outlasts its schedule is never audited twice at
/// once: the ticks that find it running are skipped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ticks_are_skipped_and_counted() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: a/x\n").unwrap();
    // The plugin records how many audits run at once.
    std::fs::write(
        root.join("slow.sh"),
        "n=$(cat running 2>/dev/null || echo 0); echo $((n+1)) > running; [ $((n+1)) -gt 1 ] && touch overlapped\nsleep 2.5\necho 0 > running\necho '[{\"id\": \"a/x\"}]'\n",
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        root.join("plumb.yaml"),
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"* * * * * *\"\n    connection: {{ command: [bash, slow.sh], timeout: 10s }}\n"),
    )
    .unwrap();
    let child = spawn_serve(&root.join("plumb.yaml"));
    let _serve = Serve {
        child,
        base: String::new(),
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for("skipped runs counted", async || {
        let Ok(r) = http.get(&url).send().await else {
            return false;
        };
        metric(
            &r.text().await.unwrap_or_default(),
            "plumb_skipped_runs_total{target=\"app\"}",
        )
        .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    assert!(
        !root.join("overlapped").exists(),
        "two audits of one target ran at once"
    );
}

/// SIGHUP reloads the configuration: new target labels are re-registered on
/// the metrics; a broken file is rejected and the old configuration kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: a/x\n").unwrap();
    std::fs::write(root.join("live.json"), r#"[{"id": "a/x"}]"#).unwrap();
    let port = free_port();
    let config = |labels: &str| {
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"* * * * * *\"\n    labels: {{ {labels} }}\n    connection: {{ command: [cat, live.json] }}\n")
    };
    std::fs::write(root.join("plumb.yaml"), config("team: a")).unwrap();
    let child = spawn_serve(&root.join("plumb.yaml"));
    let pid = child.id().to_string();
    let mut serve = Serve {
        child,
        base: String::new(),
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let has = |needle: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move || match http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default().contains(needle),
            Err(_) => false,
        }
    };
    wait_for(
        "team a",
        has("plumb_plan_exit_code{provider=\"exec\",target=\"app\",team=\"a\"} 0"),
    )
    .await;

    std::fs::write(root.join("plumb.yaml"), config("team: b, tier: gold")).unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(
        "new labels",
        has("plumb_plan_exit_code{provider=\"exec\",target=\"app\",team=\"b\",tier=\"gold\"} 0"),
    )
    .await;

    // A broken file: rejected, the daemon goes on with what it had.
    std::fs::write(root.join("plumb.yaml"), "source: {\n  nonsense").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "a bad config on SIGHUP stopped serve"
    );
    let text = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("team=\"b\",tier=\"gold\""), "{text}");
}

/// SIGTERM while a reconcile is writing: the change in progress is finished,
/// not cut, and the daemon then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_reconcile_finish() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: user/a\nrole: admin\n").unwrap();
    std::fs::write(root.join("live.json"), r#"[{"id": "user/a", "role": "owner"}]"#).unwrap();
    std::fs::write(root.join("policy.yaml"), "mode: reconcile\n").unwrap();
    // A slow write: marks its start, takes 2 s, then changes the live system.
    std::fs::write(
        root.join("apply.sh"),
        "touch started\nsleep 2\necho '[{\"id\": \"user/a\", \"role\": \"admin\"}]' > live.json\ntouch done\n",
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        root.join("plumb.yaml"),
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    policy: policy.yaml\n    schedule: \"0 0 1 1 *\"\n    connection: {{ command: [cat, live.json], apply_command: [bash, apply.sh], timeout: 20s }}\n"),
    )
    .unwrap();
    let child = spawn_serve(&root.join("plumb.yaml"));
    let pid = child.id().to_string();
    let mut serve = Serve {
        child,
        base: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !root.join("started").exists() {
        assert!(Instant::now() < deadline, "the reconcile never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(35);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop within the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "serve exited with {status}");
    assert!(
        root.join("done").exists(),
        "the change in progress was cut off by SIGTERM"
    );
    assert!(std::fs::read_to_string(root.join("live.json"))
        .unwrap()
        .contains("admin"));
}

/// `server.max_concurrent_audits: 1`: audits of different targets wait for
/// each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_serialises_audits() {
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for t in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(format!("desired/{t}"))).unwrap();
        std::fs::write(root.join(format!("desired/{t}/x.yaml")), format!("id: {t}/x\n")).unwrap();
    }
    // Each audit holds a lock file for a moment; a second holder means two ran at once.
    std::fs::write(
        root.join("slow.sh"),
        "if ! mkdir lock 2>/dev/null; then touch overlapped; fi\nsleep 0.4\nrmdir lock 2>/dev/null\necho \"[{\\\"id\\\": \\\"$1/x\\\"}]\"\necho $1 >> audited\n",
    )
    .unwrap();
    let port = free_port();
    let mut config = format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", max_concurrent_audits: 1 }}\ntargets:\n");
    for t in ["a", "b", "c"] {
        config.push_str(&format!(
            "  - {{ name: {t}, provider: exec, path: {t}, schedule: \"* * * * * *\", connection: {{ command: [bash, slow.sh, {t}] }} }}\n"
        ));
    }
    std::fs::write(root.join("plumb.yaml"), config).unwrap();
    let child = spawn_serve(&root.join("plumb.yaml"));
    let _serve = Serve {
        child,
        base: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let audited = std::fs::read_to_string(root.join("audited")).unwrap_or_default();
        if ["a", "b", "c"]
            .iter()
            .all(|t| audited.lines().filter(|l| l == t).count() >= 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "audits did not all run: {audited:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !root.join("overlapped").exists(),
        "two audits ran at once under max_concurrent_audits: 1"
    );
}

/// A suspension posted while an audit is between its own suspension check
/// and its status update (here: held in its Alertmanager push) must still
/// show when that audit finishes; the audit's older view must not erase it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_taken_during_an_audit_survives_its_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plumb::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("desired/app")).unwrap();
    std::fs::write(dir.path().join("desired/app/users.yaml"), "id: user/a\nrole: admin\n").unwrap();
    std::fs::write(dir.path().join("live.json"), r#"[{"id": "user/a", "role": "owner"}]"#).unwrap();
    // An Alertmanager that tells the test when the push arrives and answers
    // only when the test says so.
    let am = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let am_url = format!("http://{}", am.local_addr().unwrap());
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel::<()>(4);
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let release_am = release.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = am.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = socket.read(&mut buf).await;
            let _ = arrived_tx.send(()).await;
            release_am.notified().await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let port = free_port();
    let config = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", token_env: PLUMB_TEST_API_TOKEN }}\nalerting: {{ alertmanager: {{ urls: [\"{am_url}\"] }} }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"0 0 1 1 *\"\n    connection: {{ command: [cat, live.json] }}\n"
    );
    let serve = start_with(dir.path(), port, &config);
    let base = serve.base.clone();
    let http = reqwest::Client::new();
    // The start-up audit found drift and is now pushing its alert.
    tokio::time::timeout(Duration::from_secs(30), arrived.recv())
        .await
        .expect("the start-up audit pushes its drift alert")
        .unwrap();
    let ok = http
        .post(format!("{base}/api/v1/targets/app/suspend"))
        .bearer_auth("t0ken-for-tests")
        .body(r#"{"until": "2099-01-01", "reason": "INC-9 mid-audit"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    release.notify_one();
    let targets = async || -> serde_json::Value {
        http.get(format!("{base}/api/v1/targets"))
            .bearer_auth("t0ken-for-tests")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    wait_for("the audit to finish", async || {
        !targets().await["targets"][0]["last_run"].is_null()
    })
    .await;
    let app = &targets().await["targets"][0];
    assert_eq!(app["suspended"]["reason"], "INC-9 mid-audit", "{app}");
}
