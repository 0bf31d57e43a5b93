//! Newtype ids. Every id on the wire is a UUID; wrapping each kind in its own type means a run id
//! can never be passed where an issue id is expected, in the fold or in the reconciler.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

uuid_id!(
    /// The CloudEvents `id`; also the JetStream `Nats-Msg-Id`, so a re-published event is stored once.
    EventId,
    /// The tenant. Every event belongs to exactly one company (`companyid` attribute).
    CompanyId,
    /// An agent of a company.
    AgentId,
    /// An issue (unit of work) of a company.
    IssueId,
    /// One heartbeat run of an agent.
    RunId,
    /// A wakeup request that may lead to a run.
    WakeupId,
    /// An issue comment.
    CommentId,
    /// A document (issue documents are addressed by key as well).
    DocumentId,
    /// One revision of a document.
    RevisionId,
    /// A work product (pull request, artifact, ...) attached to an issue.
    WorkProductId,
    /// One reconciler clock tick (one interval slot); the same slot always has the same id.
    TickId,
);

impl EventId {
    /// A deterministic id derived from a cause: the same cause and rule always give the same id,
    /// so a follow-up decided twice (a replay, a crash and restart) is stored once by JetStream.
    pub fn derived(cause: EventId, rule: &str) -> EventId {
        EventId(Uuid::new_v5(&cause.0, rule.as_bytes()))
    }
}
