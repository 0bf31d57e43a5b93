//! The closed list of event types, with what each one is for. The list drives parsing, subjects,
//! the generated JSON Schemas and `docs/events.md`, so adding a type is a change in one place.

use serde::{Deserialize, Serialize};

/// The entity an event is about; it is the third token of the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Agent,
    Issue,
    Run,
    Document,
    Wakeup,
    /// The reconciler's own clock; its events use the reserved nil company.
    Reconciler,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Agent => "agent",
            Entity::Issue => "issue",
            Entity::Run => "run",
            Entity::Document => "document",
            Entity::Wakeup => "wakeup",
            Entity::Reconciler => "reconciler",
        }
    }
}

macro_rules! event_types {
    ($($variant:ident => $text:literal, $entity:ident, version $version:literal, emitter: $emitter:literal, effect: $effect:literal;)*) => {
        /// Every event type of contract v1.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),* }

        impl EventType {
            /// All types in documentation order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The CloudEvents `type` attribute.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $text),* }
            }

            /// Parses the CloudEvents `type` attribute.
            pub fn parse(text: &str) -> Option<EventType> {
                match text { $($text => Some(EventType::$variant),)* _ => None }
            }

            /// The entity whose id forms the subject.
            pub fn entity(self) -> Entity {
                match self { $(EventType::$variant => Entity::$entity),* }
            }

            /// The current schema version of this type's `data`.
            pub fn schema_version(self) -> u32 {
                match self { $(EventType::$variant => $version),* }
            }

            /// Which component publishes it (for the docs).
            pub fn emitted_by(self) -> &'static str {
                match self { $(EventType::$variant => $emitter),* }
            }

            /// What it changes in the read models (for the docs).
            pub fn effect(self) -> &'static str {
                match self { $(EventType::$variant => $effect),* }
            }
        }
    };
}

event_types! {
    AgentRegistered => "agent.registered", Agent, version 1,
        emitter: "the orchestrator",
        effect: "Creates or replaces the `agents` row (name, role, adapter type and config, status). The adapter config decides the stop metadata of the agent's later runs.";
    AgentStatusChanged => "agent.status_changed", Agent, version 1,
        emitter: "the orchestrator",
        effect: "Sets the agent's status and budget block; non-invokable agents get no automatic wakeups.";
    IssueCreated => "issue.created", Issue, version 1,
        emitter: "the orchestrator",
        effect: "Creates the `issues` row and an `activity_log` entry.";
    IssueUpdated => "issue.updated", Issue, version 1,
        emitter: "the orchestrator, agents (with `run_id`), the reconciler (escalation to `blocked`)",
        effect: "Changes only the fields present (`null` clears). Sets `started_at`/`completed_at`/`cancelled_at` on the first move to `in_progress`/`done`/`cancelled`. With `run_id`: activity evidence for that run and clears its detached warning.";
    IssueCommentAdded => "issue.comment_added", Issue, version 1,
        emitter: "agents, users via the orchestrator, the reconciler (system comments)",
        effect: "Adds an `issue_comments` row; with `run_id` it is comment evidence for that run and clears its detached warning.";
    IssueWorkProductAdded => "issue.work_product_added", Issue, version 1,
        emitter: "agents",
        effect: "Adds an `activity_log` entry; with `run_id` it is work-product evidence for that run.";
    DocumentRevised => "document.revised", Document, version 1,
        emitter: "agents, the reconciler (`continuation-summary`)",
        effect: "Upserts `documents` and adds a `document_revisions` row. With `run_id`: revision evidence for that run, except for the `continuation-summary` document, which never counts.";
    WakeupRequested => "wakeup.requested", Wakeup, version 1,
        emitter: "the orchestrator, the reconciler (retries, recoveries, continuations)",
        effect: "Adds a `wakeup_requests` row: `queued`, or `deferred_issue_execution` while another run holds the issue's execution lock.";
    RunQueued => "run.queued", Run, version 1,
        emitter: "the orchestrator, the reconciler (retries, recoveries, continuations)",
        effect: "Creates the `runs` row as `queued` and links it to its wakeup and issue. A retry takes the issue's execution lock if it is free or still names the run it retries.";
    RunStarted => "run.started", Run, version 1,
        emitter: "the run supervisor (`runledger run`)",
        effect: "Marks the run `running` with host, pid, pgid and process start time; claims its wakeup; takes the issue's execution lock if it is free.";
    RunActivity => "run.activity", Run, version 1,
        emitter: "agents, the run supervisor (heartbeats)",
        effect: "Bumps the run's activity clock and counters and adds a timeline entry; `tool_call`/`action` are progress evidence, `workspace` a workspace operation. Clears a detached warning.";
    RunProcessDetached => "run.process_detached", Run, version 1,
        emitter: "the host watchdog (`runledger watchdog`)",
        effect: "On a running run: sets the detached warning (`error_code` `process_detached`); the run stays `running`.";
    RunProcessLost => "run.process_lost", Run, version 1,
        emitter: "the host watchdog",
        effect: "On a running run: `failed` / `process_lost` with stop metadata; the reconciler then decides the single retry.";
    RunCancelRequested => "run.cancel_requested", Run, version 1,
        emitter: "the orchestrator, the reconciler (silent detached runs)",
        effect: "Recorded on the run's timeline; the supervisor or watchdog terminates the process and publishes `run.finished` with outcome `cancelled`.";
    RunFinished => "run.finished", Run, version 1,
        emitter: "the run supervisor",
        effect: "Terminal status, exit code or signal, error, result and excerpts, and the stop metadata derived from the outcome and the agent's adapter config. Settles the wakeup and releases the issue's execution lock. A terminal status never changes again.";
    RunLivenessClassified => "run.liveness_classified", Run, version 1,
        emitter: "the reconciler",
        effect: "Sets the run's liveness state, reason, next action, last useful action and continuation attempt, once.";
    IssueFollowUpRefused => "issue.follow_up_refused", Issue, version 1,
        emitter: "the reconciler (storm control, terminal issues)",
        effect: "Records that an automatic follow-up (retry, recovery or continuation) of the issue was refused, and why: an `activity_log` entry on the issue and, with `run_id`, a timeline entry on that run. The execution lock is not touched (a lost run released it).";
    ReconcilerTicked => "reconciler.ticked", Reconciler, version 1,
        emitter: "the reconciler's clock, once per interval slot, on the reserved subject `<prefix>.00000000-0000-0000-0000-000000000000.reconciler.<tick_id>`",
        effect: "Nothing in the read models. The reconciler runs its time-based sweeps (stranded issues, silent detached runs) when it consumes a tick, with `at` as the current time, so a replay makes the same decisions.";
    IssueFollowUpDeferred => "issue.follow_up_deferred", Issue, version 1,
        emitter: "the reconciler (storm control)",
        effect: "Records that an automatic follow-up of the issue waits for its backoff until `due_at` (event time): an `activity_log` entry on the issue and, with `run_id`, a timeline entry on that run. The deferred wakeup and run are published unchanged when due, or the deferral is closed as moot.";
    IssueFollowUpDeferralClosed => "issue.follow_up_deferral_closed", Issue, version 1,
        emitter: "the reconciler (storm control)",
        effect: "Records how a deferral ended (`fired`: its follow-up was published; `moot`: the issue had moved on): an `activity_log` entry on the issue and, with `run_id`, a timeline entry on that run.";
}

impl EventType {
    /// "a, b, c" of every type, for error messages.
    pub fn known_list() -> String {
        Self::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
