//! Reports and what is read back from them: each window's lines, samples and counters, the
//! baselines they feed, and one line's history.

use super::{Backend, Result, Row, Store, StoreError, Value, insert_rows, json, marks, row_shape, rows_sql};
use edgeprobe_wire::{Codec, Counters, METRICS, Metrics, Report, ServiceReport, SubscriberReport};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

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

pub(crate) fn dns_failures(c: &Counters) -> u64 {
    failed_rcodes(&c.dns)
}

/// DNS transactions that failed, of counts by rcode.
pub(crate) fn failed_rcodes(rcodes: &BTreeMap<String, u64>) -> u64 {
    ["SERVFAIL", "REFUSED", "TIMEOUT"].iter().map(|k| rcodes.get(*k).copied().unwrap_or(0)).sum()
}

/// Rows of `(window_start, report)` from `lines`, decoded.
pub(crate) fn decode_lines(rows: &[Row]) -> Result<Vec<(i64, SubscriberReport)>> {
    let mut codec = Codec::default();
    rows.iter()
        .map(|r| {
            let line = codec.decode_line(&r.bytes(1)).map_err(StoreError::Corrupt)?;
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
pub(crate) fn push_samples(out: &mut Vec<SampleRow>, ws: i64, subscriber: &str, service: &str, metrics: &Metrics) {
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
                // Rows of that schema predate these.
                ..Counters::default()
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

impl Store {
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
        let mut new_keys: HashSet<(String, String, i64, i64)> = HashSet::new();
        for chunk in batch.chunks(400) {
            let mut params = Vec::with_capacity(chunk.len() * 10);
            for (incoming, received) in chunk {
                let r = &incoming.report;
                params.extend([
                    r.agent_id.as_str().into(),
                    r.boot_id.as_str().into(),
                    r.seq.into(),
                    i64::from(r.part).into(),
                    i64::from(r.parts.max(1)).into(),
                    clamp(r.window_start).into(),
                    clamp(r.window_end).into(),
                    (*received).into(),
                    (incoming.lines.len() as i64).into(),
                    json(&r.capture).into(),
                ]);
            }
            let sql = rows_sql(
                "INSERT INTO reports (agent_id, boot_id, seq, part, parts, window_start, window_end, received_ms, \
                 subscribers, capture)",
                &row_shape(10),
                chunk.len(),
                "ON CONFLICT (agent_id, boot_id, seq, part) DO NOTHING RETURNING agent_id, boot_id, seq, part",
            );
            for row in self.db.query(&sql, &params)? {
                new_keys.insert((row.text(0), row.text(1), row.int(2), row.int(3)));
            }
        }
        let mut outcome = Vec::with_capacity(batch.len());
        let mut fresh: Vec<(&Report, i64)> = Vec::new();
        let mut fresh_lines: Vec<&[Line]> = Vec::new();
        for (incoming, received) in batch {
            let r = &incoming.report;
            // A key twice in one batch is new only the first time.
            let new = new_keys.remove(&(r.agent_id.clone(), r.boot_id.clone(), clamp(r.seq), i64::from(r.part)));
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

        // 3. Agents: a row each, with the batch's count and its latest report's health; the
        // capture health from the latest report that carries it (a first or only part).
        let mut agents: BTreeMap<&str, (i64, i64, i64, &Report, Option<&Report>)> = BTreeMap::new();
        for (r, received) in &fresh {
            let e = agents.entry(&r.agent_id).or_insert((0, 0, 0, r, None));
            let capture = if r.part == 0 { Some(*r) } else { e.4 };
            *e = (e.0 + 1, e.1.max(*received), e.2.max(clamp(r.window_start)), r, capture);
        }
        let mut rows: Vec<Value> = Vec::new();
        for (agent, (count, received, ws, last, capture)) in &agents {
            rows.extend([
                (*agent).into(),
                last.boot_id.as_str().into(),
                (*received).into(),
                (*received).into(),
                (*ws).into(),
                (*count).into(),
                capture.map(|c| json(&c.capture)).into(),
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
             capture = COALESCE(excluded.capture, agents.capture), health = COALESCE(excluded.health, agents.health)",
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

    /// Windows not yet evaluated that ended `grace_ms` ago and have been quiet for `settle_ms`,
    /// oldest first.
    pub fn ready_windows(
        &mut self,
        now_ms: i64,
        grace_ms: i64,
        settle_ms: i64,
        parts_wait_ms: i64,
    ) -> Result<Vec<(i64, i64)>> {
        // A window where an agent's report in parts lacks some waits for them, a while.
        let rows = self.db.query(
            "SELECT window_start, window_end FROM windows w WHERE evaluated = 0 AND window_end <= ? \
             AND last_arrival_ms <= ? AND (last_arrival_ms <= ? OR NOT EXISTS (SELECT 1 FROM reports r \
             WHERE r.window_start = w.window_start AND r.parts > 1 GROUP BY r.agent_id, r.boot_id, r.seq \
             HAVING COUNT(*) < MAX(r.parts))) ORDER BY window_start",
            &[(now_ms - grace_ms).into(), (now_ms - settle_ms).into(), (now_ms - settle_ms.max(parts_wait_ms)).into()],
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
}
