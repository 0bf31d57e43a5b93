//! Slow and many clients: connections that drip their request head are dropped after the
//! header-read timeout, silent ones after the idle timeout, connections beyond the limit are
//! answered 503 (or closed at once beyond the overflow lane), and `/healthz` answers throughout.

use crate::helpers::{Harness, Projection};
use api::{Limits, Tokens};
use std::time::{Duration, Instant};
use testsupport::Deadline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection that sent the start of a request head and nothing more.
async fn partial(h: &Harness) -> TcpStream {
    let addr = h.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stream
}

/// How long until the server closes `stream` (reading what it may answer first), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(began.elapsed()), stream.read(&mut buf))
            .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(began.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn slow_clients_are_dropped_and_healthz_answers_throughout() {
    let h = Harness::with_settings(Projection::Stepped, Tokens::default(), |s| {
        s.limits = Limits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(1),
            ..Limits::default()
        }
    })
    .await;
    // 200 clients drip their request head, a byte every 100 ms (bytes do not extend the
    // header-read timeout); 20 connect and say nothing at all.
    let mut drips = Vec::new();
    for _ in 0..200 {
        let mut stream = partial(&h).await;
        drips.push(tokio::spawn(async move {
            let began = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if stream.write_all(b"X").await.is_err() {
                    return Some(began.elapsed());
                }
                if began.elapsed() > Duration::from_secs(10) {
                    return None;
                }
            }
        }));
    }
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let client = fresh_client();
    let health = client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz answers during the flood");
    for drip in drips {
        let dropped = drip.await.unwrap();
        assert!(
            dropped.is_some_and(|d| d < Duration::from_secs(5)),
            "a dripping client is dropped soon after the header-read timeout: {dropped:?}"
        );
    }
    for mut stream in silent {
        let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "a silent connection is closed");
    }
    let health = client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn beyond_the_connection_limit_healthz_answers_and_the_rest_is_refused() {
    let h = Harness::with_settings(Projection::Stepped, Tokens::default(), |s| {
        s.limits = Limits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 20,
            overflow_connections: 4,
            ..Limits::default()
        }
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(partial(&h).await);
    }
    let client = fresh_client();
    // The server accepts in order: these come after the 20 held connections.
    let health = client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz answers beyond the limit");
    let other = client.get(h.url("/v1/companies")).send().await.unwrap();
    assert_eq!(
        other.status(),
        503,
        "anything else is refused beyond the limit"
    );
    assert_eq!(other.headers()["retry-after"], "1");
    // With the overflow lane full too, a connection is closed at once.
    for _ in 0..4 {
        held.push(partial(&h).await);
    }
    let mut refused = partial(&h).await;
    let closed = closed_within(&mut refused, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "closed at once beyond the overflow lane");
    // Once the held connections go, everything is served again.
    drop(held);
    let deadline = Deadline::after(Duration::from_secs(10));
    loop {
        let status = client
            .get(h.url("/v1/companies"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(
            !deadline.passed(),
            "served again after the flood: {status:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let h = Harness::new(Projection::Stepped, Tokens::default()).await;
    let client = fresh_client();
    let big = "x".repeat(64 * 1024);
    let reply = client
        .get(h.url("/healthz"))
        .header("x-padding", big)
        .send()
        .await;
    match reply {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => panic!("the server answers 431 rather than hanging up: {e}"),
    }
    let ok = client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
