//! The decision engine: given the read models as of an event, the ledger and the event, which
//! follow-up events does the reconciler emit?
//!
//! It is pure. The read models come from the reconciler's private fold (the projector's own
//! `fold::apply`, advanced event by event), so a rule always sees the state *as of the event that
//! triggers it* — live, on replay and on backfill alike, and whatever the projector's progress.
//! Every follow-up is a complete event whose id is derived from the cause's id and the rule,
//! whose time is the cause's time and whose entity ids (wakeup, run, comment, revision) are
//! derived from its own id: the same history always yields byte-identical follow-ups.
//!
//! Triggers: `run.finished` and `run.process_lost` of a run that had not ended yet
//! ([`ended`]: liveness, continuation summary, result comment or missing-comment follow-up,
//! process-loss retry, bounded continuation), and
//! `reconciler.ticked` ([`sweep`]: silent detached runs, stranded assigned issues).

mod ended;
pub mod ledger;
mod sweep;

use crate::storm::{self, StormPolicy, Verdict};
use crate::FollowUpWakeup;
use chrono::{DateTime, TimeDelta, Utc};
use events::issue::IssueFollowUpRefused;
use events::{AgentId, CompanyId, Event, EventData, EventId, EventType, IssueId, RunId, WakeupId};
use ledger::{Grant, Ledger, LedgerChanges};
use projector::fold::model::Model;
use serde_json::Value;
use uuid::Uuid;

/// `source` of every event the reconciler publishes.
pub const SOURCE: &str = "runledger-reconciler";
/// Extension attribute naming the id of the event that caused a follow-up.
pub const CAUSE_ATTRIBUTE: &str = "causeid";
/// Extension attribute naming the rule that decided a follow-up.
pub const RULE_ATTRIBUTE: &str = "rule";

/// The rules, as named in the `rule` attribute of their follow-ups.
pub mod rule {
    /// `run.liveness_classified` of an ended run.
    pub const LIVENESS: &str = "liveness";
    /// `document.revised` of `continuation-summary`.
    pub const SUMMARY: &str = "continuation_summary";
    /// The single retry of a lost run.
    pub const PROCESS_LOST_RETRY: &str = "process_lost_retry";
    /// The result summary of a succeeded run that never commented, as its comment.
    pub const RESULT_COMMENT: &str = "result_comment";
    /// The follow-up wakeup asking the agent of a run that left no word on its issue to comment.
    pub const MISSING_COMMENT: &str = "missing_comment";
    /// A bounded liveness continuation.
    pub const CONTINUATION: &str = "liveness_continuation";
    /// The comment of an exhausted continuation chain.
    pub const CONTINUATION_EXHAUSTED: &str = "continuation_exhausted";
    /// Dispatch recovery of a stranded `todo` issue.
    pub const STRANDED_DISPATCH: &str = "stranded_dispatch";
    /// Continuation recovery of a stranded `in_progress` issue.
    pub const STRANDED_CONTINUATION: &str = "stranded_continuation";
    /// Escalation of a stranded issue to `blocked`.
    pub const STRANDED_ESCALATION: &str = "stranded_escalation";
    /// Cancel request of a silent detached run.
    pub const SILENCE_TIMEOUT: &str = "silence_timeout";
}

/// The tunable parts of the rules. Decisions depend on the stream and on this, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Backoff and ceiling of automatic wakeups per issue.
    pub storm: StormPolicy,
    /// Silence after which a detached run is asked to stop.
    pub silence_timeout: TimeDelta,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            storm: StormPolicy::default(),
            silence_timeout: crate::silence::DEFAULT_SILENCE_TIMEOUT,
        }
    }
}

/// Why an event calls for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The event ended a run that was not over yet (`lost`: by `run.process_lost`).
    RunEnded {
        /// The run.
        run_id: Uuid,
        /// Ended by a process loss.
        lost: bool,
    },
    /// A clock tick: time-based sweeps at `now`.
    Tick {
        /// The tick's `at`.
        now: DateTime<Utc>,
    },
}

impl Trigger {
    /// "Now" for a decision on `event`: a tick's `at`, else the event's time.
    pub fn now(self, event: &Event) -> DateTime<Utc> {
        match self {
            Trigger::Tick { now } => now,
            Trigger::RunEnded { .. } => event.time,
        }
    }
}

/// Whether events of this type can trigger a decision (they end a batch segment).
pub fn may_trigger(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::RunFinished | EventType::RunProcessLost | EventType::ReconcilerTicked
    )
}

/// Whether `event` triggers a decision, judged on the model *before* it is folded: a finish or
/// loss of a run that has already ended (a duplicate, a late report) decides nothing.
pub fn trigger(before: &Model, event: &Event) -> Option<Trigger> {
    let ended = |run: Uuid| before.runs.get(&run).is_some_and(|r| r.is_terminal());
    match &event.data {
        EventData::RunFinished(d) if !ended(d.run_id.0) => Some(Trigger::RunEnded {
            run_id: d.run_id.0,
            lost: false,
        }),
        EventData::RunProcessLost(d) if !ended(d.run_id.0) => Some(Trigger::RunEnded {
            run_id: d.run_id.0,
            lost: true,
        }),
        EventData::ReconcilerTicked(d) => Some(Trigger::Tick { now: d.at }),
        _ => None,
    }
}

/// What the engine decided for one event: follow-ups in publishing order, and ledger changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The follow-up events.
    pub follow_ups: Vec<Event>,
    /// What the ledger must remember.
    pub changes: LedgerChanges,
}

/// Decides the follow-ups of `event`, whose trigger is `trigger`. `model` holds the read models
/// after folding `event` (at least the rows the decision reads); `ledger` the reconciler's state.
pub fn decide(
    model: &Model,
    ledger: &Ledger,
    event: &Event,
    trigger: Trigger,
    policy: &Policy,
) -> Decision {
    let mut emitter = Emitter {
        cause: event,
        now: trigger.now(event),
        decision: Decision::default(),
    };
    match trigger {
        Trigger::RunEnded { run_id, lost } => {
            ended::run_ended(model, ledger, &mut emitter, policy, run_id, lost)
        }
        Trigger::Tick { now } => sweep::tick(model, ledger, &mut emitter, policy, now),
    }
    emitter.decision
}

/// Builds the follow-ups of one cause with deterministic ids.
pub(crate) struct Emitter<'a> {
    cause: &'a Event,
    now: DateTime<Utc>,
    decision: Decision,
}

/// A derived entity id: the same follow-up always names the same wakeup, run, comment...
pub(crate) fn entity_id(event_id: EventId, what: &str) -> Uuid {
    Uuid::new_v5(&event_id.0, what.as_bytes())
}

impl Emitter<'_> {
    /// The time of the cause (a tick's `at`): every follow-up happens "when" its cause happened.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The id of the follow-up `name` of `rule` (unique per cause).
    pub fn id(&self, rule: &str, name: &str) -> EventId {
        EventId::derived(self.cause.id, &format!("{rule}/{name}"))
    }

    /// Adds a follow-up whose data is built from its id.
    pub fn emit(
        &mut self,
        rule: &'static str,
        name: &str,
        company: CompanyId,
        data: impl FnOnce(EventId) -> EventData,
    ) {
        let id = self.id(rule, name);
        let mut event = Event::with_id(id, company, SOURCE, self.now, data(id));
        event.extensions.insert(
            CAUSE_ATTRIBUTE.into(),
            Value::String(self.cause.id.to_string()),
        );
        event
            .extensions
            .insert(RULE_ATTRIBUTE.into(), Value::String(rule.to_owned()));
        self.decision.follow_ups.push(event);
    }

    /// Emits the `wakeup.requested` and the `run.queued` serving it; `scope` distinguishes
    /// several wakeups of one rule and cause (a tick recovers many issues).
    pub fn wakeup(
        &mut self,
        rule: &'static str,
        scope: &str,
        company: CompanyId,
        wakeup: &FollowUpWakeup,
    ) -> (WakeupId, RunId) {
        let wakeup_id = WakeupId(entity_id(
            self.id(rule, &format!("{scope}wakeup.requested")),
            "wakeup_id",
        ));
        let run_id = RunId(entity_id(
            self.id(rule, &format!("{scope}run.queued")),
            "run_id",
        ));
        self.emit(rule, &format!("{scope}wakeup.requested"), company, |_| {
            EventData::WakeupRequested(wakeup.wakeup_requested(wakeup_id))
        });
        self.emit(rule, &format!("{scope}run.queued"), company, |_| {
            EventData::RunQueued(wakeup.run_queued(run_id, wakeup_id))
        });
        (wakeup_id, run_id)
    }

    /// Emits an automatic wakeup of an issue if storm control allows it, else its refusal.
    /// `refused_once` (sweeps) keeps a refusal that is already on record from being repeated.
    #[allow(clippy::too_many_arguments)]
    pub fn rationed_wakeup(
        &mut self,
        ledger: &Ledger,
        policy: &StormPolicy,
        rule: &'static str,
        scope: &str,
        company: CompanyId,
        source_run: Option<Uuid>,
        wakeup: &FollowUpWakeup,
        refused_once: bool,
    ) {
        let Some(issue) = wakeup.issue_id else {
            self.wakeup(rule, scope, company, wakeup);
            return;
        };
        match storm::check(policy, ledger.grants_of(issue.0), self.now()) {
            Verdict::Grant => {
                let (wakeup_id, _) = self.wakeup(rule, scope, company, wakeup);
                let at = self.now();
                self.decision.changes.grants.push(Grant {
                    issue_id: issue.0,
                    wakeup_id: wakeup_id.0,
                    reason: wakeup.reason.clone(),
                    at,
                });
            }
            Verdict::Refuse(refusal) => {
                if refused_once {
                    if ledger.refusals.get(&issue.0) == Some(&refusal.retry_after) {
                        return;
                    }
                    self.decision
                        .changes
                        .refusals
                        .push((issue.0, refusal.retry_after));
                }
                self.refuse(
                    rule,
                    scope,
                    company,
                    issue,
                    source_run,
                    Some(wakeup.agent_id),
                    &wakeup.reason,
                    &refusal.reason,
                    refusal.retry_after,
                );
            }
        }
    }

    /// Emits an `issue.follow_up_refused`.
    #[allow(clippy::too_many_arguments)]
    pub fn refuse(
        &mut self,
        rule: &'static str,
        scope: &str,
        company: CompanyId,
        issue_id: IssueId,
        run_id: Option<Uuid>,
        agent_id: Option<AgentId>,
        follow_up: &str,
        reason: &str,
        retry_after: Option<DateTime<Utc>>,
    ) {
        self.emit(
            rule,
            &format!("{scope}issue.follow_up_refused"),
            company,
            |_| {
                EventData::IssueFollowUpRefused(IssueFollowUpRefused {
                    issue_id,
                    run_id: run_id.map(RunId),
                    agent_id,
                    follow_up: follow_up.to_owned(),
                    reason: reason.to_owned(),
                    retry_after,
                    extra: Default::default(),
                })
            },
        );
    }

    /// Records a ledger change.
    pub fn changes(&mut self) -> &mut LedgerChanges {
        &mut self.decision.changes
    }
}
