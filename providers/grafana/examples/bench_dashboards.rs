//! Benchmark: audits of N realistic dashboards (20 panels, ~60 KB each) in
//! 20 folders against the simulator, at concurrency 1 and 8: requests per
//! audit, wall time of the live read and of the comparison, peak RSS.
//!
//! cargo run --release -p plumb-grafana --example bench_dashboards -- [dashboards]
//!
//! The simulator runs in a child process (this binary, re-run as
//! `bench_dashboards serve DIR`), so the two sides do not share a runtime or a
//! heap: the RSS figures are plumb's alone, and concurrency 8 can overlap
//! requests with the simulator's work. The child answers `count` on its
//! standard input with the requests it saw since the last `count`, and
//! `rss` with its own peak RSS.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plumb_grafana::sim::{Sim, SimOptions};
use plumb_model::{Ctx, Pair, Provider};
use serde_json::{json, Value};

fn panel(i: usize, d: usize) -> Value {
    let expr = format!(
        "sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{{cluster=\"$cluster\", namespace=\"$namespace\", pod=~\"$pod\", container!=\"\", image!=\"\"}}[$__rate_interval])) / sum by (namespace, pod, container) (kube_pod_container_resource_requests{{resource=\"cpu\", dashboard=\"{d}\", panel=\"{i}\"}})"
    );
    json!({
        "id": i + 1, "type": "timeseries", "title": format!("Panel {i} of dashboard {d}"),
        "description": "CPU usage relative to requests for every container of the selected pods, summed per container. Values above 1 mean the container uses more than it asked for; sustained values far below 1 suggest requests can be lowered.",
        "gridPos": {"h": 8, "w": 12, "x": ((i % 2) * 12), "y": ((i / 2) * 8)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"color": {"mode": "palette-classic"}, "custom": {
            "axisBorderShow": false, "axisCenteredZero": false, "axisColorMode": "text", "axisLabel": "",
            "axisPlacement": "auto", "barAlignment": 0, "drawStyle": "line", "fillOpacity": 10,
            "gradientMode": "none", "hideFrom": {"legend": false, "tooltip": false, "viz": false},
            "insertNulls": false, "lineInterpolation": "linear", "lineWidth": 1, "pointSize": 5,
            "scaleDistribution": {"type": "linear"}, "showPoints": "never", "spanNulls": false,
            "stacking": {"group": "A", "mode": "none"}, "thresholdsStyle": {"mode": "off"}},
            "mappings": [], "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": null}, {"color": "red", "value": 80}]},
            "unit": "percentunit"},
            "overrides": [{"matcher": {"id": "byName", "options": "requests"}, "properties": [{"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}}, {"id": "color", "value": {"fixedColor": "orange", "mode": "fixed"}}]}]},
        "options": {"legend": {"calcs": ["mean", "max", "lastNotNull"], "displayMode": "table", "placement": "right", "showLegend": true},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": ((0..1).map(|t| json!({"refId": (["A", "B", "C", "D"][t]), "expr": format!("{expr} * {t}"),
            "legendFormat": "{{namespace}}/{{pod}}/{{container}}", "interval": "", "editorMode": "code", "range": true,
            "datasource": {"type": "prometheus", "uid": "${datasource}"}})).collect::<Vec<_>>()),
    })
}

fn dashboard(d: usize) -> Value {
    json!({
        "uid": format!("bench-{d:05}"), "title": format!("Bench dashboard {d}"), "schemaVersion": 39,
        "tags": ["bench", "kubernetes"], "timezone": "browser", "editable": true, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "cluster", "type": "query", "query": "label_values(up, cluster)", "datasource": {"uid": "${datasource}"}},
            {"name": "namespace", "type": "query", "query": "label_values(kube_pod_info{cluster=\"$cluster\"}, namespace)"},
            {"name": "pod", "type": "query", "query": "label_values(kube_pod_info{namespace=\"$namespace\"}, pod)", "multi": true, "includeAll": true}]},
        "annotations": {"list": [{"name": "Annotations & Alerts", "builtIn": 1, "enable": true, "hide": true, "type": "dashboard"}]},
        "panels": ((0..20).map(|i| panel(i, d)).collect::<Vec<_>>()),
    })
}

fn rss(field: &str) -> String {
    rss_of("self", field)
}

fn rss_of(pid: &str, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

/// The child: a simulator seeded from `dir`, its URL on the first line of
/// standard output, then commands from standard input until it closes.
async fn serve(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimOptions::default())
        .await
        .map_err(|e| format!("start simulator: {e}"))?;
    let seeded = sim.seed_dir(dir).map_err(|e| format!("seed: {e}"))?;
    println!("{} {seeded}", sim.url());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(command) = rx.recv().await {
        match command.trim() {
            "count" => {
                println!("{}", sim.total_requests());
                sim.reset_requests();
            }
            "rss" => println!("{}", rss("VmHWM:")),
            _ => println!("?"),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(Path::new(args.get(2).ok_or("serve DIR")?)).await;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut bytes = 0;
    for d in 0..n {
        let folder = dir.path().join(format!("team-{:02}", d % 20));
        std::fs::create_dir_all(&folder).map_err(|e| format!("mkdir {}: {e}", folder.display()))?;
        let text = serde_json::to_string_pretty(&dashboard(d))?;
        bytes += text.len();
        std::fs::write(folder.join(format!("d{d:05}.json")), text).map_err(|e| format!("write dashboard {d}: {e}"))?;
    }
    println!(
        "{n} dashboards, {:.1} KB average JSON, {:.1} MB total",
        bytes as f64 / n as f64 / 1024.0,
        bytes as f64 / 1e6
    );

    let mut child = Command::new(std::env::current_exe().map_err(|e| format!("current exe: {e}"))?)
        .arg("serve")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the simulator process: {e}"))?;
    let mut to_child = child.stdin.take().ok_or("simulator stdin")?;
    let mut from_child = BufReader::new(child.stdout.take().ok_or("simulator stdout")?);
    // The first line: the URL and how many dashboards were seeded.
    let mut first = String::new();
    from_child
        .read_line(&mut first)
        .map_err(|e| format!("read from simulator: {e}"))?;
    let mut parts = first.split_whitespace();
    let url = parts.next().ok_or("the simulator's URL")?.to_string();
    let seeded = parts.next().unwrap_or("?").to_string();
    let mut ask = |command: &str| -> Result<String, Box<dyn std::error::Error>> {
        writeln!(to_child, "{command}").map_err(|e| format!("write to simulator: {e}"))?;
        let mut line = String::new();
        from_child
            .read_line(&mut line)
            .map_err(|e| format!("read from simulator: {e}"))?;
        Ok(line.trim().to_string())
    };
    let pid = child.id().to_string();
    println!(
        "simulator process {pid}: {seeded} dashboards seeded, VmHWM {}",
        rss_of(&pid, "VmHWM:")
    );
    println!("plumb process before the audits: VmHWM {}", rss("VmHWM:"));

    std::env::set_var("PLUMB_BENCH_TOKEN", "sim-viewer-token");
    let mut ctx = Ctx::new("bench", std::env::temp_dir());
    ctx.timeout = Duration::from_secs(600);

    for concurrency in [1, 8] {
        let p = plumb_grafana::build(
            &json!({"url": url, "token_env": "PLUMB_BENCH_TOKEN", "concurrency": concurrency}),
            Path::new("."),
        )
        .map_err(|e| format!("build provider: {e}"))?;
        let t = Instant::now();
        let desired = p
            .desired(dir.path(), dir.path(), &ctx)
            .map_err(|e| format!("desired: {e}"))?;
        let t_desired = t.elapsed();
        let hwm_before_live = rss("VmHWM:");
        ask("count")?;
        let t = Instant::now();
        let live = p.live(&desired, &ctx).await.map_err(|e| format!("live: {e}"))?;
        let t_live = t.elapsed();
        let requests = ask("count")?;
        let t = Instant::now();
        let mut drift = 0;
        for d in &desired.resources {
            let Some(l) = live.resources.iter().find(|l| l.id == d.id) else {
                drift += 1;
                continue;
            };
            let (mut dv, mut lv) = (d.body(), l.body());
            p.normalize(Pair {
                id: &d.id,
                kind: &d.kind,
                desired: Some(&mut dv),
                live: Some(&mut lv),
            });
            if dv != lv {
                drift += 1;
            }
        }
        let t_compare = t.elapsed();
        println!(
            "concurrency {concurrency}: desired {:.2}s, live {:.2}s ({requests} requests), compare {:.2}s, drift {drift}, plumb VmHWM before live {hwm_before_live}, after {}",
            t_desired.as_secs_f64(),
            t_live.as_secs_f64(),
            t_compare.as_secs_f64(),
            rss("VmHWM:")
        );
    }
    println!("simulator process peak: VmHWM {}", ask("rss")?);
    drop(to_child);
    let _ = child.wait();
    Ok(())
}
