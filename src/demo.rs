//! `plumb demo`: unpacks the bundled example (examples/demo), starts the
//! built-in simulators of a Kubernetes API server, a Grafana, a Mimir ruler
//! and GitHub on loopback, loads each with the example's desired state, changes
//! a few things by hand the way people do (`kubectl set image`, an edit in
//! the Grafana UI, a tweaked alert threshold, a debug pod left behind), and
//! prints the plan: drift of every kind, who made it, and a masked secret.
//! Exec targets over JSON files show the plugin protocol. Without `--once`
//! it then shows the metrics such an audit exports.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::audit::{Auditor, SourceOverride};
use crate::cli::DemoArgs;
use crate::config::Config;
use crate::registry::Registry;
use crate::render;

/// The example's files, compiled in so the demo runs from any directory.
const FILES: &[(&str, &str)] = &[
    ("plumb.yaml", include_str!("../examples/demo/plumb.yaml")),
    (
        "policies/accounts.yaml",
        include_str!("../examples/demo/policies/accounts.yaml"),
    ),
    (
        "policies/services.yaml",
        include_str!("../examples/demo/policies/services.yaml"),
    ),
    (
        "desired/accounts/people.yaml",
        include_str!("../examples/demo/desired/accounts/people.yaml"),
    ),
    (
        "desired/services/web.yaml",
        include_str!("../examples/demo/desired/services/web.yaml"),
    ),
    (
        "desired/services/api.json",
        include_str!("../examples/demo/desired/services/api.json"),
    ),
    (
        "desired/flags/flags.yaml",
        include_str!("../examples/demo/desired/flags/flags.yaml"),
    ),
    (
        "desired/cluster/shop.yaml",
        include_str!("../examples/demo/desired/cluster/shop.yaml"),
    ),
    (
        "desired/dashboards/shop/_folder.yaml",
        include_str!("../examples/demo/desired/dashboards/shop/_folder.yaml"),
    ),
    (
        "desired/dashboards/shop/cart-latency.json",
        include_str!("../examples/demo/desired/dashboards/shop/cart-latency.json"),
    ),
    (
        "desired/rules/shop.yaml",
        include_str!("../examples/demo/desired/rules/shop.yaml"),
    ),
    (
        "desired/github/org.yaml",
        include_str!("../examples/demo/desired/github/org.yaml"),
    ),
    (
        "live/accounts.json",
        include_str!("../examples/demo/live/accounts.json"),
    ),
    (
        "live/services.json",
        include_str!("../examples/demo/live/services.json"),
    ),
    ("live/flags.json", include_str!("../examples/demo/live/flags.json")),
];

/// The demo's Grafana simulator token (not a secret: the simulator's own).
const GRAFANA_TOKEN_ENV: &str = "PLUMB_DEMO_GRAFANA_TOKEN";
/// Likewise for the GitHub simulator.
const GITHUB_TOKEN_ENV: &str = "PLUMB_DEMO_GITHUB_TOKEN";

/// Writes the example below `dir`.
pub fn unpack(dir: &Path) -> anyhow::Result<()> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The running simulators; they stop when this is dropped.
pub struct Simulators {
    pub kubernetes: plumb_kubernetes::sim::Sim,
    pub grafana: plumb_grafana::sim::Sim,
    pub ruler: plumb_prometheus::sim::Simulator,
    pub github: plumb_github::sim::Sim,
}

/// Starts the simulators, loads the desired state below `dir/desired`,
/// changes things by hand, and adds their targets to `dir/plumb.yaml`.
pub async fn start_simulators(dir: &Path) -> anyhow::Result<Simulators> {
    let desired = dir.join("desired");

    // Kubernetes: everything applied as `kubectl` would, then hand edits.
    let kubernetes = plumb_kubernetes::sim::start_seeded(&desired.join("cluster"))
        .await
        .context("starting the Kubernetes API simulator")?;
    kubernetes
        .edit("apps/v1", "Deployment", Some("shop"), "cart", "kubectl-set", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example.com/cart:2.1.1-hotfix");
        })
        .context("editing the cart Deployment")?;
    kubernetes
        .edit("v1", "Secret", Some("shop"), "cart-db", "kubectl-edit", |s| {
            // "hunter2", base64: a changed secret shows only as a changed digest.
            s["data"]["password"] = json!("aHVudGVyMg==");
        })
        .context("editing the cart-db Secret")?;
    kubernetes
        .delete("v1", "Service", Some("shop"), "cart")
        .context("deleting the cart Service")?;
    kubernetes
        .apply_as(
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "debug-shell", "namespace": "shop"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "debug"}},
                         "template": {"metadata": {"labels": {"app": "debug"}},
                                      "spec": {"containers": [{"name": "sh", "image": "busybox:1.36", "command": ["sleep", "infinity"]}]}}}
            }),
            "kubectl-client-side-apply",
            false,
        )
        .context("adding a debug Deployment")?;
    std::fs::write(dir.join("kubeconfig.yaml"), kubernetes.kubeconfig_yaml(None)).context("writing kubeconfig.yaml")?;

    // Grafana: a dashboard edited in the UI, and one nobody put in Git.
    let grafana = plumb_grafana::sim::Sim::start(plumb_grafana::sim::SimOptions::default())
        .await
        .context("starting the Grafana simulator")?;
    grafana
        .seed_dir(&desired.join("dashboards"))
        .context("loading dashboards into the Grafana simulator")?;
    grafana.edit_dashboard("cart-latency", "alice", |d| {
        d["title"] = json!("Cart latency (tweaked)");
        d["refresh"] = json!("5s");
    });
    grafana.put_dashboard(
        "shop",
        json!({"uid": "scratch", "title": "Scratch pad", "panels": [], "schemaVersion": 39}),
        "bob",
    );
    std::env::set_var(GRAFANA_TOKEN_ENV, "sim-admin-token");

    // A Mimir ruler: someone raised an alert threshold.
    let ruler = plumb_prometheus::sim::Simulator::start_seeded(&desired.join("rules"), "demo")
        .await
        .context("starting the ruler simulator")?;
    ruler.edit_expr(
        "demo",
        "shop",
        "cart",
        "CartHighErrorRate",
        "sum(rate(http_requests_total{job=\"cart\",code=~\"5..\"}[5m])) / sum(rate(http_requests_total{job=\"cart\"}[5m])) > 0.5",
    );

    // GitHub: someone added a member by hand, a team lost one, and an
    // outside collaborator appeared.
    let github = plumb_github::sim::Sim::start(plumb_github::sim::SimOptions::default())
        .await
        .context("starting the GitHub simulator")?;
    github
        .seed_dir(&desired.join("github"))
        .context("loading the org into the GitHub simulator")?;
    github.add_user("mallory");
    github.set_member("acme", "mallory", "admin");
    github.set_team_member("acme", "platform", "carol", "maintainer");
    github.add_user("eve");
    github.add_outside_collaborator("acme", "eve");
    std::env::set_var(GITHUB_TOKEN_ENV, "sim-admin-token");

    let extra = format!(
        "  - name: cluster\n    provider: kubernetes\n    path: cluster\n    labels: {{ team: platform }}\n    schedule: \"*/10 * * * * *\"\n    connection: {{ kubeconfig: kubeconfig.yaml, namespace: shop }}\n  - name: dashboards\n    provider: grafana\n    path: dashboards\n    labels: {{ team: observability }}\n    schedule: \"*/10 * * * * *\"\n    connection: {{ url: \"{}\", token_env: {GRAFANA_TOKEN_ENV} }}\n  - name: rules\n    provider: prometheus\n    path: rules\n    labels: {{ team: observability }}\n    schedule: \"*/10 * * * * *\"\n    connection: {{ ruler_url: \"{}\", tenant: demo }}\n  - name: github\n    provider: github\n    path: github\n    labels: {{ team: security }}\n    schedule: \"*/10 * * * * *\"\n    connection: {{ org: acme, token_env: {GITHUB_TOKEN_ENV}, api_url: \"{}\" }}\n",
        grafana.url(),
        ruler.url(),
        github.url()
    );
    let config = dir.join("plumb.yaml");
    let mut text = std::fs::read_to_string(&config).context("reading the demo's plumb.yaml")?;
    text.push_str(&extra);
    std::fs::write(&config, text).context("writing the demo's plumb.yaml")?;
    Ok(Simulators {
        kubernetes,
        grafana,
        ruler,
        github,
    })
}

pub async fn run(args: &DemoArgs, registry: &Registry) -> anyhow::Result<i32> {
    let (dir, _keep) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("plumb-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    unpack(&dir)?;
    let _simulators = start_simulators(&dir).await?;
    let config = Config::load(&dir.join("plumb.yaml"))?;
    let auditor = Auditor::new(&config, registry)?;
    let targets = auditor.select(&[])?;
    let (plan, _) = auditor.run(&targets, &SourceOverride::default()).await;
    let color = render::use_color(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    println!("plumb demo: the example lives in {}\n", dir.display());
    print!("{}", render::text(&plan, color));
    let mut state = crate::state::State::load(&config.state_dir);
    state.record(&plan);
    if !args.once {
        let gauges = crate::metrics::gauges(&config, &plan, &state)?;
        println!("\nThe metrics this audit exports (what Prometheus scrapes):\n");
        for line in gauges.lines().filter(|l| {
            l.starts_with("plumb_plan_exit_code") || l.starts_with("plumb_drifted_resources") && !l.ends_with(" 0")
        }) {
            println!("  {line}");
        }
        // Now the daemon, against the same simulators, every 10 seconds.
        let config_path = dir.join("plumb.yaml");
        let text = std::fs::read_to_string(&config_path)?
            .replace("listen: 127.0.0.1:9469", &format!("listen: {}", args.listen));
        std::fs::write(&config_path, text)?;
        println!(
            "\nServing the status page on http://{listen}/ and metrics on http://{listen}/metrics; audits every 10 s.\n\
             Change a live system and watch the next audit pick it up, for example:\n  \
             kubectl --kubeconfig {dir}/kubeconfig.yaml -n shop set env deployment/cart LOG_LEVEL=debug\n  \
             edit {dir}/live/flags.json\n\
             Ctrl-C stops the demo.",
            listen = args.listen,
            dir = dir.display()
        );
        return crate::serve::serve(&config_path, registry.clone()).await;
    }
    // The demo is seeded with drift on purpose; it fails only when a target
    // could not be audited.
    Ok(if plan.exit_code == 1 { 1 } else { 0 })
}
