//! Versioned schema migrations. Each is applied once, in order, inside a transaction, and
//! recorded in `schema_migrations`; a database newer than this build is refused rather than
//! misread. Types are written once and spelled per dialect.

use super::backend::{Backend, Dialect, Result, StoreError};

/// `{ID}` is an auto-numbered key, `{BLOB}` a byte string, `{REAL}` a double.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL UNIQUE,
    segment TEXT NOT NULL,
    plan TEXT NOT NULL,
    region TEXT NOT NULL,
    access_node TEXT NOT NULL,
    monthly_value {REAL} NOT NULL,
    contact_opt_out BIGINT NOT NULL,
    attributes TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX customers_node ON customers (access_node);
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    online BIGINT NOT NULL,
    stopped BIGINT NOT NULL,
    boot_id TEXT NOT NULL,
    version TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    state_ms BIGINT NOT NULL,
    last_report_ms BIGINT,
    last_window_ms BIGINT,
    reports BIGINT NOT NULL,
    capture TEXT,
    health TEXT
);
CREATE TABLE agent_subscribers (
    agent_id TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    last_window_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, subscriber_id)
);
CREATE TABLE reports (
    agent_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    subscribers BIGINT NOT NULL,
    capture TEXT NOT NULL,
    PRIMARY KEY (agent_id, boot_id, seq)
);
CREATE INDEX reports_window ON reports (window_start);
CREATE TABLE windows (
    window_start BIGINT PRIMARY KEY,
    window_end BIGINT NOT NULL,
    last_arrival_ms BIGINT NOT NULL,
    evaluated BIGINT NOT NULL
);
CREATE TABLE samples (
    window_start BIGINT NOT NULL,
    subscriber_id TEXT NOT NULL,
    service TEXT NOT NULL,
    metric TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    min BIGINT NOT NULL,
    max BIGINT NOT NULL,
    p50 BIGINT NOT NULL,
    p90 BIGINT NOT NULL,
    p99 BIGINT NOT NULL,
    hdr {BLOB} NOT NULL
);
CREATE INDEX samples_window ON samples (window_start);
CREATE INDEX samples_subscriber ON samples (subscriber_id, window_start);
CREATE TABLE counters (
    window_start BIGINT NOT NULL,
    subscriber_id TEXT NOT NULL,
    service TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    connects BIGINT NOT NULL,
    connect_failures BIGINT NOT NULL,
    dns_total BIGINT NOT NULL,
    dns_failures BIGINT NOT NULL,
    http_responses BIGINT NOT NULL,
    http_errors BIGINT NOT NULL,
    tls_ok BIGINT NOT NULL,
    tls_failed BIGINT NOT NULL,
    bytes_up BIGINT NOT NULL,
    bytes_down BIGINT NOT NULL,
    retrans_up BIGINT NOT NULL,
    retrans_down BIGINT NOT NULL,
    flows BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX counters_window ON counters (window_start);
CREATE INDEX counters_subscriber ON counters (subscriber_id, window_start);
CREATE TABLE baselines (
    customer_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    p90_us {REAL} NOT NULL,
    windows BIGINT NOT NULL,
    PRIMARY KEY (customer_id, metric)
);
CREATE TABLE incidents (
    id {ID},
    kind TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at BIGINT,
    resolved_at BIGINT,
    first_window BIGINT NOT NULL,
    last_window BIGINT NOT NULL,
    bad_windows BIGINT NOT NULL,
    good_windows BIGINT NOT NULL,
    metric TEXT NOT NULL,
    evidence TEXT NOT NULL,
    probable_cause TEXT NOT NULL,
    customers TEXT NOT NULL,
    affected_customers BIGINT NOT NULL,
    value_at_risk {REAL} NOT NULL,
    acked_at BIGINT,
    acked_by TEXT
);
CREATE INDEX incidents_state ON incidents (state);
CREATE TABLE actions (
    id {ID},
    incident_id BIGINT NOT NULL,
    customer_id TEXT NOT NULL,
    action TEXT NOT NULL,
    contact BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    ended_ms BIGINT
);
CREATE UNIQUE INDEX actions_once ON actions (incident_id, customer_id, action);
CREATE INDEX actions_customer ON actions (customer_id, created_ms);
",
)];

fn spell(sql: &str, dialect: Dialect) -> String {
    let (id, blob, real) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "BLOB", "REAL"),
        Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA", "DOUBLE PRECISION"),
    };
    sql.replace("{ID}", id).replace("{BLOB}", blob).replace("{REAL}", real)
}

/// Brings the schema up to date; returns the version now in place.
pub fn migrate(db: &mut dyn Backend) -> Result<i64> {
    db.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    for &(version, sql) in MIGRATIONS {
        // Exclusive, so two collectors starting together on one PostgreSQL do not race.
        db.begin(true)?;
        let applied = db.query("SELECT MAX(version) FROM schema_migrations", &[])?;
        let current = applied.first().and_then(|r| r.opt_int(0)).unwrap_or(0);
        if current > latest {
            db.rollback()?;
            return Err(StoreError(format!(
                "database schema version {current} is newer than this collector's {latest}; upgrade the collector"
            )));
        }
        if current >= version {
            db.rollback()?;
            continue;
        }
        let step = db.batch(&spell(sql, db.dialect())).and_then(|_| {
            db.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                &[version.into(), crate::now_ms().into()],
            )
        });
        if let Err(e) = step {
            let _ = db.rollback();
            return Err(StoreError(format!("migration {version}: {e}")));
        }
        db.commit()?;
    }
    Ok(latest)
}
