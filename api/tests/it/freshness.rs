//! Freshness: every response names the projector position it reflects, and `?min_seq=N` waits
//! until the projector has committed N (read-your-writes) or answers 503 `not_reached`.

use crate::helpers::{tokens, Harness, Projection, World, ADMIN};
use std::time::Duration;
use testsupport::eventually;

#[tokio::test]
async fn min_seq_waits_until_the_projector_has_committed_it() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (events, runs) = w.ten_runs();
    let (first, rest) = events.split_at(10);
    h.publish(first).await;
    h.drain().await;
    let before = h.ok("/v1/companies").await["position"].as_i64().unwrap();

    // A producer publishes and reads its own write.
    let last = h.publish(rest).await;
    assert!(last > before);
    let path = format!(
        "/v1/companies/{}/issues/{}/runs?min_seq={last}",
        w.company, w.issue
    );
    let (http, url) = (h.http.clone(), h.url(&path));
    let read = tokio::spawn(async move {
        let response = http.get(url).bearer_auth(ADMIN).send().await.unwrap();
        let position = response.headers()["x-runledger-position"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        (
            response.status(),
            position,
            response.json::<serde_json::Value>().await.unwrap(),
        )
    });
    // It is waiting: the projector has not applied the events yet.
    let metrics = h.url("/metrics");
    let http = h.http.clone();
    eventually(
        Duration::from_secs(10),
        "the read to wait for min_seq",
        || {
            let (http, metrics) = (http.clone(), metrics.clone());
            async move {
                let text = http.get(metrics).send().await.ok()?.text().await.ok()?;
                text.contains("runledger_min_seq_waiting_requests 1")
                    .then_some(())
            }
        },
    )
    .await;
    assert!(!read.is_finished());
    h.drain().await;
    let (status, position, body) = read.await.unwrap();
    assert_eq!(status, 200);
    assert!(position >= last, "reflects the write: {position} >= {last}");
    assert_eq!(body["position"], position);
    assert_eq!(body["total"], 10, "every run published is in the answer");
    assert_eq!(body["rows"][0]["run_id"], serde_json::json!(runs[9]));

    // Already reached: answers at once.
    let reply = h
        .get(&format!("/v1/companies?min_seq={last}"), Some(ADMIN))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.position, Some(last));
}

#[tokio::test]
async fn min_seq_beyond_the_projector_is_503_not_reached() {
    let mut w = World::new();
    let mut h = Harness::with_settings(Projection::Stepped, tokens(&[]), |s| {
        s.min_seq_wait = Duration::from_millis(300);
    })
    .await;
    let (events, _) = w.ten_runs();
    let last = h.publish(&events).await;
    h.drain().await;
    let reply = h
        .get(
            &format!(
                "/v1/companies/{}/issues/{}/runs?min_seq={}",
                w.company,
                w.issue,
                last + 1000
            ),
            Some(ADMIN),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["error"], "not_reached");
    assert_eq!(reply.body["position"], last);
    assert_eq!(reply.headers["retry-after"], "1");
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("did not reach min_seq {}", last + 1000)),
        "{message}"
    );
}
