//! Rows as typed column arrays, for set-based writes in PostgreSQL's binary format.
//!
//! A batch writes each table with one `INSERT … SELECT * FROM unnest($1::uuid[], $2::text[], …)`.
//! Passing rows as one JSON document (`json_populate_recordset`) was the single largest cost of
//! a batch: PostgreSQL parses every row's JSON text and converts every field from text, about
//! 20 µs for a run row. Typed arrays arrive in binary and need no parsing.
//!
//! The column names still come from the Rust row types (their serialized field names), and the
//! column types from the table itself (the catalog, looked up once per table and process), so
//! the Rust structs and the SQL columns cannot silently drift: a field without a column, or a
//! value that does not fit its column's type, is an error that names both.

use crate::error::ProjectorError;
use crate::model::Time;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Transaction;
use uuid::Uuid;

/// The PostgreSQL types the read models use, as written through `unnest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SqlType {
    Uuid,
    Text,
    Int2,
    Int4,
    Int8,
    Bool,
    Timestamptz,
    Jsonb,
}

impl SqlType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "uuid" => Self::Uuid,
            "text" => Self::Text,
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "bool" => Self::Bool,
            "timestamptz" => Self::Timestamptz,
            "jsonb" => Self::Jsonb,
            _ => return None,
        })
    }

    /// The array type `unnest` takes.
    fn array(self) -> &'static str {
        match self {
            Self::Uuid => "uuid[]",
            Self::Text => "text[]",
            Self::Int2 => "smallint[]",
            Self::Int4 => "integer[]",
            Self::Int8 => "bigint[]",
            Self::Bool => "boolean[]",
            Self::Timestamptz => "timestamptz[]",
            Self::Jsonb => "jsonb[]",
        }
    }
}

/// Column name → type of one table.
type TableTypes = HashMap<String, SqlType>;

/// Column types never change while a process runs (the migrations are compiled in, and every
/// schema a process writes has them all), so the catalog is asked once per table.
fn cache() -> &'static Mutex<HashMap<String, Arc<TableTypes>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<TableTypes>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

async fn table_types(tx: &Transaction<'_>, table: &str) -> Result<Arc<TableTypes>, ProjectorError> {
    if let Some(types) = cache().lock().expect("column cache").get(table) {
        return Ok(types.clone());
    }
    let rows = tx
        .query(
            "SELECT a.attname::text, t.typname::text FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await?;
    if rows.is_empty() {
        return Err(ProjectorError::Config(format!(
            "table `{table}` does not exist in this schema (are the migrations applied?)"
        )));
    }
    let mut types = TableTypes::new();
    for row in rows {
        let (name, type_name): (String, String) = (row.get(0), row.get(1));
        // Columns of other types are never written by the projector; naming one is an error below.
        if let Some(t) = SqlType::parse(&type_name) {
            types.insert(name, t);
        }
    }
    let types = Arc::new(types);
    cache()
        .lock()
        .expect("column cache")
        .insert(table.to_owned(), types.clone());
    Ok(types)
}

/// One column's values, typed.
enum Values<'a> {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<&'a str>>),
    Int2(Vec<Option<i16>>),
    Int4(Vec<Option<i32>>),
    Int8(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Timestamptz(Vec<Option<Time>>),
    Jsonb(Vec<Option<Json<&'a Value>>>),
}

impl<'a> Values<'a> {
    fn new(t: SqlType, capacity: usize) -> Self {
        match t {
            SqlType::Uuid => Self::Uuid(Vec::with_capacity(capacity)),
            SqlType::Text => Self::Text(Vec::with_capacity(capacity)),
            SqlType::Int2 => Self::Int2(Vec::with_capacity(capacity)),
            SqlType::Int4 => Self::Int4(Vec::with_capacity(capacity)),
            SqlType::Int8 => Self::Int8(Vec::with_capacity(capacity)),
            SqlType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            SqlType::Timestamptz => Self::Timestamptz(Vec::with_capacity(capacity)),
            SqlType::Jsonb => Self::Jsonb(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `value` (JSON as the row type serialized it); `None` if it does not fit.
    fn push(&mut self, value: &'a Value) -> Option<()> {
        let null = value.is_null();
        match self {
            Self::Uuid(v) => v.push(if null {
                None
            } else {
                Some(Uuid::parse_str(value.as_str()?).ok()?)
            }),
            Self::Text(v) => v.push(if null { None } else { Some(value.as_str()?) }),
            Self::Int2(v) => v.push(if null {
                None
            } else {
                Some(i16::try_from(value.as_i64()?).ok()?)
            }),
            Self::Int4(v) => v.push(if null {
                None
            } else {
                Some(i32::try_from(value.as_i64()?).ok()?)
            }),
            Self::Int8(v) => v.push(if null { None } else { Some(value.as_i64()?) }),
            Self::Bool(v) => v.push(if null { None } else { Some(value.as_bool()?) }),
            Self::Timestamptz(v) => v.push(if null {
                None
            } else {
                Some(
                    chrono::DateTime::parse_from_rfc3339(value.as_str()?)
                        .ok()?
                        .to_utc(),
                )
            }),
            // A JSON null in a jsonb column is SQL NULL, as `json_populate_recordset` made it.
            Self::Jsonb(v) => v.push(if null { None } else { Some(Json(value)) }),
        }
        Some(())
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Uuid(v) => v,
            Self::Text(v) => v,
            Self::Int2(v) => v,
            Self::Int4(v) => v,
            Self::Int8(v) => v,
            Self::Bool(v) => v,
            Self::Timestamptz(v) => v,
            Self::Jsonb(v) => v,
        }
    }
}

/// What [`insert`] does with a row whose key is already there.
pub(crate) enum OnConflict<'k> {
    /// Leave the stored row alone (append-only tables).
    Ignore,
    /// Replace it, unless the stored row is newer (`last_seq`).
    UpdateByKey(&'k str),
}

fn objects<T: Serialize>(table: &str, rows: &[T]) -> Result<Vec<Value>, ProjectorError> {
    rows.iter()
        .map(|row| match serde_json::to_value(row) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(ProjectorError::Config(format!(
                "rows of `{table}` do not serialize as objects"
            ))),
            Err(e) => Err(ProjectorError::Config(format!(
                "a row of `{table}` does not serialize: {e}"
            ))),
        })
        .collect()
}

/// Inserts `rows` into `table` with one statement, one typed array per column.
pub(crate) async fn insert<T: Serialize>(
    tx: &Transaction<'_>,
    table: &str,
    rows: &[T],
    on_conflict: OnConflict<'_>,
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let objects = objects(table, rows)?;
    let types = table_types(tx, table).await?;
    let Some(Value::Object(first)) = objects.first() else {
        return Ok(());
    };
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let t = *types.get(*name).ok_or_else(|| {
            ProjectorError::Config(format!(
                "field `{name}` has no column in `{table}` (are the migrations applied?)"
            ))
        })?;
        columns.push((t, Values::new(t, objects.len())));
    }
    for object in &objects {
        let Value::Object(map) = object else {
            unreachable!("checked by objects()")
        };
        for (name, (t, values)) in names.iter().zip(columns.iter_mut()) {
            let value = map.get(*name).unwrap_or(&Value::Null);
            values.push(value).ok_or_else(|| {
                ProjectorError::Config(format!("`{table}.{name}` is {t:?} but a row has {value}"))
            })?;
        }
    }
    let list = names.join(", ");
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, (t, _))| format!("${}::{}", i + 1, t.array()))
        .collect::<Vec<_>>()
        .join(", ");
    let conflict = match on_conflict {
        OnConflict::Ignore => "ON CONFLICT DO NOTHING".to_owned(),
        OnConflict::UpdateByKey(key) => {
            let excluded = names
                .iter()
                .map(|c| format!("EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "ON CONFLICT ({key}) DO UPDATE SET ({list}) = ROW({excluded})
                 WHERE {table}.last_seq <= EXCLUDED.last_seq"
            )
        }
    };
    let sql = format!(
        "INSERT INTO {table} ({list}) SELECT * FROM unnest({arrays}) AS r ({list}) {conflict}"
    );
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|(_, v)| v.as_param()).collect();
    tx.execute(&sql, &params).await?;
    Ok(())
}
