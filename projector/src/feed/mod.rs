//! The one way events are read from the stream: a [`Feed`] opened after a stored position hands
//! out [`Batch`]es of messages, in stream order, gap-checked, each parsed and normalised once.
//! The live projector, the reconciler, replay and the reconciler's dry run all read through it.
//!
//! A feed reads ahead: a task of its own pulls through async-nats (TLS, credentials, nkeys and
//! reconnects are the client's), parses each event as it arrives and assembles the next batch
//! while the caller applies the previous one. A batch ends when it is full, or when the events
//! already received are taken and the server says no more are on their way (or `linger` has
//! passed since the first): a backlog is read in large batches, a trickle without waiting.
//!
//! A broken consumer (deleted, heartbeats missed, a gap in the delivery sequence) is handled by
//! one policy per [`Reader`]: a live reader's feed fails and the caller opens a new one at its
//! stored position; a read-only rebuild's feed replaces its consumer at the next sequence by
//! itself.

mod batch;
mod consumer;

pub use batch::{normalize, parse, Batch, Incoming, Parsed};
pub use consumer::Reader;

use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use consumer::Consumer;
use events::Subjects;
use futures::FutureExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Why a feed stopped. Reading again from the stored position (a new feed) is always safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The stream or the consumer could not be opened (the server is away, the stream does not
    /// exist). Retry after a pause.
    #[error("opening the feed: {0}")]
    Open(String),
    /// The consumer broke (deleted, heartbeats missed, the server went away). Open a new feed
    /// at the stored position.
    #[error("the consumer broke: {0}")]
    Broken(String),
    /// A delivery did not follow the one before: events were lost on the way. Open a new feed
    /// at the stored position.
    #[error("delivery {delivered} arrived after delivery {after}: events were lost on the way")]
    Gap { delivered: u64, after: u64 },
    /// A rebuild's consumer broke again and again without delivering anything.
    #[error("reading history after sequence {after}: {replacements} consumers in a row broke; the last: {last}")]
    GaveUp {
        after: u64,
        replacements: u32,
        last: String,
    },
    /// The feed failed before; open a new one.
    #[error("this feed failed before; open a new one at the stored position")]
    Failed,
}

/// What to read and how to batch it.
#[derive(Clone, Debug)]
pub struct FeedSpec {
    pub stream: String,
    /// The stream's subjects (an event on the wrong subject is a dead letter).
    pub subjects: Subjects,
    /// Who reads: a durable live reader, or a read-only rebuild.
    pub reader: Reader,
    /// Most events per batch (also what one pull request asks for).
    pub batch_size: usize,
    /// How long a batch may wait for events the server says are on their way.
    pub linger: Duration,
}

/// Consumers a rebuild replaces in a row, without an event in between, before it gives up.
const MAX_REPLACEMENTS: u32 = 5;

/// Events after a position, in parsed batches.
pub struct Feed {
    rx: mpsc::Receiver<Result<Batch, FeedError>>,
    /// Aborted on drop: the consumer dies with the feed.
    task: tokio::task::JoinHandle<()>,
    /// The stream's last sequence when the feed was opened.
    head: u64,
    /// A batch the caller gave back (it read past what it wanted).
    returned: Option<Batch>,
    failed: bool,
    /// Events the reading task has received so far (a batch being read is progress too).
    received: Arc<AtomicU64>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Opens a feed of the events after sequence `after` (0: from the beginning).
    pub async fn open(js: &Context, spec: FeedSpec, after: u64) -> Result<Self, FeedError> {
        let filter = spec.subjects.all();
        Self::open_filtered(js, spec, filter, after).await
    }

    /// Opens a feed of one partition's events after sequence `after` (with one partition, all
    /// of them).
    pub async fn open_partition(
        js: &Context,
        spec: FeedSpec,
        partition: u32,
        after: u64,
    ) -> Result<Self, FeedError> {
        let filter = spec.subjects.partition_filter(partition);
        Self::open_filtered(js, spec, filter, after).await
    }

    async fn open_filtered(
        js: &Context,
        spec: FeedSpec,
        filter: String,
        after: u64,
    ) -> Result<Self, FeedError> {
        let mut stream = js
            .get_stream(&spec.stream)
            .await
            .map_err(|e| FeedError::Open(format!("stream `{}`: {e}", spec.stream)))?;
        let head = if filter == spec.subjects.all() {
            stream
                .info()
                .await
                .map_err(|e| FeedError::Open(format!("stream `{}` info: {e}", spec.stream)))?
                .state
                .last_sequence
        } else {
            // A partition's reader can reach its partition's last event, not the stream's.
            last_seq_of(js, &spec.stream, &filter).await?
        };
        let consumer = Consumer::open(
            &stream,
            &spec.reader,
            &filter,
            after,
            pull_size(spec.batch_size),
        )
        .await?;
        let received = Arc::new(AtomicU64::new(0));
        let source = Source {
            stream,
            filter,
            consumer,
            last_seq: after,
            replacements: 0,
            spec,
            received: received.clone(),
        };
        // One batch read ahead while the caller applies another: the next one is read only once
        // the caller has taken the one before (see `Source::run`), so at most two batches of
        // parsed events are in memory; reading a batch usually takes less time than applying
        // one (a rebuild reads about 290,000 events/s and applies about 130,000), so the caller
        // seldom waits for it.
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(source.run(tx));
        Ok(Self {
            rx,
            task,
            head,
            returned: None,
            failed: false,
            received,
        })
    }

    /// The last sequence of `stream`.
    pub async fn stream_last_seq(js: &Context, stream: &str) -> Result<u64, FeedError> {
        let mut handle = js
            .get_stream(stream)
            .await
            .map_err(|e| FeedError::Open(format!("stream `{stream}`: {e}")))?;
        Ok(handle
            .info()
            .await
            .map_err(|e| FeedError::Open(format!("stream `{stream}` info: {e}")))?
            .state
            .last_sequence)
    }

    /// The stream's last sequence when the feed was opened (what a previous reader can have
    /// published before this one started).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The next batch, waiting at most `wait` for its first event (`None`: nothing came). After
    /// an error every call fails: events after a failure would not follow on.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Batch>, FeedError> {
        if self.failed {
            return Err(FeedError::Failed);
        }
        if let Some(batch) = self.returned.take() {
            return Ok(Some(batch));
        }
        let received = match tokio::time::timeout(wait, self.rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => Err(FeedError::Broken("the feed's reader stopped".into())),
            Ok(Some(received)) => received,
        };
        self.failed = received.is_err();
        received.map(Some)
    }

    /// Stops reading and waits until the feed's consumer is gone from this process (no pull
    /// request of it can go out any more), before a new feed takes over its consumer's name.
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// How many events this feed has received from the server, handed out or not: a caller
    /// waiting for a batch tells a slow batch (this grows) from a stalled feed (it does not).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Gives back the part of a batch the caller did not use: the next call returns it first.
    pub fn give_back(&mut self, batch: Batch) {
        if !batch.is_empty() {
            self.returned = Some(batch);
        }
    }
}

/// The reading side of a feed, owned by its task.
struct Source {
    stream: Stream,
    filter: String,
    consumer: Consumer,
    /// Stream sequence of the last event read.
    last_seq: u64,
    /// Consumers replaced since the last event (rebuilds only).
    replacements: u32,
    spec: FeedSpec,
    /// Shared with the [`Feed`]: events received.
    received: Arc<AtomicU64>,
}

impl Source {
    async fn run(mut self, tx: mpsc::Sender<Result<Batch, FeedError>>) {
        // An error that ends a non-empty batch is handed out after that batch.
        let mut failure = None;
        loop {
            // The slot first, then the batch: a batch is not read while the one before it waits.
            let Ok(slot) = tx.reserve().await else {
                return;
            };
            let batch = match failure.take() {
                Some(e) => Err(e),
                None => self.fill(&mut failure).await,
            };
            let failed = batch.is_err();
            slot.send(batch);
            if failed {
                return;
            }
        }
    }

    /// Reads the next batch: waits as long as it takes for its first event, then takes what is
    /// already received, and waits up to `linger` only while the server says more are coming.
    async fn fill(&mut self, failure: &mut Option<FeedError>) -> Result<Batch, FeedError> {
        let max = self.spec.batch_size.max(1);
        let mut batch = Batch::with_capacity(max.min(16_384));
        let mut linger_until = None;
        let mut more_coming = false;
        while batch.len() < max {
            let next = match linger_until {
                None => self.next().await,
                // A message already received is taken without arming a timer.
                Some(deadline) => match self.next().now_or_never() {
                    Some(next) => next,
                    None if !more_coming => break,
                    None => match tokio::time::timeout_at(deadline, self.next()).await {
                        Err(_) => break,
                        Ok(next) => next,
                    },
                },
            };
            match next {
                Ok((message, pending)) => {
                    more_coming = pending > 0;
                    linger_until.get_or_insert_with(|| Instant::now() + self.spec.linger);
                    // Parsed as it arrives, between polls of the consumer.
                    batch.push(&self.spec.subjects, message);
                }
                Err(e) if batch.is_empty() => return Err(e),
                Err(e) => {
                    *failure = Some(e);
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// The next event and the server's count of those after it. A rebuild replaces a broken
    /// consumer at the next sequence; a live reader's broken consumer is an error.
    async fn next(&mut self) -> Result<(Incoming, u64), FeedError> {
        loop {
            match self.consumer.next().await {
                Ok((message, pending)) => {
                    self.last_seq = message.seq;
                    self.replacements = 0;
                    self.received.fetch_add(1, Ordering::Relaxed);
                    return Ok((message, pending));
                }
                Err(e) if self.spec.reader == Reader::History => self.replace(e).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces a rebuild's consumer with one that starts right after the last event read,
    /// trying again (with backoff) while the server cannot make one.
    async fn replace(&mut self, mut why: FeedError) -> Result<(), FeedError> {
        loop {
            self.replacements += 1;
            if self.replacements > MAX_REPLACEMENTS {
                return Err(FeedError::GaveUp {
                    after: self.last_seq,
                    replacements: MAX_REPLACEMENTS,
                    last: why.to_string(),
                });
            }
            tracing::debug!(after = self.last_seq, why = %why, "replacing the history consumer");
            if self.replacements > 1 {
                tokio::time::sleep(Duration::from_millis(100 << self.replacements)).await;
            }
            let _ = self.stream.delete_consumer(self.consumer.name()).await;
            match Consumer::open(
                &self.stream,
                &self.spec.reader,
                &self.filter,
                self.last_seq,
                pull_size(self.spec.batch_size),
            )
            .await
            {
                Ok(consumer) => {
                    self.consumer = consumer;
                    return Ok(());
                }
                Err(e) => why = e,
            }
        }
    }
}

/// The last sequence of `stream`.
pub async fn stream_last_seq(js: &Context, stream: &str) -> Result<u64, FeedError> {
    let mut handle = js
        .get_stream(stream)
        .await
        .map_err(|e| FeedError::Open(format!("stream `{stream}`: {e}")))?;
    Ok(handle
        .info()
        .await
        .map_err(|e| FeedError::Open(format!("stream `{stream}` info: {e}")))?
        .state
        .last_sequence)
}

/// The stream sequence up to which a reader has read everything, given its stored positions
/// (one per partition, in partition order; one without partitions, which is the answer). A
/// partition whose next event after its position is `n` has read everything before `n`; one
/// with nothing after its position has read the whole stream. This is what "caught up with
/// sequence N" means for a partitioned reader, whose positions are each partition's last
/// event, not the stream's.
pub async fn caught_up(
    js: &Context,
    stream: &str,
    subjects: &Subjects,
    positions: &[i64],
) -> Result<i64, FeedError> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    if !subjects.is_partitioned() {
        return Ok(positions.first().copied().unwrap_or(0));
    }
    let last = stream_last_seq(js, stream).await? as i64;
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| FeedError::Open(format!("stream `{stream}`: {e}")))?;
    let mut caught_up = last;
    for (partition, &position) in positions.iter().enumerate() {
        if position >= last {
            continue;
        }
        let next = handle
            .raw_message_builder()
            .sequence((position + 1) as u64)
            .next_by_subject(subjects.partition_filter(partition as u32))
            .send()
            .await;
        match next {
            Ok(message) => caught_up = caught_up.min(message.sequence as i64 - 1),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(e) => {
                return Err(FeedError::Open(format!(
                    "partition {partition}'s next event: {e}"
                )))
            }
        }
    }
    Ok(caught_up.max(0))
}

/// The last sequence among `filter`'s subjects in `stream` (0: none): what a reader of those
/// subjects alone has read once it is caught up.
pub async fn last_seq_of(js: &Context, stream: &str, filter: &str) -> Result<u64, FeedError> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures::StreamExt;
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| FeedError::Open(format!("stream `{stream}`: {e}")))?;
    let consumer = handle
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::Last,
            ack_policy: AckPolicy::None,
            filter_subject: filter.to_owned(),
            inactive_threshold: Duration::from_secs(5),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| FeedError::Open(format!("the last of `{filter}`: {e}")))?;
    let name = consumer.cached_info().name.clone();
    let last = if consumer.cached_info().num_pending == 0 {
        Ok(0)
    } else {
        let read = async {
            let mut messages = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(|e| FeedError::Open(format!("the last of `{filter}`: {e}")))?;
            match messages.next().await {
                Some(Ok(message)) => message
                    .info()
                    .map(|info| info.stream_sequence)
                    .map_err(|e| FeedError::Open(format!("the last of `{filter}`: {e}"))),
                Some(Err(e)) => Err(FeedError::Open(format!("the last of `{filter}`: {e}"))),
                None => Err(FeedError::Open(format!(
                    "the last of `{filter}`: nothing came"
                ))),
            }
        };
        read.await
    };
    let _ = handle.delete_consumer(&name).await;
    last
}

/// How many events of `filter`'s subjects `stream` holds after sequence `after` (a reader's lag
/// in events): the server counts them for a throwaway consumer.
pub async fn pending_after(
    js: &Context,
    stream: &str,
    filter: &str,
    after: u64,
) -> Result<u64, FeedError> {
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| FeedError::Open(format!("stream `{stream}`: {e}")))?;
    let consumer = handle
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: match after {
                0 => async_nats::jetstream::consumer::DeliverPolicy::All,
                seq => async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                },
            },
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            filter_subject: filter.to_owned(),
            inactive_threshold: Duration::from_secs(5),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| FeedError::Open(format!("counting `{filter}` after {after}: {e}")))?;
    let info = consumer.cached_info();
    let pending = info.num_pending;
    let _ = handle.delete_consumer(&info.name).await;
    Ok(pending)
}

/// Messages one pull request asks for: a batch's worth, at most 2,000 (the next request goes
/// out when half have arrived; larger requests held more memory for no measured gain).
fn pull_size(batch_size: usize) -> usize {
    batch_size.clamp(1, 2000)
}
