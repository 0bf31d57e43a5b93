//! `runledger watchdog`: the per-host process watchdog on its own (one per agent host), and its
//! settings, which `runledger up` also uses to run the watchdog beside the projector on a
//! single-host install. The work is `producers::watchdog`; this file only wires settings.

use crate::settings::{parse_duration, DbArgs, NatsArgs, StreamArgs};
use crate::{db, shutdown};
use anyhow::Context;
use producers::watchdog::{Watchdog, WatchdogSettings};
use std::process::ExitCode;
use std::time::Duration;

/// Which host this process is: the supervisor writes it into `run.started`, the watchdog
/// watches the runs carrying it.
#[derive(clap::Args, Clone, Debug)]
pub struct HostArgs {
    /// Host id of this machine [default: its hostname].
    #[arg(long = "host-id", env = "RUNLEDGER_HOST_ID")]
    pub host_id: Option<String>,
}

impl HostArgs {
    /// The given host id, else the hostname.
    pub fn host_id(&self) -> String {
        self.host_id
            .clone()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(hostname)
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// How the watchdog sweeps.
#[derive(clap::Args, Clone, Debug)]
pub struct WatchdogArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Between two checks of this host's runs.
    #[arg(long = "watchdog-interval", env = "RUNLEDGER_WATCHDOG_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

impl WatchdogArgs {
    pub fn settings(&self, stream: &StreamArgs) -> anyhow::Result<WatchdogSettings> {
        let mut settings =
            WatchdogSettings::new(self.host.host_id(), &stream.stream, stream.subjects()?);
        settings.interval = self.interval.max(Duration::from_millis(10));
        Ok(settings)
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let client = args.nats.connect("runledger watchdog").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.ensure(&js).await?;
    let pool = db::pool(&args.db.url_or_default(), &args.db.schema, 2)?;
    let mut watchdog = Watchdog::new(pool, js, args.watchdog.settings(&args.stream)?);
    // The first sweep fails fast on a wrong database; later failures are logged and retried.
    watchdog.sweep().await.with_context(|| {
        format!(
            "first watchdog sweep on {} (schema `{}`; is it migrated? `runledger migrate`)",
            db::redact(&args.db.url_or_default()),
            args.db.schema
        )
    })?;
    watchdog.run(stop).await;
    Ok(ExitCode::SUCCESS)
}
