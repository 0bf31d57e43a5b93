//! `runledger publish`: put events into the stream from a terminal or a script — one event built
//! from flags, or many as NDJSON (a file or stdin, one full CloudEvent per line).
//!
//! Every event goes through the contract's single parse path (`Event::from_value` for flags,
//! `Event::from_slice` for lines) before anything is sent, so a bad event is reported with its
//! line number and the field at fault instead of reaching the consumers. Valid lines are
//! published in chunks through `Publisher::publish_all` (pipelined, deduplicated by event id),
//! which keeps memory flat however large the input is.

use crate::settings::{NatsArgs, StreamArgs};
use anyhow::{anyhow, bail, Context as _};
use chrono::{SecondsFormat, Utc};
use events::{ContractError, Event, EventType};
use indicatif::{ProgressBar, ProgressStyle};
use producers::{PublishError, PublishOutcome, Publisher, PublisherSettings};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Non-blank lines parsed and published together; bounds memory for any input size.
const CHUNK_LINES: usize = 1_000;
/// Rejected or failed lines listed individually in the summary; the rest are only counted.
const SHOWN_PROBLEMS: usize = 20;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  runledger publish --type run.cancel_requested --company <uuid> \\
      --data '{\"run_id\": \"<uuid>\", \"reason\": \"stop\"}'
  runledger publish --file events.ndjson
  produce-events | runledger publish --json")]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Type of the one event to publish from flags (e.g. `run.finished`); needs `--company` and
    /// `--data`. Without it, events are read as NDJSON from `--file` or stdin.
    #[arg(
        long = "type",
        value_name = "TYPE",
        requires = "company",
        requires = "data",
        conflicts_with = "file"
    )]
    pub event_type: Option<String>,
    /// Company (tenant) id of the event from flags, a UUID (the `companyid` attribute).
    #[arg(long, value_name = "UUID", requires = "event_type")]
    pub company: Option<String>,
    /// The `data` of the event from flags, as one JSON object.
    #[arg(long, value_name = "JSON", requires = "event_type")]
    pub data: Option<String>,
    /// Id of the event from flags, a UUID [default: a random v4 UUID]. Publishing the same id
    /// again within the stream's duplicate window stores it once.
    #[arg(long, value_name = "UUID", requires = "event_type")]
    pub id: Option<String>,
    /// Time of the event from flags, RFC 3339 (e.g. 2026-03-19T09:00:00Z) [default: now].
    #[arg(long, value_name = "RFC3339", requires = "event_type")]
    pub time: Option<String>,
    /// `source` attribute of the event from flags [default: runledger-cli/<hostname>].
    #[arg(long, value_name = "SOURCE", requires = "event_type")]
    pub source: Option<String>,
    /// NDJSON file to publish: one full CloudEvent per line, blank lines skipped. `-` reads
    /// stdin (which is also read when neither `--type` nor `--file` is given and stdin is not a
    /// terminal).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Print the summary as one JSON object on one line instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Everything about the input is checked before connecting, so mistakes are reported fast.
    let input = Input::from_args(&args).await?;
    let publisher = connect(&args).await?;
    match input {
        Input::One(event) => publish_one(&publisher, &event, args.json).await,
        Input::Lines(lines) => publish_lines(&publisher, lines, args.json).await,
    }
}

/// What to publish.
enum Input {
    One(Box<Event>),
    Lines(Ndjson),
}

/// An open NDJSON input.
struct Ndjson {
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    /// Size in bytes, when known (a regular file), for the progress bar.
    size: Option<u64>,
}

impl Input {
    async fn from_args(args: &Args) -> anyhow::Result<Self> {
        if args.event_type.is_some() {
            return Ok(Self::One(Box::new(event_from_flags(args)?)));
        }
        match &args.file {
            Some(path) if path.as_os_str() == "-" => Ok(Self::Lines(Ndjson::stdin())),
            Some(path) => Ok(Self::Lines(Ndjson::open(path).await?)),
            None if !std::io::stdin().is_terminal() => Ok(Self::Lines(Ndjson::stdin())),
            None => bail!(
                "nothing to publish: give one event with --type, --company and --data, \
                 an NDJSON file with --file PATH, or pipe NDJSON into stdin (see --help)"
            ),
        }
    }
}

impl Ndjson {
    fn stdin() -> Self {
        Self {
            reader: Box::new(BufReader::new(tokio::io::stdin())),
            size: None,
        }
    }

    async fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening events file `{}`", path.display()))?;
        let metadata = file.metadata().await.ok();
        let size = metadata.filter(|m| m.is_file()).map(|m| m.len());
        Ok(Self {
            reader: Box::new(BufReader::with_capacity(256 * 1024, file)),
            size,
        })
    }
}

/// Builds the CloudEvent of the flags and parses it like any received event.
fn event_from_flags(args: &Args) -> anyhow::Result<Event> {
    let (Some(event_type), Some(company), Some(data)) =
        (&args.event_type, &args.company, &args.data)
    else {
        bail!("--type, --company and --data are all needed to publish one event from flags");
    };
    let data = parse_data_flag(data)?;
    let mut value = json!({
        "specversion": "1.0",
        "id": args.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        "source": args.source.clone().unwrap_or_else(default_source),
        "type": event_type,
        "time": args.time.clone().unwrap_or_else(now_rfc3339),
        "datacontenttype": events::DATA_CONTENT_TYPE,
        "companyid": company,
        "data": data,
    });
    // The flags give the current shape of `data`; say so, or it would be upcast from version 1.
    if let Some(known) = EventType::parse(event_type) {
        value["schemaversion"] = json!(known.schema_version());
    }
    let wire = serde_json::to_vec(&value)?;
    Event::from_value(value)
        .and_then(|event| {
            event.check_bounds(&wire, chrono::Utc::now())?;
            Ok(event)
        })
        .map_err(|err| {
            anyhow!(
                "invalid event from flags ({}): {err}",
                flag_of(err.field().as_deref())
            )
        })
}

fn parse_data_flag(text: &str) -> anyhow::Result<Value> {
    let data: Value = serde_json::from_str(text).map_err(|err| {
        anyhow!("--data is not valid JSON ({err}); give the event's data as one JSON object, e.g. --data '{{\"run_id\": \"...\"}}'")
    })?;
    if !data.is_object() {
        bail!("--data must be a JSON object, got {}", json_kind(&data));
    }
    Ok(data)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The flag that sets the attribute or field a contract error is about.
fn flag_of(field: Option<&str>) -> &'static str {
    match field {
        Some("id") => "--id",
        Some("type") => "--type",
        Some("time") => "--time",
        Some("source") => "--source",
        Some("companyid") => "--company",
        Some(f) if f.starts_with("data") => "--data",
        _ => "flags",
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn default_source() -> String {
    format!("runledger-cli/{}", hostname())
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Connects, makes sure the stream exists (a fresh installation works) and builds the publisher.
async fn connect(args: &Args) -> anyhow::Result<Publisher> {
    let settings = args.stream.settings()?;
    let client = args.nats.connect("runledger publish").await?;
    let js = async_nats::jetstream::new(client);
    producers::ensure_stream(&js, &settings)
        .await
        .with_context(|| format!("setting up stream `{}`", settings.name))?;
    Ok(Publisher::new(
        js,
        settings.subjects,
        PublisherSettings::default(),
    ))
}

async fn publish_one(publisher: &Publisher, event: &Event, json: bool) -> anyhow::Result<ExitCode> {
    let outcome = publisher
        .publish(event)
        .await
        .with_context(|| format!("publishing event {}", event.id))?;
    print_one(event, outcome, json);
    Ok(ExitCode::SUCCESS)
}

fn print_one(event: &Event, outcome: PublishOutcome, json: bool) {
    let PublishOutcome {
        sequence,
        duplicate,
    } = outcome;
    if json {
        let line = json!({
            "id": event.id,
            "type": event.event_type().as_str(),
            "sequence": sequence,
            "duplicate": duplicate,
            "published": u64::from(!duplicate),
            "duplicates": u64::from(duplicate),
            "rejected": 0,
            "failed": 0,
        });
        println!("{line}");
    } else if duplicate {
        println!(
            "duplicate: event {} was already in the stream (sequence {sequence}); nothing new stored",
            event.id
        );
    } else {
        println!(
            "published {} event {} (stream sequence {sequence})",
            event.event_type(),
            event.id
        );
    }
}

/// One rejected or failed line.
struct Problem {
    line: u64,
    field: Option<String>,
    reason: String,
}

/// A count plus the first few by line number, for the summary.
#[derive(Default)]
struct Problems {
    total: u64,
    shown: Vec<Problem>,
}

impl Problems {
    /// Counts `problem` and keeps it if it is among the [`SHOWN_PROBLEMS`] earliest lines (a
    /// line rejected at publish time can come after later lines rejected while parsing).
    fn push(&mut self, problem: Problem) {
        self.total += 1;
        let at = self.shown.partition_point(|p| p.line <= problem.line);
        if at < SHOWN_PROBLEMS {
            self.shown.insert(at, problem);
            self.shown.truncate(SHOWN_PROBLEMS);
        }
    }
}

/// What happened to the input.
#[derive(Default)]
struct Summary {
    published: u64,
    duplicates: u64,
    /// Lines that break the contract (never sent).
    rejected: Problems,
    /// Valid events the server refused or never acknowledged.
    failed: Problems,
    /// Reading stopped early after this line because a whole chunk failed.
    stopped_after: Option<u64>,
}

impl Summary {
    fn reject(&mut self, line: u64, err: &ContractError) {
        self.rejected.push(Problem {
            line,
            field: err.field(),
            reason: err.to_string(),
        });
    }

    fn record(&mut self, line: u64, result: Result<PublishOutcome, PublishError>) {
        match result {
            Ok(outcome) if outcome.duplicate => self.duplicates += 1,
            Ok(_) => self.published += 1,
            Err(PublishError::Invalid(err)) => self.reject(line, &err),
            Err(err) => self.failed.push(Problem {
                line,
                field: None,
                reason: err.to_string(),
            }),
        }
    }

    fn ok(&self) -> bool {
        self.rejected.total == 0 && self.failed.total == 0 && self.stopped_after.is_none()
    }

    fn progress_message(&self) -> String {
        format!(
            "{} new, {} dup, {} rejected, {} failed",
            self.published, self.duplicates, self.rejected.total, self.failed.total
        )
    }
}

/// Parsed lines of one chunk of the input.
struct Chunk {
    /// Valid events, and the line number of each.
    events: Vec<Event>,
    lines: Vec<u64>,
    rejected: Vec<(u64, ContractError)>,
    /// Last line number read so far.
    last_line: u64,
    /// Bytes read so far.
    bytes: u64,
}

async fn publish_lines(
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

/// A progress bar on stderr, shown only on a terminal and once the input is more than a chunk.
struct Progress {
    enabled: bool,
    size: Option<u64>,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(size: Option<u64>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            size,
            bar: None,
        }
    }

    fn update(&mut self, chunk: &Chunk, summary: &Summary) {
        if self.bar.is_none() && self.enabled && chunk.last_line > CHUNK_LINES as u64 {
            self.bar = Some(self.make_bar());
        }
        let Some(bar) = &self.bar else { return };
        match self.size {
            Some(_) => bar.set_position(chunk.bytes),
            None => bar.set_position(chunk.last_line),
        }
        bar.set_message(summary.progress_message());
    }

    fn make_bar(&self) -> ProgressBar {
        let (bar, template) = match self.size {
            Some(size) => (ProgressBar::new(size), "{bar:30} {percent:>3}% {msg}"),
            None => (ProgressBar::new_spinner(), "{spinner} line {pos} {msg}"),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_summary(summary: &Summary, json: bool) {
    if json {
        println!("{}", summary_json(summary));
    } else {
        print!("{}", summary_text(summary));
    }
}

fn summary_json(summary: &Summary) -> Value {
    let list = |problems: &Problems| -> Vec<Value> {
        problems
            .shown
            .iter()
            .map(|p| json!({"line": p.line, "field": p.field, "reason": p.reason}))
            .collect()
    };
    json!({
        "published": summary.published,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected.total,
        "failed": summary.failed.total,
        "rejected_lines": list(&summary.rejected),
        "failed_lines": list(&summary.failed),
        "stopped_after_line": summary.stopped_after,
    })
}

fn summary_text(summary: &Summary) -> String {
    let mut out = format!(
        "published   {}\nduplicates  {} (already in the stream; not stored again)\n",
        summary.published, summary.duplicates
    );
    out += &problems_text("rejected", "(invalid events, not sent)", &summary.rejected);
    out += &problems_text(
        "failed",
        "(refused or not acknowledged by JetStream)",
        &summary.failed,
    );
    if let Some(line) = summary.stopped_after {
        out += &format!(
            "stopped after line {line}: every event of the last batch failed, the rest of the input was not read\n"
        );
    }
    out
}

fn problems_text(label: &str, meaning: &str, problems: &Problems) -> String {
    let mut out = format!("{label:<11} {}", problems.total);
    if problems.total > 0 {
        out += &format!(" {meaning}");
    }
    out.push('\n');
    for p in &problems.shown {
        out += &format!("  line {}: {}\n", p.line, p.reason);
    }
    let more = problems.total - problems.shown.len() as u64;
    if more > 0 {
        out += &format!("  ... and {more} more\n");
    }
    out
}
