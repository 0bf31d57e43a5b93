//! The plain connection history is read over (`projector::feed::wire`), against real nats-servers:
//! authentication, and what it refuses so that the reader falls back to async-nats.

use projector::feed::wire::{Auth, Endpoint, WireError};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private nats-server that wants a token; killed on drop.
struct TokenServer {
    child: Child,
    port: u16,
}

impl TokenServer {
    async fn start(token: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (the README's test command installs it)");
        let deadline = testsupport::Deadline::after(Duration::from_secs(10));
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(!deadline.passed(), "the private nats-server did not start");
            tokio::task::yield_now().await;
        }
        Self { child, port }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_plain_connection_authenticates_and_a_wrong_token_is_refused_by_name() {
    let server = TokenServer::start("s3cr3t").await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let right = Endpoint::from_urls(&url, Auth::Token("s3cr3t".into())).unwrap();
    projector::feed::wire::Connection::open(&right, "test")
        .await
        .expect("the right token is accepted");
    // The token can also come in the URL, as async-nats reads it.
    let in_url = Endpoint::from_urls(
        &format!("nats://s3cr3t@127.0.0.1:{}", server.port),
        Auth::None,
    )
    .unwrap();
    projector::feed::wire::Connection::open(&in_url, "test")
        .await
        .expect("the token in the URL is accepted");
    for auth in [Auth::Token("wrong".into()), Auth::None] {
        let wrong = Endpoint::from_urls(&url, auth).unwrap();
        match projector::feed::wire::Connection::open(&wrong, "test").await {
            Err(WireError::Server(message)) => {
                assert!(message.contains("Authorization Violation"), "{message}")
            }
            Err(other) => panic!("expected the server's refusal, got {other}"),
            Ok(_) => panic!("a wrong token was accepted"),
        }
    }
}

#[tokio::test]
async fn a_server_that_wants_tls_is_left_to_async_nats() {
    // A server that announces TLS (as a nats-server with `tls { verify: true }` does) before
    // anything else: a listener that sends that INFO line, since no certificates are at hand.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut socket, _) = listener.accept().await.unwrap();
        socket
            .write_all(b"INFO {\"server_id\":\"x\",\"headers\":true,\"tls_required\":true}\r\n")
            .await
            .unwrap();
        // Keep the socket open until the client hangs up.
        let mut buf = [0u8; 64];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
    });
    let endpoint = Endpoint::from_urls(&addr.to_string(), Auth::None).unwrap();
    match projector::feed::wire::Connection::open(&endpoint, "test").await {
        Err(WireError::Unsupported(message)) => assert!(message.contains("TLS"), "{message}"),
        Err(other) => panic!("expected Unsupported, got {other}"),
        Ok(_) => panic!("a TLS-only server was spoken to in plain text"),
    }
    server.abort();
}
