//! Closed vocabularies of the domain (statuses, kinds, outcomes). Closed sets are enums so a typo is
//! rejected at the producer instead of silently creating a status nobody handles.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! vocab {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// Parses the wire spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocab!(
    /// Agent status. `active`, `idle`, `running` and `error` are invokable.
    AgentStatus {
        Active = "active",
        Idle = "idle",
        Running = "running",
        Error = "error",
        Paused = "paused",
        Terminated = "terminated",
        PendingApproval = "pending_approval",
    }
);

impl AgentStatus {
    /// Whether a run of an agent in this status may start.
    pub fn is_invokable(self) -> bool {
        matches!(
            self,
            Self::Active | Self::Idle | Self::Running | Self::Error
        )
    }
}

vocab!(
    /// Issue status; any transition is legal.
    IssueStatus {
        Backlog = "backlog",
        Todo = "todo",
        InProgress = "in_progress",
        InReview = "in_review",
        Done = "done",
        Blocked = "blocked",
        Cancelled = "cancelled",
    }
);

vocab!(
    /// Issue priority.
    Priority {
        Critical = "critical",
        High = "high",
        Medium = "medium",
        Low = "low",
    }
);

vocab!(
    /// Why a wakeup or run was invoked.
    InvocationSource {
        Timer = "timer",
        Assignment = "assignment",
        OnDemand = "on_demand",
        Automation = "automation",
    }
);

vocab!(
    /// What triggered the invocation.
    TriggerDetail {
        Manual = "manual",
        Ping = "ping",
        Callback = "callback",
        System = "system",
    }
);

vocab!(
    /// Who requested something.
    ActorType {
        User = "user",
        Agent = "agent",
        System = "system",
    }
);

vocab!(
    /// How a run ended, as reported by whoever ran it.
    RunOutcome {
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
    }
);

vocab!(
    /// What a `run.activity` reports, and so whether it is evidence of progress.
    ActivityKind {
        /// A ping: proves liveness, not progress.
        Heartbeat = "heartbeat",
        /// A tool call: progress.
        ToolCall = "tool_call",
        /// Any other concrete action: progress.
        Action = "action",
        /// Workspace setup: counted, never progress on its own.
        Workspace = "workspace",
        /// A line of output: not progress.
        Output = "output",
        /// Lifecycle bookkeeping: not progress.
        Lifecycle = "lifecycle",
    }
);

impl ActivityKind {
    /// Tool/action events count as concrete evidence of progress.
    pub fn is_progress(self) -> bool {
        matches!(self, Self::ToolCall | Self::Action)
    }
}

vocab!(
    /// Run liveness: run metadata computed once at finish, never an issue status.
    LivenessState {
        Completed = "completed",
        Advanced = "advanced",
        PlanOnly = "plan_only",
        EmptyResponse = "empty_response",
        Blocked = "blocked",
        Failed = "failed",
        NeedsFollowup = "needs_followup",
    }
);
