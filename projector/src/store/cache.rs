//! Rows a writer committed itself, kept between its batches so the next batch need not load them
//! again.
//!
//! Why: the events of one run arrive spread over several batches (64 runs in flight, each over
//! ~1,400 events), so most batches load rows the previous batch has just written. Loading costs a
//! query, PostgreSQL's `to_json` of every row and decoding it again; the writer already has the
//! rows in memory, exactly as committed.
//!
//! When a cached row can be trusted: read models are written only by batch transactions, and each
//! locks the position row and stamps it with its writer's token. A batch that finds the position
//! row where this writer left it (same sequence, same token) knows nobody else wrote since its
//! last commit; anything else (another projector took a turn, a replay swapped the schema in, the
//! row is new) empties the cache first. A failed batch also empties it: the rows it took out may
//! hold uncommitted changes.
//!
//! Only rows looked up by key are cached (runs, agents, issues, wakeups), plus, per issue, the
//! fact that every deferred wakeup of that issue is in the cache (the fold promotes the oldest
//! one, so the store must know all of them). Documents and children are always asked for.

use crate::fold::model::{AgentRow, IssueRow, Model, RunRow, WakeupRow};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// Status of a wakeup waiting for its issue's execution lock.
const DEFERRED: &str = "deferred_issue_execution";

/// The rows one writer committed, valid while the position row says nobody else wrote.
#[derive(Debug)]
pub struct RowCache {
    /// Stamped into the position row by every commit of this writer.
    writer: Uuid,
    /// The position this writer's last commit left; `None` while nothing is cached.
    position: Option<i64>,
    /// Most rows kept (all tables together) beyond the rows of the latest batch.
    capacity: usize,
    runs: HashMap<Uuid, Box<RunRow>>,
    agents: HashMap<Uuid, AgentRow>,
    issues: HashMap<Uuid, IssueRow>,
    wakeups: HashMap<Uuid, WakeupRow>,
    /// Issues whose deferred wakeups are all in `wakeups`.
    deferred_complete: HashSet<Uuid>,
    /// Issues whose deferred wakeups the current batch has all in its model.
    deferred_in_batch: BTreeSet<Uuid>,
}

/// What a batch still has to load after taking what the cache holds.
#[derive(Debug, Default)]
pub(crate) struct Misses {
    pub agents: Vec<Uuid>,
    pub issues: Vec<Uuid>,
    pub wakeups: Vec<Uuid>,
    /// Issues whose deferred wakeups must be queried.
    pub deferred_of: Vec<Uuid>,
}

fn take<T>(cached: &mut HashMap<Uuid, T>, into: &mut HashMap<Uuid, T>, ids: &[Uuid]) -> Vec<Uuid> {
    let mut missing = Vec::new();
    for id in ids {
        if into.contains_key(id) {
            continue;
        }
        match cached.remove(id) {
            Some(row) => {
                into.insert(*id, row);
            }
            None => missing.push(*id),
        }
    }
    missing
}

impl RowCache {
    /// A cache keeping up to `capacity` rows between batches (0: keep nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            writer: Uuid::new_v4(),
            position: None,
            capacity,
            runs: HashMap::new(),
            agents: HashMap::new(),
            issues: HashMap::new(),
            wakeups: HashMap::new(),
            deferred_complete: HashSet::new(),
            deferred_in_batch: BTreeSet::new(),
        }
    }

    /// The token this writer stamps into the position row.
    pub fn writer(&self) -> Uuid {
        self.writer
    }

    /// Rows held now.
    pub fn len(&self) -> usize {
        self.runs.len() + self.agents.len() + self.issues.len() + self.wakeups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (the next batch loads every row it needs).
    pub fn clear(&mut self) {
        self.position = None;
        self.clear_rows();
    }

    fn clear_rows(&mut self) {
        self.runs.clear();
        self.agents.clear();
        self.issues.clear();
        self.wakeups.clear();
        self.deferred_complete.clear();
        self.deferred_in_batch.clear();
    }

    /// Called with the locked position row at the start of a batch: keeps the cache only if the
    /// row is exactly as this writer's last commit left it.
    pub(crate) fn begin(&mut self, position: i64, writer: Option<Uuid>) {
        self.deferred_in_batch.clear();
        if self.position != Some(position) || writer != Some(self.writer) {
            self.clear();
        }
    }

    /// Moves the cached runs among `ids` into `model`; returns the ids still to load.
    pub(crate) fn take_runs(&mut self, model: &mut Model, ids: &[Uuid]) -> Vec<Uuid> {
        take(&mut self.runs, &mut model.runs, ids)
    }

    /// Moves the cached agents, issues and wakeups among the ids (and every deferred wakeup of
    /// the issues the cache knows all of) into `model`; returns what is still to load.
    pub(crate) fn take_related(
        &mut self,
        model: &mut Model,
        agents: &[Uuid],
        issues: &[Uuid],
        wakeups: &[Uuid],
    ) -> Misses {
        let mut misses = Misses {
            agents: take(&mut self.agents, &mut model.agents, agents),
            issues: take(&mut self.issues, &mut model.issues, issues),
            wakeups: take(&mut self.wakeups, &mut model.wakeups, wakeups),
            deferred_of: Vec::new(),
        };
        let known: HashSet<Uuid> = issues
            .iter()
            .copied()
            .filter(|i| self.deferred_complete.contains(i))
            .collect();
        misses.deferred_of = issues
            .iter()
            .copied()
            .filter(|i| !known.contains(i))
            .collect();
        if !known.is_empty() {
            let deferred: Vec<Uuid> = self
                .wakeups
                .values()
                .filter(|w| w.status == DEFERRED && w.issue_id.is_some_and(|i| known.contains(&i)))
                .map(|w| w.wakeup_id)
                .collect();
            take(&mut self.wakeups, &mut model.wakeups, &deferred);
        }
        // Once the misses are loaded, the batch's model holds every deferred wakeup of these.
        self.deferred_in_batch.extend(issues.iter().copied());
        misses
    }

    /// Takes back the rows of a committed batch, which left the position at `position`.
    pub(crate) fn keep(&mut self, model: Model, position: i64) {
        if self.capacity == 0 {
            self.clear();
            return;
        }
        let incoming =
            model.runs.len() + model.agents.len() + model.issues.len() + model.wakeups.len();
        let complete = std::mem::take(&mut self.deferred_in_batch);
        if self.len() + incoming > self.capacity {
            // Keep only this batch's rows: every deferred wakeup of the issues it touched is
            // among them, of any other issue perhaps not.
            self.clear_rows();
        }
        self.deferred_complete.extend(complete);
        self.runs.extend(model.runs);
        self.agents.extend(model.agents);
        self.issues.extend(model.issues);
        self.wakeups.extend(model.wakeups);
        self.position = Some(position);
    }
}
