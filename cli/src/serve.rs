//! `runledger serve`: the HTTP read API and the dashboard on their own (beside a projector that runs
//! elsewhere), and the HTTP settings that `runledger up` also uses to serve them beside the
//! projector. The server is `api::serve`; this file only wires settings and connections.

use crate::settings::{parse_duration, DbArgs, NatsArgs, ProjectorNameArgs, StreamArgs};
use crate::{db, shutdown};
use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the read API listens and who may read it.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpArgs {
    /// Address of the read API and dashboard. Without tokens, only a loopback address is allowed.
    #[arg(long = "http-addr", env = "RUNLEDGER_HTTP_ADDR", default_value = api::DEFAULT_HTTP_ADDR)]
    pub addr: SocketAddr,
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
}

impl HttpArgs {
    pub fn settings(
        &self,
        stream: &StreamArgs,
        projector: &ProjectorNameArgs,
    ) -> anyhow::Result<api::ApiSettings> {
        let tokens = api::Tokens::parse(self.tokens.as_deref(), self.admin_token.as_deref())?;
        let mut settings = api::ApiSettings::new(tokens, &stream.stream);
        settings.consumer = projector.name.clone();
        settings.min_seq_wait = self.min_seq_wait;
        Ok(settings)
    }

    /// Binds the address, refusing an open API beyond loopback before anything starts.
    async fn bind(&self, settings: &api::ApiSettings) -> anyhow::Result<tokio::net::TcpListener> {
        if settings.tokens.is_empty() && !self.addr.ip().is_loopback() {
            return Err(api::ServeError::OpenBeyondLoopback(self.addr).into());
        }
        tokio::net::TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("listening on {} (RUNLEDGER_HTTP_ADDR)", self.addr))
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
}

/// Serves the API as a task beside the projector (`runledger up`), with its own small pool so
/// reads never take the projector's connections. Binds before returning: a busy port or an
/// unsafe configuration fails `up` at once.
pub async fn spawn_beside(
    database_url: &str,
    schema: &str,
    nats: Option<async_nats::Client>,
    http: &HttpArgs,
    settings: api::ApiSettings,
    metrics: std::sync::Arc<api::metrics::Registry>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = http.bind(&settings).await?;
    let pool = db::pool(database_url, schema, 8)?;
    let mut state = api::ApiState::new(pool, nats, settings);
    state.metrics = metrics;
    state.listen = Some(db::config(database_url)?);
    Ok(tokio::spawn(async move {
        if let Err(e) = api::serve(listener, state, stop).await {
            tracing::error!(error = %e, "read API stopped");
        }
    }))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let settings = args.http.settings(&args.stream, &args.projector)?;
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
