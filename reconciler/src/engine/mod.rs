//! The decision engine: given the read models as of an event, the ledger and the event, which
//! follow-up events does the reconciler emit?
//!
//! It is pure. The read models come from the reconciler's private fold (the projector's own
//! `fold::apply`, advanced event by event), so a rule always sees the state *as of the event that
//! triggers it* — live, on replay and on backfill alike, and whatever the projector's progress.
//! Every follow-up is a complete event whose id is derived from the cause's id and the rule,
//! whose time is the cause's time and whose entity ids (wakeup, run, comment, revision) are
//! derived from its own id: the same history always yields byte-identical follow-ups. A follow-up
//! that storm control defers is published later by a tick with the ids and data it was deferred
//! with ([`Emitter::fire`]).
//!
//! Triggers: `run.finished` and `run.process_lost` of a run that had not ended yet
//! ([`ended`]: liveness, continuation summary, result comment or missing-comment follow-up,
//! process-loss retry, bounded continuation), and
//! `reconciler.ticked` ([`sweep`]: deferrals due, silent detached runs, stranded assigned issues).

mod ended;
mod explain;
pub mod ledger;
mod sweep;

use crate::storm::{self, StormPolicy, Verdict};
use crate::FollowUpWakeup;
use chrono::{DateTime, TimeDelta, Utc};
use events::issue::{
    DeferralOutcome, IssueCommentAdded, IssueFollowUpDeferralClosed, IssueFollowUpDeferred,
    IssueFollowUpRefused,
};
use events::{
    AgentId, CommentId, CompanyId, Event, EventData, EventId, EventType, IssueId, RunId, WakeupId,
};
use ledger::{Deferral, Grant, Ledger, LedgerChanges};
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
    /// The one comment saying storm control's ceiling holds an issue's automatic wakeups back.
    pub const STORM_CEILING: &str = "storm_ceiling";
}

/// Extension attribute of a follow-up published when its deferral fell due: the deferral's id.
pub const DEFERRAL_ATTRIBUTE: &str = "deferralid";

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
        facts: explain::Facts {
            model,
            ledger,
            storm: &policy.storm,
            trigger_run: match trigger {
                Trigger::RunEnded { run_id, .. } => Some(run_id),
                Trigger::Tick { .. } => None,
            },
        },
    };
    match trigger {
        Trigger::RunEnded { run_id, lost } => {
            ended::run_ended(model, ledger, &mut emitter, policy, run_id, lost)
        }
        Trigger::Tick { now } => sweep::tick(model, ledger, &mut emitter, policy, now),
    }
    // Every follow-up carries its explanation, read from the state the rules decided on.
    let Emitter {
        cause,
        now,
        mut decision,
        facts,
    } = emitter;
    let classified: Vec<(Uuid, String)> = decision
        .follow_ups
        .iter()
        .filter_map(|e| match &e.data {
            EventData::RunLivenessClassified(d) => Some((d.run_id.0, d.state.to_string())),
            _ => None,
        })
        .collect();
    for event in &mut decision.follow_ups {
        let rule = event
            .extensions
            .get(RULE_ATTRIBUTE)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        explain::explain(&facts, cause, now, &rule, event, &classified).attach(event);
    }
    // A deferral remembers its explanation: when it fires or closes, that is what it went by.
    for deferral in &mut decision.changes.deferrals {
        if let Some(explained) = decision
            .follow_ups
            .iter()
            .find(|e| e.id == deferral.event.id)
        {
            deferral.event = explained.clone();
        }
    }
    decision
}

/// Builds the follow-ups of one cause with deterministic ids.
pub(crate) struct Emitter<'a> {
    cause: &'a Event,
    now: DateTime<Utc>,
    decision: Decision,
    /// What the explanation of each follow-up reads.
    facts: explain::Facts<'a>,
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
        let event = self.build(id, rule, company, data(id));
        self.decision.follow_ups.push(event);
    }

    /// A follow-up with `id`, caused by this emitter's cause, at its time.
    fn build(&self, id: EventId, rule: &str, company: CompanyId, data: EventData) -> Event {
        let mut event = Event::with_id(id, company, SOURCE, self.now, data);
        event.extensions.insert(
            CAUSE_ATTRIBUTE.into(),
            Value::String(self.cause.id.to_string()),
        );
        event
            .extensions
            .insert(RULE_ATTRIBUTE.into(), Value::String(rule.to_owned()));
        event
    }

    /// The `wakeup.requested` and the `run.queued` serving it, with their event ids; `scope`
    /// distinguishes several wakeups of one rule and cause (a tick recovers many issues).
    fn wakeup_events(
        &self,
        rule: &'static str,
        scope: &str,
        wakeup: &FollowUpWakeup,
    ) -> (
        (EventId, events::wakeup::WakeupRequested),
        (EventId, events::run::RunQueued),
    ) {
        let wakeup_event = self.id(rule, &format!("{scope}wakeup.requested"));
        let run_event = self.id(rule, &format!("{scope}run.queued"));
        let wakeup_id = WakeupId(entity_id(wakeup_event, "wakeup_id"));
        let run_id = RunId(entity_id(run_event, "run_id"));
        (
            (wakeup_event, wakeup.wakeup_requested(wakeup_id)),
            (run_event, wakeup.run_queued(run_id, wakeup_id)),
        )
    }

    /// Emits the `wakeup.requested` and the `run.queued` serving it.
    pub fn wakeup(
        &mut self,
        rule: &'static str,
        scope: &str,
        company: CompanyId,
        wakeup: &FollowUpWakeup,
    ) -> (WakeupId, RunId) {
        let ((wakeup_event, requested), (run_event, queued)) =
            self.wakeup_events(rule, scope, wakeup);
        let ids = (requested.wakeup_id, queued.run_id);
        let requested = self.build(
            wakeup_event,
            rule,
            company,
            EventData::WakeupRequested(requested),
        );
        let queued = self.build(run_event, rule, company, EventData::RunQueued(queued));
        self.decision.follow_ups.extend([requested, queued]);
        ids
    }

    /// Emits an automatic wakeup of an issue now if storm control allows it, else its deferral
    /// (published unchanged when due) or its refusal. `refused_once` (sweeps) keeps a refusal
    /// that is already on record from being repeated.
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
        let verdict = storm::check(
            policy,
            ledger.grants_of(issue.0),
            &ledger.deferred_of(issue.0),
            &wakeup.reason,
            self.now(),
        );
        match verdict {
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
            Verdict::Defer { due, reason } => {
                let ((wakeup_event, requested), (run_event, queued)) =
                    self.wakeup_events(rule, scope, wakeup);
                let id = self.id(rule, &format!("{scope}issue.follow_up_deferred"));
                let event = self.build(
                    id,
                    rule,
                    company,
                    EventData::IssueFollowUpDeferred(IssueFollowUpDeferred {
                        issue_id: issue,
                        run_id: source_run.map(RunId),
                        agent_id: wakeup.agent_id,
                        rule: rule.to_owned(),
                        follow_up: wakeup.reason.clone(),
                        reason,
                        due_at: due,
                        wakeup_event_id: wakeup_event,
                        wakeup: Box::new(requested),
                        run_event_id: run_event,
                        run: Box::new(queued),
                        extra: Default::default(),
                    }),
                );
                if let Some(deferral) = Deferral::of(&event) {
                    self.decision.changes.deferrals.push(deferral);
                }
                self.decision.follow_ups.push(event);
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
                self.ceiling_notice(
                    ledger,
                    policy,
                    scope,
                    company,
                    issue,
                    &wakeup.reason,
                    &refusal,
                );
            }
        }
    }

    /// The one comment on an issue saying storm control's ceiling holds its automatic wakeups
    /// back, until when (not repeated while it stands).
    #[allow(clippy::too_many_arguments)]
    fn ceiling_notice(
        &mut self,
        ledger: &Ledger,
        policy: &StormPolicy,
        scope: &str,
        company: CompanyId,
        issue: IssueId,
        follow_up: &str,
        refusal: &storm::Refusal,
    ) {
        let now = self.now();
        if ledger
            .ceiling_notices
            .get(&issue.0)
            .is_some_and(|until| *until > now)
        {
            return;
        }
        let until = refusal.retry_after.unwrap_or(now + policy.window);
        let body = format!(
            "Automatic follow-ups of this issue are paused by storm control\n\n\
             The reconciler refused an automatic `{follow_up}`: {}. Automatic wakeups of this \
             issue beyond the bounded follow-ups resume after {}. Wake the agent, reassign or \
             block the issue if it needs attention before then.",
            refusal.reason,
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        self.emit(
            rule::STORM_CEILING,
            &format!("{scope}issue.comment_added"),
            company,
            |id| {
                EventData::IssueCommentAdded(IssueCommentAdded {
                    comment_id: CommentId(entity_id(id, "comment_id")),
                    issue_id: issue,
                    body,
                    author_agent_id: None,
                    author_user_id: None,
                    run_id: None,
                    extra: Default::default(),
                })
            },
        );
        self.decision.changes.ceiling_notices.push((issue.0, until));
    }

    /// Publishes a deferred follow-up that fell due: its `wakeup.requested` and `run.queued`
    /// exactly as deferred (ids, rule, data), at this tick's time, then closes the deferral.
    pub fn fire(&mut self, deferral: &Deferral, company: CompanyId) {
        let d = deferral.data();
        for (id, data) in [
            (
                d.wakeup_event_id,
                EventData::WakeupRequested((*d.wakeup).clone()),
            ),
            (d.run_event_id, EventData::RunQueued((*d.run).clone())),
        ] {
            let mut event = self.build(id, &d.rule, company, data);
            event.extensions.insert(
                DEFERRAL_ATTRIBUTE.into(),
                Value::String(deferral.event.id.to_string()),
            );
            self.decision.follow_ups.push(event);
        }
        let at = self.now();
        self.decision.changes.grants.push(Grant {
            issue_id: deferral.issue_id,
            wakeup_id: d.wakeup.wakeup_id.0,
            reason: d.follow_up.clone(),
            at,
        });
        let due = d.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.close(
            deferral,
            company,
            DeferralOutcome::Fired,
            &format!("due at {due}"),
        );
    }

    /// Closes a deferral (`fired` or `moot`), once: its id is derived from the deferral's.
    pub fn close(
        &mut self,
        deferral: &Deferral,
        company: CompanyId,
        outcome: DeferralOutcome,
        reason: &str,
    ) {
        let d = deferral.data();
        let id = EventId::derived(deferral.event.id, "issue.follow_up_deferral_closed");
        let event = self.build(
            id,
            &d.rule,
            company,
            EventData::IssueFollowUpDeferralClosed(IssueFollowUpDeferralClosed {
                issue_id: d.issue_id,
                deferral_id: deferral.event.id,
                run_id: d.run_id,
                follow_up: d.follow_up.clone(),
                outcome,
                reason: reason.to_owned(),
                extra: Default::default(),
            }),
        );
        self.decision.follow_ups.push(event);
        self.decision.changes.closed.push(deferral.event.id);
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
