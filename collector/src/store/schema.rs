//! Versioned schema migrations. Each is applied once, in order, inside a transaction, and
//! recorded in `schema_migrations`; a database newer than this build is refused rather than
//! misread. Types are written once and spelled per dialect.

use super::backend::{Backend, Dialect, Result, StoreError};

/// `{ID}` is an auto-numbered key, `{BLOB}` a byte string, `{REAL}` a double.
const MIGRATIONS: &[(i64, &str)] = &[
    (
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
    ),
    (
        // One row per agent, subscriber and window holding the subscriber's part of the report
        // (histograms, counters, services) as CBOR: a report of 50 subscribers with 5 services
        // each was 1,050 rows and is now 50, and ingest is bound by rows.
        2,
        "
CREATE TABLE lines (
    window_start BIGINT NOT NULL,
    subscriber_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    report {BLOB} NOT NULL
);
CREATE INDEX lines_window ON lines (window_start);
CREATE INDEX lines_subscriber ON lines (subscriber_id, window_start);
",
    ),
    (
        // Journeys: group figures per window (merged when a window is evaluated, so a segment's
        // day is 1,440 rows, not every line of it); actions a customer's own journey failures
        // call for, outside any incident (incident_id 0, named by their rule); and the journey
        // definitions and opt-outs pushed to agents, with what each agent runs.
        3,
        "
CREATE TABLE journey_stats (
    window_start BIGINT NOT NULL,
    dimension TEXT NOT NULL,
    grp TEXT NOT NULL,
    journey TEXT NOT NULL,
    phase TEXT NOT NULL,
    channel TEXT NOT NULL,
    customers BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    timeout BIGINT NOT NULL,
    abandoned BIGINT NOT NULL,
    failed_steps TEXT NOT NULL,
    hdr {BLOB} NOT NULL
);
CREATE INDEX journey_stats_window ON journey_stats (dimension, window_start);
ALTER TABLE actions ADD COLUMN rule TEXT NOT NULL DEFAULT '';
DROP INDEX actions_once;
CREATE UNIQUE INDEX actions_once ON actions (incident_id, customer_id, action) WHERE incident_id > 0;
CREATE INDEX actions_rule ON actions (customer_id, rule, created_ms);
ALTER TABLE agents ADD COLUMN config_version TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN config_error TEXT NOT NULL DEFAULT '';
CREATE TABLE agent_config (
    id BIGINT PRIMARY KEY,
    version TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
",
    ),
    (
        // A line reported by another agent since (a swapped gateway) is that agent's now; this
        // finds a subscriber's agents. Only new pairs touch it: ingest updates last_window_ms.
        4,
        "
CREATE INDEX agent_subscribers_subscriber ON agent_subscribers (subscriber_id);
",
    ),
    (
        // What an agent's spool holds as its state messages tell it, and when: a report's own
        // depth is as of when it was queued.
        5,
        "
ALTER TABLE agents ADD COLUMN spool_state BIGINT;
ALTER TABLE agents ADD COLUMN spool_state_ms BIGINT;
",
    ),
    (
        // Per line and window: working latency by side and Quality of Outcome by profile
        // (`figures`, JSON); the idle low percentiles apart, for the baseline's MIN over history.
        6,
        "
CREATE TABLE line_quality (
    customer_id TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    home_idle_us BIGINT,
    network_idle_us BIGINT,
    figures TEXT NOT NULL,
    PRIMARY KEY (customer_id, window_start)
);
CREATE INDEX line_quality_window ON line_quality (window_start);
",
    ),
    (
        // Contact rules from the customer record and the channels an action may use; the
        // outbox of webhook messages, written in the transaction that decided them, so a
        // message is queued exactly when its incident or action is stored; what the operator's
        // systems saw afterwards, and each action's measured recovery, against the action it
        // was meant to be (`intended`: a hold-out or a refusal names what it replaced) and the
        // window that decided it.
        7,
        "
ALTER TABLE customers ADD COLUMN contact_channels TEXT NOT NULL DEFAULT '';
ALTER TABLE customers ADD COLUMN partner_offers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN dependent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN channels TEXT NOT NULL DEFAULT '';
ALTER TABLE actions ADD COLUMN intended TEXT NOT NULL DEFAULT '';
ALTER TABLE actions ADD COLUMN window_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN unmeasured BIGINT NOT NULL DEFAULT 0;
CREATE INDEX actions_unmeasured ON actions (window_ms) WHERE unmeasured = 1;
CREATE TABLE outcomes (
    id {ID},
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    action_id BIGINT,
    reason TEXT NOT NULL,
    channel TEXT NOT NULL,
    score {REAL},
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX outcomes_customer ON outcomes (customer_id, at_ms);
CREATE UNIQUE INDEX outcomes_external ON outcomes (source, external_id) WHERE external_id <> '';
CREATE TABLE action_results (
    action_id BIGINT PRIMARY KEY,
    measured_ms BIGINT NOT NULL,
    metric TEXT NOT NULL,
    before_value {REAL},
    after_value {REAL},
    threshold {REAL},
    recovered BIGINT,
    recovery_ms BIGINT
);
CREATE TABLE deliveries (
    id {ID},
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    last_attempt_ms BIGINT,
    sent_ms BIGINT,
    last_status BIGINT,
    reason TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, webhook, next_attempt_ms);
CREATE INDEX deliveries_subject ON deliveries (subject);
",
    ),
    (
        // A window's report may come in parts (an edge agent's thousands of lines past a
        // broker's message limit): the dedup key takes the part, and the part count says when
        // a window has all of an agent's report.
        8,
        "
CREATE TABLE reports_parts (
    agent_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    part BIGINT NOT NULL,
    parts BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    subscribers BIGINT NOT NULL,
    capture TEXT NOT NULL,
    PRIMARY KEY (agent_id, boot_id, seq, part)
);
INSERT INTO reports_parts (agent_id, boot_id, seq, part, parts, window_start, window_end, received_ms, subscribers, \
    capture) SELECT agent_id, boot_id, seq, 0, 1, window_start, window_end, received_ms, subscribers, capture FROM reports;
DROP TABLE reports;
ALTER TABLE reports_parts RENAME TO reports;
CREATE INDEX reports_window ON reports (window_start);
",
    ),
];

/// Data moves that SQL alone cannot do, run after the version's SQL in the same transaction.
fn move_data(db: &mut dyn Backend, version: i64) -> Result<()> {
    if version == 2 {
        super::reports::move_samples_to_lines(db)?;
        db.batch("DROP TABLE samples; DROP TABLE counters;")?;
    }
    Ok(())
}

fn spell(sql: &str, dialect: Dialect) -> String {
    let (id, blob, real) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY", "BLOB", "REAL"),
        Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA", "DOUBLE PRECISION"),
    };
    sql.replace("{ID}", id).replace("{BLOB}", blob).replace("{REAL}", real)
}

/// Brings the schema up to date; returns the version now in place.
pub fn migrate(db: &mut dyn Backend) -> Result<i64> {
    migrate_to(db, MIGRATIONS.last().map_or(0, |m| m.0))
}

fn migrate_to(db: &mut dyn Backend, target: i64) -> Result<i64> {
    db.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    for &(version, sql) in MIGRATIONS.iter().take_while(|m| m.0 <= target) {
        // Exclusive, so two collectors starting together on one PostgreSQL do not race.
        db.begin(true)?;
        let applied = db.query("SELECT MAX(version) FROM schema_migrations", &[])?;
        let current = applied.first().and_then(|r| r.opt_int(0)).unwrap_or(0);
        if current > latest {
            db.rollback()?;
            return Err(StoreError::NewerSchema { current, latest });
        }
        if current >= version {
            db.rollback()?;
            continue;
        }
        let step = db.batch(&spell(sql, db.dialect())).and_then(|_| move_data(db, version)).and_then(|_| {
            db.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                &[version.into(), crate::clock::now_ms().into()],
            )
        });
        if let Err(e) = step {
            let _ = db.rollback();
            return Err(StoreError::Migration { version, error: Box::new(e) });
        }
        db.commit()?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, sqlite::Sqlite};
    use edgeprobe_wire::METRICS;
    use edgeprobe_wire::histogram::{new_histogram, record};

    #[test]
    fn version_2_moves_every_histogram_and_counter_into_lines() {
        let dir = crate::testing::test_dir("migrate");
        let file = dir.join("v1.db");
        let mut db = Sqlite::open(&file).unwrap();
        assert_eq!(migrate_to(&mut db, 1).unwrap(), 1);
        // Version 1 rows: two windows; a line with three histograms and a service with one.
        let mut hdrs = Vec::new();
        for (i, (ws, service, metric)) in [
            (60_000, "", "dns"),
            (60_000, "", "connect_network"),
            (60_000, "portal.example", "tls_handshake"),
            (120_000, "", "dns"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut h = new_histogram();
            for v in 0..=i as u64 {
                record(&mut h, 1_000 + v * 250);
            }
            let wire = edgeprobe_wire::WireHistogram::from_histogram(&h);
            hdrs.push((ws, service, metric, wire.clone()));
            db.execute(
                "INSERT INTO samples VALUES (?, 'sub-1', ?, ?, 'gw-1', ?, ?, ?, ?, ?, ?, ?)",
                &[
                    ws.into(),
                    service.into(),
                    metric.into(),
                    wire.count.into(),
                    wire.min.into(),
                    wire.max.into(),
                    wire.p50.into(),
                    wire.p90.into(),
                    wire.p99.into(),
                    wire.hdr.into(),
                ],
            )
            .unwrap();
        }
        for (ws, service) in [(60_000, ""), (60_000, "portal.example"), (120_000, "")] {
            db.execute(
                "INSERT INTO counters VALUES (?, 'sub-1', ?, 'gw-1', 7, 1, 5, 2, 3, 1, 4, 0, 100, 2000, 1, 2, 9, \
                 '{\"dns\":{\"NOERROR\":3,\"SERVFAIL\":2},\"connect_refused\":1,\"connect_timeout\":0,\
                 \"http_4xx\":0,\"http_5xx\":1}')",
                &[i64::from(ws).into(), service.into()],
            )
            .unwrap();
        }
        drop(db);

        let mut store = Store::open(file.to_str().unwrap()).unwrap();
        let mut seen = 0;
        for ws in [60_000, 120_000] {
            let samples = store.window_samples(ws).unwrap();
            for (hws, service, metric, wire) in hdrs.iter().filter(|h| h.0 == ws) {
                let s = samples.iter().find(|s| s.service == *service && s.metric == *metric).unwrap();
                assert_eq!(
                    (s.window_start, s.count, s.p90, &s.hdr),
                    (*hws, wire.count as i64, wire.p90 as i64, &wire.hdr)
                );
                seen += 1;
            }
            assert_eq!(samples.len(), hdrs.iter().filter(|h| h.0 == ws).count());
            let counters = store.window_counters(ws).unwrap();
            assert!(
                counters
                    .iter()
                    .all(|(_, _, c)| (c.connects, c.connect_failures, c.dns_total, c.dns_failures) == (7, 1, 5, 2))
            );
        }
        assert_eq!(seen, 4);
        let latest = store.latest_samples("sub-1").unwrap();
        assert_eq!(latest["dns"].window_start, 120_000);
        assert_eq!(latest["connect_network"].window_start, 60_000);
        assert!(latest.keys().all(|k| METRICS.contains(&k.as_str())));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
