//! End-to-end harness: the shared kit (a fresh database and a unique stream per test) with the
//! projector (schema `public`) and the reconciler (schema `runledger_reconciler`) driven step by
//! step, and the outbox drained explicitly. No sleeps: `settle` steps until the stream stops
//! growing.

use events::Event;
use reconciler::engine::Policy;
use serde_json::Value;
use testsupport::{Kit, Projectors, Reconcilers};
use uuid::Uuid;

pub struct Harness {
    pub kit: Kit,
    pub projector: Projectors,
    pub reconciler: Reconcilers,
}

impl std::ops::Deref for Harness {
    type Target = Kit;
    fn deref(&self) -> &Kit {
        &self.kit
    }
}

impl Harness {
    pub async fn new(policy: Policy) -> Self {
        let kit = Kit::new().await;
        let projector = kit.projector().await;
        let reconciler = kit.reconciler(policy).await;
        Self {
            kit,
            projector,
            reconciler,
        }
    }

    pub async fn publish(&self, events: &[Event]) {
        self.kit.publish(events).await;
    }

    /// Steps the reconciler to the end of the stream and drains its outbox until nothing new is
    /// published, then brings the projector to the end of the stream.
    pub async fn settle(&mut self) {
        self.kit
            .settle(&mut self.reconciler, Some(&mut self.projector))
            .await;
    }

    /// One row of the projector's read models as JSON.
    pub async fn row(&self, table: &str, key: &str, id: Uuid) -> Value {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(
                &format!("SELECT to_jsonb(t) FROM public.{table} t WHERE {key} = $1"),
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The comments on an issue, oldest first.
    pub async fn comments(&self, issue: Uuid) -> Vec<Value> {
        self.json_rows(
            "SELECT to_jsonb(c) FROM issue_comments c WHERE issue_id = $1 ORDER BY seq",
            issue,
        )
        .await
    }

    /// Rows of a query returning one JSON column.
    pub async fn json_rows(&self, sql: &str, id: Uuid) -> Vec<Value> {
        self.pool
            .get()
            .await
            .unwrap()
            .query(sql, &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}
