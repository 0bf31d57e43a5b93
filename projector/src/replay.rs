//! Replay: rebuild every read model from history into a fresh schema while the live projector
//! keeps serving the current one, then check parity and swap atomically.
//!
//! The rebuild goes through the same exactly-once [`apply_batch`] as the live projector, so it is
//! resumable (the scratch schema has its own position: rerun to continue after a crash) and it
//! cannot publish (this crate has no publisher at all). The swap happens in one transaction that
//! holds the live projector's batch lock: the live schema is renamed away and the scratch schema
//! renamed into its place; the live projector's next batch resolves its tables in the new schema
//! and continues from the same position. Dashboards see the old model or the new one, never half.
//! With partitions each partition is rebuilt to its own live position, and all are compared
//! and swapped at once. While it catches up, the scratch schema has no reader-only indexes and
//! no key on the folded event ids ([`crate::store::indexes`]; the rebuild keeps the ids it folded
//! in memory: [`crate::store::event_ids`]): they are built once at the end, before parity is
//! checked.

use crate::error::ProjectorError;
use crate::feed::{Feed, FeedSpec, Reader};
use crate::store;
use crate::store::batch::{apply, CommitMode, Session, Target};
use crate::store::checksum::{checksums, TABLES};
use crate::store::event_ids::{Lookup, RebuildIds};
use crate::store::indexes;
use crate::store::migrate::{check_schema_name, migrate};
use async_nats::jetstream::Context;
use deadpool_postgres::Pool;
use events::Subjects;
use std::time::{Duration, Instant};

/// What to do once the scratch schema has caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayMode {
    /// Check parity with the live schema and swap them.
    Swap { force: bool },
    /// Report what a swap would change, then drop the scratch schema.
    DryRun,
    /// Only build (used with `to_seq`: the read models as of that sequence).
    BuildOnly,
}

#[derive(Clone, Debug)]
pub struct ReplayPlan {
    pub live_schema: String,
    pub into: String,
    /// Position key shared with the live projector.
    pub consumer: String,
    pub stream: String,
    pub subjects: Subjects,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    pub batch_size: usize,
    pub mode: ReplayMode,
}

/// Where a replay is.
#[derive(Clone, Debug)]
pub struct Progress {
    pub position: i64,
    pub target: i64,
    pub applied: u64,
    pub elapsed: Duration,
}

/// How one table compares between the live and the rebuilt schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows of the live table that the rebuild does not have (or has differently).
    pub only_live: i64,
    /// Rows of the rebuild that the live table does not have (or has differently).
    pub only_rebuilt: i64,
}

impl TableDiff {
    pub fn equal(&self) -> bool {
        self.only_live == 0 && self.only_rebuilt == 0 && self.live_rows == self.rebuilt_rows
    }
}

#[derive(Clone, Debug)]
pub enum ReplayOutcome {
    Swapped {
        position: i64,
        previous_schema: String,
        tables: Vec<TableDiff>,
    },
    DryRun {
        position: i64,
        tables: Vec<TableDiff>,
    },
    Built {
        position: i64,
        schema: String,
    },
    /// The rebuild differs from the live schema; nothing was swapped (use `force` to swap anyway).
    ParityFailed {
        position: i64,
        tables: Vec<TableDiff>,
    },
}

async fn live_position(
    live: &Pool,
    schema: &str,
    consumer: &str,
) -> Result<Option<i64>, ProjectorError> {
    let client = live.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT to_regclass('{schema}.projector_positions') IS NOT NULL"),
            &[],
        )
        .await?;
    if !row.is_some_and(|r| r.get::<_, bool>(0)) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT last_seq FROM {schema}.projector_positions WHERE consumer = $1"),
            &[&consumer],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// One reader rebuilt: the whole stream, or with partitions one partition (its own feed and
/// position row, as the live partition has).
struct Lane {
    partition: Option<u32>,
    target: Target,
    spec: FeedSpec,
    feed: Feed,
    session: Session,
    progress: Progress,
}

async fn open_feed(
    js: &Context,
    spec: &FeedSpec,
    partition: Option<u32>,
    after: u64,
) -> Result<Feed, ProjectorError> {
    Ok(match partition {
        Some(p) => Feed::open_partition(js, spec.clone(), p, after).await?,
        None => Feed::open(js, spec.clone(), after).await?,
    })
}

/// Rebuilds `plan.into` from history and then does what `plan.mode` says. With partitions every
/// partition is rebuilt to its own live position, and they are compared and swapped once,
/// under all the partitions' batch locks.
pub async fn replay(
    live: &Pool,
    scratch: &Pool,
    js: &Context,
    plan: &ReplayPlan,
    mut on_progress: impl FnMut(&Progress),
) -> Result<ReplayOutcome, ProjectorError> {
    check_schema_name(&plan.live_schema)?;
    check_schema_name(&plan.into)?;
    if plan.live_schema == plan.into {
        return Err(ProjectorError::Config(
            "replay must build into a schema other than the live one".into(),
        ));
    }
    let partitioned = plan.subjects.is_partitioned();
    if partitioned && (plan.to_seq.is_some() || plan.from_seq.is_some()) {
        return Err(ProjectorError::Config(
            "a partitioned stream is rebuilt whole, to each partition's live position: \
             --from-seq and --to-seq do not apply"
                .into(),
        ));
    }
    let mut client = scratch.get().await?;
    migrate(&mut client, &plan.into).await?;
    indexes::defer(&mut client, &plan.into).await?;
    let folded = Lookup::Rebuild(RebuildIds::open(&client, &plan.into).await?);
    let partitions: Vec<Option<u32>> = if partitioned {
        (0..plan.subjects.partitions()).map(Some).collect()
    } else {
        vec![None]
    };
    let fixed_target = plan.to_seq.map(|s| s as i64);
    if fixed_target.is_none() && plan.mode != ReplayMode::BuildOnly {
        let mut found = false;
        for p in &partitions {
            let key = lane_key(plan, *p);
            found |= live_position(live, &plan.live_schema, &key)
                .await?
                .is_some();
        }
        if !found {
            return Err(ProjectorError::Config(format!(
                "schema `{}` has no projection to compare with; use --to-seq to only build",
                plan.live_schema
            )));
        }
    }
    let started = Instant::now();
    let mut lanes = Vec::new();
    for partition in partitions {
        let key = lane_key(plan, partition);
        let target = Target {
            consumer: key.clone(),
            stream: plan.stream.clone(),
            subjects: plan.subjects.clone(),
        };
        let position = store::position(&client, &key).await?.unwrap_or(0);
        if let Some(from) = plan.from_seq {
            if from as i64 > position + 1 {
                return Err(ProjectorError::Config(format!(
                    "schema `{}` is at sequence {position}; starting at {from} would skip events {}..{}: \
                     use --from-seq {} or less",
                    plan.into,
                    position + 1,
                    from - 1,
                    position + 1
                )));
            }
        }
        let spec = FeedSpec {
            stream: plan.stream.clone(),
            subjects: plan.subjects.clone(),
            reader: Reader::History,
            batch_size: plan.batch_size,
            linger: Duration::from_millis(20),
        };
        let feed = open_feed(js, &spec, partition, position as u64).await?;
        lanes.push(Lane {
            partition,
            target,
            spec,
            feed,
            // Nobody reads the scratch schema before the swap: its batches need not wait for
            // the disk.
            session: Session {
                ids: folded.clone(),
                ..Session::new(CommitMode::Asynchronous)
            },
            progress: Progress {
                position,
                target: 0,
                applied: 0,
                elapsed: Duration::ZERO,
            },
        });
    }
    for lane in &mut lanes {
        let key = lane.target.consumer.clone();
        let read_target = || async {
            match fixed_target {
                Some(t) => Ok::<i64, ProjectorError>(t),
                None => Ok(live_position(live, &plan.live_schema, &key)
                    .await?
                    .unwrap_or(0)),
            }
        };
        lane.progress.target = read_target().await?;
        if let (None, Lookup::Rebuild(ids)) = (lane.partition, &folded) {
            // One partition: the sequences left are at most the events left to fold. (A
            // partition's sequences interleave with the others', so they tell nothing.)
            RebuildIds::reserve(
                ids,
                (lane.progress.target - lane.progress.position).max(0) as usize,
            );
        }
        on_progress(&lane.progress);
        catch_up(
            &mut client,
            js,
            &plan.into,
            lane,
            started,
            &read_target,
            &mut on_progress,
        )
        .await?;
    }
    // Before anything compares, swaps or reports the build, it has every index again.
    indexes::restore(&mut client, &plan.into).await?;
    let position = lanes.iter().map(|l| l.progress.position).max().unwrap_or(0);
    if fixed_target.is_some() || plan.mode == ReplayMode::BuildOnly {
        // The batches committed asynchronously; the build is reported once it is on disk.
        for lane in &lanes {
            store::flush_position(&mut client, &lane.target.consumer).await?;
        }
        return Ok(ReplayOutcome::Built {
            position,
            schema: plan.into.clone(),
        });
    }

    // Parity at one position per partition: hold the live projector's batch locks (in one
    // order), finish the last stretch of each.
    let mut live_client = live.get().await?;
    let tx = live_client.transaction().await?;
    // This transaction waits while the rebuild finishes its last stretch: not idle in the sense
    // of the sessions' idle timeout.
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        .await?;
    for lane in &mut lanes {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('runledger.projector.' || $1::text || '.' || $2::text))",
            &[&plan.live_schema, &lane.target.consumer],
        )
        .await?;
        let live_at: i64 = tx
            .query_opt(
                &format!(
                    "SELECT last_seq FROM {}.projector_positions WHERE consumer = $1",
                    plan.live_schema
                ),
                &[&lane.target.consumer],
            )
            .await?
            .map_or(0, |r| r.get(0));
        let fixed = move || async move { Ok::<i64, ProjectorError>(live_at) };
        catch_up(
            &mut client,
            js,
            &plan.into,
            lane,
            started,
            &fixed,
            &mut on_progress,
        )
        .await?;
    }
    let tables = compare(&tx, &plan.live_schema, &plan.into).await?;
    let position = lanes.iter().map(|l| l.progress.position).max().unwrap_or(0);
    match plan.mode {
        ReplayMode::DryRun => {
            tx.rollback().await?;
            client
                .batch_execute(&format!("DROP SCHEMA {} CASCADE", plan.into))
                .await?;
            Ok(ReplayOutcome::DryRun { position, tables })
        }
        ReplayMode::Swap { force } if !force && tables.iter().any(|t| !t.equal()) => {
            tx.rollback().await?;
            Ok(ReplayOutcome::ParityFailed { position, tables })
        }
        _ => {
            let previous = format!("{}_before_replay_{position}", plan.live_schema);
            tx.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {previous} CASCADE;
                 ALTER SCHEMA {live} RENAME TO {previous};
                 ALTER SCHEMA {into} RENAME TO {live};",
                live = plan.live_schema,
                into = plan.into
            ))
            .await?;
            tx.commit().await?;
            Ok(ReplayOutcome::Swapped {
                position,
                previous_schema: previous,
                tables,
            })
        }
    }
}

/// The position key a lane rebuilds: the live projector's, or its partition's.
fn lane_key(plan: &ReplayPlan, partition: Option<u32>) -> String {
    match partition {
        Some(p) => crate::membership::position_key(&plan.consumer, &plan.subjects, p),
        None => plan.consumer.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn catch_up<F, Fut>(
    client: &mut deadpool_postgres::Object,
    js: &Context,
    schema: &str,
    lane: &mut Lane,
    started: Instant,
    read_target: &F,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(), ProjectorError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<i64, ProjectorError>>,
{
    let Lane {
        partition,
        target,
        spec,
        feed,
        session,
        progress,
    } = lane;
    let mut idle_rounds = 0;
    let mut received = feed.received();
    loop {
        progress.target = read_target().await?;
        if progress.position >= progress.target {
            return Ok(());
        }
        let Some(mut batch) = feed.next(Duration::from_millis(500)).await? else {
            if feed.received() != received {
                // A batch is still being read (a slow machine, a large batch): not a stall.
                received = feed.received();
                idle_rounds = 0;
                continue;
            }
            idle_rounds += 1;
            // History is there (the target says so) but nothing comes: a stalled feed is
            // replaced by a fresh one at the position, every 2 s, for up to 10 s.
            if idle_rounds % 4 == 0 {
                tracing::warn!(
                    position = progress.position,
                    target = progress.target,
                    "history feed stalled; reopening it"
                );
                *feed = open_feed(js, spec, *partition, progress.position as u64).await?;
                received = feed.received();
            }
            if idle_rounds > 20 {
                return Err(ProjectorError::JetStream(format!(
                    "history ended at {} before reaching {}",
                    progress.position, progress.target
                )));
            }
            continue;
        };
        idle_rounds = 0;
        feed.give_back(batch.split_after(progress.target as u64));
        if batch.is_empty() {
            continue;
        }
        let report = apply(client, target, &batch, session).await?;
        if let Lookup::Rebuild(ids) = &session.ids {
            if RebuildIds::wants_key(ids) {
                tracing::info!(
                    position = report.position,
                    "history repeats event ids in many batches: creating the key of folded_events now"
                );
                indexes::restore_one(client, schema, indexes::FOLDED_EVENTS_KEY).await?;
                RebuildIds::keyed(ids);
            }
        }
        progress.position = report.position;
        progress.applied += (report.applied + report.dead_lettered) as u64;
        progress.elapsed = started.elapsed();
        on_progress(progress);
    }
}

/// Row counts, checksums and (where they differ) row-level differences of every table.
async fn compare(
    live: &tokio_postgres::Transaction<'_>,
    live_schema: &str,
    rebuilt_schema: &str,
) -> Result<Vec<TableDiff>, ProjectorError> {
    live.batch_execute(&format!("SET LOCAL search_path TO {live_schema}"))
        .await?;
    let live_sums = checksums(live).await?;
    live.batch_execute(&format!("SET LOCAL search_path TO {rebuilt_schema}"))
        .await?;
    let rebuilt_sums = checksums(live).await?;
    live.batch_execute(&format!("SET LOCAL search_path TO {live_schema}"))
        .await?;
    let mut out = Vec::new();
    for (table, _) in TABLES {
        let (live_rows, live_sum) = live_sums[*table].clone();
        let (rebuilt_rows, rebuilt_sum) = rebuilt_sums[*table].clone();
        let (mut only_live, mut only_rebuilt) = (0, 0);
        if live_sum != rebuilt_sum {
            let count = |a: &str, b: &str| {
                format!("SELECT count(*) FROM (SELECT * FROM {a}.{table} EXCEPT ALL SELECT * FROM {b}.{table}) d")
            };
            only_live = live
                .query_one(&count(live_schema, rebuilt_schema), &[])
                .await?
                .get(0);
            only_rebuilt = live
                .query_one(&count(rebuilt_schema, live_schema), &[])
                .await?
                .get(0);
        }
        out.push(TableDiff {
            table: (*table).to_owned(),
            live_rows,
            rebuilt_rows,
            only_live,
            only_rebuilt,
        });
    }
    Ok(out)
}
