//! The publishing guarantees runledger builds on, checked against a real nats-server: the stream
//! is created idempotently with the settings asked, an event id is stored once however often it
//! is published, bulk publishing keeps input order, bad events fail alone, a subject no stream
//! captures fails fast, and a publish survives a server restart by retrying with the same id.
//!
//! Each test uses its own stream and subject prefix (`testsupport::TestStream`) or its own
//! private server (`testsupport::NatsServer`), so they run in parallel and leave nothing behind.

use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use events::{examples, ContractError, Event, EventId, EventType, Subjects, MAX_EVENT_BYTES};
use producers::{ensure_stream, PublishError, Publisher, PublisherSettings, StreamSettings};
use std::time::{Duration, Instant};
use testsupport::{Deadline, NatsServer, TestStream};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn settings(ts: &TestStream, duplicate_window: Duration) -> StreamSettings {
    StreamSettings {
        name: ts.stream.clone(),
        // Partitioned as the test stream is (RUNLEDGER_TEST_PARTITIONS).
        subjects: ts.subjects(),
        duplicate_window,
        replicas: 1,
    }
}

/// A valid event with a fresh id.
fn fresh_event() -> Event {
    let mut event = examples::event(EventType::RunActivity);
    event.id = EventId::new_random();
    event
}

async fn stream_messages(js: &Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// A stream for `ts` with the default duplicate window, and a publisher into it.
async fn stream_and_publisher(
    ts: &TestStream,
) -> Result<Publisher, Box<dyn std::error::Error + Send + Sync>> {
    let settings = settings(ts, Duration::from_secs(120));
    ensure_stream(&ts.jetstream(), &settings).await?;
    Ok(Publisher::new(
        ts.jetstream(),
        settings.subjects,
        PublisherSettings::default(),
    ))
}

#[tokio::test]
async fn ensure_stream_is_idempotent_and_applies_the_guarantees() -> TestResult {
    let ts = TestStream::new().await?;
    let settings = settings(&ts, Duration::from_secs(45));
    let first = ensure_stream(&ts.jetstream(), &settings).await?;
    let second = ensure_stream(&ts.jetstream(), &settings).await?;
    assert_eq!(
        first.config, second.config,
        "a second ensure_stream changed the stream"
    );
    let config = &second.config;
    assert_eq!(config.name, ts.stream);
    // `<prefix>.>`, or with partitions the mapped five-token subjects only.
    assert_eq!(config.subjects, vec![settings.subjects.all()]);
    assert!(config.deny_delete, "deny_delete must be set");
    assert!(config.deny_purge, "deny_purge must be set");
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.duplicate_window, Duration::from_secs(45));
    Ok(())
}

#[tokio::test]
async fn the_same_event_id_is_stored_once() -> TestResult {
    let ts = TestStream::new().await?;
    let publisher = stream_and_publisher(&ts).await?;
    let event = fresh_event();
    let first = publisher.publish(&event).await?;
    assert!(!first.duplicate, "the first publish must store the event");
    for _ in 0..2 {
        let again = publisher.publish(&event).await?;
        assert!(
            again.duplicate,
            "a re-publish must be reported as a duplicate"
        );
        assert_eq!(again.sequence, first.sequence);
    }
    // A different publisher (another process, after a restart) gets the same answer.
    let other = Publisher::new(ts.jetstream(), ts.subjects(), PublisherSettings::default());
    let from_other = other.publish(&event).await?;
    assert!(from_other.duplicate);
    assert_eq!(from_other.sequence, first.sequence);
    assert_eq!(stream_messages(&ts.jetstream(), &ts.stream).await, 1);
    Ok(())
}

#[tokio::test]
async fn publish_all_keeps_input_order() -> TestResult {
    let ts = TestStream::new().await?;
    let publisher = stream_and_publisher(&ts).await?;
    let events: Vec<Event> = (0..5_000).map(|_| fresh_event()).collect();
    let results = publisher.publish_all(&events).await;
    assert_eq!(results.len(), events.len(), "one result per event");
    let mut last = 0;
    for (index, result) in results.into_iter().enumerate() {
        let outcome = result.map_err(|e| format!("event {index} failed: {e}"))?;
        assert!(!outcome.duplicate, "event {index} reported as a duplicate");
        assert!(
            outcome.sequence > last,
            "event {index}: sequence {} after {last}",
            outcome.sequence
        );
        last = outcome.sequence;
    }
    let js = ts.jetstream();
    assert_eq!(stream_messages(&js, &ts.stream).await, 5_000);
    let stream = js.get_stream(&ts.stream).await?;
    for index in [0usize, 1, 2_499, 4_998, 4_999] {
        let stored = stream.get_raw_message(index as u64 + 1).await?;
        let stored = Event::from_slice(&stored.payload)?;
        assert_eq!(stored.id, events[index].id, "stream sequence {}", index + 1);
    }
    Ok(())
}

#[tokio::test]
async fn an_oversized_event_fails_alone() -> TestResult {
    let ts = TestStream::new().await?;
    let publisher = stream_and_publisher(&ts).await?;
    let mut big = fresh_event();
    big.extensions.insert(
        "padding".into(),
        serde_json::Value::String("x".repeat(MAX_EVENT_BYTES)),
    );
    let events = vec![fresh_event(), big, fresh_event()];
    let results = publisher.publish_all(&events).await;
    assert!(results[0].is_ok(), "first event: {:?}", results[0]);
    assert!(
        matches!(
            &results[1],
            Err(PublishError::Invalid(ContractError::TooLarge { limit, .. })) if *limit == MAX_EVENT_BYTES
        ),
        "oversized event: {:?}",
        results[1]
    );
    assert!(results[2].is_ok(), "third event: {:?}", results[2]);
    assert_eq!(stream_messages(&ts.jetstream(), &ts.stream).await, 2);
    Ok(())
}

#[tokio::test]
async fn a_subject_no_stream_captures_is_rejected_fast() -> TestResult {
    let ts = TestStream::new().await?;
    stream_and_publisher(&ts).await?;
    let elsewhere = Subjects::new(&format!("{}_nostream", ts.prefix))?;
    let publisher = Publisher::new(ts.jetstream(), elsewhere, PublisherSettings::default());
    let events: Vec<Event> = (0..3).map(|_| fresh_event()).collect();
    let started = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(3), publisher.publish_all(&events))
        .await
        .map_err(|_| "publishing where no stream listens hung instead of failing")?;
    for (index, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(PublishError::Rejected(_))),
            "event {index}: {result:?}"
        );
    }
    assert!(
        !results[0].as_ref().unwrap_err().is_retryable(),
        "no stream is not a retryable failure"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(stream_messages(&ts.jetstream(), &ts.stream).await, 0);
    Ok(())
}

const ACK_TIMEOUT: Duration = Duration::from_millis(500);

/// A client that reconnects quickly and forever, and a JetStream context with a short timeout.
async fn fast_retrying_context(url: &str) -> Result<Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(url)
        .await?;
    Ok(ContextBuilder::new().timeout(ACK_TIMEOUT).build(client))
}

#[tokio::test]
async fn a_timed_out_publish_is_retried_with_the_same_id() -> TestResult {
    let mut server = NatsServer::start().await?;
    let js = fast_retrying_context(&server.url()).await?;
    let settings = StreamSettings {
        name: "RLTEST_RESTART".into(),
        subjects: Subjects::new("rltest_restart")?,
        duplicate_window: Duration::from_secs(120),
        replicas: 1,
    };
    ensure_stream(&js, &settings).await?;
    let publisher = Publisher::new(
        js.clone(),
        settings.subjects.clone(),
        PublisherSettings {
            max_attempts: 30,
            ..PublisherSettings::default()
        },
    );
    let event = fresh_event();

    server.stop();
    let task = tokio::spawn({
        let (publisher, event) = (publisher.clone(), event.clone());
        async move { publisher.publish(&event).await }
    });
    // Keep the server down for several ack timeouts: a publisher that does not retry has given
    // up by then.
    let down = Deadline::after(ACK_TIMEOUT * 3);
    while !down.passed() {
        assert!(
            !task.is_finished(),
            "the publish gave up while the server was down: {:?}",
            task.await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart().await?;

    let outcome = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .map_err(|_| "the publish did not complete after the server came back")??
        .map_err(|e| format!("the publish failed after the server came back: {e}"))?;
    assert_eq!(outcome.sequence, 1, "the event is the stream's first");
    assert_eq!(
        stream_messages(&js, &settings.name).await,
        1,
        "every retry carried the same id, so the event is stored once"
    );
    let again = publisher.publish(&event).await?;
    assert!(again.duplicate);
    assert_eq!(again.sequence, 1);
    Ok(())
}
