//! The reconciler's clock. Time-based rules (stranded issues, silent detached runs) must decide
//! the same way live and on replay, so time enters the stream as an event: the reconciler
//! publishes a tick per interval slot and runs its sweeps when it consumes one, with the tick's
//! `at` as "now". Ticks belong to no tenant: they use the reserved nil company, so their subject
//! is `<prefix>.00000000-0000-0000-0000-000000000000.reconciler.<tick_id>`.

use crate::ids::{CompanyId, TickId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The reserved company of reconciler ticks (the nil UUID).
pub const TICK_COMPANY: CompanyId = CompanyId(Uuid::nil());

/// `reconciler.ticked`: one slot of the reconciler's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcilerTicked {
    /// The same for every publisher of the same slot, so a slot is stored once.
    pub tick_id: TickId,
    /// The start of the slot: "now" for the sweeps this tick runs.
    pub at: DateTime<Utc>,
    /// With a partitioned stream, the partition whose clock this is (each partition's sweeps
    /// run on its own ticks); absent with one partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
