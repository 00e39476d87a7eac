//! The command line (README, "Commands"): arguments only; the work is in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render::Format;

#[derive(Debug, Parser)]
#[command(name = "plumb", version, about = "Audit live systems against the desired state kept in Git", long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `plumb=debug`); overrides PLUMB_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Config file; else $PLUMB_CONFIG, else ./plumb.yaml.
    #[arg(short = 'c', long = "config", env = "PLUMB_CONFIG", default_value = "plumb.yaml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One audit of the selected targets; prints the plan. Exit 0 in sync, 2 drift, 1 error.
    Plan(PlanArgs),
    /// Reconcile what policy allows.
    Apply(ApplyArgs),
    /// The daemon: scheduled audits, metrics, HTTP API and status page, reconcile.
    Serve(ServeArgs),
    /// Check config, policies and all desired state; report every problem with file and line.
    Validate(ValidateArgs),
    /// Write the live state of a target as desired-state files.
    Import(ImportArgs),
    /// Compliance report from the audit history, or (--verify) a check of its integrity.
    Report(ReportArgs),
    /// The history's signing key: print its public half, or rotate it.
    History(HistoryArgs),
    /// Run against the built-in simulators, seeded with drift.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this target (repeatable); all by default.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the plan here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Audit another branch, tag or commit of the Git source.
    #[arg(long = "ref", conflicts_with = "source_dir")]
    pub reference: Option<String>,
    /// Audit a local checkout instead of the configured source.
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// Also write the plan gauges (docs/plan-format.md) to this file (atomically), for node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Also store the plan in the audit history.
    #[arg(long)]
    pub record: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Apply exactly this saved JSON plan; refused if the commit or a live object moved since.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Print which changes policy would allow or refuse, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also store the plan and what apply did in the audit history.
    #[arg(long)]
    pub record: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also read the live systems (resolves kinds, users, folders); changes nothing.
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub target: String,
    /// Directory to write (default: ./imported/<target>). It must be empty
    /// or not exist yet, unless --force.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write into a directory that holds files already, replacing files of
    /// the same name. Symbolic links are never written through, even then.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How far back (`30d`, `12h`, `90d`).
    #[arg(long, default_value = "30d")]
    pub since: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    pub format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only these targets (repeatable); default: every target with records.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Check every record and signed digest of every target and name each
    /// problem (altered, removed, inserted, out of order, unsigned, unknown
    /// key, chain forked). Exit 0 only when all is intact. `--format json`
    /// for machines; other formats print text.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: trust only the keys in this file (as `plumb history
    /// public-key` prints them), kept where whoever can write the store
    /// cannot; default: history.public_key, else this installation's key.
    #[arg(long, requires = "verify")]
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: HistoryAction,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Print the installation's public keys (current last), one per line,
    /// for `report --verify --public-key FILE`. Creates the key on first use.
    PublicKey(ConfigArg),
    /// Make a new signing key: every target's digest chain announces it
    /// under the old key's signature, then the new key signs.
    RotateKey(ConfigArg),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the plan and exit (without it the demo goes on serving the
    /// status page and metrics until interrupted).
    #[arg(long)]
    pub once: bool,
    /// Where the demo's daemon listens.
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub listen: String,
    /// Where to unpack the demo (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}
