//! `runledger publish` end to end: the built binary against the real nats-server, each test on
//! its own stream and subject prefix. It checks what a user relies on: an event from flags lands
//! in a fresh installation, NDJSON from a file or stdin is published with every bad line reported
//! by line number and field (and only the good lines stored, once), and bad flags fail clearly.

use events::{examples, Event, EventId, EventType};
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use testsupport::TestStream;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// `runledger publish` pointed at `ts`'s server, stream and prefix.
fn command(ts: &TestStream) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runledger"));
    command
        .arg("publish")
        .env("NATS_URL", &ts.url)
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string());
    command
}

/// Runs `runledger publish <args>` with nothing on stdin.
async fn publish(ts: &TestStream, args: &[&str]) -> std::io::Result<Output> {
    command(ts).args(args).stdin(Stdio::null()).output().await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stream's messages, parsed, in stream order.
async fn stored_events(
    ts: &TestStream,
) -> Result<Vec<Event>, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = ts.jetstream().get_stream(&ts.stream).await?;
    let count = stream.info().await?.state.messages;
    let mut stored = Vec::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await?;
        stored.push(Event::from_slice(&message.payload)?);
    }
    Ok(stored)
}

/// A valid `run.finished` event with a fresh id, as JSON.
fn run_finished() -> Value {
    let mut event = examples::event(EventType::RunFinished);
    event.id = EventId::new_random();
    event.to_value()
}

#[tokio::test]
async fn one_event_from_flags_is_stored() -> TestResult {
    let ts = TestStream::new().await?;
    let id = uuid::Uuid::new_v4().to_string();
    let run_id = uuid::Uuid::new_v4().to_string();
    let data = json!({"run_id": run_id, "reason": "stopped from the CLI test"}).to_string();
    let output = publish(
        &ts,
        &[
            "--type",
            "run.cancel_requested",
            "--company",
            examples::COMPANY,
            "--id",
            &id,
            "--data",
            &data,
        ],
    )
    .await?;
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains(&id),
        "stdout: {}",
        text(&output.stdout)
    );
    // The stream did not exist before: the command created it.
    let stored = stored_events(&ts).await?;
    assert_eq!(stored.len(), 1);
    let event = &stored[0];
    assert_eq!(event.event_type(), EventType::RunCancelRequested);
    assert_eq!(event.id.to_string(), id);
    assert_eq!(event.company_id.to_string(), examples::COMPANY);
    assert!(
        event.source.starts_with("runledger-cli/"),
        "source {}",
        event.source
    );
    assert_eq!(event.to_value()["data"]["run_id"], json!(run_id));
    Ok(())
}

/// The NDJSON file of the mixed test, and the ids of its good lines in order.
fn mixed_file() -> (String, Vec<String>) {
    let good = [run_finished(), run_finished(), run_finished()];
    let mut missing_outcome = run_finished();
    missing_outcome["data"]
        .as_object_mut()
        .expect("data is an object")
        .remove("outcome");
    let mut unknown_type = run_finished();
    unknown_type["type"] = json!("run.exploded");
    let mut bad_run_id = run_finished();
    bad_run_id["data"]["run_id"] = json!("not-a-uuid");
    let mut same_id = run_finished();
    same_id["id"] = good[0]["id"].clone();
    let lines = [
        good[0].to_string(),                           // 1
        good[1].to_string(),                           // 2
        r#"{"specversion": "1.0", "id": "#.to_owned(), // 3 malformed JSON
        missing_outcome.to_string(),                   // 4
        String::new(),                                 // 5 blank: skipped
        unknown_type.to_string(),                      // 6
        good[2].to_string(),                           // 7
        bad_run_id.to_string(),                        // 8
        same_id.to_string(),                           // 9 duplicate of line 1's id
    ];
    let ids = good
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    (lines.join("\n") + "\n", ids)
}

#[tokio::test]
async fn an_ndjson_file_publishes_the_good_lines_and_reports_the_bad() -> TestResult {
    let ts = TestStream::new().await?;
    let (content, good_ids) = mixed_file();
    let path = std::env::temp_dir().join(format!("{}.ndjson", ts.stream));
    std::fs::write(&path, content)?;
    let file = path.to_str().expect("temp paths are UTF-8");

    let output = publish(&ts, &["--file", file, "--json"]).await?;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(summary["published"], 3, "{summary}");
    assert_eq!(summary["duplicates"], 1, "{summary}");
    assert_eq!(summary["rejected"], 4, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let rejected = summary["rejected_lines"]
        .as_array()
        .expect("rejected_lines");
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 6, 8], "{summary}");
    let reason = |i: usize| {
        rejected[i]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(reason(0).contains("malformed JSON"), "{}", reason(0));
    assert_eq!(rejected[1]["field"], "data.outcome");
    assert!(reason(1).contains("data.outcome"), "{}", reason(1));
    assert_eq!(rejected[2]["field"], "type");
    assert!(
        reason(2).contains("run.exploded") && reason(2).contains("run.finished"),
        "{}",
        reason(2)
    );
    assert_eq!(rejected[3]["field"], "data.run_id");
    assert!(reason(3).contains("data.run_id"), "{}", reason(3));

    let stored: Vec<String> = stored_events(&ts)
        .await?
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        stored, good_ids,
        "exactly the good lines, once, in file order"
    );

    // Publishing the same file again stores nothing new; the text summary says so.
    let again = publish(&ts, &["--file", file]).await?;
    let stdout = text(&again.stdout);
    assert_eq!(again.status.code(), Some(1), "stdout: {stdout}");
    assert!(stdout.contains("published   0"), "{stdout}");
    assert!(stdout.contains("duplicates  4"), "{stdout}");
    assert!(
        stdout.contains("line 4: ") && stdout.contains("data.outcome"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 8: ") && stdout.contains("data.run_id"),
        "{stdout}"
    );
    assert_eq!(stored_events(&ts).await?.len(), 3);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[tokio::test]
async fn ndjson_on_stdin_is_published() -> TestResult {
    use tokio::io::AsyncWriteExt;
    let ts = TestStream::new().await?;
    let events = [run_finished(), run_finished()];
    let mut child = command(&ts)
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    for event in &events {
        stdin.write_all(format!("{event}\r\n\n").as_bytes()).await?;
    }
    drop(stdin);
    let output = child.wait_with_output().await?;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(summary["published"], 2, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    let stored: Vec<String> = stored_events(&ts)
        .await?
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    let sent: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, sent);
    Ok(())
}

#[tokio::test]
async fn bad_flags_fail_with_a_clear_message() -> TestResult {
    let ts = TestStream::new().await?;
    let not_json = publish(
        &ts,
        &[
            "--type",
            "run.cancel_requested",
            "--company",
            examples::COMPANY,
            "--data",
            "{run_id: 1",
        ],
    )
    .await?;
    assert!(!not_json.status.success());
    let stderr = text(&not_json.stderr);
    assert!(
        stderr.contains("--data is not valid JSON"),
        "stderr: {stderr}"
    );

    let unknown = publish(
        &ts,
        &[
            "--type",
            "run.exploded",
            "--company",
            examples::COMPANY,
            "--data",
            "{}",
        ],
    )
    .await?;
    assert!(!unknown.status.success());
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("unknown event type `run.exploded`")
            && stderr.contains("run.cancel_requested"),
        "stderr: {stderr}"
    );

    let missing = publish(&ts, &["--file", "/nonexistent/events.ndjson"]).await?;
    assert!(!missing.status.success());
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("/nonexistent/events.ndjson"),
        "stderr: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn publish_refuses_what_the_projector_would_dead_letter_naming_the_field() -> TestResult {
    let ts = TestStream::new().await?;
    let mut nul = run_finished();
    nul["data"]["error"] = json!("a\u{0}b");
    let mut far = run_finished();
    far["time"] = json!("9999-01-01T00:00:00Z");
    let good = run_finished();
    let lines = [nul.to_string(), far.to_string(), good.to_string()];
    let path = std::env::temp_dir().join(format!("{}-bounds.ndjson", ts.stream));
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let output = publish(&ts, &["--file", path.to_str().unwrap(), "--json"]).await?;
    let summary: Value = serde_json::from_str(text(&output.stdout).trim())?;
    assert_eq!(summary["published"], 1, "{summary}");
    let rejected = summary["rejected_lines"]
        .as_array()
        .expect("rejected_lines");
    let fields: Vec<&str> = rejected
        .iter()
        .map(|r| r["field"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(fields, ["data.error", "time"], "{summary}");
    assert_eq!(stored_events(&ts).await?.len(), 1);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
