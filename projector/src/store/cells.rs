//! Rows serialized straight into typed column arrays (the input of [`crate::store::columns::insert`]).
//!
//! Why a serde serializer of its own: going through `serde_json::Value` built a map with an
//! allocated key and value for every field of every row, then looked each column up in it, then
//! parsed uuids back from their text; for a replay that was about a fifth of the projector's CPU.
//! Here each field goes from the row's own `Serialize` straight into its column's vector: uuids
//! as their 16 bytes (the serializer says it is not human-readable), integers and booleans as
//! they are, and a `jsonb` column's value as its JSON text.
//!
//! What it checks is what the JSON path checked: every field must have a column of a type it
//! fits, and every row of a batch must have the same fields.

use crate::fold::model::Time;
use crate::store::columns::{SqlType, TableTypes};
use bytes::BufMut;
use serde::ser::{self, Impossible, Serialize};
use std::error::Error;
use std::fmt;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use uuid::Uuid;

/// Why a row cannot be written; the message names the table and column.
#[derive(Debug)]
pub(crate) struct CellError(pub String);

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for CellError {}

impl ser::Error for CellError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A `jsonb` value as JSON text, sent in PostgreSQL's binary `jsonb` format (version 1 + text).
#[derive(Debug)]
pub(crate) struct RawJsonb(Vec<u8>);

impl ToSql for RawJsonb {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// One column's values, typed.
pub(crate) enum Values {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Int2(Vec<Option<i16>>),
    Int4(Vec<Option<i32>>),
    Int8(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Timestamptz(Vec<Option<Time>>),
    Jsonb(Vec<Option<RawJsonb>>),
}

impl Values {
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

    /// The value of row `i` (for `COPY`).
    pub(crate) fn element(&self, i: usize) -> &(dyn ToSql + Sync) {
        match self {
            Self::Uuid(v) => &v[i],
            Self::Text(v) => &v[i],
            Self::Int2(v) => &v[i],
            Self::Int4(v) => &v[i],
            Self::Int8(v) => &v[i],
            Self::Bool(v) => &v[i],
            Self::Timestamptz(v) => &v[i],
            Self::Jsonb(v) => &v[i],
        }
    }

    pub(crate) fn as_param(&self) -> &(dyn ToSql + Sync) {
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

    /// Appends a JSON-serialized value (`jsonb` columns only).
    fn push_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<bool, CellError> {
        let Self::Jsonb(v) = self else {
            return Ok(false);
        };
        let text = serde_json::to_vec(value).map_err(|e| CellError(e.to_string()))?;
        // A JSON null in a jsonb column is SQL NULL, as `jsonb_populate_recordset` made it.
        v.push((text != b"null").then_some(RawJsonb(text)));
        Ok(true)
    }

    /// Appends `cell`, or gives it back if it does not fit the column's type.
    fn push(&mut self, cell: Cell) -> Result<(), Cell> {
        fn int<T: TryFrom<i64> + TryFrom<u64>>(cell: Cell) -> Result<Option<T>, Cell> {
            match cell {
                Cell::Null => Ok(None),
                Cell::Int(i) => T::try_from(i).map(Some).map_err(|_| Cell::Int(i)),
                Cell::UInt(u) => T::try_from(u).map(Some).map_err(|_| Cell::UInt(u)),
                other => Err(other),
            }
        }
        match self {
            Self::Uuid(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Bytes(b) => match Uuid::from_slice(&b) {
                    Ok(u) => Some(u),
                    Err(_) => return Err(Cell::Bytes(b)),
                },
                Cell::Str(s) => match Uuid::parse_str(&s) {
                    Ok(u) => Some(u),
                    Err(_) => return Err(Cell::Str(s)),
                },
                other => return Err(other),
            }),
            Self::Text(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Str(s) => Some(s),
                other => return Err(other),
            }),
            Self::Int2(v) => v.push(int(cell)?),
            Self::Int4(v) => v.push(int(cell)?),
            Self::Int8(v) => v.push(int(cell)?),
            Self::Bool(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Bool(b) => Some(b),
                other => return Err(other),
            }),
            Self::Timestamptz(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Str(s) => match chrono::DateTime::parse_from_rfc3339(&s) {
                    Ok(t) => Some(t.to_utc()),
                    Err(_) => return Err(Cell::Str(s)),
                },
                other => return Err(other),
            }),
            Self::Jsonb(_) => return Err(cell),
        }
        Ok(())
    }
}

/// A table's rows as columns, in the order of the first row's fields.
pub(crate) struct Columns<'t> {
    table: &'t str,
    types: &'t TableTypes,
    capacity: usize,
    pub(crate) columns: Vec<(String, SqlType, Values)>,
    rows: usize,
}

impl<'t> Columns<'t> {
    pub(crate) fn new(table: &'t str, types: &'t TableTypes, capacity: usize) -> Self {
        Self {
            table,
            types,
            capacity,
            columns: Vec::new(),
            rows: 0,
        }
    }

    /// Appends one row.
    pub(crate) fn push<T: Serialize>(&mut self, row: &T) -> Result<(), CellError> {
        row.serialize(RowSerializer {
            columns: self,
            field: 0,
            key: None,
        })?;
        self.rows += 1;
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        index: usize,
        name: &str,
        value: &T,
    ) -> Result<(), CellError> {
        let table = self.table;
        if self.rows == 0 {
            let t = match self.types.get(name) {
                Some(Ok(t)) => *t,
                Some(Err(type_name)) => {
                    return Err(CellError(format!(
                        "column `{table}.{name}` has type `{type_name}`, which rows cannot be written as"
                    )))
                }
                None => {
                    return Err(CellError(format!(
                        "field `{name}` has no column in `{table}` (are the migrations applied?)"
                    )))
                }
            };
            self.columns
                .push((name.to_owned(), t, Values::new(t, self.capacity)));
        }
        let Some((column, t, values)) = self.columns.get_mut(index).filter(|c| c.0 == name) else {
            return Err(CellError(format!(
                "rows of `{table}` do not all have the same fields (`{name}` is field {index})"
            )));
        };
        if values.push_json(value)? {
            return Ok(());
        }
        values
            .push(value.serialize(CellSerializer)?)
            .map_err(|cell| {
                CellError(format!(
                    "`{table}.{column}` is {t:?} but a row has {cell:?}"
                ))
            })
    }

    fn end_row(&self, fields: usize) -> Result<(), CellError> {
        if self.rows > 0 && fields != self.columns.len() {
            return Err(CellError(format!(
                "rows of `{}` do not all have the same fields ({fields} instead of {})",
                self.table,
                self.columns.len()
            )));
        }
        Ok(())
    }
}

/// One field's value outside `jsonb` columns (its `Debug` form is what errors show).
#[derive(Debug)]
#[allow(dead_code)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
}

/// Serializes one row (a struct, or a map when it has flattened fields) into [`Columns`].
struct RowSerializer<'c, 't> {
    columns: &'c mut Columns<'t>,
    field: usize,
    key: Option<String>,
}

fn not_a_row<T>(table: &str) -> Result<T, CellError> {
    Err(CellError(format!(
        "rows of `{table}` do not serialize as objects"
    )))
}

/// The compound forms neither serializer takes (sequences, tuples, enum variants with data),
/// each answered with the serializer's own `reject`.
macro_rules! reject_compound {
    () => {
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, CellError> {
            self.reject()
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CellError> {
            self.reject()
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CellError> {
            self.reject()
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, CellError> {
            self.reject()
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, CellError> {
            self.reject()
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, CellError> {
            self.reject()
        }
    };
}

macro_rules! reject_row {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            self.reject()
        })*
    };
}

impl RowSerializer<'_, '_> {
    fn reject<T>(&self) -> Result<T, CellError> {
        not_a_row(self.columns.table)
    }
}

impl<'c, 't> ser::Serializer for RowSerializer<'c, 't> {
    type Ok = ();
    type Error = CellError;
    type SerializeSeq = Impossible<(), CellError>;
    type SerializeTuple = Impossible<(), CellError>;
    type SerializeTupleStruct = Impossible<(), CellError>;
    type SerializeTupleVariant = Impossible<(), CellError>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), CellError>;

    reject_row!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), CellError> {
        self.reject()
    }
    reject_compound!();
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CellError> {
        value.serialize(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, CellError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CellError> {
        Ok(self)
    }
}

impl ser::SerializeStruct for RowSerializer<'_, '_> {
    type Ok = ();
    type Error = CellError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CellError> {
        self.columns.field(self.field, key, value)?;
        self.field += 1;
        Ok(())
    }

    fn end(self) -> Result<(), CellError> {
        self.columns.end_row(self.field)
    }
}

impl ser::SerializeMap for RowSerializer<'_, '_> {
    type Ok = ();
    type Error = CellError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CellError> {
        match key.serialize(CellSerializer)? {
            Cell::Str(name) => {
                self.key = Some(name);
                Ok(())
            }
            other => Err(CellError(format!(
                "rows of `{}` have a field named {other:?}",
                self.columns.table
            ))),
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CellError> {
        let key = self.key.take().unwrap_or_default();
        self.columns.field(self.field, &key, value)?;
        self.field += 1;
        Ok(())
    }

    fn end(self) -> Result<(), CellError> {
        self.columns.end_row(self.field)
    }
}

/// Serializes one field's value (not `jsonb`) into a [`Cell`].
struct CellSerializer;

/// Scalars widened into their cell (`i8`..`i64` → `Int`, `u8`..`u64` → `UInt`, floats → `Float`).
macro_rules! scalar {
    ($($method:ident($t:ty) => $cell:ident),* $(,)?) => {
        $(fn $method(self, v: $t) -> Result<Cell, CellError> {
            Ok(Cell::$cell(v.into()))
        })*
    };
}

fn nested<T>() -> Result<T, CellError> {
    Err(CellError(
        "a nested value can only be written to a jsonb column".into(),
    ))
}

impl CellSerializer {
    fn reject<T>(&self) -> Result<T, CellError> {
        nested()
    }
}

impl ser::Serializer for CellSerializer {
    type Ok = Cell;
    type Error = CellError;
    type SerializeSeq = Impossible<Cell, CellError>;
    type SerializeTuple = Impossible<Cell, CellError>;
    type SerializeTupleStruct = Impossible<Cell, CellError>;
    type SerializeTupleVariant = Impossible<Cell, CellError>;
    type SerializeMap = Impossible<Cell, CellError>;
    type SerializeStruct = Impossible<Cell, CellError>;
    type SerializeStructVariant = Impossible<Cell, CellError>;

    /// Uuids serialize as their 16 bytes instead of 36 characters to parse back.
    fn is_human_readable(&self) -> bool {
        false
    }

    scalar!(
        serialize_bool(bool) => Bool,
        serialize_i8(i8) => Int,
        serialize_i16(i16) => Int,
        serialize_i32(i32) => Int,
        serialize_i64(i64) => Int,
        serialize_u8(u8) => UInt,
        serialize_u16(u16) => UInt,
        serialize_u32(u32) => UInt,
        serialize_u64(u64) => UInt,
        serialize_f32(f32) => Float,
        serialize_f64(f64) => Float,
    );
    fn serialize_char(self, v: char) -> Result<Cell, CellError> {
        Ok(Cell::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Cell, CellError> {
        Ok(Cell::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Cell, CellError> {
        Ok(Cell::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Cell, CellError> {
        Ok(Cell::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Cell, CellError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Cell, CellError> {
        Ok(Cell::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Cell, CellError> {
        Ok(Cell::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Cell, CellError> {
        Ok(Cell::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Cell, CellError> {
        value.serialize(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CellError> {
        self.reject()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, CellError> {
        self.reject()
    }
    reject_compound!();
}
