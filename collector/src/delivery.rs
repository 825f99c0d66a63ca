//! Webhooks: incidents and actions go to the operator's systems as they happen.
//!
//! Messages are queued in the store's outbox in the same transaction that opens, updates or
//! resolves the incident or stores the action, so a message exists exactly when what it
//! reports does, whichever collector decided it, and survives a restart. Each webhook has a
//! sender thread that posts its due messages in order; a failed attempt is retried with
//! exponential backoff (and the receiver's `Retry-After`), a refusal (4xx but 408 and 429) or a
//! message older than `give_up_hours` is marked failed with its reason. Delivery is at least
//! once: a message is posted again, under the same `Idempotency-Key` and with the same body,
//! until the receiver answers 2xx.
//!
//! Incidents go out in Alertmanager's webhook format (version 4), one alert per incident, so
//! receivers written for Alertmanager work unchanged; actions as this collector's action JSON.
//! With a `secret`, each request carries `X-Edgeprobe-Signature: sha256=HEX`, the HMAC-SHA256
//! of `TIMESTAMP.BODY` with `X-Edgeprobe-Timestamp` (Unix seconds), so a receiver can refuse
//! forgeries and replays.

use crate::config::{CollectorConfig, DeliveryConfig, WebhookConfig};
use crate::customers::Customer;
use crate::metrics::Metrics;
use crate::model::{Action, Incident};
use crate::store::deliveries::{Delivery, Outgoing};
use crate::store::{Result, Store};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// What an incident's change is to a receiver, from its state before the window and after.
/// `before` is (state, severity, affected customers) as stored, None for a new incident.
pub fn incident_event(before: Option<(&str, &str, i64)>, after: &Incident) -> Option<&'static str> {
    let was_open = before.is_some_and(|(state, _, _)| state == "open");
    match after.state.as_str() {
        "open" if !was_open => Some("incident_opened"),
        "open" => {
            let (_, severity, affected) = before?;
            (severity != after.severity || affected != after.affected_customers).then_some("incident_updated")
        }
        "resolved" if was_open => Some("incident_resolved"),
        _ => None,
    }
}

/// A key that is the same for every attempt of one message and differs between messages.
fn idempotency_key(webhook: &str, event: &str, subject: &str, version: &str) -> String {
    let digest = Sha256::new()
        .chain_update(webhook)
        .chain_update([0])
        .chain_update(event)
        .chain_update([0])
        .chain_update(subject)
        .chain_update([0])
        .chain_update(version)
        .finalize();
    format!("{digest:x}")[..32].to_string()
}

/// Queues `event` about `incident` for every webhook that wants it; returns the messages
/// dropped because the outbox was full.
pub fn enqueue_incident(
    store: &mut Store,
    config: &CollectorConfig,
    incident: &Incident,
    event: &str,
    now_ms: i64,
) -> Result<u64> {
    let subject = format!("incident:{}", incident.id);
    // An update is one message per change; opening and resolving happen once per incident.
    let version = match event {
        "incident_updated" => format!("{}/{}/{}", incident.last_window, incident.severity, incident.affected_customers),
        _ => incident.opened_at.unwrap_or(0).to_string(),
    };
    let mut room = Room::of(store, &config.delivery)?;
    for w in config.webhooks.iter().filter(|w| w.wants(event)) {
        let body = alertmanager(incident, &w.name, &config.delivery, now_ms).to_string();
        let key = idempotency_key(&w.name, event, &subject, &version);
        let m = Outgoing { webhook: &w.name, event, subject: subject.clone(), idempotency_key: key, body };
        room.queue(store, m, now_ms)?;
    }
    Ok(room.dropped)
}

/// Queues `action_proposed` for each new action, to every webhook that wants its type.
pub fn enqueue_actions(
    store: &mut Store,
    config: &CollectorConfig,
    actions: &[Action],
    incident: Option<&Incident>,
    now_ms: i64,
) -> Result<u64> {
    let sent = |a: &&Action| config.webhooks.iter().any(|w| w.wants_action(&a.action));
    let ids: Vec<String> = actions.iter().filter(sent).map(|a| a.customer_id.clone()).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let customers: std::collections::HashMap<String, Customer> =
        store.customers_by_id(&ids)?.into_iter().map(|c| (c.customer_id.clone(), c)).collect();
    let mut room = Room::of(store, &config.delivery)?;
    for a in actions.iter().filter(sent) {
        let wanted = config.webhooks.iter().filter(|w| w.wants_action(&a.action));
        let Some(customer) = customers.get(&a.customer_id) else { continue };
        let body = action_payload(a, customer, incident, &config.delivery).to_string();
        let subject = format!("action:{}", a.id);
        for w in wanted {
            let key = idempotency_key(&w.name, "action_proposed", &subject, &a.created_ms.to_string());
            let m = Outgoing {
                webhook: &w.name,
                event: "action_proposed",
                subject: subject.clone(),
                idempotency_key: key,
                body: body.clone(),
            };
            room.queue(store, m, now_ms)?;
        }
    }
    Ok(room.dropped)
}

/// The outbox's room, counted once for a batch of messages rather than for each.
struct Room {
    left: i64,
    max: u64,
    dropped: u64,
}

impl Room {
    fn of(store: &mut Store, config: &DeliveryConfig) -> Result<Room> {
        Ok(Room { left: config.max_pending as i64 - store.pending_deliveries()?, max: config.max_pending, dropped: 0 })
    }

    /// Queues a message, or keeps it as failed, with the reason, when the outbox is full.
    fn queue(&mut self, store: &mut Store, m: Outgoing<'_>, now_ms: i64) -> Result<()> {
        if self.left > 0 {
            self.left -= i64::from(store.enqueue_delivery(&m, now_ms, None)?);
            return Ok(());
        }
        let why = format!("not sent: the outbox held delivery.max_pending = {} messages", self.max);
        self.dropped += u64::from(store.enqueue_delivery(&m, now_ms, Some(&why))?);
        Ok(())
    }
}

/// `externalURL`: where receivers link back to.
fn external_url(config: &DeliveryConfig) -> &str {
    config.external_url.trim_end_matches('/')
}

/// An incident as Alertmanager's webhook payload (version 4), one alert.
pub fn alertmanager(incident: &Incident, receiver: &str, config: &DeliveryConfig, now_ms: i64) -> Value {
    let resolved = incident.state == "resolved";
    let status = if resolved { "resolved" } else { "firing" };
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(format!("edgeprobe_{}", incident.kind.as_str())));
    labels.insert("kind".into(), json!(incident.kind.as_str()));
    labels.insert("severity".into(), json!(incident.severity));
    labels.insert("metric".into(), json!(incident.metric));
    labels.insert("incident_id".into(), json!(incident.id.to_string()));
    for (k, v) in &incident.scope {
        labels.insert(k.clone(), json!(v));
    }
    let scope: Vec<String> = incident.scope.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let annotations = json!({
        "summary": format!("{} incident on {}: {} for {} customer(s)", incident.kind.as_str().replace('_', " "),
            scope.join(", "), incident.metric, incident.affected_customers),
        "description": incident.probable_cause,
        "affected_customers": incident.affected_customers.to_string(),
        "value_at_risk": format!("{:.2}", incident.value_at_risk),
        "customers": incident.customers.iter().take(100).cloned().collect::<Vec<_>>().join(","),
    });
    let base = external_url(config);
    let alert = json!({
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(incident.opened_at.unwrap_or(now_ms)),
        "endsAt": incident.resolved_at.filter(|_| resolved).map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
        "generatorURL": format!("{base}/incidents/{}", incident.id),
        "fingerprint": format!("{:x}", Sha256::digest(Incident::scope_key(incident.kind, &incident.scope)))[..16].to_string(),
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{incident_id=\"{}\"}}", incident.id),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"incident_id": incident.id.to_string()},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base,
        "alerts": [alert],
    })
}

/// An action as the documented action JSON.
pub fn action_payload(a: &Action, c: &Customer, incident: Option<&Incident>, config: &DeliveryConfig) -> Value {
    let base = external_url(config);
    json!({
        "version": "1",
        "event": "action_proposed",
        "action": a,
        "customer": {
            "customer_id": c.customer_id, "segment": c.segment, "plan": c.plan, "region": c.region,
            "access_node": c.access_node, "monthly_value": c.monthly_value,
        },
        "incident": incident.map(|i| json!({
            "id": i.id, "kind": i.kind, "scope": i.scope, "severity": i.severity, "metric": i.metric,
            "probable_cause": i.probable_cause, "opened_at": i.opened_at,
        })),
        "url": format!("{base}/customers/{}", c.customer_id),
    })
}

/// Unix ms as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = crate::clock::civil(days);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `sha256=HEX` of `TIMESTAMP.BODY` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("sha256={}", tag.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// One attempt's result.
#[derive(Debug, PartialEq)]
enum Attempt {
    Sent(u16),
    /// Worth trying again, after at least the receiver's `Retry-After` if it gave one.
    Transient {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the message itself: trying again would not help.
    Refused {
        status: u16,
        reason: String,
    },
}

/// Posts one message.
fn post(agent: &ureq::Agent, w: &WebhookConfig, d: &Delivery, now_ms: i64) -> Attempt {
    let timestamp = now_ms / 1000;
    let mut request = agent
        .post(&w.url)
        .set("Content-Type", "application/json")
        .set("User-Agent", concat!("edgeprobe-collector/", env!("CARGO_PKG_VERSION")))
        .set("Idempotency-Key", &d.idempotency_key)
        .set("X-Edgeprobe-Event", &d.event)
        .set("X-Edgeprobe-Delivery", &d.id.to_string())
        .set("X-Edgeprobe-Attempt", &(d.attempts + 1).to_string())
        .set("X-Edgeprobe-Timestamp", &timestamp.to_string());
    if let Some(secret) = &w.secret {
        request = request.set("X-Edgeprobe-Signature", &signature(secret, timestamp, &d.body));
    }
    for (name, value) in &w.headers {
        request = request.set(name, value);
    }
    match request.send_string(&d.body) {
        Ok(r) => Attempt::Sent(r.status()),
        Err(ureq::Error::Status(status, r)) => {
            let retry_after =
                r.header("Retry-After").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
            let text: String = r.into_string().unwrap_or_default().chars().take(200).collect();
            let reason = format!("HTTP {status}: {}", text.trim());
            if matches!(status, 408 | 425 | 429) || status >= 500 {
                Attempt::Transient { status: Some(status), reason, retry_after }
            } else {
                Attempt::Refused { status, reason }
            }
        }
        Err(e) => Attempt::Transient { status: None, reason: e.to_string(), retry_after: None },
    }
}

/// The wait before attempt `attempts + 1`: doubling from `retry_initial_ms`, capped, with a
/// quarter of jitter so receivers coming back are not hit by every sender at once.
fn backoff(config: &DeliveryConfig, attempts: i64, jitter: u64) -> i64 {
    let exp = config.retry_initial_ms.saturating_mul(1u64 << attempts.clamp(0, 30));
    let wait = exp.min(config.retry_max_ms);
    (wait - wait / 4 + jitter % (wait / 4 + 1)) as i64
}

/// How often a sender looks for due messages when it has nothing else to wait for.
const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 100;

/// Starts a sender thread per webhook. Dropping the returned sender stops them.
pub fn start(config: &CollectorConfig, metrics: Arc<Metrics>) -> std::sync::mpsc::Sender<()> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop = Arc::new(std::sync::Mutex::new(stop_rx));
    for w in &config.webhooks {
        let (w, config, metrics, stop) = (w.clone(), config.clone(), metrics.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("webhook {}", w.name))
            .spawn(move || Sender { webhook: w, config, metrics }.run(&stop));
        if let Err(e) = spawned {
            eprintln!("edgeprobe-collector: cannot start a webhook sender: {e}");
        }
    }
    stop_tx
}

struct Sender {
    webhook: WebhookConfig,
    config: CollectorConfig,
    metrics: Arc<Metrics>,
}

type Stop = std::sync::Mutex<std::sync::mpsc::Receiver<()>>;

/// Waits up to `wait`; true if the collector is stopping.
fn stopping(stop: &Stop, wait: Duration) -> bool {
    let Ok(rx) = stop.lock() else { return true };
    !matches!(rx.recv_timeout(wait), Err(std::sync::mpsc::RecvTimeoutError::Timeout))
}

impl Sender {
    fn run(self, stop: &Stop) {
        let agent =
            ureq::AgentBuilder::new().timeout(Duration::from_secs(self.webhook.timeout_secs)).redirects(0).build();
        let mut store: Option<Store> = None;
        let mut failing: Option<String> = None;
        loop {
            let result = match &mut store {
                Some(s) => self.round(s, &agent),
                None => Store::open(&self.config.storage.url).map(|s| {
                    store = Some(s);
                    Duration::ZERO
                }),
            };
            let wait = match result {
                Ok(wait) => {
                    failing = None;
                    wait
                }
                Err(e) => {
                    // The store is opened again; the error is said once while it lasts.
                    let text = e.to_string();
                    if failing.as_deref() != Some(&text) {
                        eprintln!("edgeprobe-collector: webhook {}: storage: {text}", self.webhook.name);
                        failing = Some(text);
                    }
                    store = None;
                    Duration::from_secs(2)
                }
            };
            if stopping(stop, wait) {
                return;
            }
        }
    }

    /// Sends what is due, in order; stops at the first message that must wait, so a receiver
    /// gets its messages in the order they were decided. Returns how long to wait.
    fn round(&self, store: &mut Store, agent: &ureq::Agent) -> Result<Duration> {
        let w = &self.webhook;
        let d = &self.config.delivery;
        let now = crate::clock::now_ms();
        let lease = now + (w.timeout_secs as i64 + 5) * 1000;
        for m in store.pending_in_order(&w.name, BATCH)? {
            // Not yet due, or another collector is sending it: the rest wait behind it.
            if m.next_attempt_ms > now || !store.claim_delivery(m.id, now, lease)? {
                break;
            }
            let sent_at = crate::clock::now_ms();
            let attempt = post(agent, w, &m, sent_at);
            let done = crate::clock::now_ms();
            let given_up = |reason: &str| {
                format!("gave up after {} attempts in {} h; last: {reason}", m.attempts + 1, d.give_up_hours)
            };
            match attempt {
                Attempt::Sent(status) => {
                    store.delivery_attempted(m.id, done, Some(status), "", None)?;
                    self.metrics.delivery(&w.name, "sent");
                }
                Attempt::Refused { status, reason } => {
                    store.delivery_attempted(m.id, done, Some(status), &reason, None)?;
                    self.metrics.delivery(&w.name, "failed");
                }
                Attempt::Transient { status, reason, .. }
                    if done - m.created_ms >= d.give_up_hours as i64 * 3_600_000 =>
                {
                    store.delivery_attempted(m.id, done, status, &given_up(&reason), None)?;
                    self.metrics.delivery(&w.name, "failed");
                }
                Attempt::Transient { status, reason, retry_after } => {
                    let jitter = (done as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
                    let mut wait = backoff(d, m.attempts, jitter);
                    if let Some(after) = retry_after {
                        wait = wait.max((after.as_millis() as i64).min(d.retry_max_ms as i64));
                    }
                    store.delivery_attempted(m.id, done, status, &reason, Some(done + wait))?;
                    self.metrics.delivery(&w.name, "retry");
                    break;
                }
            }
        }
        let pending = store.deliveries_pending_for(&w.name)?;
        if let Ok(mut p) = self.metrics.deliveries_pending.lock() {
            p.insert(w.name.clone(), pending);
        }
        let now = crate::clock::now_ms();
        Ok(match store.next_delivery_due(&w.name)? {
            Some(due) => Duration::from_millis((due - now).clamp(0, POLL.as_millis() as i64) as u64),
            None => POLL,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IncidentKind;
    use std::collections::BTreeMap;

    fn incident(state: &str, severity: &str, affected: i64) -> Incident {
        let scope = BTreeMap::from([("access_node".to_string(), "OLT-7".to_string())]);
        let mut i = Incident::new(IncidentKind::AccessNode, scope, 0);
        (i.id, i.state, i.severity, i.affected_customers) = (12, state.into(), severity.into(), affected);
        i
    }

    #[test]
    fn each_change_of_an_incident_is_one_event() {
        let open = incident("open", "major", 3);
        assert_eq!(incident_event(None, &open), Some("incident_opened"));
        assert_eq!(incident_event(Some(("pending", "minor", 1)), &open), Some("incident_opened"));
        assert_eq!(incident_event(Some(("open", "major", 3)), &open), None, "nothing changed");
        assert_eq!(incident_event(Some(("open", "major", 2)), &open), Some("incident_updated"));
        assert_eq!(incident_event(Some(("open", "minor", 3)), &open), Some("incident_updated"));
        let resolved = incident("resolved", "major", 3);
        assert_eq!(incident_event(Some(("open", "major", 3)), &resolved), Some("incident_resolved"));
        assert_eq!(incident_event(Some(("pending", "minor", 1)), &resolved), None, "never opened");
        assert_eq!(incident_event(None, &incident("pending", "minor", 1)), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // From Python: hmac.new(key, b'1796601600.{"x":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature("a-secret-of-16-bytes", 1_796_601_600, r#"{"x":1}"#),
            "sha256=5ff4310b82b375b9201a4d9aa5e9afab6fe310c261c87040348d5b6e58c861bf"
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let c = DeliveryConfig { retry_initial_ms: 1000, retry_max_ms: 60_000, ..DeliveryConfig::default() };
        for (attempts, full) in [(0, 1000), (1, 2000), (2, 4000), (5, 32_000), (6, 60_000), (40, 60_000)] {
            for jitter in [0, 7, 1 << 40] {
                let wait = backoff(&c, attempts, jitter);
                assert!(wait >= full - full / 4 && wait <= full, "attempt {attempts}: {wait} for {full}");
            }
        }
    }

    #[test]
    fn an_incident_is_an_alertmanager_alert() {
        let config = DeliveryConfig { external_url: "https://noc.example/".into(), ..DeliveryConfig::default() };
        let mut i = incident("open", "major", 3);
        i.opened_at = Some(951_782_400_000);
        let v = alertmanager(&i, "pager", &config, 0);
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "pager");
        assert_eq!(v["externalURL"], "https://noc.example");
        let alert = &v["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "edgeprobe_access_node");
        assert_eq!(alert["labels"]["access_node"], "OLT-7");
        assert_eq!(alert["labels"]["severity"], "major");
        assert_eq!(alert["startsAt"], "2000-02-29T00:00:00.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alert["generatorURL"], "https://noc.example/incidents/12");
        (i.state, i.resolved_at) = ("resolved".into(), Some(951_782_460_000));
        let v = alertmanager(&i, "pager", &config, 0);
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "2000-02-29T00:01:00.000Z");
        assert_eq!(v["alerts"][0]["fingerprint"], alert["fingerprint"], "one alert, one fingerprint");
    }

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_601_599_999), "2026-12-06T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_outbox_is_bounded_and_a_message_is_queued_once() {
        let dir = crate::testing::test_dir("outbox");
        let mut store = Store::open(dir.to_str().unwrap()).unwrap();
        let mut config = CollectorConfig::default();
        config.delivery.max_pending = 2;
        config.webhooks = vec![WebhookConfig {
            name: "pager".into(),
            url: "http://127.0.0.1:9/".into(),
            events: vec!["incident_opened".into()],
            actions: vec![],
            secret: None,
            headers: Default::default(),
            timeout_secs: 1,
        }];
        let mut dropped = 0;
        for id in 1..=3 {
            let mut i = incident("open", "major", 3);
            (i.id, i.opened_at) = (id, Some(1000));
            dropped += enqueue_incident(&mut store, &config, &i, "incident_opened", 5).unwrap();
            // Deciding it again (a second collector, a re-evaluation) queues nothing more.
            dropped += enqueue_incident(&mut store, &config, &i, "incident_opened", 6).unwrap();
        }
        assert_eq!(dropped, 1);
        assert_eq!(store.pending_deliveries().unwrap(), 2);
        let failed = store
            .deliveries(&crate::store::deliveries::DeliveryFilter { state: Some("failed"), ..Default::default() }, 10)
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].subject, "incident:3");
        assert!(failed[0].reason.contains("max_pending = 2"), "{}", failed[0].reason);
        // Sent, the room is back; a failed one may be queued again.
        let due = store.pending_in_order("pager", 10).unwrap();
        assert!(store.claim_delivery(due[0].id, 10, 100).unwrap());
        assert!(!store.claim_delivery(due[0].id, 10, 100).unwrap(), "claimed once");
        store.delivery_attempted(due[0].id, 11, Some(204), "", None).unwrap();
        assert!(store.retry_delivery(failed[0].id, 12).unwrap());
        assert_eq!(store.pending_deliveries().unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
