//! Settings shared by subcommands, read from flags or the environment in one place.

use clap::Args;
use std::time::Duration;

/// Default NATS server when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How to reach NATS.
#[derive(Args, Clone, Debug)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "NATS_URL",
        value_name = "URL"
    )]
    pub url: Option<String>,
    /// User name for user/password authentication.
    #[arg(long = "nats-user", env = "NATS_USER", requires = "password")]
    pub user: Option<String>,
    /// Password for user/password authentication.
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Token authentication.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Credentials file (JWT + NKey seed).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub creds: Option<std::path::PathBuf>,
    /// CA certificate (PEM) to verify the server.
    #[arg(long = "tls-ca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `--tls-key`.
    #[arg(long = "tls-cert", env = "NATS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long = "tls-key", env = "NATS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require TLS even if the server does not ask for it.
    #[arg(long = "tls-required", env = "NATS_TLS_REQUIRED")]
    pub tls_required: bool,
}

/// Which stream and subjects hold runledger's history.
#[derive(Args, Clone, Debug)]
pub struct StreamArgs {
    /// JetStream stream name.
    #[arg(long, env = "RUNLEDGER_STREAM", default_value = producers::DEFAULT_STREAM)]
    pub stream: String,
    /// Subject prefix: events go to `<prefix>.<company>.<entity>.<id>`.
    #[arg(long = "subject-prefix", env = "RUNLEDGER_SUBJECT_PREFIX", default_value = events::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Duplicate window of the stream: a re-publish of the same event id within it is stored once.
    #[arg(long = "duplicate-window", env = "RUNLEDGER_DUPLICATE_WINDOW", default_value = "2m", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// Partitions the stream's work is split into, by company (fixed when the stream is set
    /// up; above 1 the NATS servers must map subjects into them: docs/operations.md). Instances
    /// (`runledger worker`, `runledger up`) share the partitions.
    #[arg(long, env = "RUNLEDGER_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(events::MAX_PARTITIONS)))]
    pub partitions: u32,
    /// Copies of the stream in a JetStream cluster: 1 on a single server, 3 to survive the
    /// loss of any one node.
    #[arg(long = "stream-replicas", env = "RUNLEDGER_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

impl StreamArgs {
    /// The subjects of the stream, with its partitions.
    pub fn subjects(&self) -> anyhow::Result<events::Subjects> {
        Ok(events::Subjects::new(&self.prefix)?.partitioned(self.partitions)?)
    }

    pub fn settings(&self) -> anyhow::Result<producers::StreamSettings> {
        Ok(producers::StreamSettings {
            name: self.stream.clone(),
            subjects: self.subjects()?,
            duplicate_window: self.duplicate_window,
            replicas: usize::from(self.replicas),
        })
    }

    /// Creates or updates the stream and checks what the servers applied; with partitions,
    /// also that the servers map producers' subjects into them (the error says what to add to
    /// the server configuration).
    pub async fn ensure(
        &self,
        js: &async_nats::jetstream::Context,
    ) -> anyhow::Result<async_nats::jetstream::stream::Info> {
        let settings = self.settings()?;
        let info = producers::ensure_stream(js, &settings).await?;
        producers::check_partition_mapping(&js.client(), &settings.subjects).await?;
        Ok(info)
    }

    /// Refuses a partition count other than the one the stream was set up with, changing
    /// nothing (for the commands that read the stream without setting it up).
    pub async fn check(&self, js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
        producers::check_partitions(js, &self.stream, &self.subjects()?).await?;
        Ok(())
    }
}

/// Parses `250ms`, `1s`, `2m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 1s or 2m: {e}"))
}

/// Default database when `DATABASE_URL` is not set (created if missing by `runledger up`).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/runledger";

/// How to reach PostgreSQL.
#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/runledger].
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Schema holding the read models.
    #[arg(long, env = "RUNLEDGER_SCHEMA", default_value = "public")]
    pub schema: String,
}

impl DbArgs {
    /// The given URL, else the running `runledger up`'s of this directory, else the default.
    pub fn url_or_default(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| crate::endpoints::database_url_or(DEFAULT_DATABASE_URL))
    }
}

/// How the projector batches.
#[derive(Args, Clone, Debug)]
pub struct ProjectorArgs {
    #[command(flatten)]
    pub position: ProjectorNameArgs,
    /// Most events folded per transaction.
    #[arg(long = "batch-size", env = "RUNLEDGER_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// How long a batch waits for more events after its first one.
    #[arg(long = "batch-linger", env = "RUNLEDGER_BATCH_LINGER", default_value = "20ms", value_parser = parse_duration)]
    pub batch_linger: Duration,
}

impl ProjectorArgs {
    pub fn settings(&self, stream: &StreamArgs) -> anyhow::Result<projector::ProjectorSettings> {
        let mut settings = projector::ProjectorSettings::new(&stream.stream, stream.subjects()?);
        settings.batch_size = self.batch_size as usize;
        settings.linger = self.batch_linger;
        settings.consumer = self.position.name.clone();
        Ok(settings)
    }
}

/// Which projector position a command reads (commands that do not project take only this, so
/// they do not accept batch flags they would ignore).
#[derive(Args, Clone, Debug)]
pub struct ProjectorNameArgs {
    /// Durable consumer name and position key of the projector.
    #[arg(
        long = "projector-name",
        env = "RUNLEDGER_PROJECTOR_NAME",
        default_value = "runledger-projector"
    )]
    pub name: String,
}

/// The schema of the reconciler's state (`migrate` migrates it).
#[derive(Args, Clone, Debug)]
pub struct ReconcilerSchemaArgs {
    /// Schema of the reconciler's state: its private read models, decision ledger and outbox
    /// (never the read-model schema).
    #[arg(
        id = "reconciler_schema",
        long = "reconciler-schema",
        env = "RUNLEDGER_RECONCILER_SCHEMA",
        default_value = reconciler::migrate::DEFAULT_SCHEMA
    )]
    pub schema: String,
}

impl ReconcilerSchemaArgs {
    /// The reconciler's schema, checked (with the read-model schema) to be a valid name, and
    /// against the read-model schema it must never be. No I/O: call it before connecting.
    pub fn schema_beside(&self, db: &DbArgs) -> anyhow::Result<&str> {
        projector::store::migrate::check_schema_name(&db.schema)?;
        projector::store::migrate::check_schema_name(&self.schema)?;
        anyhow::ensure!(
            self.schema != db.schema,
            "the reconciler's schema `{}` is the read-model schema: give it its own \
             (--reconciler-schema, default `{}`)",
            self.schema,
            reconciler::migrate::DEFAULT_SCHEMA
        );
        Ok(&self.schema)
    }
}

/// Where the reconciler keeps its state and under which name it reads (`reconcile` and `up` run
/// it there, `status` reports it).
#[derive(Args, Clone, Debug)]
pub struct ReconcilerStateArgs {
    #[command(flatten)]
    pub schema: ReconcilerSchemaArgs,
    /// Durable consumer name and position key of the reconciler.
    #[arg(
        id = "reconciler_name",
        long = "reconciler-name",
        env = "RUNLEDGER_RECONCILER_NAME",
        default_value = reconciler::migrate::DEFAULT_CONSUMER
    )]
    pub name: String,
}

/// How the reconciler decides and ticks (storm control and timeouts are documented in
/// docs/reconciler.md).
#[derive(Args, Clone, Debug)]
pub struct ReconcilerArgs {
    #[command(flatten)]
    pub state: ReconcilerStateArgs,
    /// Most events decided per transaction.
    #[arg(id = "reconciler_batch_size", long = "reconciler-batch-size", env = "RUNLEDGER_RECONCILER_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Interval of the reconciler's clock ticks (time-based sweeps run on them); `0s` publishes
    /// no ticks (another reconciler or an external clock does).
    #[arg(long = "tick-interval", env = "RUNLEDGER_TICK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub tick_interval: Duration,
    /// A detached run silent this long is asked to stop (`run.cancel_requested`).
    #[arg(long = "detached-silence-timeout", env = "RUNLEDGER_DETACHED_SILENCE_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub silence_timeout: Duration,
    /// Wait of the first automatic wakeup of an issue beyond the bounded flows within the window
    /// (deferred to then); doubles with each further one.
    #[arg(long = "retry-base-backoff", env = "RUNLEDGER_RETRY_BASE_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub retry_base_backoff: Duration,
    /// The backoff never exceeds this.
    #[arg(long = "retry-max-backoff", env = "RUNLEDGER_RETRY_MAX_BACKOFF", default_value = "30m", value_parser = parse_duration)]
    pub retry_max_backoff: Duration,
    /// Most automatic wakeups per issue beyond the bounded flows within the window, granted or
    /// deferred; more are refused (0: no automatic wakeups at all).
    #[arg(
        long = "retry-ceiling",
        env = "RUNLEDGER_RETRY_CEILING",
        default_value_t = 6
    )]
    pub retry_ceiling: u32,
    /// The rolling window of the ceiling.
    #[arg(long = "retry-window", env = "RUNLEDGER_RETRY_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub retry_window: Duration,
}

impl ReconcilerArgs {
    /// The rules' settings.
    pub fn policy(&self) -> anyhow::Result<reconciler::engine::Policy> {
        let delta = |d: Duration| {
            chrono::TimeDelta::from_std(d).map_err(|e| anyhow::anyhow!("duration {d:?}: {e}"))
        };
        Ok(reconciler::engine::Policy {
            storm: reconciler::storm::StormPolicy {
                base_backoff: delta(self.retry_base_backoff)?,
                max_backoff: delta(self.retry_max_backoff)?,
                ceiling: self.retry_ceiling,
                window: delta(self.retry_window)?,
            },
            silence_timeout: delta(self.silence_timeout)?,
        })
    }

    pub fn settings(
        &self,
        stream: &StreamArgs,
        db: &DbArgs,
    ) -> anyhow::Result<reconciler::ReconcilerSettings> {
        let mut settings = reconciler::ReconcilerSettings::new(&stream.stream, stream.subjects()?);
        settings.schema = self.state.schema.schema_beside(db)?.to_owned();
        settings.consumer = self.state.name.clone();
        settings.batch_size = self.batch_size as usize;
        settings.policy = self.policy()?;
        settings.tick_interval = (!self.tick_interval.is_zero()).then_some(self.tick_interval);
        Ok(settings)
    }
}
