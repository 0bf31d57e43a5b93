//! What a decision reads: the rows and ledger entries of an ended run's issue, or of a tick's
//! stranded-issue candidates and detached runs.

use super::*;

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
            .map(|r| (r.run_id, Box::new(r)))
            .collect(),
        wakeups: wakeups.into_iter().map(|r| (r.wakeup_id, r)).collect(),
        ..Model::default()
    };
    for row in deferred_rows {
        model.issues.entry(row.issue_id).or_insert(row);
    }
    for row in started {
        model
            .runs
            .entry(row.run_id)
            .or_insert_with(|| Box::new(row));
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
