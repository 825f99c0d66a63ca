//! The collector's own counters, served on `/metrics` in the Prometheus text format. Plain
//! atomics: ingest, the writer and the HTTP handlers update them without locks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Why a message on a report topic was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Neither JSON nor CBOR by its first byte, or empty.
    Garbage,
    /// CBOR or JSON that does not parse as a report (truncated, wrong fields).
    Malformed,
    Version,
    Oversized,
    /// The report's `agent_id` differs from the topic's, which the broker's ACL vouches for.
    AgentMismatch,
    /// A topic under `edgeprobe/v1/agents/` that is neither `report` nor `state`, or a state
    /// message that does not parse.
    Topic,
    /// A histogram that is not one of the schema's, or holds more samples than a window can.
    Histogram,
    /// A count no window can hold.
    Count,
    /// A window no agent reports: empty, unaligned, of a span that does not divide a day, too
    /// far in the future or older than retention.
    Window,
}

const REJECTS: [(Reject, &str); 9] = [
    (Reject::Garbage, "garbage"),
    (Reject::Malformed, "malformed"),
    (Reject::Version, "version"),
    (Reject::Oversized, "oversized"),
    (Reject::AgentMismatch, "agent_mismatch"),
    (Reject::Topic, "topic"),
    (Reject::Histogram, "histogram"),
    (Reject::Count, "count"),
    (Reject::Window, "window"),
];

#[derive(Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub late_after_evaluation: AtomicU64,
    /// Reports whose window had ended an hour or more before they arrived (spooled, replayed).
    pub backfill: AtomicU64,
    rejects: [AtomicU64; REJECTS.len()],
    pub states: AtomicU64,
    pub storage_errors: AtomicU64,
    pub windows_evaluated: AtomicU64,
    /// Evaluations of a window that failed (each try).
    pub evaluation_failures: AtomicU64,
    /// Windows set aside after failing every try.
    pub windows_quarantined: AtomicU64,
    pub unknown_subscribers: AtomicU64,
    pub incidents_opened: AtomicU64,
    pub incidents_resolved: AtomicU64,
    pub open_incidents: AtomicI64,
    /// Seconds between a stored report's window end and its arrival, for the last batch.
    pub ingest_lag_ms: AtomicI64,
    pub queue_depth: AtomicI64,
    /// Bytes of the messages in that queue.
    pub queue_bytes: AtomicI64,
    /// Times ingest stopped reading from the broker until the writer made room.
    pub queue_full: AtomicU64,
    pub mqtt_connected: AtomicI64,
    pub mqtt_reconnects: AtomicU64,
    /// Times the embedded broker exited (or was stopped over its memory bound) and restarted.
    pub broker_restarts: AtomicU64,
    /// Embedded broker clients turned away, by `broker::gate::Denied` (login, publish, subscribe).
    pub broker_denied: [AtomicU64; 3],
    /// HTTP requests refused for want of valid credentials.
    pub auth_failures: AtomicU64,
    /// Requests refused because their address or user name failed to log in too often.
    pub logins_throttled: AtomicU64,
    /// Connections closed at once because their address had too many open.
    pub http_connections_refused: AtomicU64,
    /// Webhook attempts by webhook and outcome, and each webhook's pending messages.
    pub deliveries: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    pub deliveries_pending: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
    /// Webhook messages not queued because the outbox held `max_pending` (stored as failed).
    pub deliveries_dropped: AtomicU64,
}

/// What became of one attempt to deliver a webhook message.
pub const DELIVERY_OUTCOMES: [&str; 3] = ["sent", "retry", "failed"];

impl Metrics {
    pub fn reject(&self, why: Reject) {
        let i = REJECTS.iter().position(|(r, _)| *r == why).expect("every reason is listed");
        self.rejects[i].fetch_add(1, Relaxed);
    }

    /// Counts an attempt's outcome, one of [`DELIVERY_OUTCOMES`].
    pub fn delivery(&self, webhook: &str, outcome: &'static str) {
        if let Ok(mut d) = self.deliveries.lock() {
            *d.entry((webhook.to_string(), outcome)).or_default() += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ =
                writeln!(out, "# HELP edgeprobe_collector_{name} {help}\n# TYPE edgeprobe_collector_{name} counter");
            let _ = writeln!(out, "edgeprobe_collector_{name} {v}");
        };
        counter("reports_received_total", "Messages received on report topics.", self.received.load(Relaxed));
        counter("reports_stored_total", "Reports stored.", self.stored.load(Relaxed));
        counter(
            "reports_duplicate_total",
            "Reports dropped as already stored (agent_id, boot_id, seq).",
            self.duplicates.load(Relaxed),
        );
        counter(
            "reports_late_total",
            "Reports stored after their window was evaluated.",
            self.late_after_evaluation.load(Relaxed),
        );
        counter(
            "reports_backfill_total",
            "Reports whose window had ended an hour or more before they arrived (spooled or replayed); not in ingest_lag_seconds.",
            self.backfill.load(Relaxed),
        );
        counter("states_received_total", "Agent birth and last-will messages.", self.states.load(Relaxed));
        counter("storage_errors_total", "Failed storage transactions (retried).", self.storage_errors.load(Relaxed));
        counter(
            "windows_evaluated_total",
            "Windows evaluated by this collector.",
            self.windows_evaluated.load(Relaxed),
        );
        counter(
            "evaluation_failures_total",
            "Evaluations of a window that failed (retried, then quarantined).",
            self.evaluation_failures.load(Relaxed),
        );
        counter(
            "windows_quarantined_total",
            "Windows set aside unevaluated after every try failed.",
            self.windows_quarantined.load(Relaxed),
        );
        counter(
            "unknown_subscribers_total",
            "Subscriber windows without a customer record.",
            self.unknown_subscribers.load(Relaxed),
        );
        counter("incidents_opened_total", "Incidents opened by this collector.", self.incidents_opened.load(Relaxed));
        counter(
            "incidents_resolved_total",
            "Incidents resolved by this collector.",
            self.incidents_resolved.load(Relaxed),
        );
        counter(
            "deliveries_dropped_total",
            "Webhook messages not queued because the outbox held delivery.max_pending (kept as failed).",
            self.deliveries_dropped.load(Relaxed),
        );
        counter("mqtt_reconnects_total", "Broker connection losses.", self.mqtt_reconnects.load(Relaxed));
        counter(
            "embedded_broker_restarts_total",
            "Times the embedded broker exited, or passed embedded_max_memory_mb, and was restarted.",
            self.broker_restarts.load(Relaxed),
        );
        counter(
            "queue_full_total",
            "Times ingest paused reading from the broker until the writer made room.",
            self.queue_full.load(Relaxed),
        );
        counter(
            "http_auth_failures_total",
            "HTTP requests refused for want of valid credentials.",
            self.auth_failures.load(Relaxed),
        );
        counter(
            "http_logins_throttled_total",
            "HTTP requests refused (429) while their address or user name waits after failed logins.",
            self.logins_throttled.load(Relaxed),
        );
        counter(
            "http_connections_refused_total",
            "HTTP connections closed at once because their address had max_connections_per_address open.",
            self.http_connections_refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP edgeprobe_collector_reports_rejected_total Messages refused, by reason.\n\
             # TYPE edgeprobe_collector_reports_rejected_total counter"
        );
        for (i, (_, name)) in REJECTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "edgeprobe_collector_reports_rejected_total{{reason=\"{name}\"}} {}",
                self.rejects[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP edgeprobe_collector_embedded_broker_denied_total Embedded broker clients disconnected for a \
             wrong login or a publish or subscribe outside their rights.\n\
             # TYPE edgeprobe_collector_embedded_broker_denied_total counter"
        );
        for (why, n) in Denied::ALL.iter().zip(&self.broker_denied) {
            let _ = writeln!(
                out,
                "edgeprobe_collector_embedded_broker_denied_total{{reason=\"{}\"}} {}",
                why.as_str(),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP edgeprobe_collector_deliveries_total Webhook messages by outcome: sent, retry (an attempt \
             failed and will be retried), failed (given up or refused for good).\n\
             # TYPE edgeprobe_collector_deliveries_total counter\n\
             # HELP edgeprobe_collector_deliveries_pending Webhook messages waiting in the outbox.\n\
             # TYPE edgeprobe_collector_deliveries_pending gauge"
        );
        if let Ok(d) = self.deliveries.lock() {
            let webhooks: std::collections::BTreeSet<&String> = d.keys().map(|(w, _)| w).collect();
            for w in webhooks {
                for outcome in DELIVERY_OUTCOMES {
                    let n = d.get(&(w.clone(), outcome)).copied().unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "edgeprobe_collector_deliveries_total{{webhook=\"{w}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        }
        if let Ok(p) = self.deliveries_pending.lock() {
            for (w, n) in p.iter() {
                let _ = writeln!(out, "edgeprobe_collector_deliveries_pending{{webhook=\"{w}\"}} {n}");
            }
        }
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP edgeprobe_collector_{name} {help}\n# TYPE edgeprobe_collector_{name} gauge");
            let _ = writeln!(out, "edgeprobe_collector_{name} {v}");
        };
        gauge("open_incidents", "Incidents open now.", self.open_incidents.load(Relaxed) as f64);
        gauge(
            "ingest_lag_seconds",
            "Arrival time minus window end: the most in the last stored batch, over reports whose window ended less than an hour before they arrived.",
            self.ingest_lag_ms.load(Relaxed) as f64 / 1000.0,
        );
        gauge("queue_depth", "Reports received and waiting to be stored.", self.queue_depth.load(Relaxed) as f64);
        gauge("queue_bytes", "Bytes of the messages waiting to be stored.", self.queue_bytes.load(Relaxed) as f64);
        gauge(
            "mqtt_connected",
            "1 while connected to the broker and subscribed.",
            self.mqtt_connected.load(Relaxed) as f64,
        );
        out
    }
}

/// Why the embedded broker turned a client away; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Login,
    Publish,
    Subscribe,
}

impl Denied {
    pub const ALL: [Denied; 3] = [Denied::Login, Denied::Publish, Denied::Subscribe];

    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Login => "login",
            Denied::Publish => "publish",
            Denied::Subscribe => "subscribe",
        }
    }
}
