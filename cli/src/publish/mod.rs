//! `runledger publish`: put events into the stream from a terminal or a script — one event built
//! from flags, or many as NDJSON (a file or stdin, one full CloudEvent per line).
//!
//! Every event goes through the contract's single parse path (`Event::from_value` for flags,
//! `Event::from_slice` for lines) before anything is sent, so a bad event is reported with its
//! line number and the field at fault instead of reaching the consumers. Valid lines are
//! published in chunks through `Publisher::publish_all` (pipelined, deduplicated by event id),
//! which keeps memory flat however large the input is.
//!
//! The input and the flags are in this file; `flags.rs` builds the one event of the flags,
//! `lines.rs` reads, parses and publishes NDJSON in chunks, `summary.rs` counts and prints what
//! happened, `progress.rs` draws the progress bar.

mod flags;
mod lines;
mod progress;
mod summary;

use crate::settings::{NatsArgs, StreamArgs};
use anyhow::{bail, Context as _};
use events::Event;
use producers::{PublishOutcome, Publisher, PublisherSettings};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::io::{AsyncBufRead, BufReader};

/// Non-blank lines parsed and published together; bounds memory for any input size.
pub(crate) const CHUNK_LINES: usize = 1_000;
/// Rejected or failed lines listed individually in the summary; the rest are only counted.
pub(crate) const SHOWN_PROBLEMS: usize = 20;

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
        Input::Lines(input) => lines::publish_lines(&publisher, input, args.json).await,
    }
}

/// What to publish.
enum Input {
    One(Box<Event>),
    Lines(Ndjson),
}

/// An open NDJSON input.
struct Ndjson {
    pub(super) reader: Box<dyn AsyncBufRead + Unpin + Send>,
    /// Size in bytes, when known (a regular file), for the progress bar.
    pub(super) size: Option<u64>,
}

impl Input {
    async fn from_args(args: &Args) -> anyhow::Result<Self> {
        if args.event_type.is_some() {
            return Ok(Self::One(Box::new(flags::event_from_flags(args)?)));
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
