//! Benchmark: API requests, rate-limit points, wall time and peak RSS of a
//! cold and a warm (ETag) audit, on the simulator, for a generated org of
//! 5,000 members and 300 teams (20 members and 10 repos each) and for the
//! real kubernetes org of the corpus.
//!
//! Run: `cargo run --release -p plumb-github --example bench_org`

use std::path::Path;
use std::time::{Duration, Instant};

use plumb_github::sim::{Sim, SimOptions};
use plumb_model::{Ctx, Provider};
use serde_json::json;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn generate(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut text = String::from("admins:\n- plumb-bot\n- owner-one\nmembers:\n");
    for i in 0..5000 {
        text.push_str(&format!("- user{i:04}\n"));
    }
    text.push_str("default_repository_permission: read\nteams:\n");
    for t in 0..300 {
        text.push_str(&format!("  team-{t:03}:\n    description: generated\n    privacy: closed\n    maintainers:\n    - user{:04}\n    members:\n", (t * 7) % 5000));
        for m in 1..20 {
            text.push_str(&format!("    - user{:04}\n", (t * 17 + m * 31) % 5000));
        }
        text.push_str("    repos:\n");
        for r in 0..10 {
            text.push_str(&format!(
                "      repo-{:03}: {}\n",
                (t + r * 13) % 400,
                ["read", "write", "admin"][r % 3]
            ));
        }
    }
    std::fs::create_dir_all(dir.join("bench")).map_err(|e| format!("create bench dir: {e}"))?;
    std::fs::write(dir.join("bench/org.yaml"), text).map_err(|e| format!("write bench/org.yaml: {e}"))?;
    Ok(())
}

async fn run(sim: &Sim, org: &str, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let provider = plumb_github::build(
        &json!({"org": org, "token_env": "PLUMB_BENCH_GH_TOKEN", "api_url": sim.url()}),
        Path::new("."),
    )
    .map_err(|e| format!("build provider: {e}"))?;
    let cache = tempfile::tempdir().map_err(|e| format!("cache dir: {e}"))?;
    let mut ctx = Ctx::new("bench", cache.path());
    ctx.timeout = Duration::from_secs(600);
    let desired = provider
        .desired(dir, dir, &ctx)
        .map_err(|e| format!("{org} desired: {e}"))?;
    for label in ["cold", "warm"] {
        let before = sim.rate_remaining("sim-admin-token");
        let started = Instant::now();
        let live = provider
            .live(&desired, &ctx)
            .await
            .map_err(|e| format!("{org} {label} live: {e}"))?;
        let took = started.elapsed();
        let stats = provider.last_stats();
        let points = before - sim.rate_remaining("sim-admin-token");
        println!(
            "{org:<12} {label}: {:>5} requests ({:>5} answered 304), {:>5} rate-limit points, {:>7.2?}, {} live resources",
            stats.requests,
            stats.not_modified,
            points,
            took,
            live.resources.len()
        );
        sim.set_rate_limit("sim-admin-token", plumb_github::sim::RATE_LIMIT, 3600);
    }
    let members = desired.resources.iter().filter(|r| r.kind == "member").count();
    let per_item = desired
        .resources
        .iter()
        .filter(|r| r.kind == "team-member" || r.kind == "team-repo")
        .count();
    println!(
        "{org:<12} for comparison: one GET per member would be {members} requests, plus {per_item} for one GET per team membership and team repo"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::env::set_var("PLUMB_BENCH_GH_TOKEN", "sim-admin-token");
    let sim = Sim::start(SimOptions::default())
        .await
        .map_err(|e| format!("start simulator: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    generate(dir.path())?;
    sim.seed_dir(dir.path()).map_err(|e| format!("seed bench org: {e}"))?;
    run(&sim, "bench", dir.path()).await?;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/github-org/kubernetes-org/config");
    if corpus.is_dir() {
        sim.seed_dir(&corpus).map_err(|e| format!("seed kubernetes org: {e}"))?;
        run(&sim, "kubernetes", &corpus).await?;
    }
    println!(
        "peak RSS (simulator and provider in one process): {:.1} MiB",
        peak_rss_mib()
    );
    Ok(())
}
