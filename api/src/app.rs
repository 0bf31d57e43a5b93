//! Building and serving the API: the caller hands in its connections ([`ApiState`]); [`serve`]
//! refuses to expose an open API beyond loopback, starts the shared position poller, and stops
//! (closing SSE streams too) when the shutdown receiver turns true.

use crate::freshness::Positions;
use crate::metrics::Registry;
use crate::settings::ApiSettings;
use deadpool_postgres::Pool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The read API's dependencies, supplied by the caller.
#[derive(Clone)]
pub struct ApiState {
    /// Sessions must resolve the read-model tables (the schema's `search_path`).
    pub pool: Pool,
    /// For `/healthz` and lag; without it the API still serves everything else.
    pub nats: Option<async_nats::Client>,
    pub settings: ApiSettings,
    /// In-process metrics; the projector and reconciler tasks may feed the same registry.
    pub metrics: Arc<Registry>,
    /// Where to LISTEN for the projector's commits ([`crate::listen`]); without it, SSE streams
    /// and `min_seq` reads follow the poll alone.
    pub listen: Option<tokio_postgres::Config>,
}

impl ApiState {
    pub fn new(pool: Pool, nats: Option<async_nats::Client>, settings: ApiSettings) -> Self {
        Self {
            pool,
            nats,
            settings,
            metrics: Arc::new(Registry::default()),
            listen: None,
        }
    }
}

/// What handlers share.
pub(crate) struct App {
    pub pool: Pool,
    pub nats: Option<async_nats::Client>,
    pub settings: ApiSettings,
    pub metrics: Arc<Registry>,
    pub positions: Arc<Positions>,
    pub shutdown: watch::Receiver<bool>,
}

impl App {
    pub async fn client(&self) -> Result<deadpool_postgres::Object, crate::ApiError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for a read that honours `?min_seq`: waits (briefly) until the projector has
    /// reached it, then takes a pooled client.
    pub async fn reader(
        &self,
        min_seq: crate::params::MinSeq,
    ) -> Result<deadpool_postgres::Object, crate::ApiError> {
        self.positions
            .reach(min_seq.0, self.settings.min_seq_wait)
            .await?;
        self.client().await
    }
}

pub(crate) type Shared = Arc<App>;

/// The server would be reachable beyond this machine without any token.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve the read API on {0} without tokens: set RUNLEDGER_API_TOKENS and/or \
         RUNLEDGER_ADMIN_TOKEN, or listen on a loopback address (127.0.0.1:8080)"
    )]
    OpenBeyondLoopback(SocketAddr),
    #[error("read API: {0}")]
    Io(#[from] std::io::Error),
}

/// The router with all routes, and its position poller (which stops on `shutdown`).
pub fn router(state: ApiState, shutdown: watch::Receiver<bool>) -> axum::Router {
    let reader = crate::freshness::Reader {
        keys: crate::freshness::Reader::keys(&state.settings.consumer, &state.settings.subjects),
        stream: state.settings.stream.clone(),
        subjects: state.settings.subjects.clone(),
        nats: state.nats.clone(),
    };
    let positions = Positions::spawn(
        state.pool.clone(),
        reader.clone(),
        state.settings.poll_interval,
        state.settings.fallback_poll,
        shutdown.clone(),
    );
    if let Some(config) = state.listen {
        crate::listen::spawn(
            config,
            state.pool.clone(),
            reader.keys,
            positions.clone(),
            shutdown.clone(),
        );
    }
    let app = Arc::new(App {
        pool: state.pool,
        nats: state.nats,
        settings: state.settings,
        metrics: state.metrics,
        positions,
        shutdown,
    });
    crate::routes::build(app)
}

/// Serves until `shutdown` turns true, within `state.settings.limits` (see [`crate::limits`]).
/// Without tokens the API is open, which is allowed on a loopback address only.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    if state.settings.tokens.is_empty() {
        if !addr.ip().is_loopback() {
            return Err(ServeError::OpenBeyondLoopback(addr));
        }
        tracing::warn!(%addr, "no API tokens configured: the read API and dashboard are open to local users");
    }
    let limits = state.settings.limits;
    let router = router(state, shutdown.clone());
    tracing::info!(%addr, "read API and dashboard listening on http://{addr}/");
    crate::limits::serve(listener, router, limits, shutdown).await?;
    tracing::info!("read API stopped");
    Ok(())
}
