//! Rows as PostgreSQL values: each read-model row type says which columns it has ([`Row`],
//! declared with `row!`), and each field becomes a [`Cell`], a value in PostgreSQL's binary format
//! (uuids as 16 bytes, times as microseconds, `jsonb` as its JSON text), with no text detour.
//!
//! The column names are the row type's field names (or an explicit name where the field is
//! renamed), and `row!` destructures the row without `..`, so a field added to a row type without
//! a column here does not compile. The catalog check of names and types happens where rows are
//! written ([`crate::store::columns`]).

use crate::fold::model::*;
use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};
use std::error::Error;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use uuid::Uuid;

/// A row of a read-model table.
pub(crate) trait Row {
    /// The columns, in the order [`Row::push_cells`] fills them.
    const COLUMNS: &'static [&'static str];

    /// Appends this row's value of each column to that column (one vector per column).
    fn push_cells<'a>(&'a self, columns: &mut [Vec<Cell<'a>>]);
}

impl<R: Row> Row for &R {
    const COLUMNS: &'static [&'static str] = R::COLUMNS;

    fn push_cells<'a>(&'a self, columns: &mut [Vec<Cell<'a>>]) {
        (**self).push_cells(columns)
    }
}

/// One field's value, typed as its column must be.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cell<'a> {
    Uuid(Option<Uuid>),
    Text(Option<&'a str>),
    Int2(Option<i16>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Bool(Option<bool>),
    Timestamptz(Option<Time>),
    /// A JSON null is SQL NULL (what the rows held when they were written as JSON records).
    Jsonb(Option<&'a Value>),
    JsonbObject(&'a Map<String, Value>),
}

impl Cell<'_> {
    /// The column type this value is written as.
    pub(crate) fn sql_type(&self) -> Type {
        match self {
            Cell::Uuid(_) => Type::UUID,
            Cell::Text(_) => Type::TEXT,
            Cell::Int2(_) => Type::INT2,
            Cell::Int4(_) => Type::INT4,
            Cell::Int8(_) => Type::INT8,
            Cell::Bool(_) => Type::BOOL,
            Cell::Timestamptz(_) => Type::TIMESTAMPTZ,
            Cell::Jsonb(_) | Cell::JsonbObject(_) => Type::JSONB,
        }
    }

    /// The array type of a column of these values (`unnest`'s input).
    pub(crate) fn array_type(&self) -> Type {
        match self {
            Cell::Uuid(_) => Type::UUID_ARRAY,
            Cell::Text(_) => Type::TEXT_ARRAY,
            Cell::Int2(_) => Type::INT2_ARRAY,
            Cell::Int4(_) => Type::INT4_ARRAY,
            Cell::Int8(_) => Type::INT8_ARRAY,
            Cell::Bool(_) => Type::BOOL_ARRAY,
            Cell::Timestamptz(_) => Type::TIMESTAMPTZ_ARRAY,
            Cell::Jsonb(_) | Cell::JsonbObject(_) => Type::JSONB_ARRAY,
        }
    }
}

/// `jsonb`'s binary format: a version byte, then the JSON text.
fn jsonb(
    value: &impl serde::Serialize,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
    out.put_u8(1);
    serde_json::to_writer(out.writer(), value)?;
    Ok(IsNull::No)
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // The column types were checked against the catalog; this guards the protocol.
        if *ty != self.sql_type() {
            return Err(
                format!("a `{}` value cannot be written as `{ty}`", self.sql_type()).into(),
            );
        }
        match self {
            Cell::Uuid(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Int2(v) => v.to_sql(ty, out),
            Cell::Int4(v) => v.to_sql(ty, out),
            Cell::Int8(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Timestamptz(v) => v.to_sql(ty, out),
            Cell::Jsonb(None | Some(Value::Null)) => Ok(IsNull::Yes),
            Cell::Jsonb(Some(v)) => jsonb(v, out),
            Cell::JsonbObject(v) => jsonb(v, out),
        }
    }

    /// Which type a cell takes depends on its variant: [`Cell::to_sql`] checks it.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `From<&field>` for each field type of the row types.
macro_rules! cells {
    ($($t:ty => $variant:ident($convert:expr)),* $(,)?) => {$(
        impl<'a> From<&'a $t> for Cell<'a> {
            fn from(v: &'a $t) -> Self {
                Cell::$variant($convert(v))
            }
        }
    )*};
}

cells!(
    Uuid => Uuid(|v: &Uuid| Some(*v)),
    Option<Uuid> => Uuid(|v: &Option<Uuid>| *v),
    String => Text(|v: &'a String| Some(v.as_str())),
    &'static str => Text(|v: &&'static str| Some(*v)),
    Option<String> => Text(|v: &'a Option<String>| v.as_deref()),
    i16 => Int2(|v: &i16| Some(*v)),
    i32 => Int4(|v: &i32| Some(*v)),
    Option<i32> => Int4(|v: &Option<i32>| *v),
    i64 => Int8(|v: &i64| Some(*v)),
    Option<i64> => Int8(|v: &Option<i64>| *v),
    bool => Bool(|v: &bool| Some(*v)),
    Option<bool> => Bool(|v: &Option<bool>| *v),
    Time => Timestamptz(|v: &Time| Some(*v)),
    Option<Time> => Timestamptz(|v: &Option<Time>| *v),
    Value => Jsonb(|v: &'a Value| Some(v)),
    Option<Value> => Jsonb(|v: &'a Option<Value>| v.as_ref()),
    Map<String, Value> => JsonbObject(|v: &'a Map<String, Value>| v),
);

/// The column name of a field: its own name, or the one given after `=`.
macro_rules! column {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident = $column:literal) => {
        $column
    };
}

/// Implements [`Row`] for a row type from the list of all its fields (a flattened struct's fields
/// after `nested: Type { ... }`).
macro_rules! row {
    ($row:ident {
        $($field:ident $(= $column:literal)?),* $(,)?
        $(; $nested:ident: $nested_type:ident { $($inner:ident $(= $inner_column:literal)?),* $(,)? })?
    }) => {
        impl $crate::store::cells::Row for $row {
            const COLUMNS: &'static [&'static str] = &[
                $($crate::store::cells::column!($field $(= $column)?),)*
                $($($crate::store::cells::column!($inner $(= $inner_column)?),)*)?
            ];

            fn push_cells<'a>(&'a self, columns: &mut [Vec<$crate::store::cells::Cell<'a>>]) {
                let $row { $($field,)* $($nested: $nested_type { $($inner),* })? } = self;
                let mut columns = columns.iter_mut();
                $(columns.next().expect("a column per field").push($field.into());)*
                $($(columns.next().expect("a column per field").push($inner.into());)*)?
            }
        }
    };
}
pub(crate) use column;
#[cfg(test)]
pub(crate) use row; // the writer's tests declare rows of their own

row!(AgentRow {
    agent_id,
    company_id,
    name,
    role,
    adapter_type,
    adapter_config,
    status,
    budget_blocked,
    registered_at,
    updated_at,
    last_seq,
});

row!(IssueRow {
    issue_id,
    company_id,
    identifier,
    title,
    description,
    status,
    priority,
    assignee_agent_id,
    assignee_user_id,
    parent_id,
    checkout_run_id,
    execution_run_id,
    execution_state,
    created_at,
    started_at,
    completed_at,
    cancelled_at,
    updated_at,
    last_seq,
});

row!(RunRow {
    run_id, company_id, agent_id, issue_id, wakeup_id, status, invocation_source, trigger_detail,
    context, host, pid, pgid, supervisor_pid, process_started_at, created_at, queued_at,
    started_at, finished_at, last_activity_at, activity_count, exit_code, signal, error,
    error_code, result, usage, stdout_excerpt, stderr_excerpt, stop_reason, effective_timeout_sec,
    timeout_configured, timeout_source, timeout_fired, cancel_requested_at, cancel_reason,
    detached_at, retry_of_run_id, process_loss_retry_count, continuation_attempt, liveness_state,
    liveness_reason, last_useful_action_at, next_action, issue_status_at_finish, updated_at,
    last_seq;
    evidence: Evidence {
        comments = "evidence_comments",
        revisions = "evidence_revisions",
        plan_revisions = "evidence_plan_revisions",
        work_products = "evidence_work_products",
        activity = "evidence_activity",
        tool_events = "evidence_tool_events",
        workspace_ops = "evidence_workspace_ops",
        latest_at = "latest_evidence_at",
    }
});

row!(WakeupRow {
    wakeup_id,
    company_id,
    agent_id,
    issue_id,
    source,
    trigger_detail,
    reason,
    payload,
    status,
    idempotency_key,
    requested_by_actor_type,
    requested_by_actor_id,
    run_id,
    requested_at,
    claimed_at,
    finished_at,
    updated_at,
    last_seq,
});

row!(DocumentRow {
    document_id,
    company_id,
    issue_id,
    key,
    title,
    format,
    latest_body,
    latest_revision_id,
    latest_revision_number,
    is_system,
    created_at,
    updated_at,
    last_seq,
});

row!(RunEventRow {
    run_id, seq, ordinal, company_id, kind = "type", level, message, payload, at,
});

row!(CommentRow {
    comment_id,
    company_id,
    issue_id,
    body,
    author_agent_id,
    author_user_id,
    run_id,
    created_at,
    seq,
});

row!(WorkProductRow {
    work_product_id,
    company_id,
    issue_id,
    kind,
    title,
    run_id,
    created_at,
    seq,
});

row!(RevisionRow {
    revision_id,
    document_id,
    company_id,
    issue_id,
    key,
    revision_number,
    title,
    format,
    body,
    change_summary,
    created_by_run_id,
    created_by_agent_id,
    created_at,
    seq,
});

row!(ActivityRow {
    seq,
    company_id,
    actor_type,
    actor_id,
    action,
    entity_type,
    entity_id,
    run_id,
    details,
    at,
});

row!(DecisionRow {
    event_id,
    seq,
    company_id,
    issue_id,
    run_id,
    created_run_id,
    event_type,
    rule,
    cause_id,
    cause_type,
    cause_time,
    inputs,
    sentence,
    at,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The names rows are written under are the names they are loaded by (`to_json` of the
    /// table, decoded by serde), column for column, with the same values.
    #[test]
    fn columns_and_cells_agree_with_the_serde_names() {
        fn check<R: Row + serde::Serialize>(row: &R) {
            let json = serde_json::to_value(row).unwrap();
            let json = json.as_object().unwrap();
            let mut columns: Vec<Vec<Cell>> = vec![Vec::new(); R::COLUMNS.len()];
            row.push_cells(&mut columns);
            let mut names: Vec<&str> = R::COLUMNS.to_vec();
            names.sort();
            let mut keys: Vec<&str> = json.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(names, keys);
            for (name, cells) in R::COLUMNS.iter().zip(&columns) {
                let written = match cells[0] {
                    Cell::Uuid(v) => serde_json::to_value(v),
                    Cell::Text(v) => serde_json::to_value(v),
                    Cell::Int2(v) => serde_json::to_value(v),
                    Cell::Int4(v) => serde_json::to_value(v),
                    Cell::Int8(v) => serde_json::to_value(v),
                    Cell::Bool(v) => serde_json::to_value(v),
                    Cell::Timestamptz(v) => serde_json::to_value(v),
                    Cell::Jsonb(v) => serde_json::to_value(v),
                    Cell::JsonbObject(v) => serde_json::to_value(v),
                }
                .unwrap();
                assert_eq!(written, json[*name], "column `{name}`");
            }
        }
        // Every example event folded: a row of every type, with what the examples fill in.
        let mut model = Model::default();
        for (seq, event_type) in events::EventType::ALL.iter().enumerate() {
            let event = events::examples::event(*event_type);
            let _ = crate::fold::apply(&mut model, seq as i64 + 1, &event);
        }
        model.runs.values().for_each(|r| check(&**r));
        model.agents.values().for_each(check);
        model.issues.values().for_each(check);
        model.wakeups.values().for_each(check);
        model.documents.values().for_each(check);
        model.appends.run_events.iter().for_each(check);
        model.appends.comments.iter().for_each(check);
        model.appends.work_products.iter().for_each(check);
        model.appends.revisions.iter().for_each(check);
        model.appends.activity.iter().for_each(check);
    }
}
