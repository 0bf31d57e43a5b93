//! One batch, exactly once: in ONE transaction on the reconciler's schema, lock the position,
//! skip what is at or below it, fold the events into the private read models, decide at every
//! trigger, write the follow-ups into the outbox and the ledger changes, and advance the position.
//! A failed batch is read again from the stored position; it cannot publish (the outbox drainer
//! does).
//!
//! Decisions happen in stream order against the state as of their event. Run ends are decided
//! in memory while folding: the rows they read (the run's agent and issue, the issue's keyed
//! wakeups and summary document) and the ledger of the batch's issues are loaded up front, and
//! each decision updates the in-memory ledger before the next event, exactly like the simulator.
//! A tick ends a segment: everything before it is written, then the sweep reads the written
//! state. So results never depend on batch boundaries, and a crash anywhere rolls fold,
//! decisions, outbox and position back together.

use crate::engine::ledger::Ledger;
use crate::engine::{self, Policy, Trigger, SOURCE};
use crate::error::ReconcilerError;
use crate::state::Tx;
use crate::state::{self, Decided};
use events::{Event, EventType, Subjects};
use projector::feed::{Batch, Incoming, Parsed};
use projector::fold::{self, Touched};
use projector::store;
use projector::store::batch::Bisection;
use projector::store::event_ids::{FoldedIds, Verdict};
use projector::store::lease::{self, Fence};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Where a batch goes and how it decides.
#[derive(Clone, Debug)]
pub struct BatchTarget {
    /// Position key (and durable consumer name).
    pub consumer: String,
    /// The stream the events come from.
    pub stream: String,
    /// Subjects of that stream (an event on the wrong subject is a dead letter).
    pub subjects: Subjects,
    /// The reconciler's schema.
    pub schema: String,
    /// The rules' settings.
    pub policy: Policy,
    /// Triggers below this sequence are folded but decide nothing (dry runs from a sequence).
    pub decide_from: u64,
    /// The lease a shared partition's batches must still hold to commit (`None`: unshared).
    pub fence: Option<Fence>,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events folded.
    pub folded: usize,
    /// Events at or below the stored position.
    pub skipped: usize,
    /// Events the private fold rejected.
    pub dead_lettered: usize,
    /// Triggers decided.
    pub decisions: usize,
    /// Follow-ups written to the outbox.
    pub follow_ups: usize,
    /// Follow-ups by the rule that decided them (for metrics).
    pub by_rule: std::collections::BTreeMap<String, usize>,
    /// The position after the batch.
    pub position: i64,
}

impl BatchReport {
    fn count(&mut self, follow_ups: &[Event]) {
        self.decisions += 1;
        self.follow_ups += follow_ups.len();
        for event in follow_ups {
            let rule = event
                .extensions
                .get(engine::RULE_ATTRIBUTE)
                .and_then(|r| r.as_str())
                .unwrap_or("unknown");
            *self.by_rule.entry(rule.to_owned()).or_default() += 1;
        }
    }
}

/// Processes `batch` (in stream order) in one transaction. `head` is the stream's last sequence
/// when the caller started reading (what an earlier incarnation can have published): follow-ups
/// decided now are held until the position reaches it (see the outbox's `hold_until_seq`).
///
/// When PostgreSQL refuses the batch's data ([`ReconcilerError::refused_data`]), the batch is
/// bisected down to the event whose rows are refused, which becomes a dead letter of the private
/// fold; everything else is folded and decided as usual (as the projector does).
pub async fn process_batch(
    client: &mut deadpool_postgres::Object,
    target: &BatchTarget,
    batch: &Batch,
    head: u64,
) -> Result<BatchReport, ReconcilerError> {
    match process_in_transaction(client, target, batch, head).await {
        Err(e) => match e.refused_data() {
            Some(reason) => bisect(client, target, batch, head, reason).await,
            None => Err(e),
        },
        ok => ok,
    }
}

/// Processes `batch`, which PostgreSQL refused for `reason`, in ever smaller parts (as the
/// projector does: [`Bisection`]); a single refused event becomes a dead letter of the private
/// fold.
async fn bisect(
    client: &mut deadpool_postgres::Object,
    target: &BatchTarget,
    batch: &Batch,
    head: u64,
    reason: String,
) -> Result<BatchReport, ReconcilerError> {
    tracing::info!(events = batch.len(), %reason, "PostgreSQL refused a batch of the private fold; bisecting it");
    let mut bisection = Bisection::new(batch);
    let mut report = BatchReport::default();
    while let Some(part) = bisection.next_part() {
        let done = match process_in_transaction(client, target, &part, head).await {
            Ok(done) => done,
            Err(e) => {
                let Some(reason) = e.refused_data() else {
                    return Err(e);
                };
                let Some(refused) = bisection.refused(part, &reason) else {
                    continue;
                };
                process_in_transaction(client, target, &refused, head).await?
            }
        };
        report = report.merge(done);
    }
    Ok(report)
}

impl BatchReport {
    /// This report followed by `next`'s (a later batch).
    fn merge(mut self, next: BatchReport) -> BatchReport {
        self.folded += next.folded;
        self.skipped += next.skipped;
        self.dead_lettered += next.dead_lettered;
        self.decisions += next.decisions;
        self.follow_ups += next.follow_ups;
        for (rule, n) in next.by_rule {
            *self.by_rule.entry(rule).or_default() += n;
        }
        self.position = self.position.max(next.position);
        self
    }
}

async fn process_in_transaction(
    client: &mut deadpool_postgres::Object,
    target: &BatchTarget,
    batch: &Batch,
    head: u64,
) -> Result<BatchReport, ReconcilerError> {
    projector::store::migrate::check_schema_name(&target.schema)?;
    let tx = client.transaction().await?;
    let position =
        state::begin_batch(&tx, &target.schema, &target.consumer, &target.stream).await?;
    // A shared partition's decider proves it still owns the partition; the lease row stays
    // share-locked until the commit, so it cannot change hands before.
    if let Some(fence) = &target.fence {
        lease::check(&*tx, fence).await?;
    }
    let parsed: Vec<(&Incoming, &Parsed)> = batch
        .iter()
        .filter(|(m, _)| m.seq as i64 > position)
        .collect();
    let mut report = BatchReport {
        skipped: batch.len() - parsed.len(),
        position,
        ..BatchReport::default()
    };
    let Some(last) = parsed.last().map(|(m, _)| m.seq as i64) else {
        tx.commit().await?;
        return Ok(report);
    };
    let hold = last.max(head as i64);
    let mut folded = FoldedIds::load(&tx, parsed.iter().filter_map(|(_, p)| p.event())).await?;
    let mut seen = Seen::default();
    let mut start = 0;
    for end in 0..parsed.len() {
        let (message, p) = &parsed[end];
        let decides = message.seq >= target.decide_from;
        let is_tick = matches!(p, Parsed::Event(e) if decides && e.event_type() == EventType::ReconcilerTicked);
        let is_last = end + 1 == parsed.len();
        if !(is_last || is_tick) {
            continue;
        }
        let (model, decided, tick) = segment(
            &tx,
            target,
            &parsed[start..=end],
            &mut seen,
            &mut folded,
            &mut report,
        )
        .await?;
        start = end + 1;
        // Writes go out together (one round trip); the batch's last ones carry the position.
        let close = (is_last && tick.is_none()).then_some((&seen, last, parsed.len()));
        write(&tx, target, Some(&model), &decided, hold, close, &report).await?;
        if let Some((event, now, seq)) = tick {
            let (snapshot, ledger) =
                state::load_sweep(&tx, now - target.policy.storm.window, &seen.ids).await?;
            let trigger = Trigger::Tick { now };
            let decision = engine::decide(&snapshot, &ledger, event, trigger, &target.policy);
            report.count(&decision.follow_ups);
            let decided = [Decided {
                cause_seq: seq,
                cause: event,
                decision,
            }];
            let close = is_last.then_some((&seen, last, parsed.len()));
            write(&tx, target, None, &decided, hold, close, &report).await?;
        }
    }
    folded.write(&tx).await?;
    tx.commit().await?;
    report.position = last;
    Ok(report)
}

/// Writes a segment's fold and decisions and, with `close`, marks the follow-ups read back and
/// advances the position to the batch's last sequence, all pipelined.
async fn write(
    tx: &Tx<'_>,
    target: &BatchTarget,
    model: Option<&projector::fold::model::Model>,
    decided: &[Decided<'_>],
    hold: i64,
    close: Option<(&Seen, i64, usize)>,
    report: &BatchReport,
) -> Result<(), ReconcilerError> {
    let fold = async {
        match model {
            Some(model) => Ok(store::write(tx, model).await?),
            None => Ok::<_, ReconcilerError>(()),
        }
    };
    let decisions = state::write_decisions(tx, &target.subjects, decided, hold);
    let closing = async {
        let Some((seen, last, events)) = close else {
            return Ok(());
        };
        futures::try_join!(
            state::mark_seen(tx, &seen.ids, &seen.seqs),
            state::advance_position(
                tx,
                &target.consumer,
                last,
                events as i64,
                report.follow_ups as i64,
            ),
        )?;
        Ok::<_, ReconcilerError>(())
    };
    // Pipelined; see [`projector::pipelined`] for which failure is reported.
    let (folded, decided, closed) = futures::join!(fold, decisions, closing);
    projector::pipelined(
        [folded, decided.map(drop), closed],
        |e: &ReconcilerError| e.refused_data().is_some(),
    )?;
    if let Some(model) = model {
        store::write_new(tx, model).await?;
    }
    Ok(())
}

/// The reconciler's own follow-ups read back in this batch.
#[derive(Default)]
struct Seen {
    ids: Vec<Uuid>,
    seqs: Vec<i64>,
}

/// Folds and decides one segment: events up to and including a tick (or the batch's end). The
/// rows the fold and the run-end decisions read are loaded once, every event is folded and every
/// run end decided in memory, in order; the caller writes the results, then runs the closing
/// tick's sweep against the written state.
#[allow(clippy::type_complexity)]
async fn segment<'a>(
    tx: &Tx<'_>,
    target: &BatchTarget,
    segment: &'a [(&'a Incoming, &'a Parsed)],
    seen: &mut Seen,
    folded: &mut FoldedIds,
    report: &mut BatchReport,
) -> Result<
    (
        projector::fold::model::Model,
        Vec<Decided<'a>>,
        Option<(&'a Event, chrono::DateTime<chrono::Utc>, i64)>,
    ),
    ReconcilerError,
> {
    let policy = &target.policy;
    let mut touched = Touched::default();
    for (_, p) in segment {
        if let Parsed::Event(e) = p {
            touched.add(e);
        }
    }
    let mut model = store::load(tx, &touched).await?;
    let decides_run_ends = segment.iter().any(|(m, p)| {
        m.seq >= target.decide_from
            && matches!(p, Parsed::Event(e) if matches!(e.event_type(), EventType::RunFinished | EventType::RunProcessLost))
    });
    let mut ledger = Ledger::default();
    if decides_run_ends {
        let issues: BTreeSet<Uuid> = model
            .issues
            .keys()
            .copied()
            .chain(model.runs.values().filter_map(|r| r.issue_id))
            .chain(touched.issues.iter().copied())
            .collect();
        let issues: Vec<Uuid> = issues.into_iter().collect();
        let earliest = segment
            .iter()
            .filter_map(|(_, p)| match p {
                Parsed::Event(e) => Some(e.time),
                Parsed::Dead(_) => None,
            })
            .min()
            .unwrap_or_default();
        ledger = state::load_for_run_ends(
            tx,
            &mut model,
            &issues,
            earliest - policy.storm.window,
            &seen.ids,
        )
        .await?;
    }
    let mut decided = Vec::new();
    let mut dead = Vec::new();
    let mut tick = None;
    for (message, p) in segment {
        let seq = message.seq as i64;
        let reason = match p {
            Parsed::Dead(reason) => reason.clone(),
            Parsed::Event(event) => {
                // The same event id folds once, however late it comes again (as in the
                // projector: `projector::store::event_ids`).
                let digest = match folded.verdict(event) {
                    Verdict::New(digest) => digest,
                    Verdict::Duplicate(_) => {
                        report.skipped += 1;
                        continue;
                    }
                    Verdict::Conflict(reason) => {
                        dead.push(message.dead_letter(&reason));
                        continue;
                    }
                };
                if event.source == SOURCE {
                    seen.ids.push(event.id.0);
                    seen.seqs.push(seq);
                    ledger.seen(event.id);
                }
                let trigger = (message.seq >= target.decide_from)
                    .then(|| engine::trigger(&model, event))
                    .flatten();
                match fold::apply(&mut model, seq, event) {
                    Err(rejection) => rejection.0,
                    Ok(()) => {
                        folded.folded(event.id.0, digest, seq);
                        report.folded += 1;
                        match trigger {
                            Some(Trigger::Tick { now }) => tick = Some((&**event, now, seq)),
                            Some(trigger) => {
                                let decision =
                                    engine::decide(&model, &ledger, event, trigger, policy);
                                ledger.apply(&decision.follow_ups, &decision.changes);
                                report.count(&decision.follow_ups);
                                decided.push(Decided {
                                    cause_seq: seq,
                                    cause: event,
                                    decision,
                                });
                            }
                            None => {}
                        }
                        continue;
                    }
                }
            }
        };
        dead.push(message.dead_letter(&reason));
    }
    report.dead_lettered += dead.len();
    model.appends.dead_letters = dead;
    // No rule reads the run timeline or the audit log, and they are the bulk of the fold's
    // writes: the private fold keeps rows and the children that deduplicate evidence only.
    model.appends.run_events.clear();
    model.appends.activity.clear();
    Ok((model, decided, tick))
}
