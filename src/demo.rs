//! `plumb demo`: unpacks the bundled example (examples/demo) into a
//! directory, runs a plan against its live systems, seeded with drift of
//! every kind (create, update, delete, unmanaged, an acknowledgement and a
//! masked secret), and shows the plan and the metrics an audit exports.
//! Each provider adds its simulator here as it lands.

use std::path::Path;

use anyhow::Context;

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
        "live/accounts.json",
        include_str!("../examples/demo/live/accounts.json"),
    ),
    (
        "live/services.json",
        include_str!("../examples/demo/live/services.json"),
    ),
    ("live/flags.json", include_str!("../examples/demo/live/flags.json")),
];

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
        for line in gauges.lines().filter(|l| !l.starts_with('#')) {
            println!("  {line}");
        }
        match &args.dir {
            Some(dir) => println!(
                "\nTry it by hand: cd {} && plumb plan --format json, or edit live/*.json and plan again.",
                dir.display()
            ),
            None => println!(
                "\nThe example was unpacked into a temporary directory that is now removed; \
                 `plumb demo --dir ./plumb-demo` keeps it, to edit and plan again by hand."
            ),
        }
    }
    // The demo is seeded with drift on purpose; it fails only when a target
    // could not be audited.
    Ok(if plan.exit_code == 1 { 1 } else { 0 })
}
