//! What a decision writes: its follow-ups into the outbox (held until `hold_until_seq`) and the
//! ledger's changes, and the follow-ups read back.

use super::*;

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
