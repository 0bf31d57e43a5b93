//! The Server-Sent Events stream: ledger changes arrive as the projector commits them, a
//! reconnect with `Last-Event-ID` gets what it missed, and shutdown ends open streams. The
//! projector's commit notification wakes the stream (no poll needed), also after the listening
//! session was lost and reconnected.

use crate::helpers::{tokens, Harness, Projection, World, ADMIN};
use events::*;
use serde_json::{json, Value};
use std::time::Duration;
use testsupport::Deadline;

/// One parsed event.
#[derive(Debug)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A minimal `text/event-stream` reader.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub async fn connect(h: &Harness, path: &str, last_event_id: Option<i64>) -> Self {
        let mut request = h.http.get(h.url(path)).bearer_auth(ADMIN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or None when the stream ended.
    pub async fn next(&mut self, deadline: Deadline) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { name, id, data });
            }
            assert!(
                !deadline.passed(),
                "no complete event in time; have {:?}",
                self.buffer
            );
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("the stream sends something within 20 s")
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips events until one named `name`.
    pub async fn next_named(&mut self, name: &str, deadline: Deadline) -> SseEvent {
        loop {
            let event = self.next(deadline).await.expect("the stream is open");
            if event.name == name {
                return event;
            }
        }
    }
}

fn rows(event: &SseEvent) -> Vec<&Value> {
    event.data["rows"].as_array().unwrap().iter().collect()
}

#[tokio::test]
async fn ledger_changes_stream_as_the_projector_commits_them() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Live, tokens(&[])).await;
    let (events, runs) = w.ten_runs();
    let last = h.publish(&events).await;
    let base = format!("/v1/companies/{}/issues/{}", w.company, w.issue);
    let ledger = h.ok(&format!("{base}/runs?min_seq={last}")).await;
    let read_at = ledger["position"].as_i64().unwrap();
    assert_eq!(ledger["rows"][0]["status"], "running");

    let deadline = Deadline::after(Duration::from_secs(30));
    let mut stream =
        SseClient::connect(&h, &format!("{base}/runs/stream?since={read_at}"), None).await;
    let ready = stream.next(deadline).await.unwrap();
    assert_eq!(ready.name, "ready");
    assert_eq!(ready.data["since"], read_at);

    // The running run finishes: its row arrives, changed.
    let finished_at = h
        .publish(&[w.finished(runs[9], RunOutcome::Succeeded, None)])
        .await;
    let change = stream.next_named("ledger", deadline).await;
    assert_eq!(change.data["issue_id"], json!(w.issue));
    assert_eq!(change.data["total"], 10);
    assert!(change.data["position"].as_i64().unwrap() >= finished_at);
    assert_eq!(
        change.id.as_deref(),
        Some(change.data["position"].to_string().as_str())
    );
    let changed = rows(&change);
    assert_eq!(changed.len(), 1, "only the changed row: {:?}", change.data);
    assert_eq!(changed[0]["run_id"], json!(runs[9]));
    assert_eq!(changed[0]["status"], "succeeded");
    assert_eq!(changed[0]["is_live"], false);
    assert_eq!(changed[0]["stop_label"], "completed (30s timeout)");
    assert_eq!(changed[0]["liveness_label"], "No liveness data");

    // A new run joins the ledger.
    let new_run = RunId::new_random();
    h.publish(&[w.queued(new_run, 0)]).await;
    let change = stream.next_named("ledger", deadline).await;
    assert_eq!(rows(&change)[0]["run_id"], json!(new_run));
    assert_eq!(rows(&change)[0]["stop_label"], "Waiting to start");
    assert_eq!(change.data["total"], 11);

    // A reconnecting client names the last event it saw and gets everything after it.
    let mut again =
        SseClient::connect(&h, &format!("{base}/runs/stream?since=0"), Some(read_at)).await;
    let ready = again.next(deadline).await.unwrap();
    assert_eq!(
        ready.data["since"], read_at,
        "Last-Event-ID wins over ?since"
    );
    let missed = again.next_named("ledger", deadline).await;
    let ids: Vec<&Value> = rows(&missed).iter().map(|r| &r["run_id"]).collect();
    assert_eq!(ids, [&json!(new_run), &json!(runs[9])]);

    // Shutdown ends open streams (the harness asserts the server stops in time).
    h.shutdown().await;
    let end = Deadline::after(Duration::from_secs(10));
    while let Some(event) = stream.next(end).await {
        assert_ne!(
            event.name, "ledger",
            "nothing changed after the last ledger event"
        );
    }
}

#[tokio::test]
async fn the_stream_is_scoped_like_every_other_route() {
    let (mut a, b) = (World::new(), World::new());
    let token_b = "company-b-token-0123456789";
    let mut h = Harness::new(Projection::Stepped, tokens(&[(b.company, token_b)])).await;
    let (events, _) = a.ten_runs();
    h.publish(&events).await;
    h.drain().await;
    let path = format!("/v1/companies/{}/issues/{}/runs/stream", a.company, a.issue);
    assert_eq!(h.get(&path, None).await.status, 401);
    assert_eq!(h.get(&path, Some(token_b)).await.status, 404);
    let unknown = format!(
        "/v1/companies/{}/issues/{}/runs/stream",
        a.company,
        IssueId::new_random()
    );
    assert_eq!(h.get(&unknown, Some(ADMIN)).await.status, 404);
    let bad = h
        .http
        .get(h.url(&path))
        .bearer_auth(ADMIN)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// Waits until the API's listening session has run its LISTEN; returns its backend pid.
async fn listener_pid(h: &Harness, not: Option<i32>) -> i32 {
    let client = h.db.client().await.unwrap();
    testsupport::eventually(Duration::from_secs(30), "the API to listen", || {
        let client = &client;
        async move {
            client
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                       AND application_name = $1 AND query LIKE 'LISTEN %' AND state = 'idle'
                       AND pid <> $2",
                    &[&api::listen::APPLICATION_NAME, &not.unwrap_or(0)],
                )
                .await
                .unwrap()
                .map(|row| row.get::<_, i32>(0))
        }
    })
    .await
}

#[tokio::test]
async fn a_commit_wakes_the_stream_without_polling_even_after_the_listener_was_lost() {
    let mut w = World::new();
    // Polls an hour apart: within this test, only notifications move the stream.
    let mut h = Harness::with_settings(Projection::Stepped, tokens(&[]), |s| {
        s.poll_interval = Duration::from_secs(3600);
        s.fallback_poll = Duration::from_secs(3600);
    })
    .await;
    let first = listener_pid(&h, None).await;
    let (events, runs) = w.ten_runs();
    h.publish(&events).await;
    h.drain().await;
    let base = format!("/v1/companies/{}/issues/{}", w.company, w.issue);
    let within = || Deadline::after(Duration::from_secs(30));
    let mut stream = SseClient::connect(&h, &format!("{base}/runs/stream"), None).await;
    assert_eq!(stream.next(within()).await.unwrap().name, "ready");

    h.publish(&[w.finished(runs[9], RunOutcome::Succeeded, None)])
        .await;
    h.drain().await;
    let change = stream.next_named("ledger", within()).await;
    assert_eq!(rows(&change)[0]["run_id"], json!(runs[9]));

    // The listening session is cut: the listener comes back, and commits wake streams again.
    let client = h.db.client().await.unwrap();
    client
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    listener_pid(&h, Some(first)).await;
    let new_run = RunId::new_random();
    h.publish(&[w.queued(new_run, 0)]).await;
    h.drain().await;
    let change = stream.next_named("ledger", within()).await;
    assert_eq!(rows(&change)[0]["run_id"], json!(new_run));
}
