//! `plumb serve` under a slow-client flood: many connections that send a
//! request head one line every second (and reconnect when closed), against
//! a daemon allowed 256 file descriptors, while `/metrics` is scraped. The
//! scrape must be answered every time. `PLUMB_SLOW_CLIENTS` and
//! `PLUMB_SLOW_SECONDS` scale it up for BENCHMARKS.md (1,000 for 60 s).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(root: &Path, port: u16) -> Daemon {
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: a/x\n").unwrap();
    std::fs::write(root.join("live.json"), "[{\"id\": \"a/x\"}]").unwrap();
    std::fs::write(
        root.join("plumb.yaml"),
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\", header_timeout: 3s, idle_timeout: 10s }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"*/5 * * * * *\"\n    connection: {{ command: [cat, live.json] }}\n"),
    )
    .unwrap();
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {} serve -c {}",
            env!("CARGO_BIN_EXE_plumb"),
            root.join("plumb.yaml").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon(child)
}

/// One slow client: connects, sends a request line and then one header
/// line a second, never finishing; reconnects when the server hangs up.
async fn slow_client(port: u16, stop: Arc<AtomicBool>, connects: Arc<AtomicUsize>) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        connects.fetch_add(1, Ordering::SeqCst);
        if stream.write_all(b"GET /metrics HTTP/1.1\r\n").await.is_err() {
            continue;
        }
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n += 1;
            if stream.write_all(format!("X-Slow-{n}: 1\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
    }
}

async fn run(clients: usize, seconds: u64) -> (usize, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _daemon = start(dir.path(), port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(slow_client(port, stop.clone(), connects.clone())))
        .collect();
    let (mut answered, mut worst) = (0, Duration::ZERO);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut failures = Vec::new();
    while Instant::now() < end {
        let asked = Instant::now();
        match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => {
                if r.text().await.is_ok_and(|t| t.contains("plumb_plan_exit_code")) {
                    answered += 1;
                    worst = worst.max(asked.elapsed());
                } else {
                    failures.push("a /metrics body without the plan gauge".to_string());
                }
            }
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(e.to_string()),
        }
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if !matches!(ready, Ok(200)) {
            failures.push(format!("/readyz: {ready:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(asked.elapsed())).await;
    }
    stop.store(true, Ordering::SeqCst);
    for f in flood {
        f.abort();
    }
    assert!(failures.is_empty(), "{} scrape(s) failed: {failures:?}", failures.len());
    (answered, worst, connects.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readyz_are_answered_during_a_slow_client_flood() {
    plumb::install_crypto_provider();
    let clients = std::env::var("PLUMB_SLOW_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seconds = std::env::var("PLUMB_SLOW_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let (answered, worst, connects) = run(clients, seconds).await;
    eprintln!(
        "{clients} slow clients for {seconds} s ({connects} connections made): /metrics answered {answered} of {answered} times, worst {} ms",
        worst.as_millis()
    );
    assert!(answered as u64 >= seconds - 1);
    // The flood was real: clients were cut off and came back.
    assert!(connects > clients, "{connects} connections by {clients} clients");
}
