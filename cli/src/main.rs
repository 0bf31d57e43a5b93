//! `runledger`: one binary, thin subcommands. Each parses its typed settings (flags and
//! environment, read in one place: `settings.rs`), installs logging and calls into a library.

mod connect;
mod logging;
mod publish;
mod settings;

use clap::{Parser, Subcommand};

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
    /// Publish events: one from flags, or many as NDJSON from stdin or a file.
    Publish(publish::Args),
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
            Command::Publish(args) => publish::run(args).await,
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
