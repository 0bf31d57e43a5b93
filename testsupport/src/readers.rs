//! A kit's projector and reconciler: one reader of the whole stream at P = 1 (exactly today's
//! single projector and reconciler), one per partition with P > 1, each with its own position
//! row, consumer and (the reconciler) schema and clock, as `runledger worker` runs them. They are
//! stepped together, and their position is the stream position every partition has caught up
//! with, so a test waits for "everything up to N is folded" the same way at any P.

use async_nats::jetstream::Context;
use events::Subjects;
use futures::future::join_all;
use projector::{Outcome, Projector, ProjectorError, ProjectorSettings};
use reconciler::{Reconciler, ReconcilerError, ReconcilerSettings};
use std::time::Duration;
use tokio::sync::watch;

/// The position row (and consumer) of a reader's partition `p`: the base name at P = 1.
pub fn position_key(base: &str, subjects: &Subjects, p: u32) -> String {
    projector::membership::position_key(base, subjects, p)
}

/// Where the readers read: for the stream position their partitions have caught up with.
#[derive(Clone)]
struct Stream {
    js: Context,
    name: String,
    subjects: Subjects,
}

impl Stream {
    /// The stream sequence every partition has caught up with (at P = 1 the position).
    async fn caught_up(&self, positions: &[i64]) -> i64 {
        projector::feed::caught_up(&self.js, &self.name, &self.subjects, positions)
            .await
            .expect("the partitions' next events")
    }
}

/// The kit's projector: one per partition.
pub struct Projectors {
    stream: Stream,
    projectors: Vec<Projector>,
}

impl Projectors {
    /// Starts a projector of each partition of `base`'s stream (one of the whole stream at
    /// P = 1); the schema must be migrated.
    pub async fn start(
        pool: deadpool_postgres::Pool,
        js: Context,
        base: ProjectorSettings,
    ) -> Self {
        let subjects = base.subjects.clone();
        let mut projectors = Vec::new();
        for settings in Self::settings(&base) {
            projectors.push(
                Projector::start(pool.clone(), js.clone(), settings)
                    .await
                    .expect("the projector starts"),
            );
        }
        Self {
            stream: Stream {
                js,
                name: base.stream.clone(),
                subjects,
            },
            projectors,
        }
    }

    /// Each partition's settings: its own position row and consumer (`base` itself at P = 1).
    pub fn settings(base: &ProjectorSettings) -> Vec<ProjectorSettings> {
        if !base.subjects.is_partitioned() {
            return vec![base.clone()];
        }
        (0..base.subjects.partitions())
            .map(|p| base.for_partition(p))
            .collect()
    }

    /// Every partition's projector, in partition order.
    pub fn partitions(&mut self) -> &mut [Projector] {
        &mut self.projectors
    }

    /// Steps every partition's projector once (together, each waiting up to `wait`): the first
    /// error, or the batches they applied as one report (`Idle` when none did).
    pub async fn step(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        let outcomes = join_all(self.projectors.iter_mut().map(|p| p.step(wait))).await;
        let mut merged: Option<projector::BatchReport> = None;
        for outcome in outcomes {
            if let Outcome::Applied(report) = outcome? {
                match merged.as_mut() {
                    None => merged = Some(report),
                    Some(m) => {
                        m.applied += report.applied;
                        m.skipped += report.skipped;
                        m.dead_lettered += report.dead_lettered;
                        m.position = m.position.max(report.position);
                        for (event_type, n) in report.by_type {
                            *m.by_type.entry(event_type).or_default() += n;
                        }
                    }
                }
            }
        }
        Ok(merged.map_or(Outcome::Idle, Outcome::Applied))
    }

    /// Each partition's stored position, in partition order.
    pub async fn positions(&self) -> Result<Vec<i64>, ProjectorError> {
        let mut positions = Vec::new();
        for projector in &self.projectors {
            positions.push(projector.position().await?);
        }
        Ok(positions)
    }

    /// The stream sequence up to which every partition has folded everything (at P = 1 the
    /// projector's position).
    pub async fn position(&self) -> Result<i64, ProjectorError> {
        let positions = self.positions().await?;
        Ok(self.stream.caught_up(&positions).await)
    }

    /// The stream sequence up to which `base`'s projector, one per partition and running in
    /// another process (a `runledger` under test), has folded everything, as its positions
    /// stored in `client`'s database say (0 while a partition has none, or the database cannot
    /// be read: a poll asks again).
    pub async fn stored_position(
        client: &tokio_postgres::Client,
        js: &Context,
        base: &ProjectorSettings,
    ) -> i64 {
        let mut positions = Vec::new();
        for settings in Self::settings(base) {
            let stored = projector::store::position(client, &settings.consumer).await;
            positions.push(stored.ok().flatten().unwrap_or(0));
        }
        projector::feed::caught_up(js, &base.stream, &base.subjects, &positions)
            .await
            .expect("the partitions' next events")
    }

    /// Runs every partition's projector until `shutdown`; the first error.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        let runs = self.projectors.into_iter().map(|p| p.run(shutdown.clone()));
        join_all(runs).await.into_iter().collect()
    }
}

/// The kit's reconciler: one per partition, each with its schema and clock.
pub struct Reconcilers {
    stream: Stream,
    reconcilers: Vec<Reconciler>,
}

impl Reconcilers {
    /// Starts a reconciler of each partition of `base`'s stream (one of the whole stream at
    /// P = 1).
    pub async fn start(
        pool: deadpool_postgres::Pool,
        js: Context,
        base: ReconcilerSettings,
    ) -> Self {
        let subjects = base.subjects.clone();
        let mut reconcilers = Vec::new();
        for settings in Self::settings(&base) {
            reconcilers.push(
                Reconciler::start(pool.clone(), js.clone(), settings)
                    .await
                    .expect("the reconciler starts"),
            );
        }
        Self {
            stream: Stream {
                js,
                name: base.stream.clone(),
                subjects,
            },
            reconcilers,
        }
    }

    /// Each partition's settings: its own schema, position row, consumer and clock (`base`
    /// itself at P = 1).
    pub fn settings(base: &ReconcilerSettings) -> Vec<ReconcilerSettings> {
        if !base.subjects.is_partitioned() {
            return vec![base.clone()];
        }
        (0..base.subjects.partitions())
            .map(|p| base.for_partition(p))
            .collect()
    }

    /// The default reconciler schema of each partition of a stream with `subjects`.
    pub fn schemas(subjects: &Subjects) -> Vec<String> {
        (0..subjects.partitions())
            .map(|p| {
                reconciler::migrate::partition_schema(
                    reconciler::migrate::DEFAULT_SCHEMA,
                    subjects,
                    p,
                )
            })
            .collect()
    }

    /// Every partition's reconciler, in partition order.
    pub fn partitions(&mut self) -> &mut [Reconciler] {
        &mut self.reconcilers
    }

    /// Steps every partition's reconciler once (together, each waiting up to `wait`): the
    /// first error, or the batches they decided as one report (`Idle` when none did).
    pub async fn step(&mut self, wait: Duration) -> Result<reconciler::Outcome, ReconcilerError> {
        let outcomes = join_all(self.reconcilers.iter_mut().map(|r| r.step(wait))).await;
        let mut merged: Option<reconciler::batch::BatchReport> = None;
        for outcome in outcomes {
            if let reconciler::Outcome::Decided(report) = outcome? {
                match merged.as_mut() {
                    None => merged = Some(report),
                    Some(m) => {
                        m.folded += report.folded;
                        m.skipped += report.skipped;
                        m.dead_lettered += report.dead_lettered;
                        m.decisions += report.decisions;
                        m.follow_ups += report.follow_ups;
                        m.position = m.position.max(report.position);
                        for (rule, n) in report.by_rule {
                            *m.by_rule.entry(rule).or_default() += n;
                        }
                    }
                }
            }
        }
        Ok(merged.map_or(reconciler::Outcome::Idle, reconciler::Outcome::Decided))
    }

    /// Each partition's stored position, in partition order.
    pub async fn positions(&self) -> Result<Vec<i64>, ReconcilerError> {
        let mut positions = Vec::new();
        for reconciler in &self.reconcilers {
            positions.push(reconciler.position().await?);
        }
        Ok(positions)
    }

    /// The stream sequence up to which every partition has decided everything (at P = 1 the
    /// reconciler's position).
    pub async fn position(&self) -> Result<i64, ReconcilerError> {
        let positions = self.positions().await?;
        Ok(self.stream.caught_up(&positions).await)
    }

    /// Where `base`'s reconciler, one per partition and running in another process (a
    /// `runledger` under test), stands in `client`'s database: the stream sequence up to which
    /// every partition has decided everything, and the follow-ups its outboxes have not
    /// published yet (a partition not started: position 0; a database that cannot be read:
    /// position 0 and one unpublished, so a poll asks again).
    pub async fn stored_progress(
        client: &tokio_postgres::Client,
        js: &Context,
        base: &ReconcilerSettings,
    ) -> (i64, i64) {
        let mut positions = Vec::new();
        let mut unpublished = 0;
        for settings in Self::settings(base) {
            match reconciler::state::progress(client, &settings.schema, &settings.consumer).await {
                Ok(reconciler::state::Progress::At(at)) => {
                    positions.push(at.last_seq);
                    unpublished += at.unpublished;
                }
                Ok(_) => positions.push(0),
                Err(_) => return (0, 1),
            }
        }
        let position = projector::feed::caught_up(js, &base.stream, &base.subjects, &positions)
            .await
            .expect("the partitions' next events");
        (position, unpublished)
    }

    /// Publishes every partition's outbox; how many follow-ups went out.
    pub async fn drain_outboxes(&self) -> Result<usize, ReconcilerError> {
        let mut published = 0;
        for reconciler in &self.reconcilers {
            published += reconciler.outbox().drain().await?;
        }
        Ok(published)
    }

    /// Runs every partition's reconciler until `shutdown`; the first error.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ReconcilerError> {
        let runs = self
            .reconcilers
            .into_iter()
            .map(|r| r.run(shutdown.clone()));
        join_all(runs).await.into_iter().collect()
    }
}
