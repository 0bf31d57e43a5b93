//! Just enough of the NATS client protocol to drain a pull consumer: one plain TCP connection,
//! one subscription, pull requests out, deliveries in.
//!
//! Why runledger speaks the protocol itself here: in a rebuild, async-nats' connection task and
//! its pull stream were a third of the replay process (per delivery: the op line split on
//! Unicode whitespace, subject and reply copied into new strings, a header map built and
//! dropped, the client handle cloned and dropped, a hop through a channel to another task).
//! [`Connection::next`] parses a delivery where it lies in the read buffer and hands out the
//! payload as a slice of it, on the task that uses it.
//!
//! It is deliberately small: no TLS, no NKey/JWT credentials, no reconnects, no subscriptions
//! beyond one. [`Endpoint`] only exists for a plain connection, and [`Connection::open`] refuses a
//! server that asks for TLS; callers fall back to async-nats then (`crate::feed::history`). A broken
//! connection is an error, and the reader that owns it replaces it at its last position.
//! Everything else (creating the consumer, the stream's metadata) still goes through async-nats.

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest op line accepted (subjects are far shorter; a longer line is a protocol error).
const MAX_LINE: usize = 4096;

/// How much is read from the socket at a time, at least.
const READ_CHUNK: usize = 64 * 1024;

/// A failure of the wire connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The server wants something this connection does not do (TLS); use async-nats instead.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server sent `-ERR`.
    #[error("the NATS server said: {0}")]
    Server(String),
    #[error("NATS protocol: {0}")]
    Protocol(String),
}

/// How the plain connection authenticates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

/// Where a plain NATS connection goes: `host:port` addresses, tried in order, and its auth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addrs: Vec<String>,
    pub auth: Auth,
}

impl Endpoint {
    /// From comma-separated NATS URLs (`nats://host:port`, `host:port`, `host`, with
    /// `user:password@` or `token@` as async-nats reads them). `None` when one of them asks for
    /// TLS (`tls://`) or is not a NATS URL: such a connection is async-nats' to make.
    pub fn from_urls(urls: &str, auth: Auth) -> Option<Self> {
        let mut addrs = Vec::new();
        let mut url_auth = Auth::None;
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let rest = match url.split_once("://") {
                Some(("nats", rest)) => rest,
                Some(_) => return None,
                None => url,
            };
            let rest = rest.trim_end_matches('/');
            let host_port = match rest.rsplit_once('@') {
                Some((userinfo, host_port)) => {
                    url_auth = match userinfo.split_once(':') {
                        Some((user, password)) => Auth::UserPassword {
                            user: user.to_owned(),
                            password: password.to_owned(),
                        },
                        None => Auth::Token(userinfo.to_owned()),
                    };
                    host_port
                }
                None => rest,
            };
            if host_port.is_empty() || host_port.contains('/') {
                return None;
            }
            let has_port = match host_port.rsplit_once(':') {
                // `[::1]` alone has colons but no port.
                Some((host, port)) => {
                    !host.ends_with(':')
                        && !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit())
                }
                None => false,
            };
            addrs.push(if has_port {
                host_port.to_owned()
            } else {
                format!("{host_port}:4222")
            });
        }
        if addrs.is_empty() {
            return None;
        }
        let auth = if auth == Auth::None { url_auth } else { auth };
        Some(Self { addrs, auth })
    }
}

/// One message as it arrived: slices of the read buffer, nothing copied.
#[derive(Debug)]
pub struct Frame {
    pub subject: Bytes,
    /// Empty when the message has none (status messages).
    pub reply: Bytes,
    /// The header block, `NATS/1.0 ...` first (empty without headers).
    pub headers: Bytes,
    pub payload: Bytes,
}

impl Frame {
    /// The status code of a status message (`NATS/1.0 408 Request Timeout`), if it is one.
    pub fn status(&self) -> Option<u16> {
        let first = self.headers.split(|&b| b == b'\r').next()?;
        let rest = first.strip_prefix(b"NATS/1.0")?;
        let code = rest.trim_ascii_start().get(..3)?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }

    /// The status line after the code (`Request Timeout`).
    pub fn description(&self) -> String {
        let first = self
            .headers
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(first);
        text.splitn(3, ' ')
            .nth(2)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = std::str::from_utf8(&self.headers).ok()?;
        text.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// A plain NATS connection with one subscription.
pub struct Connection {
    socket: TcpStream,
    input: BytesMut,
    /// Bytes to send that did not fit into the socket yet (written before every read).
    output: Vec<u8>,
}

impl Connection {
    /// Connects to the first address of `endpoint` that answers, and completes the handshake.
    pub async fn open(endpoint: &Endpoint, name: &str) -> Result<Self, WireError> {
        let mut last = None;
        for addr in &endpoint.addrs {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(socket)) => return Self::handshake(socket, &endpoint.auth, name).await,
                Ok(Err(e)) => last = Some(WireError::Io(e)),
                Err(_) => {
                    last = Some(WireError::Protocol(format!(
                        "connecting to {addr} timed out"
                    )))
                }
            }
        }
        Err(last.unwrap_or_else(|| WireError::Protocol("no address to connect to".into())))
    }

    async fn handshake(socket: TcpStream, auth: &Auth, name: &str) -> Result<Self, WireError> {
        socket.set_nodelay(true)?;
        let mut conn = Self {
            socket,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: Vec::new(),
        };
        let within = Duration::from_secs(10);
        let info = tokio::time::timeout(within, conn.line())
            .await
            .map_err(|_| WireError::Protocol("no INFO from the server in 10 s".into()))??;
        let info = info
            .strip_prefix("INFO ")
            .ok_or_else(|| WireError::Protocol(format!("expected INFO, got `{info}`")))?;
        let info: serde_json::Value = serde_json::from_str(info)
            .map_err(|e| WireError::Protocol(format!("INFO is not JSON: {e}")))?;
        if info["tls_required"].as_bool() == Some(true) {
            return Err(WireError::Unsupported(
                "the NATS server requires TLS".into(),
            ));
        }
        if info["headers"].as_bool() != Some(true) {
            return Err(WireError::Unsupported(
                "the NATS server does not support headers".into(),
            ));
        }
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": false, "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "headers": true,
            "no_responders": true, "echo": false, "name": name,
        });
        match auth {
            Auth::None => {}
            Auth::UserPassword { user, password } => {
                connect["user"] = user.as_str().into();
                connect["pass"] = password.as_str().into();
            }
            Auth::Token(token) => connect["auth_token"] = token.as_str().into(),
        }
        conn.output
            .extend_from_slice(format!("CONNECT {connect}\r\nPING\r\n").as_bytes());
        // The answer to PING is PONG once CONNECT was accepted, or -ERR.
        tokio::time::timeout(within, async {
            loop {
                let line = conn.line().await?;
                match line.as_str() {
                    "PONG" => return Ok(()),
                    "PING" => conn.output.extend_from_slice(b"PONG\r\n"),
                    "+OK" => {}
                    l if l.starts_with("INFO ") => {}
                    l => return Err(server_error(l)),
                }
            }
        })
        .await
        .map_err(|_| WireError::Protocol("no answer to CONNECT in 10 s".into()))??;
        Ok(conn)
    }

    /// Queues `SUB subject sid`.
    pub fn subscribe(&mut self, subject: &str, sid: u64) {
        self.output
            .extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
    }

    /// Queues a message for `subject` with reply subject `reply`; sent before the next read.
    pub fn publish(&mut self, subject: &str, reply: &str, payload: &[u8]) {
        self.output
            .extend_from_slice(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes());
        self.output.extend_from_slice(payload);
        self.output.extend_from_slice(b"\r\n");
    }

    /// The next message already read, if there is one (answering the server's pings on the
    /// way); `None` when [`Connection::fill`] has to read more first.
    pub fn buffered(&mut self) -> Result<Option<Frame>, WireError> {
        take_frame(&mut self.input, &mut self.output)
    }

    /// One protocol line without its `\r\n` (the handshake's INFO, PONG, -ERR).
    async fn line(&mut self) -> Result<String, WireError> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.input) {
                let line = self.input.split_to(end + 1);
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                return Ok(line);
            }
            if self.input.len() > 1024 * 1024 {
                return Err(WireError::Protocol("protocol line too long".into()));
            }
            self.fill().await?;
        }
    }

    /// Writes what is queued, then reads what the socket has (at least one byte). Cancel-safe:
    /// what was read or not yet written stays buffered.
    pub async fn fill(&mut self) -> Result<(), WireError> {
        while !self.output.is_empty() {
            self.socket.writable().await?;
            match self.socket.try_write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
        if self.socket.read_buf(&mut self.input).await? == 0 {
            return Err(WireError::Protocol(
                "the server closed the connection".into(),
            ));
        }
        Ok(())
    }
}

/// Takes one message off the front of `input`, handling what is not a message (answers to pings
/// go to `output`); `None` when more bytes are needed.
fn take_frame(input: &mut BytesMut, output: &mut Vec<u8>) -> Result<Option<Frame>, WireError> {
    loop {
        let Some(end) = memchr::memchr(b'\n', input) else {
            if input.len() > MAX_LINE {
                return Err(WireError::Protocol("protocol line too long".into()));
            }
            return Ok(None);
        };
        let op = Op::read(&input[..end])?;
        let (subject, reply, header_len, total_len) = match op {
            Op::Message {
                subject,
                reply,
                header_len,
                total_len,
            } => (subject, reply, header_len, total_len),
            Op::Ping => {
                input.advance(end + 1);
                output.extend_from_slice(b"PONG\r\n");
                continue;
            }
            Op::Ignored => {
                input.advance(end + 1);
                continue;
            }
        };
        let needed = end + 1 + total_len + 2;
        if input.len() < needed {
            input.reserve(needed - input.len() + READ_CHUNK);
            return Ok(None);
        }
        let head = input.split_to(end + 1).freeze();
        let mut body = input.split_to(total_len).freeze();
        if &input[..2] != b"\r\n" {
            return Err(WireError::Protocol(
                "a message did not end where its length said".into(),
            ));
        }
        input.advance(2);
        let headers = body.split_to(header_len);
        return Ok(Some(Frame {
            subject: head.slice(subject),
            reply: reply.map(|r| head.slice(r)).unwrap_or_default(),
            headers,
            payload: body,
        }));
    }
}

/// One protocol line from the server, read.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    /// `MSG`/`HMSG`: where subject and reply lie in the line, and the lengths after it.
    Message {
        subject: std::ops::Range<usize>,
        reply: Option<std::ops::Range<usize>>,
        header_len: usize,
        total_len: usize,
    },
    Ping,
    /// `PONG`, `+OK`, `INFO` (nothing to do for a reader).
    Ignored,
}

impl Op {
    /// Reads a line (without its `\n`); `-ERR` and anything unknown are errors.
    fn read(line: &[u8]) -> Result<Self, WireError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (op, args) = match memchr::memchr(b' ', line) {
            Some(at) => (&line[..at], at + 1),
            None => (line, line.len()),
        };
        let is = |name: &[u8]| op.eq_ignore_ascii_case(name);
        let with_headers = if is(b"HMSG") {
            true
        } else if is(b"MSG") {
            false
        } else if is(b"PING") {
            return Ok(Self::Ping);
        } else if is(b"PONG") || is(b"+OK") || is(b"INFO") {
            return Ok(Self::Ignored);
        } else if is(b"-ERR") {
            return Err(server_error(&String::from_utf8_lossy(line)));
        } else {
            return Err(bad_line(line));
        };
        // Fields as ranges of `line`: `subject sid [reply] [header_len] total_len`.
        let mut fields = [0..0, 0..0, 0..0, 0..0, 0..0];
        let mut count = 0;
        let mut at = args;
        while at < line.len() {
            let len = line[at..]
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(line.len() - at);
            if len > 0 {
                if count == fields.len() {
                    return Err(bad_line(line));
                }
                fields[count] = at..at + len;
                count += 1;
            }
            at += len + 1;
        }
        let fields = &fields[..count];
        let lengths = if with_headers { 2 } else { 1 };
        if !(2 + lengths..=3 + lengths).contains(&fields.len()) {
            return Err(bad_line(line));
        }
        let total_len = number(&line[fields[fields.len() - 1].clone()], line)?;
        let header_len = match with_headers {
            true => number(&line[fields[fields.len() - 2].clone()], line)?,
            false => 0,
        };
        if header_len > total_len {
            return Err(bad_line(line));
        }
        let reply = (fields.len() == 3 + lengths).then(|| fields[2].clone());
        Ok(Self::Message {
            subject: fields[0].clone(),
            reply,
            header_len,
            total_len,
        })
    }
}

fn number(field: &[u8], line: &[u8]) -> Result<usize, WireError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad_line(line))
}

fn bad_line(line: &[u8]) -> WireError {
    WireError::Protocol(format!(
        "unexpected line `{}`",
        String::from_utf8_lossy(&line[..line.len().min(200)])
    ))
}

fn server_error(line: &str) -> WireError {
    let message = line.strip_prefix("-ERR").unwrap_or(line).trim();
    WireError::Server(message.trim_matches('\'').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_plain_nats_urls_only() {
        let plain = |urls| Endpoint::from_urls(urls, Auth::None).map(|e| e.addrs);
        assert_eq!(
            plain("nats://127.0.0.1:4222"),
            Some(vec!["127.0.0.1:4222".to_owned()])
        );
        assert_eq!(
            plain("localhost, nats://b:5000/"),
            Some(vec!["localhost:4222".to_owned(), "b:5000".to_owned()])
        );
        assert_eq!(plain("[::1]:4223"), Some(vec!["[::1]:4223".to_owned()]));
        assert_eq!(plain("tls://secure:4222"), None);
        assert_eq!(plain("nats://a:4222,tls://b:4222"), None);
        assert_eq!(plain("ws://a:80"), None);
        assert_eq!(plain(""), None);
        let with = Endpoint::from_urls("nats://u:p@h:1", Auth::None).unwrap();
        assert_eq!(
            with.auth,
            Auth::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
        let token = Endpoint::from_urls("nats://s3cr3t@h:1", Auth::None).unwrap();
        assert_eq!(token.auth, Auth::Token("s3cr3t".into()));
        let given = Endpoint::from_urls("nats://s3cr3t@h:1", Auth::Token("other".into())).unwrap();
        assert_eq!(given.auth, Auth::Token("other".into()));
    }

    #[test]
    fn frames_are_taken_whole_whatever_the_chunks_and_pings_are_answered() {
        let wire: &[u8] = b"INFO {}\r\nPING\r\n+OK\r\n\
            HMSG ev.run.x 1 $JS.ACK.S.c.1.7.1.1764633600000000000.0 19 24\r\nNATS/1.0\r\nId: a\r\n\r\nhello\r\n\
            MSG plain 2 4\r\nw\r\nx\r\n\
            HMSG _INBOX.i 1 16 16\r\nNATS/1.0 100\r\n\r\n\r\n";
        // Byte by byte, and all at once: the same frames.
        for chunk in [1, wire.len()] {
            let (mut input, mut output, mut frames) = (BytesMut::new(), Vec::new(), Vec::new());
            for piece in wire.chunks(chunk) {
                input.extend_from_slice(piece);
                while let Some(frame) = take_frame(&mut input, &mut output).unwrap() {
                    frames.push(frame);
                }
            }
            assert!(input.is_empty());
            assert_eq!(output, b"PONG\r\n");
            assert_eq!(frames.len(), 3);
            assert_eq!(&frames[0].subject[..], b"ev.run.x");
            assert_eq!(
                &frames[0].reply[..],
                b"$JS.ACK.S.c.1.7.1.1764633600000000000.0"
            );
            assert_eq!(&frames[0].payload[..], b"hello");
            assert_eq!(frames[0].header("id").as_deref(), Some("a"));
            assert_eq!(&frames[1].payload[..], b"w\r\nx");
            assert!(frames[1].reply.is_empty() && frames[1].headers.is_empty());
            assert_eq!(frames[2].status(), Some(100));
            assert!(frames[2].payload.is_empty());
        }
    }

    #[test]
    fn malformed_lines_and_server_errors_are_errors() {
        for bad in [
            &b"BOGUS x\r\n"[..],
            b"MSG onlysubject\r\n",
            b"HMSG s 1 10 5\r\n",
            b"MSG s 1 a b c d\r\n",
            b"MSG s 1 five\r\n",
            b"MSG s 1 3\r\nabcd\r\n",
        ] {
            let mut input = BytesMut::from(bad);
            assert!(
                take_frame(&mut input, &mut Vec::new()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut input = BytesMut::from(&b"-ERR 'Authorization Violation'\r\n"[..]);
        match take_frame(&mut input, &mut Vec::new()) {
            Err(WireError::Server(message)) => assert_eq!(message, "Authorization Violation"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_frames_read_their_code_description_and_headers() {
        let frame = Frame {
            subject: Bytes::from_static(b"_INBOX.x"),
            reply: Bytes::new(),
            headers: Bytes::from_static(
                b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1500\r\nNats-Pending-Bytes: 0\r\n\r\n",
            ),
            payload: Bytes::new(),
        };
        assert_eq!(frame.status(), Some(408));
        assert_eq!(frame.description(), "Request Timeout");
        assert_eq!(
            frame.header("nats-pending-messages").as_deref(),
            Some("1500")
        );
        assert_eq!(frame.header("Missing"), None);
        let data = Frame {
            headers: Bytes::from_static(b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"),
            ..frame
        };
        assert_eq!(data.status(), None);
        assert_eq!(data.header("Nats-Msg-Id").as_deref(), Some("abc"));
    }
}
