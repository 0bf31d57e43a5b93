//! The decision ledger: what the reconciler remembers besides the read models. The read models
//! say what happened; the ledger says what the reconciler already decided and the fold has not
//! seen yet (follow-ups still on their way through the stream), plus the state of rules that
//! span events (storm budgets, the latest continuation summary).
//!
//! The engine reads a [`Ledger`] and returns [`LedgerChanges`]; the database shell loads the part
//! a decision needs and writes the changes in the decision's transaction, the in-memory
//! simulator keeps all of it.

use chrono::{DateTime, Utc};
use events::{Event, EventData, EventId, EventType};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A follow-up the reconciler emitted that the fold has not seen yet. Until it comes back
/// through the stream, the ledger stands in for it: a queued run is a live path of its issue, a
/// requested key exists, an escalation or a cancel request is under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The follow-up's event id.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The issue it concerns (queued run, wakeup, escalation).
    pub issue_id: Option<Uuid>,
    /// The run it queues (`run.queued`) or asks to stop (`run.cancel_requested`).
    pub run_id: Option<Uuid>,
    /// The idempotency key of a `wakeup.requested`.
    pub idempotency_key: Option<String>,
}

impl Pending {
    /// What `event` (a follow-up) keeps pending until the fold sees it.
    pub fn of(event: &Event) -> Pending {
        let (issue_id, run_id, idempotency_key) = match &event.data {
            EventData::RunQueued(d) => (d.issue_id.map(|i| i.0), Some(d.run_id.0), None),
            EventData::WakeupRequested(d) => {
                (d.issue_id.map(|i| i.0), None, d.idempotency_key.clone())
            }
            EventData::IssueUpdated(d) => (Some(d.issue_id.0), None, None),
            EventData::RunCancelRequested(d) => (None, Some(d.run_id.0), None),
            _ => (None, None, None),
        };
        Pending {
            event_id: event.id,
            event_type: event.event_type(),
            issue_id,
            run_id,
            idempotency_key,
        }
    }
}

/// The reconciler's latest revision of an issue's `continuation-summary` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryState {
    /// The document.
    pub document_id: Uuid,
    /// Its latest revision number written by the reconciler.
    pub revision_number: i32,
    /// That revision's body (the next summary carries paths and next action over).
    pub body: String,
}

/// A follow-up storm control deferred, open until it fires or is closed as moot.
#[derive(Clone, Debug, PartialEq)]
pub struct Deferral {
    /// The `issue.follow_up_deferred` event (its id is the deferral's id).
    pub event: Event,
    /// The issue.
    pub issue_id: Uuid,
    /// When it is due (event time).
    pub due_at: DateTime<Utc>,
}

impl Deferral {
    /// The deferral recorded by `event`, if it is an `issue.follow_up_deferred`.
    pub fn of(event: &Event) -> Option<Deferral> {
        match &event.data {
            EventData::IssueFollowUpDeferred(d) => Some(Deferral {
                event: event.clone(),
                issue_id: d.issue_id.0,
                due_at: d.due_at,
            }),
            _ => None,
        }
    }

    /// Its payload.
    pub fn data(&self) -> &events::issue::IssueFollowUpDeferred {
        match &self.event.data {
            EventData::IssueFollowUpDeferred(d) => d,
            _ => unreachable!("a deferral is built from an issue.follow_up_deferred"),
        }
    }
}

/// An automatic wakeup granted for an issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The issue.
    pub issue_id: Uuid,
    /// The wakeup.
    pub wakeup_id: Uuid,
    /// Its wakeup reason.
    pub reason: String,
    /// The causing event's time.
    pub at: DateTime<Utc>,
}

/// What the engine reads (the part of it a decision needs, or all of it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    /// Follow-ups not yet seen by the fold.
    pub pending: Vec<Pending>,
    /// Automatic wakeups granted, per issue (at least those within the storm window): time and
    /// wakeup reason.
    pub grants: BTreeMap<Uuid, Vec<(DateTime<Utc>, String)>>,
    /// Open deferrals (of the issues a decision reads), in the order they were made.
    pub deferrals: Vec<Deferral>,
    /// Per issue, until when the comment saying storm control's ceiling holds its automatic
    /// wakeups back stands (one comment, not one per refusal).
    pub ceiling_notices: BTreeMap<Uuid, DateTime<Utc>>,
    /// Per issue, the time of the latest comment by a person (read for open deferrals: a person
    /// speaking makes a deferred follow-up moot).
    pub human_comments: BTreeMap<Uuid, DateTime<Utc>>,
    /// Per issue, the `retry_after` of the last refusal made by a sweep (one refusal event per
    /// distinct refusal, not one per tick).
    pub refusals: BTreeMap<Uuid, Option<DateTime<Utc>>>,
    /// The reconciler's latest continuation summary per issue.
    pub summaries: BTreeMap<Uuid, SummaryState>,
}

/// What one decision adds to the ledger (pending follow-ups are derived from the follow-ups).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerChanges {
    /// Automatic wakeups granted.
    pub grants: Vec<Grant>,
    /// Sweep refusals: issue and `retry_after`.
    pub refusals: Vec<(Uuid, Option<DateTime<Utc>>)>,
    /// New latest summaries.
    pub summaries: Vec<(Uuid, SummaryState)>,
    /// Deferrals opened (their events are among the follow-ups too).
    pub deferrals: Vec<Deferral>,
    /// Deferrals closed (fired or moot), by id.
    pub closed: Vec<EventId>,
    /// Ceiling comments posted: issue and until when they stand.
    pub ceiling_notices: Vec<(Uuid, DateTime<Utc>)>,
}

impl LedgerChanges {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.refusals.is_empty()
            && self.summaries.is_empty()
            && self.deferrals.is_empty()
            && self.closed.is_empty()
            && self.ceiling_notices.is_empty()
    }
}

impl Ledger {
    /// Whether a run queued by the reconciler for `issue` is still on its way.
    pub fn has_pending_run(&self, issue: Uuid) -> bool {
        self.pending
            .iter()
            .any(|p| p.event_type == EventType::RunQueued && p.issue_id == Some(issue))
    }

    /// Whether an escalation of `issue` is still on its way.
    pub fn has_pending_escalation(&self, issue: Uuid) -> bool {
        self.pending
            .iter()
            .any(|p| p.event_type == EventType::IssueUpdated && p.issue_id == Some(issue))
    }

    /// Whether a cancel request for `run` is still on its way.
    pub fn has_pending_cancel(&self, run: Uuid) -> bool {
        self.pending
            .iter()
            .any(|p| p.event_type == EventType::RunCancelRequested && p.run_id == Some(run))
    }

    /// Whether a wakeup with `key` requested by the reconciler is still on its way.
    pub fn has_pending_key(&self, key: &str) -> bool {
        self.pending
            .iter()
            .any(|p| p.idempotency_key.as_deref() == Some(key))
    }

    /// The automatic wakeups granted for `issue`.
    pub fn grants_of(&self, issue: Uuid) -> &[(DateTime<Utc>, String)] {
        self.grants.get(&issue).map_or(&[], Vec::as_slice)
    }

    /// The due times of the open deferrals of `issue`.
    pub fn deferred_of(&self, issue: Uuid) -> Vec<DateTime<Utc>> {
        self.deferrals
            .iter()
            .filter(|d| d.issue_id == issue)
            .map(|d| d.due_at)
            .collect()
    }

    /// Whether `issue` has an open deferral (a decision still to come).
    pub fn has_open_deferral(&self, issue: Uuid) -> bool {
        self.deferrals.iter().any(|d| d.issue_id == issue)
    }

    /// The fold has seen `event_id`: it is no longer pending.
    pub fn seen(&mut self, event_id: EventId) {
        self.pending.retain(|p| p.event_id != event_id);
    }

    /// Records a decision (in memory).
    pub fn apply(&mut self, follow_ups: &[Event], changes: &LedgerChanges) {
        self.pending.extend(follow_ups.iter().map(Pending::of));
        for grant in &changes.grants {
            self.grants
                .entry(grant.issue_id)
                .or_default()
                .push((grant.at, grant.reason.clone()));
        }
        self.deferrals
            .retain(|d| !changes.closed.contains(&d.event.id));
        self.deferrals.extend(changes.deferrals.iter().cloned());
        for (issue, until) in &changes.ceiling_notices {
            self.ceiling_notices.insert(*issue, *until);
        }
        for (issue, retry_after) in &changes.refusals {
            self.refusals.insert(*issue, *retry_after);
        }
        for (issue, summary) in &changes.summaries {
            self.summaries.insert(*issue, summary.clone());
        }
    }
}
