//! Agents: registration replaces the definition; status changes gate invocation.

use super::Ctx;
use crate::fold::model::Model;
use events::agent::{AgentRegistered, AgentStatusChanged};

pub(super) fn registered(model: &mut Model, ctx: &Ctx, d: &AgentRegistered) {
    let row = model.agent_mut(ctx, d.agent_id.0);
    row.name = Some(d.name.clone());
    row.role = Some(d.role.clone());
    row.adapter_type = Some(d.adapter_type.clone());
    row.adapter_config = d.adapter_config.clone();
    row.status = Some(d.status.as_str().to_owned());
    row.registered_at = row.registered_at.or(Some(ctx.time));
}

pub(super) fn status_changed(model: &mut Model, ctx: &Ctx, d: &AgentStatusChanged) {
    let row = model.agent_mut(ctx, d.agent_id.0);
    row.status = Some(d.status.as_str().to_owned());
    if let Some(blocked) = d.budget_blocked {
        row.budget_blocked = blocked;
    }
}
