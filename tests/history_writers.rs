//! Several writers of one history at once, and writers killed mid-write:
//! `plumb serve` auditing six targets every second while `plan --record`
//! runs five at a time beside it, and `plan --record` killed with SIGKILL at
//! random points. Afterwards every target has one unbroken chain and
//! `report --verify` exits 0.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

const TARGETS: usize = 6;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Six exec targets over JSON files, one of them drifting, audited every
/// second when served.
fn setup(root: &Path, listen: Option<u16>) {
    let mut targets = String::new();
    for i in 0..TARGETS {
        std::fs::create_dir_all(root.join(format!("desired/t{i}"))).unwrap();
        std::fs::write(root.join(format!("desired/t{i}/a.yaml")), "id: a/x\nvalue: 1\n").unwrap();
        let live = if i == 0 { 2 } else { 1 };
        std::fs::write(
            root.join(format!("live{i}.json")),
            format!("[{{\"id\": \"a/x\", \"value\": {live}}}]"),
        )
        .unwrap();
        targets.push_str(&format!(
            "  - name: t{i}\n    provider: exec\n    path: t{i}\n    schedule: \"* * * * * *\"\n    connection: {{ command: [cat, live{i}.json] }}\n"
        ));
    }
    let server = listen
        .map(|port| format!("server: {{ listen: \"127.0.0.1:{port}\" }}\n"))
        .unwrap_or_default();
    std::fs::write(
        root.join("plumb.yaml"),
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory: {{ dir: ./history }}\n{server}targets:\n{targets}"),
    )
    .unwrap();
}

fn plumb(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plumb"));
    command
        .args(args)
        .arg("-c")
        .arg(root.join("plumb.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn verify(root: &Path) -> Output {
    plumb(root, &["report", "--verify", "--format", "json"])
        .output()
        .unwrap()
}

fn records_of(root: &Path, target: &str) -> usize {
    std::fs::read_dir(root.join(format!("history/{target}/records")))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

fn assert_intact(root: &Path, what: &str) -> serde_json::Value {
    let out = verify(root);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: verify failed:\n{}",
        serde_json::to_string_pretty(&verdict["targets"]).unwrap()
    );
    assert_eq!(verdict["intact"], true);
    verdict
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_and_concurrent_plan_record_never_fork_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let port = free_port();
    setup(root, Some(port));
    let mut daemon = Daemon(
        plumb(root, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    // Twice, five `plan --record` at once beside the daemon.
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..2 {
        let runs: Vec<Child> = (0..5)
            .map(|_| plumb(root, &["plan", "--record"]).spawn().unwrap())
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("not written"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    if let Some(rest) = Duration::from_secs(20).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    // SIGTERM: the daemon seals every chain with a digest as it stops.
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let verdict = assert_intact(root, "serve beside plan --record");
    for target in verdict["targets"].as_array().unwrap() {
        let name = target["target"].as_str().unwrap();
        let records = target["records"].as_u64().unwrap();
        // About 20 audits by the daemon and 10 by the plans, in one chain.
        assert!(records >= 20, "{name}: only {records} records");
        assert_eq!(target["first_seq"], 1, "{name}");
        assert_eq!(target["last_seq"], records, "{name}: a gap in the chain");
        assert_eq!(target["unvouched_records"], 0, "{name}: the stop digest is missing");
    }
    assert_eq!(verdict["targets"].as_array().unwrap().len(), TARGETS);
}

#[test]
fn plan_record_killed_at_random_points_leaves_chains_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root, None);
    // How long one recording run takes here, to spread the kills over it.
    let timer = Instant::now();
    assert_eq!(
        plumb(root, &["plan", "--record"]).output().unwrap().status.code(),
        Some(2)
    );
    let run = timer.elapsed();
    let mut rng = rand::thread_rng();
    let (mut interrupted, mut left_records) = (0, 0);
    for _ in 0..20 {
        let before = records_of(root, "t0") + records_of(root, &format!("t{}", TARGETS - 1));
        let mut child = plumb(root, &["plan", "--record"]).spawn().unwrap();
        let at = run.mul_f64(rng.gen_range(0.2..1.1));
        std::thread::sleep(at);
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            interrupted += 1;
            if records_of(root, "t0") + records_of(root, &format!("t{}", TARGETS - 1)) > before {
                left_records += 1;
            }
        }
    }
    eprintln!("{interrupted} of 20 runs killed before they ended, {left_records} of them after writing records");
    assert!(interrupted >= 5, "only {interrupted} of 20 runs were interrupted");
    // The next run continues every chain, and seals it.
    let out = plumb(root, &["plan", "--record"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let verdict = assert_intact(root, "after SIGKILLs");
    for target in verdict["targets"].as_array().unwrap() {
        assert_eq!(target["first_seq"], 1);
        assert_eq!(target["last_seq"], target["records"]);
        assert_eq!(target["unvouched_records"], 0);
    }
}

/// While `serve` runs, a target that is not audited still gets a signed
/// digest every `history.digest_every`: an idle target shows as idle.
#[test]
fn serve_writes_digests_for_idle_targets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/idle")).unwrap();
    let port = free_port();
    std::fs::write(
        root.join("plumb.yaml"),
        format!("source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory: {{ dir: ./history, digest_every: 1s }}\nserver: {{ listen: \"127.0.0.1:{port}\" }}\ntargets:\n  - name: idle\n    provider: exec\n    path: idle\n    schedule: \"0 0 1 1 *\"\n    connection: {{ command: [echo, \"[]\"] }}\n"),
    )
    .unwrap();
    let _daemon = Daemon(
        plumb(root, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let digests = || {
        std::fs::read_dir(root.join("history/idle/digests"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while digests() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} digests of an idle target",
            digests()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Only the audit serve makes when it starts; the digests go on without
    // records.
    assert_eq!(records_of(root, "idle"), 1);
    let verdict = assert_intact(root, "idle target");
    assert!(verdict["targets"][0]["vouched_through"].is_string(), "{verdict}");
}
