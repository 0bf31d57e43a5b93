//! The HTTP server's defences against slow and many clients. `axum::serve` holds every connection
//! for as long as the client likes: ~20,000 connections dripping request headers exhausted the
//! process's file descriptors and `/healthz` stopped answering. Here each connection is served by
//! hyper's HTTP/1 connection with
//! - a **header-read timeout**: a request head must arrive whole within it (a drip is dropped),
//!   which also bounds how long an idle keep-alive connection waits for its next request;
//! - an **idle timeout**: a connection with no bytes read or written for that long is closed
//!   (server-sent events send a keep-alive comment every 15 s, so they stay open);
//! - a **head size limit** (hyper answers 431 beyond it) and a **body size limit** (413);
//! - a **connection limit**. Beyond it a small overflow lane still answers `/healthz` (so a probe
//!   tells the truth during a flood) and answers 503 to anything else, with a short header-read
//!   timeout and no keep-alive; beyond the overflow lane a connection is closed at once.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How much the server gives one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive whole within this (also: how long an idle keep-alive
    /// connection waits for its next request).
    pub header_read_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections beyond `max_connections` that still get an answer (`/healthz`, or 503).
    pub overflow_connections: usize,
    /// Largest request head (request line and headers), bytes; hyper answers 431 beyond it.
    pub max_head_bytes: usize,
    /// Largest request body, bytes (the API only reads; 413 beyond it).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 10 s to send a request head, 60 s idle, 1,024 connections (well below the usual 1,024 ×
    /// n descriptor limits of a service unit) plus 64 for probes, 16 KiB heads, 64 KiB bodies.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            overflow_connections: 64,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// How long an overflow connection may take to send its request head.
const OVERFLOW_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` within `limits` until `shutdown` turns true, then lets the open
/// connections finish their requests (each is told to close) and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = router.layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes));
    let regular = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(limits.overflow_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: pause rather
                // than spin, and go on.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (permit, lane) = match regular.clone().try_acquire_owned() {
            Ok(permit) => (permit, Lane::Regular),
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(permit) => (permit, Lane::Overflow),
                Err(_) => {
                    drop(stream);
                    continue;
                }
            },
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            connection(stream, router, limits, lane, shutdown).await;
            drop(permit);
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Which connections a connection counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Regular,
    /// Beyond the limit: `/healthz` only, one request.
    Overflow,
}

async fn connection(
    stream: TcpStream,
    router: axum::Router,
    limits: Limits,
    lane: Lane,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        async move {
            if lane == Lane::Overflow && request.uri().path() != "/healthz" {
                return Ok::<_, Infallible>(busy());
            }
            router.oneshot(request.map(Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_head_bytes.max(8192))
        .header_read_timeout(match lane {
            Lane::Regular => limits.header_read_timeout,
            Lane::Overflow => limits.header_read_timeout.min(OVERFLOW_HEADER_READ_TIMEOUT),
        })
        .keep_alive(lane == Lane::Regular);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_for = activity.idle_for();
        let wake = limits.idle_timeout.saturating_sub(idle_for);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wake) => {
                if activity.idle_for() >= limits.idle_timeout {
                    return;
                }
            }
        }
    }
}

/// The answer beyond the connection limit.
fn busy() -> Response<Body> {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::RETRY_AFTER, "1")
        .header(header::CONNECTION, "close")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"error":"too many connections: try again shortly"}"#,
        ))
        .expect("a static response")
}

/// When a connection last read or wrote a byte.
struct Activity {
    epoch: Instant,
    /// Milliseconds after `epoch`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A stream that records its activity.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
