//! `runledger serve`: the HTTP read API and the dashboard on their own (beside a projector that runs
//! elsewhere), and the HTTP settings that `runledger up` also uses to serve them beside the
//! projector. The server is `api::serve`; this file only wires settings and connections.

use crate::settings::{
    parse_duration, DbArgs, NatsArgs, ProjectorNameArgs, ReconcilerSchemaArgs, StreamArgs,
};
use crate::{db, shutdown};
use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

/// Where the read API listens and who may read it.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpArgs {
    /// Address of the read API and dashboard, `host:port` (a name such as `localhost:8080` is
    /// resolved). Without tokens, only a loopback address is allowed.
    #[arg(long = "http-addr", env = "RUNLEDGER_HTTP_ADDR", default_value = api::DEFAULT_HTTP_ADDR)]
    pub addr: String,
    /// Company tokens, `<company-uuid>=<token>,...` (prefer the environment variable).
    #[arg(
        long = "api-tokens",
        env = "RUNLEDGER_API_TOKENS",
        hide_env_values = true
    )]
    pub tokens: Option<String>,
    /// A token that reads every company (prefer the environment variable).
    #[arg(
        long = "admin-token",
        env = "RUNLEDGER_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Longest a `?min_seq=` read waits for the projector before answering 503.
    #[arg(long = "min-seq-wait", env = "RUNLEDGER_MIN_SEQ_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub min_seq_wait: Duration,
    /// Past this wait, an event not yet read or a follow-up not yet published is a stall:
    /// `/healthz` answers 503 `stalled`.
    #[arg(long = "stall-after", env = "RUNLEDGER_STALL_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub stall_after: Duration,
    /// Connections served at once; beyond them `/healthz` still answers and the rest get 503
    /// (docs/reliability.md).
    #[arg(long = "http-max-connections", env = "RUNLEDGER_HTTP_MAX_CONNECTIONS", default_value_t = api::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Time a client has to send a whole request head (slower clients are dropped).
    #[arg(long = "http-header-timeout", env = "RUNLEDGER_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    #[arg(long = "http-idle-timeout", env = "RUNLEDGER_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
}

impl HttpArgs {
    /// The API's settings; `reconciler_schema` is the schema whose position and outbox
    /// `/healthz` reports (when it exists in the database).
    pub fn settings(
        &self,
        stream: &StreamArgs,
        projector: &ProjectorNameArgs,
        reconciler_schema: Option<&str>,
    ) -> anyhow::Result<api::ApiSettings> {
        let tokens = api::Tokens::parse(self.tokens.as_deref(), self.admin_token.as_deref())?;
        let mut settings = api::ApiSettings::new(tokens, &stream.stream);
        settings.consumer = projector.name.clone();
        settings.min_seq_wait = self.min_seq_wait;
        settings.stall_after = self.stall_after;
        settings.subjects = stream.subjects()?;
        settings.reconciler_schemas = match reconciler_schema {
            None => Vec::new(),
            Some(base) => (0..settings.subjects.partitions())
                .map(|p| reconciler::migrate::partition_schema(base, &settings.subjects, p))
                .collect(),
        };
        anyhow::ensure!(
            self.max_connections > 0,
            "--http-max-connections (RUNLEDGER_HTTP_MAX_CONNECTIONS) must be at least 1"
        );
        settings.limits.max_connections = self.max_connections;
        settings.limits.header_read_timeout = self.header_timeout;
        settings.limits.idle_timeout = self.idle_timeout;
        Ok(settings)
    }

    /// The addresses `--http-addr` names (a host name resolves to one or more).
    async fn resolve(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.addr)
            .await
            .with_context(|| {
                format!(
                    "--http-addr `{}` (RUNLEDGER_HTTP_ADDR): expected host:port, e.g. 127.0.0.1:8080 or localhost:8080",
                    self.addr
                )
            })?
            .collect();
        anyhow::ensure!(
            !addrs.is_empty(),
            "--http-addr `{}` (RUNLEDGER_HTTP_ADDR) resolves to no address",
            self.addr
        );
        Ok(addrs)
    }

    /// Binds the address (the first of a name's addresses that binds), refusing an open API
    /// beyond loopback before anything starts.
    async fn bind(&self, settings: &api::ApiSettings) -> anyhow::Result<tokio::net::TcpListener> {
        let addrs = self.resolve().await?;
        if settings.tokens.is_empty() {
            if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(api::ServeError::OpenBeyondLoopback(*open).into());
            }
        }
        let mut last = None;
        for addr in &addrs {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => return Ok(listener),
                Err(e) => last = Some((addr, e)),
            }
        }
        let (addr, e) = last.expect("at least one address");
        Err(e).with_context(|| format!("listening on {addr} (RUNLEDGER_HTTP_ADDR {})", self.addr))
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
    pub projector: ProjectorNameArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub reconciler: ReconcilerSchemaArgs,
}

/// The API as a task beside the projector (`runledger up`), with its own small pool so reads
/// never take the projector's connections. [`Beside::bind`] binds at once, so a busy port or an
/// unsafe configuration fails `up` before anything starts; [`Beside::serve`] is one attempt of
/// the task (a later attempt binds the address again).
pub struct Beside {
    listener: std::sync::Mutex<Option<tokio::net::TcpListener>>,
    addr: SocketAddr,
    state: api::ApiState,
}

impl Beside {
    pub async fn bind(
        database_url: &str,
        schema: &str,
        nats: Option<async_nats::Client>,
        http: &HttpArgs,
        settings: api::ApiSettings,
        metrics: std::sync::Arc<api::metrics::Registry>,
    ) -> anyhow::Result<Self> {
        let listener = http.bind(&settings).await?;
        let addr = listener.local_addr()?;
        let pool = db::pool(database_url, schema, 8)?;
        let mut state = api::ApiState::new(pool, nats, settings);
        state.metrics = metrics;
        state.listen = Some(db::config(database_url)?);
        Ok(Self {
            listener: std::sync::Mutex::new(Some(listener)),
            addr,
            state,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop`.
    pub fn serve(&self, stop: watch::Receiver<bool>) -> crate::supervise::Attempt {
        let bound = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (addr, state) = (self.addr, self.state.clone());
        Box::pin(async move {
            let listener = match bound {
                Some(listener) => listener,
                None => tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} again"))?,
            };
            api::serve(listener, state, stop).await?;
            Ok(())
        })
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let reconciler_schema = args.reconciler.schema_beside(&args.db)?;
    let settings = args
        .http
        .settings(&args.stream, &args.projector, Some(reconciler_schema))?;
    let listener = args.http.bind(&settings).await?;
    let pool = db::pool(&args.db.url_or_default(), &args.db.schema, 8)?;
    {
        let client = pool.get().await.with_context(|| {
            format!(
                "connecting to PostgreSQL at {}",
                db::redact(&args.db.url_or_default())
            )
        })?;
        let migrated: Option<String> = client
            .query_one("SELECT to_regclass('projector_positions')::text", &[])
            .await?
            .get(0);
        anyhow::ensure!(
            migrated.is_some(),
            "schema `{}` has no read models yet: run `runledger migrate` (or `runledger up`) first",
            args.db.schema
        );
    }
    // NATS only adds lag and its health to the answers; the API serves without it.
    let nats = match args.nats.connect("runledger serve").await {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "NATS unreachable: serving without lag");
            None
        }
    };
    let mut state = api::ApiState::new(pool, nats, settings);
    state.listen = Some(db::config(&args.db.url_or_default())?);
    api::serve(listener, state, stop).await?;
    Ok(ExitCode::SUCCESS)
}
