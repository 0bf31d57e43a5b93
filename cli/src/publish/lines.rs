//! NDJSON: read and parsed in chunks (the next chunk while the current one is published),
//! published through `Publisher::publish_all`, every line accounted for in the summary.

use super::progress::Progress;
use super::summary::{print_summary, Summary};
use super::{Ndjson, CHUNK_LINES};
use anyhow::Context as _;
use events::{ContractError, Event};
use producers::Publisher;
use std::process::ExitCode;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

/// Parsed lines of one chunk of the input.
pub(super) struct Chunk {
    /// Valid events, and the line number of each.
    events: Vec<Event>,
    lines: Vec<u64>,
    rejected: Vec<(u64, ContractError)>,
    /// Last line number read so far.
    pub(super) last_line: u64,
    /// Bytes read so far.
    pub(super) bytes: u64,
}

pub(super) async fn publish_lines(
    publisher: &Publisher,
    input: Ndjson,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (tx, mut rx) = mpsc::channel(2);
    // Reading and parsing the next chunk overlaps with publishing the current one.
    let reader = tokio::spawn(read_chunks(input.reader, tx));
    let mut summary = Summary::default();
    let mut progress = Progress::new(input.size);
    let mut read_error = None;
    while let Some(chunk) = rx.recv().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                read_error = Some(err);
                break;
            }
        };
        let all_failed = publish_chunk(publisher, &chunk, &mut summary).await;
        progress.update(&chunk, &summary);
        if all_failed {
            summary.stopped_after = Some(chunk.last_line);
            break;
        }
    }
    progress.finish();
    drop(rx);
    reader.abort();
    print_summary(&summary, json);
    if let Some(err) = read_error {
        return Err(err.context(
            "the input could not be read to its end (the summary covers the lines before)",
        ));
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Publishes the valid events of `chunk` and records everything; returns whether every event
/// sent failed (the server is gone or refuses everything: reading on would only repeat that).
async fn publish_chunk(publisher: &Publisher, chunk: &Chunk, summary: &mut Summary) -> bool {
    for (line, err) in &chunk.rejected {
        summary.reject(*line, err);
    }
    if chunk.events.is_empty() {
        return false;
    }
    let failed_before = summary.failed.total;
    let results = publisher.publish_all(&chunk.events).await;
    for (line, result) in chunk.lines.iter().zip(results) {
        summary.record(*line, result);
    }
    summary.failed.total - failed_before == chunk.events.len() as u64
}

/// Reads the input in chunks of parsed lines until its end, an I/O error or the receiver going.
async fn read_chunks(
    mut reader: Box<dyn AsyncBufRead + Unpin + Send>,
    tx: mpsc::Sender<anyhow::Result<Chunk>>,
) {
    let mut line_no = 0;
    let mut bytes = 0;
    loop {
        let chunk = read_chunk(&mut reader, &mut line_no, &mut bytes).await;
        let done = !matches!(&chunk, Ok(Some(_)));
        let sent = match chunk {
            Ok(Some(chunk)) => tx.send(Ok(chunk)).await.is_ok(),
            Ok(None) => true,
            Err(err) => tx.send(Err(err)).await.is_ok(),
        };
        if done || !sent {
            return;
        }
    }
}

/// Reads up to [`CHUNK_LINES`] non-blank lines; `None` at the end of the input.
async fn read_chunk(
    reader: &mut (dyn AsyncBufRead + Unpin + Send),
    line_no: &mut u64,
    bytes: &mut u64,
) -> anyhow::Result<Option<Chunk>> {
    let mut chunk = Chunk {
        events: Vec::new(),
        lines: Vec::new(),
        rejected: Vec::new(),
        last_line: *line_no,
        bytes: *bytes,
    };
    let mut buf = Vec::new();
    let mut lines = 0;
    while lines < CHUNK_LINES {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .await
            .with_context(|| format!("reading the input after line {line_no}"))?;
        if read == 0 {
            break;
        }
        *line_no += 1;
        *bytes += read as u64;
        let line = trim_line(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        // What the projector would dead-letter is refused here, with the field named: the
        // bounds of `events::bounds`, against this host's clock for "ahead of the stream".
        match Event::from_slice(line).and_then(|event| {
            event.check_bounds(line, chrono::Utc::now())?;
            Ok(event)
        }) {
            Ok(event) => {
                chunk.events.push(event);
                chunk.lines.push(*line_no);
            }
            Err(err) => chunk.rejected.push((*line_no, err)),
        }
    }
    if lines == 0 {
        return Ok(None);
    }
    chunk.last_line = *line_no;
    chunk.bytes = *bytes;
    Ok(Some(chunk))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
