//! The reconciler in memory: the projector's fold over one complete in-memory model, the engine
//! and a complete ledger, with no database and no NATS. Follow-ups can be fed back as the live
//! loop does (each right after its cause). It is what the data-driven rule tests use ("given
//! these events, these follow-ups"), and it runs exactly the code the service runs, minus I/O.

use crate::engine::ledger::Ledger;
use crate::engine::{self, Policy, SOURCE};
use events::Event;
use projector::fold;
use projector::fold::model::Model;
use std::collections::VecDeque;

/// A reconciler whose state is all in memory.
#[derive(Debug, Default)]
pub struct Simulator {
    /// Every read-model row (the fold's appends are dropped after each event).
    pub model: Model,
    /// The whole decision ledger.
    pub ledger: Ledger,
    /// The rules' settings.
    pub policy: Policy,
    seq: i64,
}

impl Simulator {
    /// An empty simulator with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Folds one event and returns the follow-ups it causes (not fed back).
    pub fn feed(&mut self, event: &Event) -> Vec<Event> {
        self.seq += 1;
        let mut event = event.clone();
        projector::feed::normalize(&mut event);
        if event.source == SOURCE {
            self.ledger.seen(event.id);
        }
        if let events::EventData::IssueCommentAdded(c) = &event.data {
            if c.author_user_id.is_some() {
                let latest = self
                    .ledger
                    .human_comments
                    .entry(c.issue_id.0)
                    .or_insert(event.time);
                *latest = (*latest).max(event.time);
            }
        }
        let trigger = engine::trigger(&self.model, &event);
        let applied = fold::apply(&mut self.model, self.seq, &event);
        self.model.appends = Default::default();
        self.model.dirty = Default::default();
        let (Ok(()), Some(trigger)) = (applied, trigger) else {
            return Vec::new();
        };
        let decision = engine::decide(&self.model, &self.ledger, &event, trigger, &self.policy);
        self.ledger.apply(&decision.follow_ups, &decision.changes);
        decision.follow_ups
    }

    /// Feeds `events` in order, feeding every follow-up back right after the event that caused
    /// it (as the live loop publishes it); returns all follow-ups in emission order.
    pub fn run(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<Event> {
        let mut emitted = Vec::new();
        for event in events {
            let mut queue = VecDeque::from([event]);
            while let Some(next) = queue.pop_front() {
                let follow_ups = self.feed(&next);
                queue.extend(follow_ups.iter().cloned());
                emitted.extend(follow_ups);
            }
        }
        emitted
    }
}
