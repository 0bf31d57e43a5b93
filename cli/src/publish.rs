//! `runledger publish` (being written).

use crate::settings::NatsArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
}

pub async fn run(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("runledger publish is not available yet")
}
