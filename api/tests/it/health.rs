//! `/healthz` tells the truth: a stall (work waiting past the threshold) is a 503 `stalled`, a
//! task retrying after a failure is `degraded`, and both clear by themselves.

use crate::helpers::*;
use api::Tokens;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_stalled_projector_or_outbox_is_a_503_and_a_failing_task_is_degraded() {
    let mut h = Harness::with_settings(Projection::Stepped, Tokens::default(), |s| {
        s.stall_after = Duration::from_secs(1);
        s.reconciler_schemas = testsupport::Reconcilers::schemas(&s.subjects);
    })
    .await;
    let mut w = World::new();
    h.publish(&[w.agent("CodexCoder", "codex_local", json!({}))])
        .await;

    // The event waits unread: first lag only, then (past one second) a stall.
    let stalled = testsupport::eventually(Duration::from_secs(20), "a stalled projector", || {
        let h = &h;
        async move {
            let reply = h.get("/healthz", None).await;
            (reply.body["status"] == "stalled").then_some(reply)
        }
    })
    .await;
    assert_eq!(stalled.status, 503, "{}", stalled.body);
    assert_eq!(
        stalled.body["projector"]["stalled"], true,
        "{}",
        stalled.body
    );
    assert_eq!(stalled.body["projector"]["lag"], 1);
    assert!(
        stalled.body["projector"]["oldest_unread_age_s"]
            .as_f64()
            .unwrap()
            > 1.0
    );
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("runledger_stalled{reader=\"projector\"} 1"),
        "{text}"
    );

    h.drain().await;
    let healthy = h.get("/healthz", None).await;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert_eq!(healthy.body["status"], "ok");
    assert_eq!(
        healthy.body["projector"]["oldest_unread_age_s"],
        json!(null)
    );
    assert_eq!(
        healthy.body["reconciler"],
        json!(null),
        "no reconciler schema yet"
    );

    // A task of this process failing and retrying: degraded, with its error, until it succeeds.
    h.registry
        .record_task("projector", Some("PostgreSQL: connection refused"));
    h.registry
        .record_task("projector", Some("PostgreSQL: connection refused"));
    let degraded = h.get("/healthz", None).await;
    assert_eq!(degraded.status, 200);
    assert_eq!(degraded.body["status"], "degraded");
    assert_eq!(degraded.body["failing"][0]["task"], "projector");
    assert_eq!(degraded.body["failing"][0]["failures"], 2);
    assert_eq!(
        degraded.body["failing"][0]["error"],
        "PostgreSQL: connection refused"
    );
    h.registry.record_task("projector", None);
    assert_eq!(h.get("/healthz", None).await.body["status"], "ok");

    // A reconciler whose outbox holds a publishable follow-up for longer than the threshold.
    let mut reconciler = h.kit.reconciler(Default::default()).await;
    h.kit.settle(&mut reconciler, None).await;
    drop(reconciler);
    let schema = h.kit.reconciler_schema_of(w.company);
    let ok = h.get("/healthz", None).await;
    assert_eq!(
        ok.body["reconciler"]["outbox_unpublished"], 0,
        "{}",
        ok.body
    );
    let client = h.kit.pool.get().await.unwrap();
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.outbox (event_id, cause_seq, cause_id, rule, event_type,
                     subject, payload, hold_until_seq, written_at)
                 VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'process_lost_retry',
                     'run.queued', 'x', '\\x00', 0, now() - interval '2 minutes')"
            ),
            &[],
        )
        .await
        .unwrap();
    let stuck = h.get("/healthz", None).await;
    assert_eq!(stuck.status, 503, "{}", stuck.body);
    assert_eq!(stuck.body["status"], "stalled");
    assert_eq!(stuck.body["reconciler"]["stalled"], true);
    assert_eq!(stuck.body["reconciler"]["outbox_unpublished"], 1);
    assert!(
        stuck.body["reconciler"]["outbox_oldest_age_s"]
            .as_f64()
            .unwrap()
            >= 119.0
    );
    client
        .execute(&format!("UPDATE {schema}.outbox SET published = true"), &[])
        .await
        .unwrap();
    let clear = h.get("/healthz", None).await;
    assert_eq!(clear.status, 200, "{}", clear.body);
    assert_eq!(clear.body["reconciler"]["outbox_oldest_age_s"], json!(null));
}
