//! Storage: reports, customers, incidents, actions and agents, over one `Backend` trait that
//! SQLite and PostgreSQL implement. Histograms are kept whole (HdrHistogram V2 bytes), so any
//! range of windows and any group of customers merges into exact percentiles later.
//!
//! Duplicates are dropped by the reports table's key `(agent_id, boot_id, seq)`, in the same
//! transaction that stores the measurements, so a redelivered report is never stored twice,
//! whichever collector receives it.

pub mod backend;
mod postgres;
pub mod schema;
mod sqlite;

pub use backend::{Backend, Dialect, Result, Row, StoreError, Upkeep, Value};

use crate::customers::Customer;
use crate::model::{Action, Agent, AgentState, Incident, IncidentKind};
use edgeprobe_wire::{Codec, Counters, METRICS, Metrics, Report, ServiceReport, SubscriberReport};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

pub struct Store {
    db: Box<dyn Backend>,
}

/// A decoded report as the writer needs it: the report's own fields, and each subscriber's
/// part already encoded for the `lines` table, so ingest does that work beside the writer.
/// The decoded parts are dropped here: queued, they weighed several times the bytes received,
/// so a queue bounded by `queue_bytes` held several times that in memory.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// Everything but `subscribers`, which is left empty.
    pub report: Report,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug)]
pub struct Line {
    pub subscriber: String,
    pub cbor: bytes::Bytes,
    pub journeys: bool,
}

impl Incoming {
    /// Lines are stored packed. A packed report's lines are kept as the bytes received: their
    /// spans in `payload`, as [`Codec::decode_with_lines`] tells them. The rest are encoded.
    pub fn new(mut report: Report, codec: &mut Codec, payload: Option<(&bytes::Bytes, &[Range<usize>])>) -> Incoming {
        let spans = payload.filter(|(_, spans)| spans.len() == report.subscribers.len());
        let lines = std::mem::take(&mut report.subscribers)
            .into_iter()
            .enumerate()
            .map(|(i, s)| Line {
                cbor: match &spans {
                    Some((payload, spans)) => payload.slice(spans[i].clone()),
                    None => codec.encode_line(&s).into(),
                },
                journeys: !s.journeys.is_empty(),
                subscriber: s.subscriber,
            })
            .collect();
        Incoming { report, lines }
    }

    /// Bytes held, as the queue's budget counts them.
    pub fn weight(&self) -> usize {
        self.lines.iter().map(|l| l.cbor.len() + l.subscriber.len()).sum::<usize>() + 512
    }
}

/// What storing one report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    New,
    /// Already stored under the same `(agent_id, boot_id, seq)`.
    Duplicate,
    /// Stored, but its window had already been evaluated: it counts in queries, not incidents.
    AfterEvaluation,
}

/// One journey's episodes in a group of customers: a window's when stored, a range's when
/// read back, with the latency histogram merged exactly.
#[derive(Clone, Debug, Default)]
pub struct JourneyStats {
    pub dimension: String,
    pub group: String,
    pub journey: String,
    pub phase: String,
    pub channel: String,
    /// Customers who ran the journey.
    pub customers: u64,
    pub ok: u64,
    pub failed: u64,
    pub timeout: u64,
    pub abandoned: u64,
    pub failed_steps: BTreeMap<String, u64>,
    pub latency: Option<hdrhistogram::Histogram<u64>>,
}

impl JourneyStats {
    /// Empty figures for `journey` in one group.
    pub fn new(dimension: &str, group: &str, j: &edgeprobe_wire::JourneyReport) -> JourneyStats {
        JourneyStats {
            dimension: dimension.into(),
            group: group.into(),
            journey: j.journey.clone(),
            phase: j.phase.clone(),
            channel: j.channel.clone(),
            ..JourneyStats::default()
        }
    }

    /// Adds one subscriber-window's episodes of the journey.
    pub fn add(&mut self, j: &edgeprobe_wire::JourneyReport) {
        self.ok += j.ok;
        self.failed += j.failed;
        self.timeout += j.timeout;
        self.abandoned += j.abandoned;
        self.add_steps(&j.failed_steps);
        if let Some(h) = &j.latency {
            self.add_latency(&h.hdr);
        }
    }

    pub fn add_steps(&mut self, steps: &BTreeMap<String, u64>) {
        for (step, n) in steps {
            *self.failed_steps.entry(step.clone()).or_default() += n;
        }
    }

    /// Adds a V2-encoded histogram; bytes that do not decode add nothing.
    pub fn add_latency(&mut self, hdr: &[u8]) {
        add_encoded(&mut self.latency, hdr);
    }

    /// The API's shape: counts, success rate and latency percentiles in µs.
    pub fn to_json(&self) -> serde_json::Value {
        let episodes = self.ok + self.failed + self.timeout;
        let pct = |q: f64| self.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q));
        serde_json::json!({
            "journey": self.journey,
            "phase": self.phase,
            "channel": self.channel,
            "customers": self.customers,
            "episodes": episodes,
            "ok": self.ok,
            "failed": self.failed,
            "timeout": self.timeout,
            "abandoned": self.abandoned,
            "success_rate": (episodes > 0).then(|| (self.ok as f64 / episodes as f64 * 10_000.0).round() / 10_000.0),
            "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
            "failed_steps": self.failed_steps,
        })
    }
}

/// Merges a V2-encoded histogram into `into`; bytes that do not decode add nothing.
pub fn add_encoded(into: &mut Option<hdrhistogram::Histogram<u64>>, hdr: &[u8]) {
    if hdr.is_empty() {
        return;
    }
    let wire = edgeprobe_wire::WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: hdr.to_vec() };
    let Ok(h) = wire.histogram() else { return };
    match into.as_mut() {
        Some(m) => {
            let _ = m.add(&h);
        }
        None => *into = Some(h),
    }
}

/// One latency histogram of one subscriber (and service, or `""` for the whole line) in a window.
#[derive(Clone, Debug)]
pub struct SampleRow {
    pub window_start: i64,
    pub subscriber_id: String,
    pub service: String,
    pub metric: String,
    pub count: i64,
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub hdr: Vec<u8>,
}

impl SampleRow {
    /// A wire histogram as a row, its summary figures clamped into SQL integers.
    pub fn new(
        window_start: i64,
        subscriber: &str,
        service: &str,
        metric: &str,
        h: &edgeprobe_wire::WireHistogram,
    ) -> SampleRow {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        SampleRow {
            window_start,
            subscriber_id: subscriber.to_string(),
            service: service.to_string(),
            metric: metric.to_string(),
            count: int(h.count),
            p50: int(h.p50),
            p90: int(h.p90),
            p99: int(h.p99),
            hdr: h.hdr.clone(),
        }
    }
}

/// The counters the correlation judges, summed per subscriber and service in a window.
#[derive(Clone, Debug, Default)]
pub struct CounterRow {
    pub connects: i64,
    pub connect_failures: i64,
    pub dns_total: i64,
    pub dns_failures: i64,
}

fn dns_failures(c: &Counters) -> u64 {
    failed_rcodes(&c.dns)
}

/// DNS transactions that failed, of counts by rcode.
pub(crate) fn failed_rcodes(rcodes: &BTreeMap<String, u64>) -> u64 {
    ["SERVFAIL", "REFUSED", "TIMEOUT"].iter().map(|k| rcodes.get(*k).copied().unwrap_or(0)).sum()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// Turns a list into `?, ?, ?` for an `IN` clause.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

const INCIDENT_COLUMNS: &str = "id, kind, scope, state, severity, opened_at, resolved_at, first_window, last_window, \
    bad_windows, good_windows, metric, evidence, probable_cause, customers, affected_customers, value_at_risk, \
    acked_at, acked_by";

fn incident(r: &Row) -> Incident {
    Incident {
        id: r.int(0),
        kind: IncidentKind::parse(&r.text(1)).unwrap_or(IncidentKind::Customer),
        scope: serde_json::from_str(&r.text(2)).unwrap_or_default(),
        state: r.text(3),
        severity: r.text(4),
        opened_at: r.opt_int(5),
        resolved_at: r.opt_int(6),
        first_window: r.int(7),
        last_window: r.int(8),
        bad_windows: r.int(9),
        good_windows: r.int(10),
        metric: r.text(11),
        evidence: serde_json::from_str(&r.text(12)).unwrap_or_default(),
        probable_cause: r.text(13),
        customers: serde_json::from_str(&r.text(14)).unwrap_or_default(),
        affected_customers: r.int(15),
        value_at_risk: r.real(16),
        acked_at: r.opt_int(17),
        acked_by: r.0.get(18).and_then(|v| if let Value::Text(t) = v { Some(t.clone()) } else { None }),
    }
}

const CUSTOMER_COLUMNS: &str =
    "customer_id, subscriber_id, segment, plan, region, access_node, monthly_value, contact_opt_out, attributes";

/// An `agent_subscribers s` row whose line no other agent has reported on since: a line moves
/// with its gateway, and an agent that falls silent speaks only for the lines it still serves.
const STILL_THE_AGENTS: &str = "NOT EXISTS (SELECT 1 FROM agent_subscribers o WHERE o.subscriber_id = s.subscriber_id \
     AND o.agent_id <> s.agent_id AND o.last_window_ms > s.last_window_ms)";

fn customer(r: &Row) -> Customer {
    Customer {
        customer_id: r.text(0),
        subscriber_id: r.text(1),
        segment: r.text(2),
        plan: r.text(3),
        region: r.text(4),
        access_node: r.text(5),
        monthly_value: r.real(6),
        contact_opt_out: r.int(7) != 0,
        attributes: serde_json::from_str(&r.text(8)).unwrap_or_default(),
    }
}

const ACTION_COLUMNS: &str = "id, incident_id, customer_id, action, contact, reason, created_ms, ended_ms, rule";

fn action(r: &Row) -> Action {
    Action {
        id: r.int(0),
        incident_id: Some(r.int(1)).filter(|id| *id > 0),
        rule: Some(r.text(8)).filter(|r| !r.is_empty()),
        customer_id: r.text(2),
        action: r.text(3),
        contact: r.int(4) != 0,
        reason: r.text(5),
        created_ms: r.int(6),
        ended_ms: r.opt_int(7),
    }
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
                    std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
                }
                path.to_path_buf()
            } else {
                std::fs::create_dir_all(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
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

    // ---- customers

    /// Inserts or updates customers by id; returns how many were new.
    pub fn upsert_customers(&mut self, customers: &[Customer], now_ms: i64) -> Result<usize> {
        self.transaction(false, |s| {
            let mut new = 0;
            for c in customers {
                // A subscriber moving to another customer id frees its old row first.
                s.db.execute(
                    "DELETE FROM customers WHERE subscriber_id = ? AND customer_id <> ?",
                    &[c.subscriber_id.as_str().into(), c.customer_id.as_str().into()],
                )?;
                let existed =
                    !s.db.query("SELECT 1 FROM customers WHERE customer_id = ?", &[c.customer_id.as_str().into()])?.is_empty();
                s.db.execute(
                    "INSERT INTO customers (customer_id, subscriber_id, segment, plan, region, access_node, monthly_value, \
                     contact_opt_out, attributes, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (customer_id) DO UPDATE SET subscriber_id = excluded.subscriber_id, \
                     segment = excluded.segment, plan = excluded.plan, region = excluded.region, \
                     access_node = excluded.access_node, monthly_value = excluded.monthly_value, \
                     contact_opt_out = excluded.contact_opt_out, attributes = excluded.attributes, \
                     updated_ms = excluded.updated_ms",
                    &[
                        c.customer_id.as_str().into(),
                        c.subscriber_id.as_str().into(),
                        c.segment.as_str().into(),
                        c.plan.as_str().into(),
                        c.region.as_str().into(),
                        c.access_node.as_str().into(),
                        c.monthly_value.into(),
                        c.contact_opt_out.into(),
                        json(&c.attributes).into(),
                        now_ms.into(),
                    ],
                )?;
                new += usize::from(!existed);
            }
            Ok(new)
        })
    }

    pub fn customer(&mut self, customer_id: &str) -> Result<Option<Customer>> {
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ?");
        Ok(self.db.query(&sql, &[customer_id.into()])?.first().map(customer))
    }

    /// The customers behind the given subscriber keys; unknown keys are left out.
    pub fn customers_by_subscriber(&mut self, subscribers: &[String]) -> Result<HashMap<String, Customer>> {
        let mut out = HashMap::with_capacity(subscribers.len());
        for chunk in subscribers.chunks(500) {
            let sql =
                format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE subscriber_id IN ({})", marks(chunk.len()));
            let params: Vec<Value> = chunk.iter().map(Value::from).collect();
            for r in self.db.query(&sql, &params)? {
                let c = customer(&r);
                out.insert(c.subscriber_id.clone(), c);
            }
        }
        Ok(out)
    }

    pub fn customers_by_id(&mut self, ids: &[String]) -> Result<Vec<Customer>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id IN ({})", marks(chunk.len()));
            let params: Vec<Value> = chunk.iter().map(Value::from).collect();
            out.extend(self.db.query(&sql, &params)?.iter().map(customer));
        }
        Ok(out)
    }

    pub fn customer_count(&mut self) -> Result<i64> {
        Ok(self.db.query("SELECT COUNT(*) FROM customers", &[])?.first().map_or(0, |r| r.int(0)))
    }

    // ---- ingest

    /// Stores a batch of reports in one transaction.
    pub fn store_reports(&mut self, reports: &[&Report], received_ms: i64) -> Result<Vec<Stored>> {
        let mut codec = Codec::default();
        let encoded: Vec<Incoming> = reports.iter().map(|r| Incoming::new((*r).clone(), &mut codec, None)).collect();
        let batch: Vec<(&Incoming, i64)> = encoded.iter().map(|r| (r, received_ms)).collect();
        self.transaction(false, |s| s.store_reports_in_tx(&batch))
    }

    /// Stores reports with their arrival times; call inside a transaction. Rows go in with
    /// multi-row statements, a few per batch rather than a few dozen per report, because a
    /// round trip to PostgreSQL costs more than the rows.
    pub fn store_reports_in_tx(&mut self, batch: &[(&Incoming, i64)]) -> Result<Vec<Stored>> {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        // 1. The dedup key: only reports whose key is new are stored further.
        let mut new_keys: HashSet<(String, String, i64)> = HashSet::new();
        for chunk in batch.chunks(400) {
            let mut params = Vec::with_capacity(chunk.len() * 8);
            for (incoming, received) in chunk {
                let r = &incoming.report;
                params.extend([
                    r.agent_id.as_str().into(),
                    r.boot_id.as_str().into(),
                    r.seq.into(),
                    clamp(r.window_start).into(),
                    clamp(r.window_end).into(),
                    (*received).into(),
                    (incoming.lines.len() as i64).into(),
                    json(&r.capture).into(),
                ]);
            }
            let sql = rows_sql(
                "INSERT INTO reports (agent_id, boot_id, seq, window_start, window_end, received_ms, subscribers, capture)",
                &row_shape(8),
                chunk.len(),
                "ON CONFLICT (agent_id, boot_id, seq) DO NOTHING RETURNING agent_id, boot_id, seq",
            );
            for row in self.db.query(&sql, &params)? {
                new_keys.insert((row.text(0), row.text(1), row.int(2)));
            }
        }
        let mut outcome = Vec::with_capacity(batch.len());
        let mut fresh: Vec<(&Report, i64)> = Vec::new();
        let mut fresh_lines: Vec<&[Line]> = Vec::new();
        for (incoming, received) in batch {
            let r = &incoming.report;
            // A key twice in one batch is new only the first time.
            let new = new_keys.remove(&(r.agent_id.clone(), r.boot_id.clone(), clamp(r.seq)));
            outcome.push(if new { Stored::New } else { Stored::Duplicate });
            if new {
                fresh.push((r, *received));
                fresh_lines.push(&incoming.lines);
            }
        }
        if fresh.is_empty() {
            return Ok(outcome);
        }

        // 2. Measurements: a row per subscriber, its part of the report as CBOR.
        let mut rows: Vec<Value> = Vec::new();
        let mut lines: HashMap<(&str, &str), i64> = HashMap::new();
        for ((r, _), blobs) in fresh.iter().zip(&fresh_lines) {
            let ws = clamp(r.window_start);
            for line in blobs.iter() {
                rows.extend([
                    ws.into(),
                    line.subscriber.as_str().into(),
                    r.agent_id.as_str().into(),
                    line.cbor.clone().into(),
                ]);
                let last = lines.entry((&r.agent_id, &line.subscriber)).or_insert(ws);
                *last = (*last).max(ws);
            }
        }
        self.insert_rows(
            "INSERT INTO lines (window_start, subscriber_id, agent_id, report)",
            &row_shape(4),
            4,
            &rows,
            "",
        )?;
        let mut rows: Vec<Value> = Vec::new();
        for ((agent, sub), ws) in lines {
            rows.extend([agent.into(), sub.into(), ws.into()]);
        }
        self.insert_rows(
            "INSERT INTO agent_subscribers (agent_id, subscriber_id, last_window_ms)",
            &row_shape(3),
            3,
            &rows,
            "ON CONFLICT (agent_id, subscriber_id) DO UPDATE SET last_window_ms = \
             CASE WHEN excluded.last_window_ms > agent_subscribers.last_window_ms \
             THEN excluded.last_window_ms ELSE agent_subscribers.last_window_ms END",
        )?;

        // 3. Agents: a row each, with the batch's count and its latest report's health.
        let mut agents: BTreeMap<&str, (i64, i64, i64, &Report)> = BTreeMap::new();
        for (r, received) in &fresh {
            let e = agents.entry(&r.agent_id).or_insert((0, 0, 0, r));
            *e = (e.0 + 1, e.1.max(*received), e.2.max(clamp(r.window_start)), r);
        }
        let mut rows: Vec<Value> = Vec::new();
        for (agent, (count, received, ws, last)) in &agents {
            rows.extend([
                (*agent).into(),
                last.boot_id.as_str().into(),
                (*received).into(),
                (*received).into(),
                (*ws).into(),
                (*count).into(),
                json(&last.capture).into(),
                last.agent.as_ref().map(json).into(),
            ]);
        }
        self.insert_rows(
            "INSERT INTO agents (agent_id, online, stopped, boot_id, version, capabilities, state_ms, last_report_ms, \
             last_window_ms, reports, capture, health)",
            "(?, 1, 0, ?, '', '[]', ?, ?, ?, ?, ?, ?)",
            8,
            &rows,
            "ON CONFLICT (agent_id) DO UPDATE SET last_report_ms = excluded.last_report_ms, \
             reports = agents.reports + excluded.reports, \
             last_window_ms = CASE WHEN agents.last_window_ms IS NULL OR excluded.last_window_ms > agents.last_window_ms \
             THEN excluded.last_window_ms ELSE agents.last_window_ms END, \
             capture = excluded.capture, health = COALESCE(excluded.health, agents.health)",
        )?;

        // 4. Windows, noted for evaluation; a report for one already evaluated is late.
        let mut windows: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (r, received) in &fresh {
            let e = windows.entry(clamp(r.window_start)).or_insert((0, 0));
            *e = (e.0.max(clamp(r.window_end)), e.1.max(*received));
        }
        let starts: Vec<Value> = windows.keys().map(|w| Value::Int(*w)).collect();
        let mut evaluated: HashSet<i64> = HashSet::new();
        for chunk in starts.chunks(500) {
            let sql = format!(
                "SELECT window_start FROM windows WHERE evaluated = 1 AND window_start IN ({})",
                marks(chunk.len())
            );
            evaluated.extend(self.db.query(&sql, chunk)?.iter().map(|r| r.int(0)));
        }
        let mut rows: Vec<Value> = Vec::new();
        for (ws, (we, arrival)) in &windows {
            rows.extend([(*ws).into(), (*we).into(), (*arrival).into()]);
        }
        self.insert_rows(
            "INSERT INTO windows (window_start, window_end, last_arrival_ms, evaluated)",
            "(?, ?, ?, 0)",
            3,
            &rows,
            "ON CONFLICT (window_start) DO UPDATE SET last_arrival_ms = excluded.last_arrival_ms",
        )?;
        for (o, (r, _)) in outcome.iter_mut().zip(batch) {
            if *o == Stored::New && evaluated.contains(&clamp(r.report.window_start)) {
                *o = Stored::AfterEvaluation;
            }
        }
        Ok(outcome)
    }

    fn insert_rows(&mut self, head: &str, shape: &str, per_row: usize, values: &[Value], tail: &str) -> Result<()> {
        insert_rows(&mut *self.db, head, shape, per_row, values, tail)
    }

    /// Records an agent's birth message or last will. `state_ms` says since when the agent has
    /// been in its state, so a retained message the broker delivers again (to a collector that
    /// restarted or reconnected) keeps the time of the same state already recorded: otherwise
    /// every restart would start a will's grace period over.
    pub fn record_state(&mut self, agent_id: &str, state: &AgentState, now_ms: i64, retained: bool) -> Result<()> {
        self.db.execute(
            "INSERT INTO agents (agent_id, online, stopped, boot_id, version, capabilities, state_ms, reports, \
             config_version, config_error) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET \
             online = excluded.online, stopped = excluded.stopped, \
             config_version = CASE WHEN excluded.online = 1 THEN excluded.config_version ELSE agents.config_version END, \
             config_error = CASE WHEN excluded.online = 1 THEN excluded.config_error ELSE agents.config_error END, \
             boot_id = CASE WHEN excluded.boot_id = '' THEN agents.boot_id ELSE excluded.boot_id END, \
             version = CASE WHEN excluded.version = '' THEN agents.version ELSE excluded.version END, \
             capabilities = excluded.capabilities, \
             state_ms = CASE WHEN ? AND agents.online = excluded.online AND agents.stopped = excluded.stopped \
             AND agents.boot_id = excluded.boot_id THEN agents.state_ms ELSE excluded.state_ms END",
            &[
                agent_id.into(),
                state.online.into(),
                (!state.online && state.stopped).into(),
                state.boot_id.as_str().into(),
                state.version.as_str().into(),
                json(&state.capabilities).into(),
                now_ms.into(),
                state.config_version.as_str().into(),
                state.config_error.as_str().into(),
                retained.into(),
            ],
        )?;
        if let Some(depth) = state.spool_depth {
            let depth = i64::try_from(depth).unwrap_or(i64::MAX);
            self.db.execute(
                "UPDATE agents SET spool_state = ?, spool_state_ms = ? WHERE agent_id = ?",
                &[depth.into(), now_ms.into(), agent_id.into()],
            )?;
        }
        Ok(())
    }

    // ---- evaluation

    /// Windows not yet evaluated that ended `grace_ms` ago and have been quiet for `settle_ms`,
    /// oldest first.
    pub fn ready_windows(&mut self, now_ms: i64, grace_ms: i64, settle_ms: i64) -> Result<Vec<(i64, i64)>> {
        let rows = self.db.query(
            "SELECT window_start, window_end FROM windows WHERE evaluated = 0 AND window_end <= ? \
             AND last_arrival_ms <= ? ORDER BY window_start",
            &[(now_ms - grace_ms).into(), (now_ms - settle_ms).into()],
        )?;
        Ok(rows.iter().map(|r| (r.int(0), r.int(1))).collect())
    }

    /// Marks a window evaluated; false if another collector got there first. Call inside an
    /// exclusive transaction.
    pub fn claim_window(&mut self, window_start: i64) -> Result<bool> {
        let n = self.db.execute(
            "UPDATE windows SET evaluated = 1 WHERE window_start = ? AND evaluated = 0",
            &[window_start.into()],
        )?;
        Ok(n == 1)
    }

    /// Sets a window aside whose evaluation keeps failing: it is never evaluated (`evaluated`
    /// 2), and its reports stay for inspection until retention removes them.
    pub fn quarantine_window(&mut self, window_start: i64) -> Result<()> {
        self.db.execute(
            "UPDATE windows SET evaluated = 2 WHERE window_start = ? AND evaluated = 0",
            &[window_start.into()],
        )?;
        Ok(())
    }

    /// Every subscriber's part of every report of a window (one per agent that saw it).
    pub fn window_lines(&mut self, window_start: i64) -> Result<Vec<SubscriberReport>> {
        let rows =
            self.db.query("SELECT window_start, report FROM lines WHERE window_start = ?", &[window_start.into()])?;
        Ok(decode_lines(&rows)?.into_iter().map(|(_, line)| line).collect())
    }

    pub fn window_samples(&mut self, window_start: i64) -> Result<Vec<SampleRow>> {
        Ok(samples_of(window_start, &self.window_lines(window_start)?))
    }

    pub fn window_counters(&mut self, window_start: i64) -> Result<Vec<(String, String, CounterRow)>> {
        Ok(counters_of(&self.window_lines(window_start)?))
    }

    /// Per customer and metric: the baseline p90 in µs and how many windows built it.
    pub fn baselines(&mut self, customer_ids: &[String]) -> Result<HashMap<(String, String), (f64, i64)>> {
        let mut out = HashMap::new();
        for chunk in customer_ids.chunks(500) {
            let sql = format!(
                "SELECT customer_id, metric, p90_us, windows FROM baselines WHERE customer_id IN ({})",
                marks(chunk.len())
            );
            let params: Vec<Value> = chunk.iter().map(Value::from).collect();
            for r in self.db.query(&sql, &params)? {
                out.insert((r.text(0), r.text(1)), (r.real(2), r.int(3)));
            }
        }
        Ok(out)
    }

    pub fn save_baseline(&mut self, customer_id: &str, metric: &str, p90_us: f64, windows: i64) -> Result<()> {
        self.db.execute(
            "INSERT INTO baselines (customer_id, metric, p90_us, windows) VALUES (?, ?, ?, ?) \
             ON CONFLICT (customer_id, metric) DO UPDATE SET p90_us = excluded.p90_us, windows = excluded.windows",
            &[customer_id.into(), metric.into(), p90_us.into(), windows.into()],
        )?;
        Ok(())
    }

    // ---- incidents

    /// Pending and open incidents.
    pub fn active_incidents(&mut self) -> Result<Vec<Incident>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state <> 'resolved' ORDER BY id");
        Ok(self.db.query(&sql, &[])?.iter().map(incident).collect())
    }

    /// Incidents by state (`open`, `resolved`, `pending` or `all`), the newest first.
    pub fn incidents(&mut self, state: &str, limit: i64) -> Result<Vec<Incident>> {
        let rows = if state == "all" {
            let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id DESC LIMIT ?");
            self.db.query(&sql, &[limit.into()])?
        } else {
            let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state = ? ORDER BY id DESC LIMIT ?");
            self.db.query(&sql, &[state.into(), limit.into()])?
        };
        Ok(rows.iter().map(incident).collect())
    }

    pub fn incident(&mut self, id: i64) -> Result<Option<Incident>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?");
        Ok(self.db.query(&sql, &[id.into()])?.first().map(incident))
    }

    pub fn open_incident_count(&mut self) -> Result<i64> {
        Ok(self.db.query("SELECT COUNT(*) FROM incidents WHERE state = 'open'", &[])?.first().map_or(0, |r| r.int(0)))
    }

    /// Inserts (id 0) or updates an incident; sets the id of a new one.
    pub fn save_incident(&mut self, i: &mut Incident) -> Result<()> {
        let values: Vec<Value> = vec![
            i.kind.as_str().into(),
            Incident::scope_key(i.kind, &i.scope).into(),
            json(&i.scope).into(),
            i.state.as_str().into(),
            i.severity.as_str().into(),
            i.opened_at.into(),
            i.resolved_at.into(),
            i.first_window.into(),
            i.last_window.into(),
            i.bad_windows.into(),
            i.good_windows.into(),
            i.metric.as_str().into(),
            i.evidence.to_string().into(),
            i.probable_cause.as_str().into(),
            json(&i.customers).into(),
            i.affected_customers.into(),
            i.value_at_risk.into(),
        ];
        if i.id == 0 {
            let rows = self.db.query(
                "INSERT INTO incidents (kind, scope_key, scope, state, severity, opened_at, resolved_at, first_window, \
                 last_window, bad_windows, good_windows, metric, evidence, probable_cause, customers, \
                 affected_customers, value_at_risk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &values,
            )?;
            i.id = rows.first().map_or(0, |r| r.int(0));
        } else {
            let mut values = values;
            values.push(i.id.into());
            self.db.execute(
                "UPDATE incidents SET kind = ?, scope_key = ?, scope = ?, state = ?, severity = ?, opened_at = ?, \
                 resolved_at = ?, first_window = ?, last_window = ?, bad_windows = ?, good_windows = ?, metric = ?, \
                 evidence = ?, probable_cause = ?, customers = ?, affected_customers = ?, value_at_risk = ? WHERE id = ?",
                &values,
            )?;
        }
        Ok(())
    }

    pub fn delete_incident(&mut self, id: i64) -> Result<()> {
        self.db.execute("DELETE FROM actions WHERE incident_id = ?", &[id.into()])?;
        self.db.execute("DELETE FROM incidents WHERE id = ?", &[id.into()])?;
        Ok(())
    }

    /// Acknowledges an incident; returns it, or None if there is no such incident.
    pub fn ack_incident(&mut self, id: i64, by: &str, now_ms: i64) -> Result<Option<Incident>> {
        self.db.execute(
            "UPDATE incidents SET acked_at = COALESCE(acked_at, ?), acked_by = COALESCE(acked_by, ?) WHERE id = ?",
            &[now_ms.into(), by.into(), id.into()],
        )?;
        self.incident(id)
    }

    // ---- actions

    /// Stores an action unless the same one exists for the incident and customer.
    pub fn insert_action(&mut self, a: &Action) -> Result<bool> {
        let n = self.db.execute(
            "INSERT INTO actions (incident_id, customer_id, action, contact, reason, created_ms, rule) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, customer_id, action) WHERE incident_id > 0 DO NOTHING",
            &[
                a.incident_id.unwrap_or(0).into(),
                a.customer_id.as_str().into(),
                a.action.as_str().into(),
                a.contact.into(),
                a.reason.as_str().into(),
                a.created_ms.into(),
                a.rule.as_deref().unwrap_or("").into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// Whether a journey rule chose an action for this customer since `since_ms`.
    pub fn has_rule_action(&mut self, customer_id: &str, rule: &str, since_ms: i64) -> Result<bool> {
        let rows = self.db.query(
            "SELECT 1 FROM actions WHERE customer_id = ? AND rule = ? AND created_ms >= ?",
            &[customer_id.into(), rule.into(), since_ms.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Whether the customer already has a suggestion for this incident.
    pub fn has_action(&mut self, incident_id: i64, customer_id: &str) -> Result<bool> {
        let rows = self.db.query(
            "SELECT 1 FROM actions WHERE incident_id = ? AND customer_id = ? AND action <> 'hold_marketing'",
            &[incident_id.into(), customer_id.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Contacts suggested to this customer since `since_ms`.
    pub fn contacts_since(&mut self, customer_id: &str, since_ms: i64) -> Result<i64> {
        let rows = self.db.query(
            "SELECT COUNT(*) FROM actions WHERE customer_id = ? AND contact = 1 AND created_ms >= ?",
            &[customer_id.into(), since_ms.into()],
        )?;
        Ok(rows.first().map_or(0, |r| r.int(0)))
    }

    pub fn end_actions(&mut self, incident_id: i64, now_ms: i64) -> Result<()> {
        self.db.execute(
            "UPDATE actions SET ended_ms = ? WHERE incident_id = ? AND ended_ms IS NULL",
            &[now_ms.into(), incident_id.into()],
        )?;
        Ok(())
    }

    /// One incident's actions, oldest first.
    pub fn incident_actions(&mut self, incident_id: i64) -> Result<Vec<Action>> {
        let sql = format!("SELECT {ACTION_COLUMNS} FROM actions WHERE incident_id = ? ORDER BY id");
        Ok(self.db.query(&sql, &[incident_id.into()])?.iter().map(action).collect())
    }

    /// Actions, newest first; optionally one customer's, optionally only those still current.
    pub fn actions(&mut self, customer_id: Option<&str>, current_only: bool, limit: i64) -> Result<Vec<Action>> {
        let mut sql = format!("SELECT {ACTION_COLUMNS} FROM actions WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(c) = customer_id {
            sql.push_str(" AND customer_id = ?");
            params.push(c.into());
        }
        if current_only {
            sql.push_str(" AND ended_ms IS NULL");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(limit.into());
        Ok(self.db.query(&sql, &params)?.iter().map(action).collect())
    }

    // ---- pushed agent configuration

    /// The config pushed to agents: version, JSON body and when it was set.
    pub fn agent_config(&mut self) -> Result<Option<(String, String, i64)>> {
        let rows = self.db.query("SELECT version, body, updated_ms FROM agent_config WHERE id = 1", &[])?;
        Ok(rows.first().map(|r| (r.text(0), r.text(1), r.int(2))))
    }

    /// Sets the config pushed to agents; true if it differs from the one before.
    pub fn save_agent_config(&mut self, version: &str, body: &str, now_ms: i64) -> Result<bool> {
        if self.agent_config()?.is_some_and(|(v, b, _)| v == version && b == body) {
            return Ok(false);
        }
        self.db.execute(
            "INSERT INTO agent_config (id, version, body, updated_ms) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE \
             SET version = excluded.version, body = excluded.body, updated_ms = excluded.updated_ms",
            &[version.into(), body.into(), now_ms.into()],
        )?;
        Ok(true)
    }

    // ---- agents

    pub fn agents(&mut self) -> Result<Vec<Agent>> {
        self.agents_page("", None)
    }

    /// Agents whose id sorts after `after`, in id order, at most `limit` of them.
    pub fn agents_page(&mut self, after: &str, limit: Option<usize>) -> Result<Vec<Agent>> {
        let page = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        let rows = self.db.query(
            &format!(
                "SELECT agent_id, online, stopped, boot_id, version, capabilities, state_ms, last_report_ms, \
                 last_window_ms, reports, capture, health, config_version, config_error, spool_state, \
                 spool_state_ms FROM agents WHERE agent_id > ? ORDER BY agent_id{page}"
            ),
            &[after.into()],
        )?;
        let Some(last) = rows.last().map(|r| r.text(0)) else { return Ok(Vec::new()) };
        let nodes = self.db.query(
            &format!(
                "SELECT DISTINCT s.agent_id, c.access_node FROM agent_subscribers s \
                 JOIN customers c ON c.subscriber_id = s.subscriber_id WHERE {STILL_THE_AGENTS} \
                 AND s.agent_id > ? AND s.agent_id <= ? ORDER BY s.agent_id, c.access_node"
            ),
            &[after.into(), last.as_str().into()],
        )?;
        let mut by_agent: HashMap<String, Vec<String>> = HashMap::new();
        for r in nodes {
            by_agent.entry(r.text(0)).or_default().push(r.text(1));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let health: serde_json::Value = serde_json::from_str(&r.text(11)).unwrap_or_default();
                let reported = health["spool_depth"].as_i64().map(|d| (d - 1).max(0));
                let told = r.opt_int(14).zip(r.opt_int(15));
                let spool_waiting = match (told, r.opt_int(7)) {
                    (Some((depth, at)), last_report) if last_report.is_none_or(|l| at >= l) => Some(depth),
                    _ => reported,
                };
                Agent {
                    agent_id: r.text(0),
                    online: r.int(1) != 0,
                    stopped: r.int(2) != 0,
                    boot_id: r.text(3),
                    version: r.text(4),
                    capabilities: serde_json::from_str(&r.text(5)).unwrap_or_default(),
                    state_ms: r.int(6),
                    last_report_ms: r.opt_int(7),
                    last_window_ms: r.opt_int(8),
                    reports: r.int(9),
                    capture: serde_json::from_str(&r.text(10)).unwrap_or_default(),
                    health,
                    access_nodes: by_agent.remove(&r.text(0)).unwrap_or_default(),
                    config_version: r.text(12),
                    config_error: r.text(13),
                    spool_waiting,
                }
            })
            .collect())
    }

    /// Customers an agent has reported on, and no other agent since.
    pub fn agent_customers(&mut self, agent_id: &str) -> Result<Vec<Customer>> {
        let sql = format!(
            "SELECT {} FROM customers c JOIN agent_subscribers s ON s.subscriber_id = c.subscriber_id \
             WHERE s.agent_id = ? AND {STILL_THE_AGENTS} ORDER BY c.customer_id",
            CUSTOMER_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
        );
        Ok(self.db.query(&sql, &[agent_id.into()])?.iter().map(customer).collect())
    }

    // ---- queries

    /// A subscriber's lines of windows in `[since_ms, until_ms)`, oldest first.
    pub fn subscriber_lines(
        &mut self,
        subscriber_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, SubscriberReport)>> {
        let rows = self.db.query(
            "SELECT window_start, report FROM lines WHERE subscriber_id = ? AND window_start >= ? \
             AND window_start < ? ORDER BY window_start",
            &[subscriber_id.into(), since_ms.into(), until_ms.into()],
        )?;
        decode_lines(&rows)
    }

    /// The lines of several subscribers in `[since_ms, until_ms)`, oldest first.
    pub fn lines_of(
        &mut self,
        subscribers: &[String],
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, SubscriberReport)>> {
        let mut out = Vec::new();
        for chunk in subscribers.chunks(500) {
            let sql = format!(
                "SELECT window_start, report FROM lines WHERE window_start >= ? AND window_start < ? \
                 AND subscriber_id IN ({})",
                marks(chunk.len())
            );
            let mut params: Vec<Value> = vec![since_ms.into(), until_ms.into()];
            params.extend(chunk.iter().map(Value::from));
            out.extend(decode_lines(&self.db.query(&sql, &params)?)?);
        }
        out.sort_by_key(|(ws, _)| *ws);
        Ok(out)
    }

    /// Up to `limit` customers not in `exclude`, from `region` when given: a comparison group.
    pub fn other_customers(&mut self, exclude: &[String], region: Option<&str>, limit: i64) -> Result<Vec<Customer>> {
        let take = limit + exclude.len() as i64;
        let rows = match region {
            Some(r) => {
                let sql =
                    format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE region = ? ORDER BY customer_id LIMIT ?");
                self.db.query(&sql, &[r.into(), take.into()])?
            }
            None => {
                let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY customer_id LIMIT ?");
                self.db.query(&sql, &[take.into()])?
            }
        };
        let skip: HashSet<&str> = exclude.iter().map(String::as_str).collect();
        Ok(rows.iter().map(customer).filter(|c| !skip.contains(c.customer_id.as_str())).take(limit as usize).collect())
    }

    /// Failed and timed-out episodes of one journey of a subscriber in `[since_ms, until_ms)`.
    pub fn journey_failures(
        &mut self,
        subscriber_id: &str,
        journey: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<u64> {
        Ok(self
            .subscriber_lines(subscriber_id, since_ms, until_ms)?
            .iter()
            .flat_map(|(_, line)| line.journeys.iter().filter(|j| j.journey == journey))
            .map(|j| j.failed + j.timeout)
            .sum())
    }

    /// Stores one window's journey figures per group (see `JourneyStats`).
    pub fn save_journey_stats(&mut self, window_start: i64, stats: &[JourneyStats]) -> Result<()> {
        let mut rows: Vec<Value> = Vec::with_capacity(stats.len() * 13);
        for s in stats {
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let hdr = s.latency.as_ref().map(|h| edgeprobe_wire::WireHistogram::from_histogram(h).hdr);
            rows.extend([
                window_start.into(),
                s.dimension.as_str().into(),
                s.group.as_str().into(),
                s.journey.as_str().into(),
                s.phase.as_str().into(),
                s.channel.as_str().into(),
                int(s.customers).into(),
                int(s.ok).into(),
                int(s.failed).into(),
                int(s.timeout).into(),
                int(s.abandoned).into(),
                json(&s.failed_steps).into(),
                hdr.unwrap_or_default().into(),
            ]);
        }
        self.insert_rows(
            "INSERT INTO journey_stats (window_start, dimension, grp, journey, phase, channel, customers, ok, failed, \
             timeout, abandoned, failed_steps, hdr)",
            &row_shape(13),
            13,
            &rows,
            "",
        )
    }

    pub fn delete_journey_stats(&mut self, window_start: i64) -> Result<()> {
        self.db.execute("DELETE FROM journey_stats WHERE window_start = ?", &[window_start.into()])?;
        Ok(())
    }

    /// Journey figures per group of one dimension (`all`, `segment`, `region` or
    /// `access_node`) over windows in `[since_ms, until_ms)`, merged.
    pub fn journey_stats(&mut self, dimension: &str, since_ms: i64, until_ms: i64) -> Result<Vec<JourneyStats>> {
        let rows = self.db.query(
            "SELECT grp, journey, phase, channel, customers, ok, failed, timeout, abandoned, failed_steps, hdr \
             FROM journey_stats WHERE dimension = ? AND window_start >= ? AND window_start < ?",
            &[dimension.into(), since_ms.into(), until_ms.into()],
        )?;
        let mut merged: BTreeMap<(String, String), JourneyStats> = BTreeMap::new();
        for r in rows {
            let u = |i: usize| u64::try_from(r.int(i)).unwrap_or(0);
            let s = merged.entry((r.text(0), r.text(1))).or_insert_with(|| JourneyStats {
                dimension: dimension.to_string(),
                group: r.text(0),
                journey: r.text(1),
                phase: r.text(2),
                channel: r.text(3),
                ..JourneyStats::default()
            });
            // Customers differ from window to window; the busiest window is a lower bound.
            s.customers = s.customers.max(u(4));
            s.ok += u(5);
            s.failed += u(6);
            s.timeout += u(7);
            s.abandoned += u(8);
            let steps: BTreeMap<String, u64> = serde_json::from_str(&r.text(9)).unwrap_or_default();
            s.add_steps(&steps);
            s.add_latency(&r.bytes(10));
        }
        Ok(merged.into_values().collect())
    }

    /// A subscriber's whole-line histograms since `since_ms`, oldest window first.
    pub fn subscriber_samples(&mut self, subscriber_id: &str, since_ms: i64) -> Result<Vec<SampleRow>> {
        let rows = self.db.query(
            "SELECT window_start, report FROM lines WHERE subscriber_id = ? AND window_start >= ? \
             ORDER BY window_start",
            &[subscriber_id.into(), since_ms.into()],
        )?;
        let mut out = Vec::new();
        for (ws, line) in decode_lines(&rows)? {
            push_samples(&mut out, ws, &line.subscriber, "", &line.metrics);
        }
        Ok(out)
    }

    /// The latest window with data for the subscriber, per metric (whole line).
    pub fn latest_samples(&mut self, subscriber_id: &str) -> Result<BTreeMap<String, SampleRow>> {
        const PAGE: usize = 500;
        let mut out: BTreeMap<String, SampleRow> = BTreeMap::new();
        let mut before = i64::MAX;
        // Newest windows first, a page at a time, until every metric has its latest window.
        loop {
            let rows = self.db.query(
                &format!(
                    "SELECT window_start, report FROM lines WHERE subscriber_id = ? \
                     AND window_start < ? ORDER BY window_start DESC LIMIT {PAGE}"
                ),
                &[subscriber_id.into(), before.into()],
            )?;
            let full = rows.len() == PAGE;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else { break };
            let cut = last.int(0);
            if full && first.int(0) == cut {
                break; // a page of one window: one line per agent, so not a real database
            }
            let mut samples = Vec::new();
            for (ws, line) in decode_lines(&rows)? {
                push_samples(&mut samples, ws, &line.subscriber, "", &line.metrics);
            }
            for s in samples {
                // A full page may end inside a window; that window is read whole next time.
                if full && s.window_start == cut {
                    continue;
                }
                // The newest window wins; within it, with two agents, the larger sample.
                let newer = out.get(&s.metric).is_none_or(|o| o.window_start == s.window_start && o.count < s.count);
                if newer {
                    out.insert(s.metric.clone(), s);
                }
            }
            if !full || out.len() == METRICS.len() {
                break;
            }
            before = cut + 1;
        }
        Ok(out)
    }

    // ---- housekeeping

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
                "DELETE FROM incidents WHERE resolved_at < ?",
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

/// Rows of `(window_start, report)` from `lines`, decoded.
fn decode_lines(rows: &[Row]) -> Result<Vec<(i64, SubscriberReport)>> {
    let mut codec = Codec::default();
    rows.iter()
        .map(|r| {
            let line = codec
                .decode_line(&r.bytes(1))
                .map_err(|e| StoreError(format!("a stored subscriber report does not decode: {e}")))?;
            Ok((r.int(0), line))
        })
        .collect()
}

/// The histograms of a window's lines, whole line (service `""`) and per service.
pub fn samples_of(window_start: i64, lines: &[SubscriberReport]) -> Vec<SampleRow> {
    let mut out = Vec::new();
    for line in lines {
        push_samples(&mut out, window_start, &line.subscriber, "", &line.metrics);
        for svc in &line.services {
            push_samples(&mut out, window_start, &line.subscriber, &svc.service, &svc.metrics);
        }
    }
    out
}

/// The counters of a window's lines as (subscriber, service, counters).
pub fn counters_of(lines: &[SubscriberReport]) -> Vec<(String, String, CounterRow)> {
    let mut out = Vec::new();
    for line in lines {
        out.push((line.subscriber.clone(), String::new(), counter_row(&line.counters)));
        for svc in &line.services {
            out.push((line.subscriber.clone(), svc.service.clone(), counter_row(&svc.counters)));
        }
    }
    out
}

/// Appends a sample row for each non-empty histogram of `metrics`.
fn push_samples(out: &mut Vec<SampleRow>, ws: i64, subscriber: &str, service: &str, metrics: &Metrics) {
    for name in METRICS {
        let Some(h) = metrics.get(name).filter(|h| h.count > 0) else { continue };
        out.push(SampleRow::new(ws, subscriber, service, name, h));
    }
}

pub(crate) fn counter_row(c: &Counters) -> CounterRow {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    CounterRow {
        connects: int(c.connects),
        connect_failures: int(c.connect_refused + c.connect_timeout),
        dns_total: int(c.dns.values().sum()),
        dns_failures: int(dns_failures(c)),
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

/// Schema version 2: the version-1 `samples` and `counters` rows become `lines`, one window
/// at a time so memory stays bounded by a window's rows.
pub(crate) fn move_samples_to_lines(db: &mut dyn Backend) -> Result<()> {
    type Key = (String, String); // subscriber, agent
    let windows = db.query("SELECT DISTINCT window_start FROM counters ORDER BY window_start", &[])?;
    for w in windows {
        let ws = w.int(0);
        let mut parts: BTreeMap<Key, BTreeMap<String, (Metrics, Counters)>> = BTreeMap::new();
        for r in db.query(
            "SELECT subscriber_id, service, agent_id, connects, tls_ok, tls_failed, http_responses, bytes_up, \
             bytes_down, retrans_up, retrans_down, flows, detail FROM counters WHERE window_start = ?",
            &[ws.into()],
        )? {
            let u = |i: usize| u64::try_from(r.int(i)).unwrap_or(0);
            let detail: serde_json::Value = serde_json::from_str(&r.text(12)).unwrap_or_default();
            let d = |k: &str| detail[k].as_u64().unwrap_or(0);
            let c = Counters {
                connects: u(3),
                connect_refused: d("connect_refused"),
                connect_timeout: d("connect_timeout"),
                dns: serde_json::from_value(detail["dns"].clone()).unwrap_or_default(),
                tls_ok: u(4),
                tls_failed: u(5),
                http_responses: u(6),
                http_4xx: d("http_4xx"),
                http_5xx: d("http_5xx"),
                flows: u(11),
                bytes_up: u(7),
                bytes_down: u(8),
                retrans_up: u(9),
                retrans_down: u(10),
                dns_late: 0,
            };
            parts.entry((r.text(0), r.text(2))).or_default().insert(r.text(1), (Metrics::default(), c));
        }
        for r in db.query(
            "SELECT subscriber_id, service, agent_id, metric, count, min, max, p50, p90, p99, hdr FROM samples \
             WHERE window_start = ?",
            &[ws.into()],
        )? {
            let u = |i: usize| u64::try_from(r.int(i)).unwrap_or(0);
            let line = parts.entry((r.text(0), r.text(2))).or_default();
            let (metrics, _) = line.entry(r.text(1)).or_default();
            if let Some(slot) = metrics.slot(&r.text(3)) {
                *slot = Some(edgeprobe_wire::WireHistogram {
                    count: u(4),
                    min: u(5),
                    max: u(6),
                    p50: u(7),
                    p90: u(8),
                    p99: u(9),
                    hdr: r.bytes(10),
                });
            }
        }
        let mut rows: Vec<Value> = Vec::new();
        for ((subscriber, agent), mut services) in parts {
            let (metrics, counters) = services.remove("").unwrap_or_default();
            let services = services
                .into_iter()
                .map(|(service, (metrics, counters))| ServiceReport { service, metrics, counters })
                .collect();
            let line = SubscriberReport {
                subscriber: subscriber.clone(),
                metrics,
                counters,
                services,
                journeys: Vec::new(),
                resolvers: Vec::new(),
                dns_late: None,
            };
            rows.extend([ws.into(), subscriber.into(), agent.into(), edgeprobe_wire::to_cbor(&line).into()]);
        }
        insert_rows(
            db,
            "INSERT INTO lines (window_start, subscriber_id, agent_id, report)",
            &row_shape(4),
            4,
            &rows,
            "",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents page by id: each page follows the last, and together they are the whole list.
    #[test]
    fn agents_page_in_id_order() {
        let dir = crate::test_dir("agents-pages");
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
