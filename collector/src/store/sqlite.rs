//! SQLite, the embedded default: one file in the data directory, WAL mode so readers never
//! wait for the writer, and `synchronous = NORMAL`, which in WAL mode loses at most the last
//! transactions on power loss, never consistency. Unacknowledged MQTT messages cover that gap.

use super::backend::{Backend, Dialect, Result, Row, StoreError, Upkeep, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, params_from_iter};
use std::path::Path;
use std::time::Duration;

pub struct Sqlite {
    conn: Connection,
    path: std::path::PathBuf,
}

/// WAL pages the writer lets pile up before checkpointing itself, when the background
/// checkpoint falls behind: 64 MiB, not the default 4 MiB.
const WRITER_CHECKPOINT_PAGES: u32 = 16384;

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e)
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let conn =
            Connection::open(path).map_err(|error| StoreError::SqliteOpen { path: path.to_path_buf(), error })?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        // A writer's batch (up to 256 reports of 50 lines, about 11 MB) must fit the page cache,
        // or SQLite spills pages mid-transaction; statement journals stay in memory for the same
        // reason. Both are limits, reached only by large batches.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
        )
        .map_err(err)?;
        Ok(Sqlite { conn, path: path.to_path_buf() })
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v.as_ref())),
        })
    }
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        stmt.execute(params_from_iter(params.iter())).map(|n| n as u64).map_err(err)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params.iter())).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Value::Bytes(bytes::Bytes::copy_from_slice(v)),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(err)
    }

    fn begin(&mut self, _exclusive: bool) -> Result<()> {
        // IMMEDIATE takes the write lock now, so a second writer waits instead of failing later.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> Result<()> {
        if self.conn.is_autocommit() { Ok(()) } else { self.conn.execute_batch("ROLLBACK").map_err(err) }
    }

    /// Checkpoints from a connection of their own. Copying the WAL back into the database (and
    /// its fsync) was a quarter of the writer's time under a burst; a passive checkpoint runs
    /// beside the writer without blocking it. The writer still checkpoints itself if the WAL
    /// reaches `WRITER_CHECKPOINT_PAGES`, which bounds the WAL should this fall behind.
    fn upkeep(&mut self) -> Result<Option<Upkeep>> {
        let checkpointer = Connection::open(&self.path).map_err(err)?;
        checkpointer.busy_timeout(Duration::from_secs(1)).map_err(err)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).map_err(err)?;
        Ok(Some(Box::new(move || {
            checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(err)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upkeep_task_moves_the_writers_wal_into_the_database() {
        let dir = crate::testing::test_dir("checkpoint");
        let file = dir.join("c.db");
        let mut writer = Sqlite::open(&file).unwrap();
        let mut checkpoint = writer.upkeep().unwrap().expect("SQLite checkpoints in the background");
        writer.batch("CREATE TABLE t (b BLOB)").unwrap();
        // 2 MB: under the writer's own threshold, so only the task can move it.
        let blob = Value::Bytes(vec![7u8; 2000].into());
        writer.begin(false).unwrap();
        for _ in 0..1000 {
            writer.execute("INSERT INTO t (b) VALUES (?)", std::slice::from_ref(&blob)).unwrap();
        }
        writer.commit().unwrap();
        let size = || std::fs::metadata(&file).unwrap().len();
        let before = size();
        assert!(before < 1 << 20, "the rows are still in the WAL: {before} bytes");
        checkpoint().unwrap();
        assert!(size() > 2_000_000, "checkpointed: {} bytes", size());
        // The next transaction starts the WAL over instead of growing it.
        writer.execute("INSERT INTO t (b) VALUES (?)", &[blob]).unwrap();
        let wal = std::fs::metadata(dir.join("c.db-wal")).unwrap().len();
        let frames = writer.query("PRAGMA wal_checkpoint(PASSIVE)", &[]).unwrap();
        assert!(frames[0].int(1) < 10, "WAL restarted: {} frames, {wal} bytes", frames[0].int(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
