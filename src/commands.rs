//! The commands (README, "Commands"), wired from the library's parts. Each returns the
//! process exit code; an `Err` is an error of the whole command (exit 1).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::Utc;
use plumb_model::Live;

use crate::apply;
use crate::audit::{Auditor, SourceOverride, TargetRun};
use crate::cli::{ApplyArgs, ImportArgs, PlanArgs, ReportArgs, ReportFormat, ValidateArgs};
use crate::config::Config;
use crate::history;
use crate::metrics;
use crate::plan::Plan;
use crate::registry::Registry;
use crate::render;
use crate::source;
use crate::state::State;
use std::collections::BTreeMap;

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// `plumb plan`.
pub async fn plan(args: &PlanArgs, registry: &Registry) -> anyhow::Result<i32> {
    let config = load_config(&args.config.config)?;
    let auditor = Auditor::new(&config, registry)?;
    let targets = auditor.select(&args.targets)?;
    let overrides = SourceOverride {
        reference: args.reference.clone(),
        dir: args.source_dir.clone(),
    };
    let (plan, runs) = auditor.run(&targets, &overrides).await;
    let to_terminal = args.out.is_none() && std::io::stdout().is_terminal();
    let text = render::render(&plan, args.format, render::use_color(to_terminal));
    emit(&text, args.out.as_deref())?;
    record_state(&config, &plan, args.metrics_file.as_deref())?;
    if args.record {
        record_history(&config, &plan, &runs, &BTreeMap::new()).await;
    }
    Ok(plan.exit_code)
}

fn emit(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(path) => metrics::write_atomically(path, text).with_context(|| format!("writing {}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

/// Stores `plan` in the history, with each target's policy digest,
/// suspension and what apply did, then a signed digest for each target
/// recorded, so the run ends with every record vouched for. A failure is
/// logged and said on stderr; the plan already printed stands.
pub async fn record_history(
    config: &Config,
    plan: &Plan,
    runs: &[TargetRun],
    reconciled: &BTreeMap<String, Vec<plumb_model::ChangeResult>>,
) -> bool {
    let history = match history::History::open(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("warning: plan not recorded: {e}");
            return false;
        }
    };
    let outcome = history::record_runs(&history, plan, runs, reconciled).await;
    for (target, error) in &outcome.failed {
        eprintln!("warning: history record of {target} not written: {error}");
    }
    let recorded: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
    let digests_failed = history
        .write_digests(&recorded, history::digest::DigestReason::Run)
        .await;
    for (target, error) in &digests_failed {
        eprintln!("warning: history digest of {target} not written: {error}");
    }
    history::apply_retention(config);
    outcome.failed.is_empty() && digests_failed.is_empty()
}

/// `import --out DIR` writes into an empty or new directory unless
/// `--force`: it never overwrites files silently.
fn refuse_non_empty(out: &Path, force: bool) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", out.display())),
        Ok(meta) if !meta.is_dir() && !meta.file_type().is_symlink() => {
            bail!("--out {} exists and is not a directory", out.display())
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
            if entries.next().is_some() && !force {
                bail!(
                    "--out {} is not empty; import writes into an empty or new directory (--force writes into it, replacing files of the same name)",
                    out.display()
                );
            }
            Ok(())
        }
    }
}

/// `plumb report`.
pub async fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let config = load_config(&args.config.config)?;
    let store = history::open(&config).await?;
    let targets = if args.targets.is_empty() {
        history::targets_in(store.as_ref()).await?
    } else {
        args.targets.clone()
    };
    if args.verify {
        let options = verify_options(&config, args.public_key.as_deref(), store.as_ref())?;
        let verdict = history::verify::verify(store.as_ref(), &targets, &options).await?;
        let text = match args.format {
            ReportFormat::Json => history::verify::json(&verdict),
            _ => history::verify::text(&verdict),
        };
        emit(&text, args.out.as_deref())?;
        return Ok(if verdict.intact { 0 } else { 1 });
    }
    let window = crate::config::parse_duration(&args.since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until = Utc::now();
    let since = until - chrono::Duration::from_std(window).context("--since is too long")?;
    let unknown_after = chrono::Duration::from_std(
        config
            .history
            .unknown_after
            .unwrap_or(std::time::Duration::from_secs(3600)),
    )
    .context("history.unknown_after is too long")?;
    let report = history::report::build(store.as_ref(), &targets, since, until, unknown_after).await?;
    let text = match args.format {
        ReportFormat::Markdown => history::report::markdown(&report),
        ReportFormat::Html => history::report::html(&report),
        ReportFormat::Json => history::report::json(&report),
    };
    emit(&text, args.out.as_deref())?;
    Ok(0)
}

/// Which keys `--verify` trusts: `--public-key`, else `history.public_key`,
/// else this installation's own keys; and this installation's head hints
/// when its `state_dir` is here.
fn verify_options(
    config: &Config,
    public_key: Option<&Path>,
    store: &dyn history::Store,
) -> anyhow::Result<history::verify::Options> {
    let file = public_key
        .map(Path::to_path_buf)
        .or_else(|| config.history.public_key.clone());
    let (trusted, trust) = match &file {
        Some(path) => (
            history::signing::read_public_keys(path)?,
            format!("the public keys in {}", path.display()),
        ),
        None => match history::signing::load_existing(&config.state_dir)? {
            Some(keyring) => (
                keyring.all_public(),
                format!("this installation's keys ({})", config.state_dir.display()),
            ),
            None => (Vec::new(), "the keys the digests carry".to_string()),
        },
    };
    let hints = history::chain::hints_dir(&config.state_dir, store);
    Ok(history::verify::Options {
        trusted,
        trust,
        keep: config.history.keep,
        hints: hints.is_dir().then_some(hints),
        now: Utc::now(),
    })
}

/// `plumb history public-key` and `plumb history rotate-key`.
pub async fn history(args: &crate::cli::HistoryArgs) -> anyhow::Result<i32> {
    match &args.action {
        crate::cli::HistoryAction::PublicKey(config) => {
            let config = load_config(&config.config)?;
            let keyring = history::signing::load_or_create(&config.state_dir)?;
            let mut text = String::new();
            for key in keyring.all_public() {
                text.push_str(&key.to_line());
                text.push('\n');
            }
            emit(&text, None)?;
        }
        crate::cli::HistoryAction::RotateKey(config) => {
            let config = load_config(&config.config)?;
            let history = history::History::open(&config).await?;
            let key = history.rotate_key().await?;
            println!("{}", key.to_line());
            eprintln!(
                "rotated: every target's digest chain announces {} under the old key; give auditors the new `plumb history public-key` output",
                key.id()
            );
        }
    }
    Ok(0)
}

/// Remembers drift-since and last-run times, and writes the metrics file.
fn record_state(config: &Config, plan: &Plan, metrics_file: Option<&Path>) -> anyhow::Result<()> {
    let mut state = State::load(&config.state_dir);
    state.record(plan);
    if let Err(e) = state.save(&config.state_dir) {
        tracing::warn!(error = %e, "could not save state in {}", config.state_dir.display());
    }
    if let Some(file) = metrics_file {
        let text = metrics::gauges(config, plan, &state).context("rendering metrics")?;
        metrics::write_atomically(file, &text).with_context(|| format!("writing metrics to {}", file.display()))?;
    }
    Ok(())
}

/// `plumb apply`.
pub async fn apply(args: &ApplyArgs, registry: &Registry) -> anyhow::Result<i32> {
    let config = load_config(&args.config.config)?;
    let auditor = Auditor::new(&config, registry)?;
    let mut runs: Vec<TargetRun>;
    let mut refusals: Vec<String> = Vec::new();

    match &args.plan {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading saved plan {}", file.display()))?;
            let saved: Plan =
                serde_json::from_str(&text).with_context(|| format!("{} is not a plumb JSON plan", file.display()))?;
            apply::check_saved(&saved).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(why) = saved.seal_problem(&auditor.masker) {
                bail!("{}: refusing the saved plan: {why}", file.display());
            }
            let names: Vec<String> = if args.targets.is_empty() {
                saved.targets.iter().map(|t| t.name.clone()).collect()
            } else {
                args.targets.clone()
            };
            let targets = auditor.select(&names)?;
            runs = Vec::new();
            for spec in targets {
                let Some(saved_target) = saved.targets.iter().find(|t| t.name == spec.name) else {
                    bail!("target {} is not in the saved plan {}", spec.name, file.display());
                };
                let source_info = saved_target.source.as_ref().unwrap_or(&saved.source);
                // A plan made from a plain directory (`dir:` or `--source-dir`)
                // is checked against that directory again.
                let src_spec = match &source_info.commit {
                    Some(_) => spec.source.clone().unwrap_or_else(|| config.source.clone()),
                    None => crate::config::SourceSpec {
                        git: None,
                        dir: Some(PathBuf::from(&source_info.url)),
                    },
                };
                // The commit the plan was made at must still be what the ref names.
                if let (Some(git), Some(commit)) = (&src_spec.git, &source_info.commit) {
                    let reference = source_info.reference.clone().unwrap_or_else(|| git.reference.clone());
                    let now = auditor
                        .checkout(&src_spec, Some(&reference))
                        .await
                        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))?;
                    let now_commit = now.info.commit.unwrap_or_default();
                    if &now_commit != commit {
                        refusals.push(format!(
                            "{}: the source moved since the plan was made: {reference} was {commit}, is now {now_commit}",
                            spec.name
                        ));
                        continue;
                    }
                }
                // Audit again at exactly the plan's commit.
                let checkout = auditor.checkout(&src_spec, source_info.commit.as_deref()).await;
                let mut run = auditor.run_target(spec, checkout, Utc::now()).await;
                let moved = apply::stale_changes(&saved_target.changes, &run.plan.changes);
                if !moved.is_empty() {
                    refusals.push(format!(
                        "{}: the saved plan no longer matches, make a new plan:\n    {}",
                        spec.name,
                        moved.join("\n    ")
                    ));
                    continue;
                }
                apply::restrict_to(&mut run, &saved_target.changes);
                runs.push(run);
            }
        }
        None => {
            let targets = auditor.select(&args.targets)?;
            let (_plan, fresh) = auditor.run(&targets, &SourceOverride::default()).await;
            runs = fresh;
        }
    }

    for r in &refusals {
        eprintln!("refused: {r}");
    }
    let decisions: Vec<_> = runs.iter().map(apply::decide).collect();
    print!("{}", apply::render_decisions(&decisions));
    if args.dry_run {
        let plans: Vec<_> = runs.iter().map(|r| r.plan.clone()).collect();
        let code = Plan::compute_exit_code(&plans);
        return Ok(if refusals.is_empty() { code } else { 1 });
    }
    let allowed: usize = decisions.iter().map(|d| d.allowed().count()).sum();
    if allowed > 0 && !args.auto_approve {
        if !std::io::stdin().is_terminal() {
            eprintln!("refusing to apply {allowed} change(s) without --auto-approve: there is no terminal to ask");
            return Ok(1);
        }
        print!("\nApply these {allowed} change(s)? Only 'yes' will be accepted: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Apply cancelled.");
            return Ok(1);
        }
    }

    let started_at = Utc::now();
    let mut results = Vec::new();
    let mut by_target: BTreeMap<String, Vec<plumb_model::ChangeResult>> = BTreeMap::new();
    let mut still_drifting = Vec::new();
    for (run, decision) in runs.iter().zip(&decisions) {
        let outcome = apply::execute(run, decision).await;
        let applied: Vec<String> = outcome
            .iter()
            .filter(|r| matches!(r.outcome, plumb_model::Outcome::Applied))
            .map(|r| r.id.clone())
            .collect();
        by_target.insert(run.spec.name.clone(), outcome.clone());
        results.extend(outcome);
        if applied.is_empty() {
            continue;
        }
        // Converged means the live system now matches: audit again.
        // Audit the same tree again.
        let checkout = run.checkout.clone().ok_or_else(|| "source: no checkout".to_string());
        let after = auditor.run_target(&run.spec, checkout, Utc::now()).await;
        for id in applied {
            if after.plan.changes.iter().any(|c| c.id == id) {
                still_drifting.push(id);
            }
        }
    }
    print!("{}", apply::render_results(&results, &still_drifting));
    if args.record {
        let plans: Vec<_> = runs.iter().map(|r| r.plan.clone()).collect();
        let plan = Plan {
            format_version: crate::plan::FORMAT_VERSION,
            plumb_version: env!("CARGO_PKG_VERSION").to_string(),
            source: runs
                .iter()
                .find(|r| r.spec.source.is_none())
                .and_then(|r| r.checkout.as_ref())
                .map(|c| c.info.clone())
                .unwrap_or_default(),
            started_at,
            finished_at: Utc::now(),
            exit_code: Plan::compute_exit_code(&plans),
            targets: plans,
            seal: None,
        };
        record_history(&config, &plan, &runs, &by_target).await;
    }
    let code = apply::exit_code(&decisions, &results, &still_drifting);
    Ok(if refusals.is_empty() { code } else { 1 })
}

/// `plumb validate`: every problem, each with file and line; changes nothing.
pub async fn validate(args: &ValidateArgs, registry: &Registry) -> anyhow::Result<i32> {
    let config = match Config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return Ok(1);
        }
    };
    let auditor = Auditor::new(&config, registry)?;
    let mut problems = 0;
    let mut checkouts = std::collections::HashMap::new();
    for spec in &config.targets {
        let src = spec.source.clone().unwrap_or_else(|| config.source.clone());
        let key = format!("{src:?}");
        let checkout = match checkouts.get(&key) {
            Some(c) => Clone::clone(c),
            None => {
                let c = auditor.checkout(&src, None).await;
                checkouts.insert(key, c.clone());
                c
            }
        };
        let result = validate_target(&auditor, spec, checkout, args.live).await;
        match result {
            Ok(summary) => println!("{}: ok ({summary})", spec.name),
            Err(message) => {
                problems += 1;
                println!("{}: {message}", spec.name);
            }
        }
    }
    if problems == 0 {
        println!("{}: valid ({} target(s))", config.file.display(), config.targets.len());
        Ok(0)
    } else {
        println!("{problems} of {} target(s) have problems", config.targets.len());
        Ok(1)
    }
}

async fn validate_target(
    auditor: &Auditor<'_>,
    spec: &crate::config::TargetSpec,
    checkout: Result<source::Checkout, String>,
    live: bool,
) -> Result<String, String> {
    if live {
        let run = auditor.run_target(spec, checkout, Utc::now()).await;
        return match run.plan.error {
            Some(e) => Err(e),
            None => Ok(format!(
                "{} desired document(s), live state read",
                run.desired_count.unwrap_or(0)
            )),
        };
    }
    let tz: chrono_tz::Tz = spec
        .timezone
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    if let Some(file) = &spec.policy {
        crate::policy::Policy::load(file, tz).map_err(|e| format!("policy: {e}"))?;
    }
    let provider = auditor
        .registry
        .build(&spec.provider, &spec.connection, &auditor.config.base_dir())
        .map_err(|e| auditor.describe_build_error(spec, e))?;
    let checkout = checkout?;
    let dir = checkout.root.join(&spec.path);
    if !dir.is_dir() {
        return Err(format!("path {} does not exist in the source", spec.path.display()));
    }
    let ctx = plumb_model::Ctx::new(
        spec.name.clone(),
        crate::audit::cache_dir(&auditor.config.state_dir, &spec.name),
    );
    let desired = provider
        .desired(&checkout.root, &dir, &ctx)
        .map_err(|e| format!("desired state: {e}"))?;
    crate::plan::check_unique_ids(&desired.resources).map_err(|e| format!("desired state: {e}"))?;
    Ok(format!("{} desired document(s)", desired.resources.len()))
}

/// `plumb import`.
pub async fn import(args: &ImportArgs, registry: &Registry) -> anyhow::Result<i32> {
    let config = load_config(&args.config.config)?;
    let auditor = Auditor::new(&config, registry)?;
    let spec = auditor.select(std::slice::from_ref(&args.target))?[0];
    let provider = registry
        .build(&spec.provider, &spec.connection, &config.base_dir())
        .map_err(|e| anyhow::anyhow!(auditor.describe_build_error(spec, e)))?;
    let mut ctx = plumb_model::Ctx::new(
        spec.name.clone(),
        crate::audit::cache_dir(&config.state_dir, &spec.name),
    );
    ctx.timeout = spec.timeout.unwrap_or(crate::audit::DEFAULT_TIMEOUT);
    // Import reads everything in the connection's scope: there is no desired
    // state yet to narrow it.
    let live: Live = tokio::time::timeout(ctx.timeout, provider.live(&Default::default(), &ctx))
        .await
        .map_err(|_| anyhow::anyhow!("target {}: reading live state timed out", spec.name))?
        .map_err(|e| anyhow::anyhow!("target {}: live state: {e}", spec.name))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("imported").join(&spec.name));
    refuse_non_empty(&out, args.force)?;
    // The provider writes into a fresh directory of plumb's own; only then
    // are the files placed into `out`, never through a link.
    std::fs::create_dir_all(&config.state_dir).with_context(|| format!("creating {}", config.state_dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(&config.state_dir)
        .with_context(|| format!("creating a staging directory in {}", config.state_dir.display()))?;
    let staged = provider
        .import(&live, staging.path(), &ctx)
        .await
        .map_err(|e| anyhow::anyhow!("target {}: import: {e}", spec.name))?;
    let files = crate::fsutil::place_tree(staging.path(), &staged, &out, args.force)?;
    println!(
        "Imported {} live document(s) of {} into {} ({} file(s)).",
        live.resources.len(),
        spec.name,
        out.display(),
        files.len()
    );
    Ok(0)
}
