//! Benchmark (issue 3): 10,000 objects over 6 kinds in 20 namespaces on the
//! simulator. For an in-sync cluster and for 1% drift (100 ConfigMaps
//! edited with `kubectl-edit`) it measures plumb's audit — API requests,
//! wall time, peak RSS of the auditing process (VmHWM) — and, on the same
//! simulator and files, real `kubectl diff --server-side`.
//!
//! The simulator runs in a child process (this binary with `sim DIR`), so
//! the peak RSS is plumb's alone; the child counts requests.
//!
//! ```sh
//! cargo run --release -p plumb-kubernetes --example bench_cluster
//! cargo run --release -p plumb-kubernetes --example bench_cluster -- --no-kubectl
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plumb_kubernetes::normalize::{diff_paths, normalize_pair};
use plumb_kubernetes::sim::{Sim, SimConfig};
use plumb_model::{Action, Ctx, Provider, Resource, Suspect, Verdict};
use serde_json::{json, Value};

const NAMESPACES: usize = 20;
const PER_KIND: usize = 84; // 6 kinds x 84 x 20 = 10,080 objects

fn objects(ns: &str, i: usize) -> [Value; 6] {
    [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns}, "data": {"k": format!("v{i}")}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s-{i}"), "namespace": ns}, "stringData": {"p": "x"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}"), "namespace": ns}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"selector": {"app": format!("a{i}")}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d-{i}"), "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": format!("a{i}")}}, "template": {"metadata": {"labels": {"app": format!("a{i}")}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": format!("r-{i}"), "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    ]
}

/// Writes the manifests, one file per namespace (Namespace first).
fn write_manifests(dir: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let mut count = 0;
    for n in 0..NAMESPACES {
        let ns = format!("ns-{n:02}");
        let mut text =
            serde_yaml_ng::to_string(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
        count += 1;
        for i in 0..PER_KIND {
            for o in objects(&ns, i) {
                text.push_str("---\n");
                text.push_str(&serde_yaml_ng::to_string(&o)?);
                count += 1;
            }
        }
        std::fs::write(dir.join(format!("{ns}.yaml")), text).map_err(|e| format!("write {ns}.yaml: {e}"))?;
    }
    Ok(count)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The child: a seeded simulator driven over stdin.
async fn run_sim(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimConfig::default())
        .await
        .map_err(|e| format!("start simulator: {e}"))?;
    let seeded = sim.seed_dir(dir).map_err(|e| format!("seed: {e}"))?;
    let stdout = std::io::stdout();
    writeln!(stdout.lock(), "{} {seeded}", sim.url()).map_err(|e| format!("stdout: {e}"))?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let answer = match line.trim() {
            "drift" => {
                for n in 0..NAMESPACES {
                    for i in 0..5 {
                        sim.edit(
                            "v1",
                            "ConfigMap",
                            Some(&format!("ns-{n:02}")),
                            &format!("cm-{i}"),
                            "kubectl-edit",
                            |o| o["data"]["k"] = json!("changed"),
                        )
                        .map_err(|e| format!("edit: {e}"))?;
                    }
                }
                "ok".to_string()
            }
            "requests" => {
                let r = sim.requests();
                sim.clear_requests();
                let mut by: HashMap<String, usize> = HashMap::new();
                for x in &r {
                    let key = if x.dry_run {
                        format!("{}-dry-run", x.method)
                    } else {
                        x.method.clone()
                    };
                    *by.entry(key).or_default() += 1;
                }
                format!("{} {}", r.len(), serde_json::to_string(&by)?)
            }
            _ => break,
        };
        writeln!(stdout.lock(), "{answer}").map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

/// A change before confirmation: action, desired, live, paths.
type Candidate = (Action, Option<Resource>, Option<Resource>, Vec<String>);

/// What the core's engine does: match by id, normalise, diff, confirm.
async fn audit(
    provider: &plumb_kubernetes::KubernetesProvider,
    dir: &Path,
    ctx: &Ctx,
) -> Result<usize, Box<dyn std::error::Error>> {
    let desired = provider.desired(dir, dir, ctx).map_err(|e| format!("desired: {e}"))?;
    let live = provider.live(&desired, ctx).await.map_err(|e| format!("live: {e}"))?;
    let mut live_by_id: HashMap<String, Resource> = live.resources.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut suspects: Vec<Candidate> = Vec::new();
    for d in desired.resources {
        match live_by_id.remove(&d.id) {
            None => suspects.push((Action::Create, Some(d), None, vec![])),
            Some(l) => {
                let (mut dv, mut lv) = (d.body(), l.body());
                normalize_pair(&d.kind, Some(&mut dv), Some(&mut lv));
                let paths = diff_paths(&d.kind, &dv, &lv);
                if !paths.is_empty() {
                    suspects.push((Action::Update, Some(d), Some(l), paths));
                }
            }
        }
    }
    let unmanaged = live_by_id.len();
    let list: Vec<Suspect<'_>> = suspects
        .iter()
        .map(|(a, d, l, p)| Suspect {
            id: d.as_ref().map(|r| r.id.as_str()).unwrap_or_default(),
            action: *a,
            desired: d.as_ref(),
            live: l.as_ref(),
            paths: p,
        })
        .collect();
    let verdicts = provider
        .confirm(&list, ctx)
        .await
        .map_err(|e| format!("confirm: {e}"))?;
    Ok(verdicts.iter().filter(|v| matches!(v, Verdict::Confirmed(_))).count() + unmanaged)
}

fn ask(
    child_in: &mut impl Write,
    child_out: &mut impl BufRead,
    what: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    writeln!(child_in, "{what}").map_err(|e| format!("to child: {e}"))?;
    child_in.flush().map_err(|e| format!("flush to child: {e}"))?;
    let mut line = String::new();
    child_out.read_line(&mut line).map_err(|e| format!("from child: {e}"))?;
    Ok(line.trim().to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    if args.get(1).map(String::as_str) == Some("sim") {
        return rt.block_on(run_sim(Path::new(&args[2])));
    }
    let kubectl = !args.iter().any(|a| a == "--no-kubectl");
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).map_err(|e| format!("mkdir manifests: {e}"))?;
    let count = write_manifests(&manifests)?;
    let mut child = Command::new(&args[0])
        .arg("sim")
        .arg(&manifests)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the simulator process: {e}"))?;
    let mut child_in = child.stdin.take().ok_or("simulator stdin")?;
    let mut child_out = BufReader::new(child.stdout.take().ok_or("simulator stdout")?);
    let mut first = String::new();
    child_out
        .read_line(&mut first)
        .map_err(|e| format!("simulator url: {e}"))?;
    let url = first.split_whitespace().next().ok_or("simulator url")?.to_string();
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {{server: \"{url}\"}}\nusers:\n- name: sim\n  user: {{}}\ncontexts:\n- name: sim\n  context: {{cluster: sim, user: sim}}\ncurrent-context: sim\n"
        ),
    )
    .map_err(|e| format!("write kubeconfig: {e}"))?;
    println!("objects in Git: {count} (+ the simulator's own); seeded: {first}");
    let provider = plumb_kubernetes::build(&json!({"kubeconfig": kubeconfig}), tmp.path())
        .map_err(|e| format!("build provider: {e}"))?;
    let mut ctx = Ctx::new("bench", tmp.path().join("cache"));
    ctx.timeout = Duration::from_secs(120);
    ask(&mut child_in, &mut child_out, "requests")?;
    println!("| cluster | tool | changes | API requests | wall time | peak RSS (VmHWM) |");
    println!("|---|---|---:|---|---:|---:|");
    for drift in [false, true] {
        let label = if drift { "1% drift" } else { "in sync" };
        if drift {
            ask(&mut child_in, &mut child_out, "drift")?;
            ask(&mut child_in, &mut child_out, "requests")?;
        }
        let started = Instant::now();
        let changes = rt.block_on(audit(&provider, &manifests, &ctx))?;
        let plumb_wall = started.elapsed();
        let requests = ask(&mut child_in, &mut child_out, "requests")?;
        println!(
            "| {label} | plumb | {changes} | {requests} | {:.2} s | {:.1} MiB |",
            plumb_wall.as_secs_f64(),
            vm_hwm_kib() as f64 / 1024.0
        );
        if kubectl {
            let started = Instant::now();
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["diff", "--server-side", "--force-conflicts", "-f"])
                .arg(&manifests)
                .output()
                .map_err(|e| format!("run kubectl: {e}"))?;
            let wall = started.elapsed();
            let requests = ask(&mut child_in, &mut child_out, "requests")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let changed = text.lines().filter(|l| l.starts_with("diff ")).count();
            println!(
                "| {label} | kubectl diff --server-side --force-conflicts | {changed} (exit {}) | {requests} | {:.2} s ({:.1}x plumb) | - |",
                out.status.code().unwrap_or(-1),
                wall.as_secs_f64(),
                wall.as_secs_f64() / plumb_wall.as_secs_f64()
            );
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.trim().is_empty() {
                println!("kubectl stderr (first 5 lines):");
                for l in err.lines().take(5) {
                    println!("  {l}");
                }
            }
        }
    }
    let _ = writeln!(child_in, "quit");
    let _ = child.wait();
    Ok(())
}
