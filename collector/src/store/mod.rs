//! Storage: reports, customers, incidents, actions and agents, over one `Backend` trait that
//! SQLite and PostgreSQL implement. Histograms are kept whole (HdrHistogram V2 bytes), so any
//! range of windows and any group of customers merges into exact percentiles later.
//!
//! Duplicates are dropped by the reports table's key `(agent_id, boot_id, seq)`, in the same
//! transaction that stores the measurements, so a redelivered report is never stored twice,
//! whichever collector receives it.

use crate::store::customers::STILL_THE_AGENTS;

pub mod agents;
pub mod backend;
pub mod customers;
pub mod deliveries;
pub mod incidents;
pub mod journeys;
pub mod outcomes;
mod postgres;
pub mod quality;
pub mod reports;
pub mod schema;
mod sqlite;

pub use backend::{Backend, Dialect, Result, Row, StoreError, Upkeep, Value};
pub use journeys::JourneyStats;
pub use reports::{CounterRow, Incoming, Line, SampleRow, Stored, counters_of, samples_of};
pub(crate) use reports::{counter_row, failed_rcodes};

use std::path::Path;

pub struct Store {
    db: Box<dyn Backend>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// Turns a list into `?, ?, ?` for an `IN` clause.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Store {
    /// Opens (and migrates) the store a URL names: `postgres://...` or `postgresql://...` for
    /// PostgreSQL; `sqlite:PATH`, a `.db` file or a directory (which gets `edgeprobe.db`) for SQLite.
    pub fn open(url: &str) -> Result<Store> {
        let db: Box<dyn Backend> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Box::new(postgres::Postgres::connect(url)?)
        } else {
            let path = Path::new(url.strip_prefix("sqlite:").unwrap_or(url));
            let file = if path.extension().is_some_and(|e| e == "db" || e == "sqlite") {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|error| StoreError::Directory { path: dir.to_path_buf(), error })?;
                }
                path.to_path_buf()
            } else {
                std::fs::create_dir_all(path)
                    .map_err(|error| StoreError::Directory { path: path.to_path_buf(), error })?;
                path.join("edgeprobe.db")
            };
            Box::new(sqlite::Sqlite::open(&file)?)
        };
        let mut store = Store { db };
        schema::migrate(store.db.as_mut())?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The backend's upkeep task, to run on a thread of its own (see `Backend::upkeep`).
    pub fn upkeep(&mut self) -> Result<Option<Upkeep>> {
        self.db.upkeep()
    }

    /// Runs `f` in a transaction; `exclusive` serialises it across collectors (see `Backend::begin`).
    pub fn transaction<T>(&mut self, exclusive: bool, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        self.db.begin(exclusive)?;
        match f(self) {
            Ok(v) => {
                self.db.commit()?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.db.rollback();
                Err(e)
            }
        }
    }

    fn insert_rows(&mut self, head: &str, shape: &str, per_row: usize, values: &[Value], tail: &str) -> Result<()> {
        insert_rows(&mut *self.db, head, shape, per_row, values, tail)
    }

    /// Deletes measurements of windows that started before `before_ms`, and incidents resolved
    /// before it. Returns the rows deleted.
    pub fn prune(&mut self, before_ms: i64) -> Result<u64> {
        self.transaction(false, |s| {
            let mut n = 0;
            for sql in [
                "DELETE FROM lines WHERE window_start < ?",
                "DELETE FROM reports WHERE window_start < ?",
                "DELETE FROM windows WHERE window_start < ?",
                "DELETE FROM actions WHERE incident_id IN (SELECT id FROM incidents WHERE resolved_at < ?)",
                "DELETE FROM actions WHERE incident_id = 0 AND created_ms < ?",
                "DELETE FROM journey_stats WHERE window_start < ?",
                "DELETE FROM line_quality WHERE window_start < ?",
                "DELETE FROM incidents WHERE resolved_at < ?",
                "DELETE FROM deliveries WHERE state <> 'pending' AND created_ms < ?",
                "DELETE FROM outcomes WHERE at_ms < ?",
                "DELETE FROM action_results WHERE measured_ms < ? AND action_id NOT IN (SELECT id FROM actions)",
            ] {
                n += s.db.execute(sql, &[before_ms.into()])?;
            }
            // A line an agent has not reported for the whole retention, while it reported
            // others, or that another agent reported since; a silent agent keeps its lines, so
            // its outage still names whom it cuts off.
            n += s.db.execute(
                &format!(
                    "DELETE FROM agent_subscribers AS s WHERE s.last_window_ms < ? AND (NOT {STILL_THE_AGENTS} \
                     OR s.agent_id IN (SELECT agent_id FROM agents WHERE last_window_ms >= ?))"
                ),
                &[before_ms.into(), before_ms.into()],
            )?;
            Ok(n)
        })
    }
}

#[cfg(test)]
impl Store {
    /// The number of rows in `table`.
    pub fn rows(&mut self, table: &str) -> i64 {
        self.db.query(&format!("SELECT COUNT(*) FROM {table}"), &[]).unwrap()[0].int(0)
    }

    /// Overwrites the stored lines of a window with `bytes`, as a damaged disk or an old bug would.
    pub fn damage_lines(&mut self, window_start: i64, bytes: &[u8]) {
        self.db
            .execute(
                "UPDATE lines SET report = ? WHERE window_start = ?",
                &[bytes.to_vec().into(), window_start.into()],
            )
            .unwrap();
    }

    /// A window's `evaluated` state: 0 waiting, 1 evaluated, 2 quarantined.
    pub fn window_state(&mut self, window_start: i64) -> i64 {
        self.db.query("SELECT evaluated FROM windows WHERE window_start = ?", &[window_start.into()]).unwrap()[0].int(0)
    }
}

/// `(?, ?, ...)` with `n` parameters.
fn row_shape(n: usize) -> String {
    format!("({})", marks(n))
}

/// `HEAD VALUES shape, shape, ... TAIL` with `rows` rows.
fn rows_sql(head: &str, shape: &str, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (shape.len() + 2) + 16);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(shape);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Inserts `values`, `per_row` parameters to a row of `shape`, with multi-row statements.
fn insert_rows(
    db: &mut dyn Backend,
    head: &str,
    shape: &str,
    per_row: usize,
    values: &[Value],
    tail: &str,
) -> Result<()> {
    // Far below either database's parameter limit, and only two statement shapes per table (a
    // full chunk and the remainder) to prepare.
    let rows = (4000 / per_row).max(1);
    for chunk in values.chunks(rows * per_row) {
        db.execute(&rows_sql(head, shape, chunk.len() / per_row, tail), chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents page by id: each page follows the last, and together they are the whole list.
    #[test]
    fn agents_page_in_id_order() {
        let dir = crate::testing::test_dir("agents-pages");
        let mut store = Store::open(dir.to_str().unwrap()).unwrap();
        let state: crate::model::AgentState = serde_json::from_str(r#"{"online": true}"#).unwrap();
        for i in [3, 1, 4, 10, 5, 9, 2, 6] {
            store.record_state(&format!("gw-{i:02}"), &state, 1, false).unwrap();
        }
        let all: Vec<String> = store.agents().unwrap().into_iter().map(|a| a.agent_id).collect();
        let mut pages = Vec::new();
        let mut after = String::new();
        loop {
            let page: Vec<String> =
                store.agents_page(&after, Some(3)).unwrap().into_iter().map(|a| a.agent_id).collect();
            let Some(last) = page.last().cloned() else { break };
            pages.push(page);
            after = last;
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(pages.concat(), all);
        assert!(all.is_sorted() && all.len() == 8, "{all:?}");
    }
}
