//! The reconciler's state in PostgreSQL, on the caller's transaction (whose `search_path` is the
//! reconciler's schema): its position, the rows and ledger entries one decision reads, and the
//! decision's writes (outbox rows and ledger changes).
//!
//! Loading is scoped to the trigger: an ended run reads its run, agent and issue, the issue's
//! keyed wakeups and summary document, and the issue's ledger entries; a tick reads the
//! stranded-issue candidates with their agents, live and newest runs and deferred wakeups, plus
//! the detached runs. The engine sees the same rows the in-memory simulator would consider.

use crate::engine::ledger::{Deferral, Grant, Ledger, Pending, SummaryState};
use crate::engine::{Decision, CAUSE_ATTRIBUTE, RULE_ATTRIBUTE};
use crate::error::ReconcilerError;
use chrono::{DateTime, Utc};
use events::{Event, EventId, EventType, Subjects};
use futures::try_join;
use projector::fold::model::{AgentRow, DocumentRow, IssueRow, Model, RunRow, WakeupRow};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

type Param<'a> = &'a (dyn ToSql + Sync);

/// The reconciler's transactions: pooled, with the connection's prepared-statement cache (its
/// statements run on every batch; planning them once per connection saves most of their cost).
pub type Tx<'a> = deadpool_postgres::Transaction<'a>;

async fn query(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, ReconcilerError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

async fn execute(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<u64, ReconcilerError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}

async fn rows<T: DeserializeOwned>(
    tx: &Tx<'_>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<T>, ReconcilerError> {
    query(tx, sql, params)
        .await?
        .iter()
        .map(|row| {
            serde_json::from_value(row.get::<_, serde_json::Value>(0)).map_err(|e| {
                ReconcilerError::Config(format!("read model row does not match its type: {e}"))
            })
        })
        .collect()
}

/// A SQL string literal (standard-conforming strings: only quotes need doubling).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Starts a batch on `tx` in one round trip: the reconciler's schema, asynchronous commit (see
/// below), the batch lock of `schema` + `consumer` (a second reconciler on the same state
/// waits here instead of deciding the same events twice) and the stored position.
///
/// Asynchronous commit: a crash of PostgreSQL may lose the last few commits, but never part of
/// one (fold, decisions, outbox and position stay together), and deciding those events again
/// yields the same follow-ups with the same ids, which JetStream and the outbox's hold
/// deduplicate. So the reconciler does not wait for a WAL flush per batch.
pub async fn begin_batch(
    tx: &Tx<'_>,
    schema: &str,
    consumer: &str,
    stream: &str,
) -> Result<i64, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    if consumer.contains('\0') || stream.contains('\0') {
        return Err(ReconcilerError::Config(
            "consumer and stream names cannot contain NUL".into(),
        ));
    }
    let (consumer, stream_text) = (literal(consumer), literal(stream));
    let lock = literal(&format!("runledger.reconciler.{schema}."));
    let messages = tx
        .simple_query(&format!(
            "SET LOCAL search_path TO {schema};
             SET LOCAL synchronous_commit TO off;
             SELECT pg_advisory_xact_lock(hashtext({lock} || {consumer}));
             INSERT INTO reconciler_positions (consumer, stream, last_seq)
                 VALUES ({consumer}, {stream_text}, 0) ON CONFLICT (consumer) DO NOTHING;
             SELECT stream, last_seq FROM reconciler_positions WHERE consumer = {consumer};"
        ))
        .await?;
    let row = messages
        .iter()
        .rev()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| ReconcilerError::Config("the position row is missing".into()))?;
    let stored = row.get(0).unwrap_or_default();
    if stored != stream {
        return Err(ReconcilerError::Config(format!(
            "this reconciler state was built from stream `{stored}`, not `{stream}`; \
             use another schema for another stream"
        )));
    }
    row.get(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ReconcilerError::Config("the stored position is not a number".into()))
}

/// Moves the position and adds to the counters.
pub async fn advance_position(
    tx: &Tx<'_>,
    consumer: &str,
    last_seq: i64,
    events: i64,
    follow_ups: i64,
) -> Result<(), ReconcilerError> {
    execute(
        tx,
        "UPDATE reconciler_positions
         SET last_seq = $2, events_seen = events_seen + $3, follow_ups = follow_ups + $4
         WHERE consumer = $1",
        &[&consumer, &last_seq, &events, &follow_ups],
    )
    .await?;
    Ok(())
}

/// The stored position of `consumer` in `schema`, without locking.
pub async fn position(
    client: &impl GenericClient,
    schema: &str,
    consumer: &str,
) -> Result<Option<i64>, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    let row = client
        .query_opt(
            &format!("SELECT last_seq FROM {schema}.reconciler_positions WHERE consumer = $1"),
            &[&consumer],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Where a reconciler is, for `runledger status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Its schema does not exist yet: it never started and nothing migrated it.
    NoSchema,
    /// Its schema exists but it has no position yet: it has decided no batch.
    NoPosition,
    /// It has decided up to here.
    At(Position),
}

/// A reconciler's stored position and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The stream its state was built from.
    pub stream: String,
    /// Its position: the last stream sequence decided.
    pub last_seq: i64,
    /// Events it has read.
    pub events_seen: i64,
    /// Follow-ups it has decided.
    pub follow_ups: i64,
    /// Outbox rows (follow-ups of every reconciler on this schema) not yet published.
    pub unpublished: i64,
}

/// The progress of `consumer` in `schema`. Read-only and without locks.
pub async fn progress(
    client: &impl GenericClient,
    schema: &str,
    consumer: &str,
) -> Result<Progress, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    let table = format!("{schema}.reconciler_positions");
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await?
        .get(0);
    if exists.is_none() {
        return Ok(Progress::NoSchema);
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT stream, last_seq, events_seen, follow_ups,
                        (SELECT count(*) FROM {schema}.outbox WHERE NOT published)
                 FROM {table} WHERE consumer = $1"
            ),
            &[&consumer],
        )
        .await?;
    Ok(row.map_or(Progress::NoPosition, |r| {
        Progress::At(Position {
            stream: r.get(0),
            last_seq: r.get(1),
            events_seen: r.get(2),
            follow_ups: r.get(3),
            unpublished: r.get(4),
        })
    }))
}

/// Holds every unpublished follow-up until the position reaches `head` (called on start: the
/// follow-ups of a previous incarnation may already be in the stream, beyond `head` none are).
pub async fn hold_unpublished(
    client: &impl GenericClient,
    schema: &str,
    head: i64,
) -> Result<u64, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    Ok(client
        .execute(
            &format!(
                "UPDATE {schema}.outbox SET hold_until_seq = GREATEST(hold_until_seq, $1)
                 WHERE NOT published"
            ),
            &[&head],
        )
        .await?)
}

fn pending_of(rows: Vec<tokio_postgres::Row>) -> Vec<Pending> {
    rows.iter()
        .filter_map(|row| {
            let event_type: String = row.get(1);
            Some(Pending {
                event_id: EventId(row.get(0)),
                event_type: EventType::parse(&event_type)?,
                issue_id: row.get(2),
                run_id: row.get(3),
                idempotency_key: row.get(4),
            })
        })
        .collect()
}

const PENDING_COLUMNS: &str = "event_id, event_type, issue_id, run_id, idempotency_key";

/// Adds to `model` what run-end decisions on `issues` read beyond what the fold loaded (the
/// issues' keyed wakeups and `continuation-summary` documents; rows already there are newer and
/// kept) and returns the ledger of those issues. `seen` are follow-ups already read back in this
/// batch; `since` bounds the storm-control history (older grants cannot matter).
pub async fn load_for_run_ends(
    tx: &Tx<'_>,
    model: &mut Model,
    issues: &[Uuid],
    since: DateTime<Utc>,
    seen: &[Uuid],
) -> Result<Ledger, ReconcilerError> {
    if issues.is_empty() {
        return Ok(Ledger::default());
    }
    let issue_param: [Param<'_>; 1] = [&issues];
    let pending_params: [Param<'_>; 2] = [&issues, &seen];
    let grant_params: [Param<'_>; 2] = [&issues, &since];
    let (wakeups, documents, pending, grants, summaries, deferrals, notices) = try_join!(
        rows::<WakeupRow>(
            tx,
            "SELECT to_jsonb(w) FROM wakeup_requests w
             WHERE issue_id = ANY($1) AND idempotency_key IS NOT NULL",
            &issue_param
        ),
        rows::<DocumentRow>(
            tx,
            "SELECT to_jsonb(d) FROM documents d
             WHERE issue_id = ANY($1) AND key = 'continuation-summary'",
            &issue_param
        ),
        async {
            query(
                tx,
                &format!(
                    "SELECT {PENDING_COLUMNS} FROM outbox
                         WHERE seen_seq IS NULL AND issue_id = ANY($1)
                           AND NOT (event_id = ANY($2))"
                ),
                &pending_params,
            )
            .await
        },
        query(
            tx,
            "SELECT issue_id, at, reason FROM reconciler_grants
             WHERE issue_id = ANY($1) AND at > $2",
            &grant_params,
        ),
        query(
            tx,
            "SELECT issue_id, document_id, revision_number, body
             FROM reconciler_summaries WHERE issue_id = ANY($1)",
            &issue_param,
        ),
        query(tx, OPEN_DEFERRALS_OF, &issue_param),
        query(tx, CEILING_NOTICES, &issue_param),
    )?;
    for row in wakeups {
        model.wakeups.entry(row.wakeup_id).or_insert(row);
    }
    for row in documents {
        model.documents.entry(row.document_id).or_insert(row);
    }
    let mut ledger = Ledger {
        pending: pending_of(pending),
        ..Ledger::default()
    };
    add_grants(&mut ledger, grants);
    add_deferrals(&mut ledger, deferrals)?;
    add_ceiling_notices(&mut ledger, notices);
    for row in summaries {
        ledger.summaries.insert(
            row.get(0),
            SummaryState {
                document_id: row.get(1),
                revision_number: row.get(2),
                body: row.get(3),
            },
        );
    }
    Ok(ledger)
}

fn add_grants(ledger: &mut Ledger, rows: Vec<tokio_postgres::Row>) {
    for row in rows {
        ledger
            .grants
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
}

/// Open deferrals of some issues, in the order they were made.
const OPEN_DEFERRALS_OF: &str = "SELECT event FROM reconciler_deferrals
     WHERE closed_seq IS NULL AND issue_id = ANY($1)
     ORDER BY cause_seq, deferral_id";

/// Every open deferral, in the order they were made (the partial index holds only open ones).
const OPEN_DEFERRALS: &str = "SELECT event FROM reconciler_deferrals
     WHERE closed_seq IS NULL
     ORDER BY cause_seq, deferral_id";

fn add_deferrals(
    ledger: &mut Ledger,
    rows: Vec<tokio_postgres::Row>,
) -> Result<(), ReconcilerError> {
    for row in rows {
        let bytes: Vec<u8> = row.get(0);
        let mut event = Event::from_slice(&bytes).map_err(|e| {
            ReconcilerError::Config(format!("a stored deferral does not parse: {e}"))
        })?;
        projector::feed::normalize(&mut event);
        let deferral = Deferral::of(&event).ok_or_else(|| {
            ReconcilerError::Config(format!("stored deferral {} is not a deferral", event.id))
        })?;
        ledger.deferrals.push(deferral);
    }
    Ok(())
}

fn add_ceiling_notices(ledger: &mut Ledger, rows: Vec<tokio_postgres::Row>) {
    for row in rows {
        ledger.ceiling_notices.insert(row.get(0), row.get(1));
    }
}

const CEILING_NOTICES: &str =
    "SELECT issue_id, until FROM reconciler_ceiling_notices WHERE issue_id = ANY($1)";

/// Loads what a sweep at a tick reads: the stranded-issue candidates with their agents, live and
/// newest runs, deferred and continuation wakeups, the detached runs, the open deferrals with
/// their issues, the runs of those issues started since and their latest comments by a person,
/// and the ledger of all those issues.
pub async fn load_sweep(
    tx: &Tx<'_>,
    since: DateTime<Utc>,
    seen: &[Uuid],
) -> Result<(Model, Ledger), ReconcilerError> {
    let (issues, detached, deferrals) = try_join!(
        rows::<IssueRow>(
            tx,
            "SELECT to_jsonb(i) FROM issues i
             WHERE status IN ('todo', 'in_progress')
               AND assignee_agent_id IS NOT NULL AND assignee_user_id IS NULL",
            &[]
        ),
        rows::<RunRow>(
            tx,
            "SELECT to_jsonb(r) FROM runs r
             WHERE status = 'running' AND error_code = 'process_detached'
               AND cancel_requested_at IS NULL",
            &[]
        ),
        query(tx, OPEN_DEFERRALS, &[]),
    )?;
    let mut ledger = Ledger::default();
    add_deferrals(&mut ledger, deferrals)?;
    let issue_ids: Vec<Uuid> = issues.iter().map(|i| i.issue_id).collect();
    let deferred_issues: Vec<Uuid> = ledger
        .deferrals
        .iter()
        .map(|d| d.issue_id)
        .collect::<BTreeSet<Uuid>>()
        .into_iter()
        .collect();
    let deferred_since = ledger.deferrals.iter().map(|d| d.event.time).min();
    let all_issues: Vec<Uuid> = issue_ids
        .iter()
        .chain(&deferred_issues)
        .copied()
        .collect::<BTreeSet<Uuid>>()
        .into_iter()
        .collect();
    let agent_ids: Vec<Uuid> = issues.iter().filter_map(|i| i.assignee_agent_id).collect();
    let detached_ids: Vec<Uuid> = detached.iter().map(|r| r.run_id).collect();
    let issue_param: [Param<'_>; 1] = [&issue_ids];
    let all_param: [Param<'_>; 1] = [&all_issues];
    let deferred_param: [Param<'_>; 1] = [&deferred_issues];
    let started_params: [Param<'_>; 2] = [&deferred_issues, &deferred_since];
    let agent_param: [Param<'_>; 1] = [&agent_ids];
    let pending_params: [Param<'_>; 3] = [&all_issues, &detached_ids, &seen];
    let grant_params: [Param<'_>; 2] = [&all_issues, &since];
    let (
        agents,
        runs,
        started,
        deferred_rows,
        wakeups,
        pending,
        grants,
        refusals,
        notices,
        comments,
    ) = try_join!(
        rows::<AgentRow>(
            tx,
            "SELECT to_jsonb(a) FROM agents a WHERE agent_id = ANY($1)",
            &agent_param
        ),
        rows::<RunRow>(
            tx,
            "SELECT to_jsonb(r) FROM runs r
             WHERE issue_id = ANY($1) AND (status IS NULL OR status IN ('queued', 'running'))
             UNION ALL
             SELECT n.row FROM (
                 SELECT DISTINCT ON (issue_id) to_jsonb(r) AS row FROM runs r
                 WHERE issue_id = ANY($1)
                 ORDER BY issue_id, created_at DESC NULLS LAST, run_id DESC
             ) n",
            &issue_param
        ),
        rows::<RunRow>(
            tx,
            "SELECT to_jsonb(r) FROM runs r WHERE issue_id = ANY($1) AND started_at > $2",
            &started_params
        ),
        rows::<IssueRow>(
            tx,
            "SELECT to_jsonb(i) FROM issues i WHERE issue_id = ANY($1)",
            &deferred_param
        ),
        rows::<WakeupRow>(
            tx,
            "SELECT to_jsonb(w) FROM wakeup_requests w
             WHERE issue_id = ANY($1)
               AND (status = 'deferred_issue_execution'
                    OR (status IN ('queued', 'claimed')
                        AND idempotency_key LIKE 'run\\_liveness\\_continuation:%'))",
            &issue_param
        ),
        async {
            query(
                tx,
                &format!(
                    "SELECT {PENDING_COLUMNS} FROM outbox
                         WHERE seen_seq IS NULL AND (issue_id = ANY($1) OR run_id = ANY($2))
                           AND NOT (event_id = ANY($3))"
                ),
                &pending_params,
            )
            .await
        },
        query(
            tx,
            "SELECT issue_id, at, reason FROM reconciler_grants
             WHERE issue_id = ANY($1) AND at > $2",
            &grant_params,
        ),
        query(
            tx,
            "SELECT issue_id, retry_after FROM reconciler_refusals WHERE issue_id = ANY($1)",
            &all_param,
        ),
        query(tx, CEILING_NOTICES, &all_param),
        query(
            tx,
            "SELECT issue_id, max(created_at) FROM issue_comments
             WHERE issue_id = ANY($1) AND author_user_id IS NOT NULL GROUP BY issue_id",
            &deferred_param,
        ),
    )?;
    let mut model = Model {
        issues: issues.into_iter().map(|r| (r.issue_id, r)).collect(),
        agents: agents.into_iter().map(|r| (r.agent_id, r)).collect(),
        runs: runs
            .into_iter()
            .chain(detached)
            .map(|r| (r.run_id, r))
            .collect(),
        wakeups: wakeups.into_iter().map(|r| (r.wakeup_id, r)).collect(),
        ..Model::default()
    };
    for row in deferred_rows {
        model.issues.entry(row.issue_id).or_insert(row);
    }
    for row in started {
        model.runs.entry(row.run_id).or_insert(row);
    }
    ledger.pending = pending_of(pending);
    add_grants(&mut ledger, grants);
    for row in refusals {
        ledger.refusals.insert(row.get(0), row.get(1));
    }
    add_ceiling_notices(&mut ledger, notices);
    for row in comments {
        ledger.human_comments.insert(row.get(0), row.get(1));
    }
    Ok((model, ledger))
}

/// One decision to write: what `cause` (at stream sequence `cause_seq`) decided.
pub struct Decided<'a> {
    pub cause_seq: i64,
    pub cause: &'a Event,
    pub decision: Decision,
}

/// Writes decisions, in order: their follow-ups into the outbox (held until `hold_until_seq`)
/// and their ledger changes (the last change per issue wins).
pub async fn write_decisions(
    tx: &Tx<'_>,
    subjects: &Subjects,
    decided: &[Decided<'_>],
    hold_until_seq: i64,
) -> Result<(), ReconcilerError> {
    let mut ids: Vec<Uuid> = Vec::new();
    let mut cause_seqs: Vec<i64> = Vec::new();
    let mut cause_ids: Vec<Uuid> = Vec::new();
    let mut rules: Vec<String> = Vec::new();
    let mut types: Vec<&str> = Vec::new();
    let mut subject_list: Vec<String> = Vec::new();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut issues: Vec<Option<Uuid>> = Vec::new();
    let mut runs: Vec<Option<Uuid>> = Vec::new();
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut grants: Vec<(&Grant, i64)> = Vec::new();
    let mut refusals: BTreeMap<Uuid, (Option<DateTime<Utc>>, i64)> = BTreeMap::new();
    let mut summaries: BTreeMap<Uuid, (&SummaryState, i64)> = BTreeMap::new();
    let mut deferrals: Vec<(&Deferral, i64)> = Vec::new();
    let mut closed: Vec<(Uuid, i64)> = Vec::new();
    let mut notices: BTreeMap<Uuid, (DateTime<Utc>, i64)> = BTreeMap::new();
    for d in decided {
        for event in &d.decision.follow_ups {
            debug_assert!(event.extensions.contains_key(CAUSE_ATTRIBUTE));
            let pending = Pending::of(event);
            ids.push(event.id.0);
            cause_seqs.push(d.cause_seq);
            cause_ids.push(d.cause.id.0);
            rules.push(
                event
                    .extensions
                    .get(RULE_ATTRIBUTE)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            );
            types.push(event.event_type().as_str());
            subject_list.push(subjects.of(event));
            payloads.push(event.to_vec());
            issues.push(pending.issue_id);
            runs.push(pending.run_id);
            keys.push(pending.idempotency_key);
        }
        let changes = &d.decision.changes;
        grants.extend(changes.grants.iter().map(|g| (g, d.cause_seq)));
        for (issue, retry_after) in &changes.refusals {
            refusals.insert(*issue, (*retry_after, d.cause_seq));
        }
        for (issue, summary) in &changes.summaries {
            summaries.insert(*issue, (summary, d.cause_seq));
        }
        deferrals.extend(changes.deferrals.iter().map(|x| (x, d.cause_seq)));
        closed.extend(changes.closed.iter().map(|id| (id.0, d.cause_seq)));
        for (issue, until) in &changes.ceiling_notices {
            notices.insert(*issue, (*until, d.cause_seq));
        }
    }
    let deferral_ids: Vec<Uuid> = deferrals.iter().map(|d| d.0.event.id.0).collect();
    let deferral_issues: Vec<Uuid> = deferrals.iter().map(|d| d.0.issue_id).collect();
    let deferral_dues: Vec<DateTime<Utc>> = deferrals.iter().map(|d| d.0.due_at).collect();
    let deferral_events: Vec<Vec<u8>> = deferrals.iter().map(|d| d.0.event.to_vec()).collect();
    let deferral_seqs: Vec<i64> = deferrals.iter().map(|d| d.1).collect();
    let closed_ids: Vec<Uuid> = closed.iter().map(|c| c.0).collect();
    let closed_seqs: Vec<i64> = closed.iter().map(|c| c.1).collect();
    let notice_issues: Vec<Uuid> = notices.keys().copied().collect();
    let notice_untils: Vec<DateTime<Utc>> = notices.values().map(|n| n.0).collect();
    let notice_seqs: Vec<i64> = notices.values().map(|n| n.1).collect();
    let grant_wakeups: Vec<Uuid> = grants.iter().map(|g| g.0.wakeup_id).collect();
    let grant_issues: Vec<Uuid> = grants.iter().map(|g| g.0.issue_id).collect();
    let grant_reasons: Vec<&str> = grants.iter().map(|g| g.0.reason.as_str()).collect();
    let grant_times: Vec<DateTime<Utc>> = grants.iter().map(|g| g.0.at).collect();
    let grant_seqs: Vec<i64> = grants.iter().map(|g| g.1).collect();
    let refusal_issues: Vec<Uuid> = refusals.keys().copied().collect();
    let refusal_times: Vec<Option<DateTime<Utc>>> = refusals.values().map(|r| r.0).collect();
    let refusal_seqs: Vec<i64> = refusals.values().map(|r| r.1).collect();
    let summary_issues: Vec<Uuid> = summaries.keys().copied().collect();
    let summary_documents: Vec<Uuid> = summaries.values().map(|s| s.0.document_id).collect();
    let summary_numbers: Vec<i32> = summaries.values().map(|s| s.0.revision_number).collect();
    let summary_bodies: Vec<&str> = summaries.values().map(|s| s.0.body.as_str()).collect();
    let summary_seqs: Vec<i64> = summaries.values().map(|s| s.1).collect();
    try_join!(
        async {
            if ids.is_empty() {
                return Ok(());
            }
            execute(
                tx,
                "INSERT INTO outbox (event_id, cause_seq, cause_id, rule, event_type, subject,
                                     payload, issue_id, run_id, idempotency_key, hold_until_seq)
                 SELECT t.id, t.cause_seq, t.cause_id, t.rule, t.type, t.subject, t.payload,
                        t.issue, t.run, t.key, $11
                 FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[],
                             $6::text[], $7::bytea[], $8::uuid[], $9::uuid[], $10::text[])
                      WITH ORDINALITY
                      AS t(id, cause_seq, cause_id, rule, type, subject, payload, issue, run, key, ord)
                 ORDER BY t.ord
                 ON CONFLICT (event_id) DO NOTHING",
                &[
                    &ids,
                    &cause_seqs,
                    &cause_ids,
                    &rules,
                    &types,
                    &subject_list,
                    &payloads,
                    &issues,
                    &runs,
                    &keys,
                    &hold_until_seq,
                ],
            )
            .await?;
            Ok::<_, ReconcilerError>(())
        },
        async {
            if grant_wakeups.is_empty() {
                return Ok(());
            }
            execute(
                tx,
                "INSERT INTO reconciler_grants (wakeup_id, issue_id, reason, at, cause_seq)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                                      $5::bigint[])
                 ON CONFLICT (wakeup_id) DO NOTHING",
                &[
                    &grant_wakeups,
                    &grant_issues,
                    &grant_reasons,
                    &grant_times,
                    &grant_seqs,
                ],
            )
            .await?;
            Ok(())
        },
        async {
            if refusal_issues.is_empty() {
                return Ok(());
            }
            execute(
                tx,
                "INSERT INTO reconciler_refusals (issue_id, retry_after, cause_seq)
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[])
                 ON CONFLICT (issue_id) DO UPDATE
                 SET retry_after = EXCLUDED.retry_after, cause_seq = EXCLUDED.cause_seq",
                &[&refusal_issues, &refusal_times, &refusal_seqs],
            )
            .await?;
            Ok(())
        },
        async {
            if summary_issues.is_empty() {
                return Ok(());
            }
            execute(
                tx,
                "INSERT INTO reconciler_summaries
                     (issue_id, document_id, revision_number, body, cause_seq)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::bigint[])
                 ON CONFLICT (issue_id) DO UPDATE
                 SET document_id = EXCLUDED.document_id, revision_number = EXCLUDED.revision_number,
                     body = EXCLUDED.body, cause_seq = EXCLUDED.cause_seq",
                &[
                    &summary_issues,
                    &summary_documents,
                    &summary_numbers,
                    &summary_bodies,
                    &summary_seqs,
                ],
            )
            .await?;
            Ok(())
        },
        async {
            // Opened before closed: a deferral is never opened and closed by one decision, but
            // one batch may do both.
            if !deferral_ids.is_empty() {
                execute(
                    tx,
                    "INSERT INTO reconciler_deferrals (deferral_id, issue_id, due_at, event, cause_seq)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bytea[],
                                          $5::bigint[])
                     ON CONFLICT (deferral_id) DO NOTHING",
                    &[
                        &deferral_ids,
                        &deferral_issues,
                        &deferral_dues,
                        &deferral_events,
                        &deferral_seqs,
                    ],
                )
                .await?;
            }
            if !closed_ids.is_empty() {
                execute(
                    tx,
                    "UPDATE reconciler_deferrals SET closed_seq = t.seq
                     FROM unnest($1::uuid[], $2::bigint[]) AS t(id, seq)
                     WHERE deferral_id = t.id AND closed_seq IS NULL",
                    &[&closed_ids, &closed_seqs],
                )
                .await?;
            }
            Ok(())
        },
        async {
            if notice_issues.is_empty() {
                return Ok(());
            }
            execute(
                tx,
                "INSERT INTO reconciler_ceiling_notices (issue_id, until, cause_seq)
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[])
                 ON CONFLICT (issue_id) DO UPDATE
                 SET until = EXCLUDED.until, cause_seq = EXCLUDED.cause_seq",
                &[&notice_issues, &notice_untils, &notice_seqs],
            )
            .await?;
            Ok(())
        },
    )?;
    Ok(())
}

/// Marks follow-ups read back from the stream (at `seqs`) as seen, and so as published.
pub async fn mark_seen(tx: &Tx<'_>, ids: &[Uuid], seqs: &[i64]) -> Result<(), ReconcilerError> {
    if ids.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "UPDATE outbox SET seen_seq = t.seq, published = true
         FROM unnest($1::uuid[], $2::bigint[]) AS t(id, seq)
         WHERE outbox.event_id = t.id AND outbox.seen_seq IS NULL",
        &[&ids, &seqs],
    )
    .await?;
    Ok(())
}
