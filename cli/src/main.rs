//! `runledger`: one binary, thin subcommands. Each parses its typed settings (flags and
//! environment, read in one place: `settings.rs`), installs logging and calls into a library.

mod bench;
mod connect;
mod db;
mod endpoints;
mod explain;
mod infra;
mod logging;
mod migrate;
mod partitions;
mod project;
mod publish;
mod reconcile;
mod replay;
mod run;
mod serve;
mod settings;
mod shutdown;
mod status;
mod supervise;
mod up;
mod watchdog;
mod worker;

use clap::{Parser, Subcommand};

/// The projector and replay allocate many small, short-lived values (parsed events, rows);
/// mimalloc handles that pattern much better than the system allocator (measured in
/// `runledger bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "runledger",
    version,
    about = "A durable, replayable control plane for AI-agent runs, on NATS JetStream and PostgreSQL"
)]
struct Cli {
    /// Log format: `human` (default) or `json` (one JSON object per line).
    #[arg(
        long,
        global = true,
        env = "RUNLEDGER_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything: migrations, the stream and the projector (starts private servers under
    /// ./.runledger when no NATS_URL/DATABASE_URL is set and nothing answers locally).
    Up(up::Args),
    /// Run the projector alone.
    Project(project::Args),
    /// Apply pending database migrations (read models and the reconciler's schema).
    Migrate(migrate::Args),
    /// Show the stream position, the projector's and the reconciler's positions and lag, dead
    /// letters and unpublished follow-ups.
    Status(status::Args),
    /// Explain the reconciler's decisions on an issue or a run: rule, cause, inputs, outcome.
    Explain(explain::Args),
    /// Publish events: one from flags, or many as NDJSON from stdin or a file.
    Publish(publish::Args),
    /// Supervise one agent command as a run: run.started, heartbeats, timeout, cancel, run.finished.
    Run(run::Args),
    /// Watch this host's runs: report detached and lost agent processes, reap orphaned groups.
    Watchdog(watchdog::Args),
    /// Run the reconciler alone (retries, recovery, liveness, continuations); `--dry-run
    /// --from-seq N` replays history through its rules and prints what it would do differently.
    Reconcile(reconcile::Args),
    /// Rebuild the read models from history into a fresh schema, check parity and swap.
    Replay(replay::Args),
    /// Measure throughput against raw ceilings taken in the same run (scratch stream and database).
    Bench(bench::Args),
    /// Serve the HTTP read API and the live run-ledger dashboard (also part of `up`).
    Serve(serve::Args),
    /// Run one instance of the partitioned projector and reconciler: instances share the
    /// stream's partitions (RUNLEDGER_PARTITIONS) and take over a dead one's.
    Worker(worker::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::install(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Project(args) => project::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Explain(args) => explain::run(args).await,
            Command::Publish(args) => publish::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Watchdog(args) => watchdog::run(args).await,
            Command::Reconcile(args) => reconcile::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Worker(args) => worker::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runledger: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
