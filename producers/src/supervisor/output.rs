//! The agent's output: streamed through unchanged, while the supervisor keeps a bounded tail of
//! each stream (the `run.finished` excerpts) and watches stdout for the result line
//! (`RUNLEDGER_RESULT {json}`, see `docs/supervisor.md`). Memory stays bounded however much the
//! agent writes: only the tail and at most one candidate result line are kept.

use super::result::{ResultLine, MAX_RESULT_BYTES, RESULT_MARKER};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// Default size of each excerpt.
pub const DEFAULT_EXCERPT_BYTES: usize = 4 * 1024;
/// How long the output readers may take after the agent's group is gone (a process that left
/// the group may still hold the pipes).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The last `cap` bytes written to a stream.
#[derive(Clone, Debug, Default)]
pub struct Tail {
    cap: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            total: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.cap == 0 {
            return;
        }
        let keep = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(keep);
    }

    /// Bytes written in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The tail as text: starts at a character boundary (a cut multi-byte character is
    /// dropped), other invalid UTF-8 is replaced. `None` if nothing was written.
    pub fn excerpt(&self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        let mut start = 0;
        if self.total > self.buf.len() as u64 {
            // Skip continuation bytes (10xxxxxx) of a character cut by the window (at most 3).
            while start < bytes.len().min(3) && bytes[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        Some(String::from_utf8_lossy(&bytes[start..]).into_owned())
    }
}

/// Finds the last `RUNLEDGER_RESULT {json}` line in a byte stream fed in arbitrary chunks,
/// buffering only lines that can still be one.
#[derive(Debug, Default)]
pub struct ResultLineScanner {
    line: Vec<u8>,
    /// The current line is not a result line (or too long); skip to the next newline.
    skipping: bool,
    /// The current line is a result line longer than the limit.
    oversized: Option<usize>,
    last: Option<ResultLine>,
}

fn marker() -> Vec<u8> {
    format!("{RESULT_MARKER} ").into_bytes()
}

impl ResultLineScanner {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            self.extend(part);
            if ends {
                self.end_line();
            }
            bytes = rest;
        }
    }

    fn extend(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if let Some(n) = &mut self.oversized {
            *n += part.len();
            return;
        }
        self.line.extend_from_slice(part);
        let marker = marker();
        let prefix = self.line.len().min(marker.len());
        if self.line[..prefix] != marker[..prefix] {
            self.skipping = true;
            self.line.clear();
        } else if self.line.len() > marker.len() + MAX_RESULT_BYTES + 1 {
            self.oversized = Some(self.line.len() - marker.len());
            self.line = Vec::new();
        }
    }

    fn end_line(&mut self) {
        if let Some(n) = self.oversized.take() {
            self.last = Some(ResultLine::TooLarge(n));
        } else if !self.skipping {
            let marker = marker();
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() >= marker.len() && line[..marker.len()] == marker[..] {
                self.last = Some(ResultLine::Json(line[marker.len()..].to_vec()));
            }
        }
        self.line.clear();
        self.skipping = false;
    }

    /// The last result line, counting an unterminated final line.
    pub fn finish(mut self) -> Option<ResultLine> {
        if !self.line.is_empty() || self.oversized.is_some() {
            self.end_line();
        }
        self.last
    }
}

/// What one output stream left behind.
#[derive(Debug, Default)]
pub struct Captured {
    pub tail: Tail,
    pub result_line: Option<ResultLine>,
}

/// Copies `reader` to `sink` (if any) until end of file, keeping the tail and (if `scan`) the
/// last result line. A sink that fails (e.g. a closed terminal) is dropped; the agent's output
/// is still drained so it never blocks on a full pipe.
pub async fn pump<R, W>(
    mut reader: R,
    mut sink: Option<W>,
    excerpt_bytes: usize,
    scan: bool,
) -> Captured
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut tail = Tail::new(excerpt_bytes);
    let mut scanner = ResultLineScanner::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Some(w) = &mut sink {
            let written = async {
                w.write_all(chunk).await?;
                w.flush().await
            };
            if written.await.is_err() {
                sink = None;
            }
        }
        tail.push(chunk);
        if scan {
            scanner.feed(chunk);
        }
    }
    Captured {
        tail,
        result_line: if scan { scanner.finish() } else { None },
    }
}

/// The readers of a child's piped stdout (scanned for the result line) and stderr, each in a
/// task of its own while the child runs.
pub struct Pumps {
    stdout: JoinHandle<Captured>,
    stderr: JoinHandle<Captured>,
}

impl Pumps {
    /// Starts pumping `child`'s output, echoed to the supervisor's own if `echo`.
    pub fn start(child: &mut Child, echo: bool, excerpt_bytes: usize) -> Self {
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Self {
            stdout: tokio::spawn(pump(
                stdout,
                echo.then(tokio::io::stdout),
                excerpt_bytes,
                true,
            )),
            stderr: tokio::spawn(pump(
                stderr,
                echo.then(tokio::io::stderr),
                excerpt_bytes,
                false,
            )),
        }
    }

    /// What stdout and stderr left behind, each waited for a bounded time.
    pub async fn drain(self) -> (Captured, Captured) {
        (drain(self.stdout).await, drain(self.stderr).await)
    }
}

/// Waits a bounded time for an output reader to reach end of file.
async fn drain(pump: JoinHandle<Captured>) -> Captured {
    let abort = pump.abort_handle();
    match tokio::time::timeout(DRAIN_WAIT, pump).await {
        Ok(Ok(captured)) => captured,
        Ok(Err(_)) => Captured::default(),
        Err(_) => {
            tracing::warn!("agent output still open after its process group ended; excerpt cut");
            abort.abort();
            Captured::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut t = Tail::new(5);
        assert_eq!(t.excerpt(), None);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.excerpt().as_deref(), Some("cdefg"));
        t.push(b"0123456789");
        assert_eq!(t.excerpt().as_deref(), Some("56789"));
        assert_eq!(t.total(), 17);
    }

    #[test]
    fn the_tail_never_starts_inside_a_character() {
        let mut t = Tail::new(4);
        t.push("aé€".as_bytes()); // a (1) é (2) € (3): the window cuts é
        assert_eq!(t.excerpt().as_deref(), Some("€"));
        let mut whole = Tail::new(16);
        whole.push("é€".as_bytes());
        assert_eq!(whole.excerpt().as_deref(), Some("é€"));
    }

    fn scan(chunks: &[&[u8]]) -> Option<ResultLine> {
        let mut s = ResultLineScanner::default();
        for c in chunks {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn finds_the_last_result_line_across_chunks() {
        let r = scan(&[
            b"hello\nRUNLEDGER_RESULT {\"a\":1}\nmore\nRUNLEDGER_RE",
            b"SULT {\"summary\":",
            b"\"done\"}\r\nbye\n",
        ]);
        assert_eq!(
            r,
            Some(ResultLine::Json(b"{\"summary\":\"done\"}".to_vec()))
        );
    }

    #[test]
    fn an_unterminated_final_line_counts() {
        let r = scan(&[b"x\nRUNLEDGER_RESULT {}"]);
        assert_eq!(r, Some(ResultLine::Json(b"{}".to_vec())));
    }

    #[test]
    fn other_lines_are_not_result_lines() {
        assert_eq!(scan(&[b"say RUNLEDGER_RESULT {}\n"]), None);
        assert_eq!(scan(&[b"RUNLEDGER_RESULTS {}\n"]), None);
        assert_eq!(scan(&[b""]), None);
    }

    #[test]
    fn an_oversized_result_line_is_reported_not_buffered() {
        let mut s = ResultLineScanner::default();
        s.feed(b"RUNLEDGER_RESULT {\"x\":\"");
        let big = vec![b'a'; 1024];
        for _ in 0..(MAX_RESULT_BYTES / 1024 + 2) {
            s.feed(&big);
        }
        assert!(s.line.capacity() < MAX_RESULT_BYTES * 2);
        s.feed(b"\"}\n");
        assert!(matches!(s.finish(), Some(ResultLine::TooLarge(n)) if n > MAX_RESULT_BYTES));
    }

    #[tokio::test]
    async fn pump_copies_everything_and_keeps_tail_and_result() {
        let input: &[u8] = b"line 1\nRUNLEDGER_RESULT {\"summary\":\"ok\"}\nlast line\n";
        let mut out = Vec::new();
        let captured = pump(input, Some(&mut out), 10, true).await;
        assert_eq!(out, input);
        assert_eq!(captured.tail.excerpt().as_deref(), Some("last line\n"));
        assert_eq!(
            captured.result_line,
            Some(ResultLine::Json(b"{\"summary\":\"ok\"}".to_vec()))
        );
    }
}
