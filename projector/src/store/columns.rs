//! Writing rows: one statement per table and batch, in PostgreSQL's binary format.
//!
//! Rows that may already be stored are written with one `INSERT … SELECT * FROM unnest($1::uuid[],
//! $2::text[], …) ON CONFLICT …`, one typed array per column (passing rows as one JSON document,
//! `jsonb_populate_recordset`, was the largest cost of a batch: PostgreSQL parsed every row's JSON
//! and converted every field from text). Rows that cannot conflict are written with a binary
//! `COPY` through tokio-postgres' `BinaryCopyInWriter`.
//!
//! The column names come from the row types ([`Row`]) and the column types from the table itself
//! (the catalog, asked once per table and process), so the Rust structs and the SQL columns cannot
//! silently drift: a field without a column, or a field whose type is not its column's, fails the
//! batch with an error that names both.

use crate::error::ProjectorError;
use crate::store::cells::{Cell, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

/// Column name → type name (`pg_type.typname`) of one table.
type TableTypes = HashMap<String, String>;

/// Column types never change while a process runs: the migrations are compiled in, and every
/// schema a process writes (live, replay scratch, the reconciler's private fold) is migrated to
/// the same level before its first batch. So the catalog is asked once per table name.
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
    let types: Arc<TableTypes> = Arc::new(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    cache()
        .lock()
        .expect("column cache")
        .insert(table.to_owned(), types.clone());
    Ok(types)
}

/// Every column of `R` exists in `table` with the type of its cells.
fn check_columns<R: Row>(
    table: &str,
    types: &TableTypes,
    first: &[Cell],
) -> Result<(), ProjectorError> {
    for (column, cell) in R::COLUMNS.iter().zip(first) {
        let written = cell.sql_type();
        match types.get(*column) {
            None => {
                return Err(ProjectorError::Config(format!(
                    "field `{column}` has no column in `{table}` (are the migrations applied?)"
                )))
            }
            Some(stored) if stored != written.name() => {
                return Err(ProjectorError::Config(format!(
                    "`{table}.{column}` is `{stored}` in the database but `{written}` in the row type"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What [`insert`] does with a row whose key is already there.
pub(crate) enum OnConflict<'k> {
    /// None can happen: the rows are new by construction. They are written with a binary `COPY`
    /// (less PostgreSQL CPU than an `INSERT` from column arrays in paired rebuilds:
    /// docs/benchmarks.md, fourth round); a conflict fails the batch.
    Impossible,
    /// Leave the stored row alone (append-only tables).
    Ignore,
    /// Replace it, unless the stored row is newer (`last_seq`).
    UpdateByKey(&'k str),
}

/// Writes `rows` into `table` with one statement.
pub(crate) async fn insert<R: Row>(
    tx: &Transaction<'_>,
    table: &str,
    rows: &[R],
    on_conflict: OnConflict<'_>,
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let types = table_types(tx, table).await?;
    let mut columns: Vec<Vec<Cell>> = (0..R::COLUMNS.len())
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for row in rows {
        row.push_cells(&mut columns);
    }
    let first: Vec<Cell> = columns.iter().map(|c| c[0]).collect();
    check_columns::<R>(table, &types, &first)?;
    let list = R::COLUMNS.join(", ");
    let conflict = match on_conflict {
        OnConflict::Impossible => return copy(tx, table, &list, &columns, &first).await,
        OnConflict::Ignore => "ON CONFLICT DO NOTHING".to_owned(),
        OnConflict::UpdateByKey(key) => {
            let excluded = R::COLUMNS
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
    let arrays = first
        .iter()
        .enumerate()
        .map(|(i, cell)| format!("${}::{}[]", i + 1, cell.sql_type()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {table} ({list}) SELECT * FROM unnest({arrays}) AS r ({list}) {conflict}"
    );
    let params: Vec<(&(dyn ToSql + Sync), Type)> = columns
        .iter()
        .zip(&first)
        .map(|(column, cell)| (column as &(dyn ToSql + Sync), cell.array_type()))
        .collect();
    // Typed: one round trip, no prepared statement to create and close.
    tx.execute_typed(&sql, &params).await?;
    Ok(())
}

/// Writes the rows with one binary `COPY`.
async fn copy(
    tx: &Transaction<'_>,
    table: &str,
    list: &str,
    columns: &[Vec<Cell<'_>>],
    first: &[Cell<'_>],
) -> Result<(), ProjectorError> {
    let types: Vec<Type> = first.iter().map(Cell::sql_type).collect();
    let sink = tx
        .copy_in(&format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(columns.len());
    for i in 0..columns[0].len() {
        row.clear();
        row.extend(
            columns
                .iter()
                .map(|column| &column[i] as &(dyn ToSql + Sync)),
        );
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::model::Time;
    use crate::store::cells::row;
    use serde_json::{json, Value};
    use uuid::Uuid;

    /// A fresh database with `tables` created (dropped with the returned handle).
    async fn with_tables(tables: &str) -> (testsupport::TestDb, tokio_postgres::Client) {
        let db = testsupport::TestDb::new()
            .await
            .expect("PostgreSQL is needed (README: test command starts it)");
        let client = db.client().await.unwrap();
        client.batch_execute(tables).await.unwrap();
        (db, client)
    }

    struct Probe {
        id: Uuid,
        label: Option<String>,
        n: i32,
        at: Option<Time>,
        doc: Option<Value>,
        last_seq: i64,
    }
    row!(Probe {
        id,
        label,
        n,
        at,
        doc,
        last_seq
    });

    fn probe(id: Uuid, n: i32, doc: Option<Value>, last_seq: i64) -> Probe {
        Probe {
            id,
            label: Some(format!("probe {n}")),
            n,
            at: Some("2026-04-01T09:00:00.123456Z".parse().unwrap()),
            doc,
            last_seq,
        }
    }

    #[tokio::test]
    async fn rows_that_cannot_conflict_are_copied_exactly_as_inserted_and_a_conflict_fails() {
        let tables = |name: &str| {
            format!(
                "CREATE TABLE {name} (id uuid PRIMARY KEY, label text, n integer,
                    at timestamptz, doc jsonb, last_seq bigint NOT NULL);"
            )
        };
        let (_db, mut client) =
            with_tables(&(tables("columns_inserted") + &tables("columns_copied"))).await;
        let rows: Vec<Probe> = (0..300)
            .map(|n| {
                let mut p = probe(Uuid::new_v4(), n, Some(json!({"n": n, "s": "é\"x"})), 7);
                if n % 3 == 0 {
                    (p.label, p.at, p.doc) = (None, None, None);
                }
                p
            })
            .collect();
        let tx = client.transaction().await.unwrap();
        // In one flight, as `store::write` sends them: the copy waits for its turn.
        let (a, b, c) = futures::join!(
            insert(&tx, "columns_inserted", &rows, OnConflict::Ignore),
            insert(&tx, "columns_copied", &rows, OnConflict::Impossible),
            tx.query_one("SELECT count(*) FROM columns_inserted", &[]),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        let read = |table: &str| {
            format!("SELECT id, label, n, at, doc::text, last_seq FROM {table} ORDER BY n")
        };
        type Stored = (Uuid, Option<String>, i32, Option<Time>, Option<String>, i64);
        let stored = |rows: Vec<tokio_postgres::Row>| -> Vec<Stored> {
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect()
        };
        let inserted = stored(tx.query(&read("columns_inserted"), &[]).await.unwrap());
        let copied = stored(tx.query(&read("columns_copied"), &[]).await.unwrap());
        assert_eq!(inserted.len(), 300);
        assert_eq!(copied, inserted);
        tx.commit().await.unwrap();

        let tx = client.transaction().await.unwrap();
        let err = insert(&tx, "columns_copied", &rows[5..6], OnConflict::Impossible)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[tokio::test]
    async fn typed_arrays_round_trip_and_drift_fails_loudly() {
        let (_db, mut client) = with_tables(
            "CREATE TABLE columns_probe (id uuid PRIMARY KEY, label text, n integer,
                    at timestamptz, doc jsonb, last_seq bigint NOT NULL);
                 CREATE TABLE columns_probe_drifted (id uuid PRIMARY KEY, label text, n text,
                    at timestamptz, doc jsonb, last_seq bigint NOT NULL);
                 CREATE TABLE columns_probe_old (id uuid PRIMARY KEY, n integer, last_seq bigint);",
        )
        .await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let tx = client.transaction().await.unwrap();
        let rows = [
            probe(a, 1, Some(json!({"k": [1, "two"]})), 5),
            probe(b, 2, Some(Value::Null), 5),
        ];
        insert(&tx, "columns_probe", &rows, OnConflict::Ignore)
            .await
            .unwrap();
        // An older version never overwrites a newer one; a newer one does.
        let older = [probe(a, 10, None, 4)];
        insert(&tx, "columns_probe", &older, OnConflict::UpdateByKey("id"))
            .await
            .unwrap();
        let newer = [probe(b, 20, None, 6)];
        insert(&tx, "columns_probe", &newer, OnConflict::UpdateByKey("id"))
            .await
            .unwrap();
        type Stored = (Uuid, Option<String>, i32, Option<Time>, Option<Value>, i64);
        let stored: Vec<Stored> = tx
            .query(
                "SELECT id, label, n, at, doc, last_seq FROM columns_probe ORDER BY n",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let at: Time = "2026-04-01T09:00:00.123456Z".parse().unwrap();
        assert_eq!(
            stored,
            vec![
                (
                    a,
                    Some("probe 1".into()),
                    1,
                    Some(at),
                    Some(json!({"k": [1, "two"]})),
                    5
                ),
                (b, Some("probe 20".into()), 20, Some(at), None, 6),
            ],
            "JSON null is SQL NULL; the older version was ignored, the newer applied"
        );
        tx.rollback().await.unwrap();

        let tx = client.transaction().await.unwrap();
        let err = insert(&tx, "columns_probe_drifted", &rows, OnConflict::Ignore)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`columns_probe_drifted.n`"), "{err}");
        let err = insert(&tx, "columns_probe_old", &rows, OnConflict::Ignore)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `label` has no column in `columns_probe_old`"),
            "{err}"
        );
        let err = insert(&tx, "no_such_table", &rows, OnConflict::Ignore)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`no_such_table` does not exist"), "{err}");
    }

    struct Flags {
        small: i16,
        flag: bool,
    }

    /// Shaped like a run row: optional uuids, a flattened struct, a JSON object for a jsonb
    /// column.
    struct Flat {
        id: Uuid,
        parent: Option<Uuid>,
        flags: Flags,
        config: serde_json::Map<String, Value>,
        at: Time,
        last_seq: i64,
    }
    row!(Flat {
        id, parent, config, at, last_seq;
        flags: Flags { small, flag = "is_set" }
    });

    #[tokio::test]
    async fn flattened_rows_round_trip_and_types_that_differ_are_named() {
        let (_db, mut client) = with_tables(
            "CREATE TABLE columns_flat (id uuid PRIMARY KEY, parent uuid, small smallint,
                    is_set boolean, config jsonb NOT NULL, at timestamptz, last_seq bigint);
             CREATE TABLE columns_flat_wide (id uuid PRIMARY KEY, parent uuid, small integer,
                    is_set boolean, config jsonb NOT NULL, at timestamptz, last_seq bigint);",
        )
        .await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let at: Time = "2026-04-01T09:00:00.000001Z".parse().unwrap();
        let row = |id, parent, small, flag| Flat {
            id,
            parent,
            flags: Flags { small, flag },
            config: json!({"z": [1, {"u": id}], "a": null})
                .as_object()
                .cloned()
                .unwrap(),
            at,
            last_seq: 3,
        };
        let tx = client.transaction().await.unwrap();
        let rows = [row(a, None, -7, true), row(b, Some(a), 12, false)];
        insert(&tx, "columns_flat", &rows, OnConflict::Ignore)
            .await
            .unwrap();
        type Stored = (Uuid, Option<Uuid>, i16, bool, Value, Time, i64);
        let stored: Vec<Stored> = tx
            .query(
                "SELECT id, parent, small, is_set, config, at, last_seq FROM columns_flat ORDER BY small",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect();
        let config = |id: Uuid| json!({"a": null, "z": [1, {"u": id}]});
        assert_eq!(
            stored,
            vec![
                (a, None, -7, true, config(a), at, 3),
                (b, Some(a), 12, false, config(b), at, 3),
            ]
        );
        let err = insert(
            &tx,
            "columns_flat_wide",
            &[row(Uuid::new_v4(), None, 7, true)],
            OnConflict::Ignore,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "`columns_flat_wide.small` is `int4` in the database but `int2` in the row type"
            ),
            "{err}"
        );
    }
}
