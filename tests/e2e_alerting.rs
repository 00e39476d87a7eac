//! End to end with a real Prometheus and a real Alertmanager (Debian's
//! `prometheus` and `prometheus-alertmanager`, installed by
//! scripts/test.sh): plumb serve audits an exec target every second and
//! pushes its own alerts to Alertmanager; Prometheus scrapes plumb, loads a
//! copy of alerts/plumb.rules.yaml with every `for` shortened, and sends
//! its alerts to the same Alertmanager. The target drifts, then is fixed:
//! the metric, the Prometheus alert, both alerts in Alertmanager, and their
//! resolution are all checked, with bounded polling only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(program: &str, args: &[String], log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Proc(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (scripts/test.sh installs it): {e}")),
    )
}

fn find(program: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{program} not found in {candidates:?}; scripts/test.sh installs it"))
}

/// Polls `check` every 200 ms for at most `limit`; the logs are printed if
/// it never holds.
async fn wait_for(what: &str, limit: Duration, logs: &Path, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            for entry in std::fs::read_dir(logs).unwrap().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- {} (last lines)", entry.path().display());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// alerts/plumb.rules.yaml with every `for` cut to 1s, so a test sees the
/// shipped expressions fire within seconds.
fn test_copy_of_rules() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/plumb.rules.yaml")).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut shortened = 0;
    for group in doc["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if let Some(map) = rule.as_mapping_mut() {
                if map.contains_key("for") {
                    map.insert("for".into(), "1s".into());
                    shortened += 1;
                }
            }
        }
    }
    assert!(shortened >= 3, "the shipped rules lost their `for`s?");
    serde_yaml_ng::to_string(&doc).unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Alertmanager's active PlumbDrift alerts for target `app`.
async fn am_drift_alerts(http: &reqwest::Client, am: &str) -> Vec<Value> {
    let url = format!("{am}/api/v2/alerts?filter=alertname%3D%22PlumbDrift%22&filter=target%3D%22app%22");
    get_json(http, &url)
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

/// Prometheus' alerts named PlumbDrift for target `app`, with their state.
async fn prom_drift_states(http: &reqwest::Client, prom: &str) -> Vec<String> {
    get_json(http, &format!("{prom}/api/v1/alerts"))
        .await
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "PlumbDrift" && a["labels"]["target"] == "app")
        .map(|a| a["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_fires_through_prometheus_and_direct_push_then_resolves() {
    plumb::install_crypto_provider();
    let prometheus = find("prometheus", &["/usr/bin/prometheus"]);
    let alertmanager = find(
        "alertmanager",
        &["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"],
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plumb_port, prom_port, am_port) = (free_port(), free_port(), free_port());
    let plumb_url = format!("http://127.0.0.1:{plumb_port}");
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let am_url = format!("http://127.0.0.1:{am_port}");

    // Alertmanager: one receiver that goes nowhere; no clustering.
    std::fs::write(
        d.join("alertmanager.yml"),
        "route: { receiver: nowhere, group_wait: 1s, group_interval: 1s }\nreceivers: [ { name: nowhere } ]\n",
    )
    .unwrap();
    let _am = spawn(
        alertmanager.to_str().unwrap(),
        &[
            format!("--config.file={}", d.join("alertmanager.yml").display()),
            format!("--storage.path={}", d.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &d.join("alertmanager.log"),
    );

    // plumb: an exec target that drifts (live role differs), audited every
    // second, pushing to the Alertmanager.
    std::fs::create_dir_all(d.join("desired/app")).unwrap();
    std::fs::write(d.join("desired/app/users.yaml"), "id: user/a\nrole: admin\n").unwrap();
    std::fs::write(d.join("live.json"), r#"[{"id": "user/a", "role": "owner"}]"#).unwrap();
    std::fs::write(
        d.join("plumb.yaml"),
        format!(
            "source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory: {{ dir: ./history }}\n\
             server: {{ listen: \"127.0.0.1:{plumb_port}\" }}\n\
             alerting: {{ alertmanager: {{ urls: [\"{am_url}\"] }} }}\n\
             targets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"* * * * * *\"\n\
             \x20   labels: {{ team: platform }}\n    connection: {{ command: [cat, live.json] }}\n"
        ),
    )
    .unwrap();
    let plumb_log = std::fs::File::create(d.join("plumb.log")).unwrap();
    let _plumb = Proc(
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["serve", "-c"])
            .arg(d.join("plumb.yaml"))
            .env("PLUMB_EXTERNAL_URL", "http://plumb.example:9469")
            .env("RUST_LOG", "info,plumb=debug")
            .stdout(plumb_log.try_clone().unwrap())
            .stderr(plumb_log)
            .spawn()
            .unwrap(),
    );

    // Prometheus: scrapes plumb every second as job="plumb", evaluates the
    // shipped rules (test copy) every second, sends to the Alertmanager.
    std::fs::write(d.join("plumb.rules.yaml"), test_copy_of_rules()).unwrap();
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [ {rules} ]\n\
             alerting: {{ alertmanagers: [ {{ static_configs: [ {{ targets: [\"127.0.0.1:{am_port}\"] }} ] }} ] }}\n\
             scrape_configs:\n  - job_name: plumb\n    static_configs: [ {{ targets: [\"127.0.0.1:{plumb_port}\"] }} ]\n",
            rules = d.join("plumb.rules.yaml").display()
        ),
    )
    .unwrap();
    let _prom = spawn(
        prometheus.to_str().unwrap(),
        &[
            format!("--config.file={}", d.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", d.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--rules.alert.resend-delay=1s".into(),
        ],
        &d.join("prometheus.log"),
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let limit = Duration::from_secs(40);

    // (1) /metrics shows the drift.
    wait_for("plumb_plan_exit_code 2 on /metrics", limit, d, async || {
        let Ok(r) = http.get(format!("{plumb_url}/metrics")).send().await else {
            return false;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("plumb_plan_exit_code{") && l.contains("target=\"app\"") && l.ends_with(" 2"))
    })
    .await;

    // (2) Prometheus fires the shipped PlumbDrift rule.
    wait_for("PlumbDrift firing in Prometheus", limit, d, async || {
        prom_drift_states(&http, &prom_url).await.iter().any(|s| s == "firing")
    })
    .await;

    // (3) Alertmanager has it twice: from Prometheus (which adds job and
    // instance) and from plumb's own push (which links the status page).
    wait_for("both PlumbDrift alerts in Alertmanager", limit, d, async || {
        let alerts = am_drift_alerts(&http, &am_url).await;
        let from_prometheus = alerts.iter().any(|a| a["labels"]["job"] == "plumb");
        let direct = alerts.iter().any(|a| a["labels"].get("job").is_none());
        from_prometheus && direct
    })
    .await;
    let alerts = am_drift_alerts(&http, &am_url).await;
    let direct = alerts.iter().find(|a| a["labels"].get("job").is_none()).unwrap();
    assert_eq!(direct["labels"]["provider"], "exec");
    assert_eq!(direct["labels"]["team"], "platform", "the target's labels ride along");
    assert_eq!(direct["labels"]["severity"], "warning");
    assert_eq!(direct["annotations"]["drifted"], "user/a");
    assert_eq!(direct["annotations"]["status_page"], "http://plumb.example:9469/#app");
    assert!(
        direct["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("app (exec) drifts from Git"),
        "{direct}"
    );
    let via_prometheus = alerts.iter().find(|a| a["labels"]["job"] == "plumb").unwrap();
    assert_eq!(via_prometheus["labels"]["team"], "platform");

    // (4) Fix the drift: plumb resolves its alert (endsAt = now), the rule
    // stops firing, and Alertmanager has no active PlumbDrift left.
    std::fs::write(d.join("live.json"), r#"[{"id": "user/a", "role": "admin"}]"#).unwrap();
    wait_for("PlumbDrift gone from Prometheus", limit, d, async || {
        prom_drift_states(&http, &prom_url).await.is_empty()
    })
    .await;
    wait_for("PlumbDrift resolved in Alertmanager", limit, d, async || {
        am_drift_alerts(&http, &am_url).await.is_empty()
    })
    .await;
    let text = http
        .get(format!("{plumb_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("plumb_alertmanager_push_failures_total 0"),
        "pushes failed: {text}"
    );
}
