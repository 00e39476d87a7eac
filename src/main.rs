//! The `plumb` binary: parses arguments, sets up logging, runs a command and
//! exits with its code (0 in sync, 2 drift, 1 error).

use std::process::ExitCode;

use clap::Parser;
use plumb::cli::{Cli, Command, LogFormat};
use plumb::registry::Registry;
use tracing_subscriber::EnvFilter;

/// An audit parses and drops many small JSON trees; mimalloc makes that
/// about a fifth faster than the system allocator (BENCHMARKS.md). It is
/// built with `no_thp`: with transparent huge pages its arenas grew the
/// daemon's RSS by 16% over a 2,000-cycle soak while the heap stayed flat.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    plumb::install_crypto_provider();
    // A usage error exits 1 (an error), not clap's 2, which `plan` uses for drift.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    init_logging(cli.log_format, cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let registry = Registry::builtin();
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Plan(args) => plumb::commands::plan(args, &registry).await,
            Command::Apply(args) => plumb::commands::apply(args, &registry).await,
            Command::Serve(args) => plumb::serve::serve(&args.config.config, registry.clone()).await,
            Command::Validate(args) => plumb::commands::validate(args, &registry).await,
            Command::Import(args) => plumb::commands::import(args, &registry).await,
            Command::Report(args) => plumb::commands::report(args).await,
            Command::History(args) => plumb::commands::history(args).await,
            Command::Demo(args) => plumb::demo::run(args, &registry).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| std::env::var("PLUMB_LOG").ok().map(EnvFilter::new))
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(plumb::render::use_color(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
