//! The webhook outbox: one row per message and receiver, written in the transaction that
//! decided the message, sent by the delivery worker. A message keeps its row, and so its
//! idempotency key and body, through every retry.

use super::{Result, Row, Store, Value};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook: String,
    /// `incident_opened`, `incident_updated`, `incident_resolved` or `action_proposed`.
    pub event: String,
    /// `incident:ID` or `action:ID`.
    pub subject: String,
    pub idempotency_key: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub last_attempt_ms: Option<i64>,
    pub sent_ms: Option<i64>,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, or why the message was given up.
    pub reason: String,
    #[serde(skip)]
    pub body: String,
}

const COLUMNS: &str = "id, webhook, event, subject, idempotency_key, state, attempts, created_ms, next_attempt_ms, \
                       last_attempt_ms, sent_ms, last_status, reason, body";

fn delivery(r: &Row) -> Delivery {
    Delivery {
        id: r.int(0),
        webhook: r.text(1),
        event: r.text(2),
        subject: r.text(3),
        idempotency_key: r.text(4),
        state: r.text(5),
        attempts: r.int(6),
        created_ms: r.int(7),
        next_attempt_ms: r.int(8),
        last_attempt_ms: r.opt_int(9),
        sent_ms: r.opt_int(10),
        last_status: r.opt_int(11),
        reason: r.text(12),
        body: r.text(13),
    }
}

/// A message to queue.
pub struct Outgoing<'a> {
    pub webhook: &'a str,
    pub event: &'a str,
    pub subject: String,
    pub idempotency_key: String,
    pub body: String,
}

/// Which deliveries to list.
#[derive(Default)]
pub struct DeliveryFilter<'a> {
    pub state: Option<&'a str>,
    pub webhook: Option<&'a str>,
    pub subject: Option<&'a str>,
}

impl Store {
    pub fn pending_deliveries(&mut self) -> Result<i64> {
        let rows = self.db.query("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'", &[])?;
        Ok(rows.first().map_or(0, |r| r.int(0)))
    }

    pub fn deliveries_pending_for(&mut self, webhook: &str) -> Result<i64> {
        let rows = self
            .db
            .query("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND webhook = ?", &[webhook.into()])?;
        Ok(rows.first().map_or(0, |r| r.int(0)))
    }

    /// Queues a message unless one with its key is queued already; returns whether it is new.
    /// With `refused`, it is kept as failed for that reason instead.
    pub fn enqueue_delivery(&mut self, m: &Outgoing<'_>, now_ms: i64, refused: Option<&str>) -> Result<bool> {
        let n = self.db.execute(
            "INSERT INTO deliveries (webhook, event, subject, idempotency_key, body, state, attempts, created_ms, \
             next_attempt_ms, claimed_until, reason) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?) \
             ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                m.webhook.into(),
                m.event.into(),
                m.subject.as_str().into(),
                m.idempotency_key.as_str().into(),
                m.body.as_str().into(),
                if refused.is_some() { "failed" } else { "pending" }.into(),
                now_ms.into(),
                now_ms.into(),
                refused.unwrap_or("").into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// A webhook's first pending messages, oldest first, due or not: the sender stops at the
    /// first that is not due, so a receiver gets its messages in order.
    pub fn pending_in_order(&mut self, webhook: &str, limit: i64) -> Result<Vec<Delivery>> {
        let sql =
            format!("SELECT {COLUMNS} FROM deliveries WHERE state = 'pending' AND webhook = ? ORDER BY id LIMIT ?");
        Ok(self.db.query(&sql, &[webhook.into(), limit.into()])?.iter().map(delivery).collect())
    }

    /// The earliest time a pending message of `webhook` falls due, if any is pending.
    pub fn next_delivery_due(&mut self, webhook: &str) -> Result<Option<i64>> {
        let rows = self.db.query(
            "SELECT MIN(CASE WHEN next_attempt_ms > claimed_until THEN next_attempt_ms ELSE claimed_until END) \
             FROM deliveries WHERE state = 'pending' AND webhook = ?",
            &[webhook.into()],
        )?;
        Ok(rows.first().and_then(|r| r.opt_int(0)))
    }

    /// Takes a message for sending until `until_ms`, so another collector sharing the store
    /// leaves it alone meanwhile; false if another took it first.
    pub fn claim_delivery(&mut self, id: i64, now_ms: i64, until_ms: i64) -> Result<bool> {
        let n = self.db.execute(
            "UPDATE deliveries SET claimed_until = ? WHERE id = ? AND state = 'pending' AND claimed_until <= ?",
            &[until_ms.into(), id.into(), now_ms.into()],
        )?;
        Ok(n == 1)
    }

    /// Records an attempt: `next` is when to try again (None: the message is done, `sent`
    /// with a 2xx status, else `failed` for good).
    pub fn delivery_attempted(
        &mut self,
        id: i64,
        now_ms: i64,
        status: Option<u16>,
        reason: &str,
        next: Option<i64>,
    ) -> Result<()> {
        let sent = next.is_none() && status.is_some_and(|s| (200..300).contains(&s));
        let state = match (next, sent) {
            (Some(_), _) => "pending",
            (None, true) => "sent",
            (None, false) => "failed",
        };
        self.db.execute(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_attempt_ms = ?, last_status = ?, \
             reason = ?, next_attempt_ms = ?, sent_ms = ?, claimed_until = 0 WHERE id = ?",
            &[
                state.into(),
                now_ms.into(),
                status.map(i64::from).into(),
                reason.into(),
                next.unwrap_or(now_ms).into(),
                sent.then_some(now_ms).into(),
                id.into(),
            ],
        )?;
        Ok(())
    }

    /// Puts a failed message back in the queue, due now; false if there is no failed message
    /// with that id.
    pub fn retry_delivery(&mut self, id: i64, now_ms: i64) -> Result<bool> {
        let n = self.db.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_ms = ?, claimed_until = 0, created_ms = ? \
             WHERE id = ? AND state = 'failed'",
            &[now_ms.into(), now_ms.into(), id.into()],
        )?;
        Ok(n == 1)
    }

    pub fn delivery(&mut self, id: i64) -> Result<Option<Delivery>> {
        let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?");
        Ok(self.db.query(&sql, &[id.into()])?.first().map(delivery))
    }

    /// Deliveries, newest first.
    pub fn deliveries(&mut self, filter: &DeliveryFilter<'_>, limit: i64) -> Result<Vec<Delivery>> {
        let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE 1 = 1");
        let mut params: Vec<Value> = Vec::new();
        for (column, value) in [("state", filter.state), ("webhook", filter.webhook), ("subject", filter.subject)] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                params.push(v.into());
            }
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(limit.into());
        Ok(self.db.query(&sql, &params)?.iter().map(delivery).collect())
    }

    /// Messages by state.
    pub fn delivery_counts(&mut self) -> Result<Vec<(String, i64)>> {
        let rows = self.db.query("SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state", &[])?;
        Ok(rows.iter().map(|r| (r.text(0), r.int(1))).collect())
    }
}
