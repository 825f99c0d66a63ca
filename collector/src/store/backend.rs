//! The storage trait: a SQL connection that runs statements with positional `?` parameters
//! and returns rows of plain values. SQLite and PostgreSQL implement it; everything above it
//! (schema, reports, incidents) is written once against the shared subset of their SQL.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Shared, so a blob held elsewhere is bound without a copy.
    Bytes(bytes::Bytes),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v.into())
    }
}
impl From<bytes::Bytes> for Value {
    fn from(v: bytes::Bytes) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row. Accessors are lenient about NULL (zero, empty) so that a column added by a
/// later migration reads cleanly from older rows.
#[derive(Clone, Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Value::Int(v)) => *v,
            Some(Value::Real(v)) => *v as i64,
            _ => 0,
        }
    }
    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Null) | None => None,
            _ => Some(self.int(i)),
        }
    }
    pub fn real(&self, i: usize) -> f64 {
        match self.0.get(i) {
            Some(Value::Real(v)) => *v,
            Some(Value::Int(v)) => *v as f64,
            _ => 0.0,
        }
    }
    pub fn opt_real(&self, i: usize) -> Option<f64> {
        match self.0.get(i) {
            Some(Value::Null) | None => None,
            _ => Some(self.real(i)),
        }
    }
    pub fn text(&self, i: usize) -> String {
        match self.0.get(i) {
            Some(Value::Text(v)) => v.clone(),
            _ => String::new(),
        }
    }
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        match self.0.get(i) {
            Some(Value::Bytes(v)) => v.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// Why the store could not do what was asked. Each message holds its cause's, so none is
/// chained as a `source` (an error chain printed in full would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("sqlite {}: {error}", path.display())]
    SqliteOpen { path: PathBuf, error: rusqlite::Error },
    #[error("postgres: {0}")]
    Postgres(postgres::Error),
    #[error("postgres: column {column} has unsupported type {kind}")]
    UnsupportedColumn { column: String, kind: String },
    #[error("{}: {error}", path.display())]
    Directory { path: PathBuf, error: std::io::Error },
    /// A stored row that no longer decodes: the database was changed behind the collector.
    #[error("a stored subscriber report does not decode: {0}")]
    Corrupt(String),
    #[error("database schema version {current} is newer than this collector's {latest}; upgrade the collector")]
    NewerSchema { current: i64, latest: i64 },
    #[error("migration {version}: {error}")]
    Migration { version: i64, error: Box<StoreError> },
    #[error("{0}")]
    Json(serde_json::Error),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Json(e)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A task a backend wants run every so often on a thread of its own.
pub type Upkeep = Box<dyn FnMut() -> Result<()> + Send>;

pub trait Backend: Send {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (schema changes).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Starts a write transaction. On PostgreSQL, `exclusive` also takes the cluster-wide
    /// evaluation lock, so that collectors sharing a database evaluate one at a time.
    fn begin(&mut self, exclusive: bool) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    /// Upkeep the database wants done off this connection's thread, if any.
    fn upkeep(&mut self) -> Result<Option<Upkeep>> {
        Ok(None)
    }
}
