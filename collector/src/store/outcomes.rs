//! What happened after the actions: outcomes the operator's systems report, and each action's
//! recovery as the collector measured it.

use super::{Result, Row, Store, Value, marks};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub id: i64,
    pub customer_id: String,
    /// `contact`, `ticket_closed`, `churn`, `downgrade` or `satisfaction`.
    pub kind: String,
    pub at_ms: i64,
    pub action_id: Option<i64>,
    pub reason: String,
    /// For a contact: `call`, `chat`, ...
    pub channel: String,
    /// For a satisfaction score: 0 to 10.
    pub score: Option<f64>,
    /// Who reported it (the token's or login's name), and their own id for it, if given.
    pub source: String,
    pub external_id: String,
}

const COLUMNS: &str = "id, customer_id, kind, at_ms, action_id, reason, channel, score, source, external_id";

fn outcome(r: &Row) -> Outcome {
    Outcome {
        id: r.int(0),
        customer_id: r.text(1),
        kind: r.text(2),
        at_ms: r.int(3),
        action_id: r.opt_int(4),
        reason: r.text(5),
        channel: r.text(6),
        score: r.opt_real(7),
        source: r.text(8),
        external_id: r.text(9),
    }
}

/// An action's recovery: the incident's metric over the windows before the action and after
/// it, against the customer's plan limit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActionResult {
    pub metric: String,
    /// p90 in µs for a latency, failures over attempts for a ratio; None without data.
    pub before_value: Option<f64>,
    pub after_value: Option<f64>,
    pub threshold: Option<f64>,
    /// None when the metric cannot be judged (no limit, or no data after).
    pub recovered: Option<bool>,
    /// From the start of the window that decided the action to the first window within the
    /// limit.
    pub recovery_ms: Option<i64>,
}

/// An action as effectiveness counts it: its arm, its customer's segment and its result.
#[derive(Clone, Debug)]
pub struct Measured {
    pub action_id: i64,
    pub customer_id: String,
    pub action: String,
    pub intended: String,
    pub window_ms: i64,
    pub incident_id: Option<i64>,
    pub segment: String,
    pub recovered: Option<bool>,
    pub recovery_ms: Option<i64>,
}

impl Store {
    /// Stores an outcome; false if the same source already reported its `external_id`.
    pub fn insert_outcome(&mut self, o: &Outcome, now_ms: i64) -> Result<bool> {
        let n = self.db.execute(
            "INSERT INTO outcomes (customer_id, kind, at_ms, action_id, reason, channel, score, source, external_id, \
             received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (source, external_id) WHERE external_id <> '' DO NOTHING",
            &[
                o.customer_id.as_str().into(),
                o.kind.as_str().into(),
                o.at_ms.into(),
                o.action_id.into(),
                o.reason.as_str().into(),
                o.channel.as_str().into(),
                o.score.into(),
                o.source.as_str().into(),
                o.external_id.as_str().into(),
                now_ms.into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// The customer an action was for, if the action exists.
    pub fn action_customer(&mut self, action_id: i64) -> Result<Option<String>> {
        let rows = self.db.query("SELECT customer_id FROM actions WHERE id = ?", &[action_id.into()])?;
        Ok(rows.first().map(|r| r.text(0)))
    }

    /// Outcomes, newest first, optionally one customer's.
    pub fn outcomes(&mut self, customer_id: Option<&str>, limit: i64) -> Result<Vec<Outcome>> {
        let (filter, mut params): (&str, Vec<Value>) = match customer_id {
            Some(c) => ("WHERE customer_id = ?", vec![c.into()]),
            None => ("", Vec::new()),
        };
        params.push(limit.into());
        let sql = format!("SELECT {COLUMNS} FROM outcomes {filter} ORDER BY at_ms DESC, id DESC LIMIT ?");
        Ok(self.db.query(&sql, &params)?.iter().map(outcome).collect())
    }

    /// The times of `kind` outcomes of these customers in `[since, until)`, by customer.
    pub fn outcome_times(
        &mut self,
        customers: &[String],
        kind: &str,
        since: i64,
        until: i64,
    ) -> Result<std::collections::HashMap<String, Vec<i64>>> {
        let mut out: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for chunk in customers.chunks(500) {
            let sql = format!(
                "SELECT customer_id, at_ms FROM outcomes WHERE kind = ? AND at_ms >= ? AND at_ms < ? \
                 AND customer_id IN ({})",
                marks(chunk.len())
            );
            let mut params: Vec<Value> = vec![kind.into(), since.into(), until.into()];
            params.extend(chunk.iter().map(Value::from));
            for r in self.db.query(&sql, &params)? {
                out.entry(r.text(0)).or_default().push(r.int(1));
            }
        }
        Ok(out)
    }

    /// Actions not yet measured whose window started at or before `due_before`: every arm of
    /// every measured kind (treated, hold-out, refused), not marketing holds. A partial index
    /// holds only these, so the writer's look each tick costs nothing when none is due.
    pub fn actions_to_measure(&mut self, due_before: i64, limit: i64) -> Result<Vec<crate::model::Action>> {
        let sql = format!(
            "SELECT {} FROM actions a WHERE a.unmeasured = 1 AND a.window_ms <= ? ORDER BY a.window_ms LIMIT ?",
            super::incidents::ACTION_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ")
        );
        Ok(self.db.query(&sql, &[due_before.into(), limit.into()])?.iter().map(super::incidents::action).collect())
    }

    pub fn save_action_result(&mut self, action_id: i64, r: &ActionResult, now_ms: i64) -> Result<()> {
        self.db.execute("UPDATE actions SET unmeasured = 0 WHERE id = ?", &[action_id.into()])?;
        self.db.execute(
            "INSERT INTO action_results (action_id, measured_ms, metric, before_value, after_value, threshold, \
             recovered, recovery_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (action_id) DO NOTHING",
            &[
                action_id.into(),
                now_ms.into(),
                r.metric.as_str().into(),
                r.before_value.into(),
                r.after_value.into(),
                r.threshold.into(),
                r.recovered.into(),
                r.recovery_ms.into(),
            ],
        )?;
        Ok(())
    }

    pub fn action_result(&mut self, action_id: i64) -> Result<Option<ActionResult>> {
        let rows = self.db.query(
            "SELECT metric, before_value, after_value, threshold, recovered, recovery_ms FROM action_results \
             WHERE action_id = ?",
            &[action_id.into()],
        )?;
        Ok(rows.first().map(|r| ActionResult {
            metric: r.text(0),
            before_value: r.opt_real(1),
            after_value: r.opt_real(2),
            threshold: r.opt_real(3),
            recovered: r.opt_int(4).map(|v| v != 0),
            recovery_ms: r.opt_int(5),
        }))
    }

    /// The latest evaluated window's start: the data's own clock.
    pub fn latest_evaluated_window(&mut self) -> Result<Option<i64>> {
        let rows = self.db.query("SELECT MAX(window_start) FROM windows WHERE evaluated = 1", &[])?;
        Ok(rows.first().and_then(|r| r.opt_int(0)))
    }

    /// Measured actions whose window started in `[since, until)`, with their customer's segment.
    pub fn measured_actions(&mut self, since: i64, until: i64) -> Result<Vec<Measured>> {
        let rows = self.db.query(
            "SELECT a.id, a.customer_id, a.action, a.intended, a.window_ms, a.incident_id, c.segment, r.recovered, \
             r.recovery_ms FROM actions a JOIN customers c ON c.customer_id = a.customer_id \
             LEFT JOIN action_results r ON r.action_id = a.id \
             WHERE a.window_ms >= ? AND a.window_ms < ? AND a.intended NOT IN ('', 'none', 'hold_marketing') \
             ORDER BY a.id",
            &[since.into(), until.into()],
        )?;
        Ok(rows
            .iter()
            .map(|r| Measured {
                action_id: r.int(0),
                customer_id: r.text(1),
                action: r.text(2),
                intended: r.text(3),
                window_ms: r.int(4),
                incident_id: Some(r.int(5)).filter(|id| *id > 0),
                segment: r.text(6),
                recovered: r.opt_int(7).map(|v| v != 0),
                recovery_ms: r.opt_int(8),
            })
            .collect())
    }

    /// Whether the incident came back: another with its scope opened within `within_ms` of its
    /// resolution. None while it is unresolved.
    pub fn incident_recurred(&mut self, incident_id: i64, within_ms: i64) -> Result<Option<bool>> {
        let rows = self.db.query(
            "SELECT i.resolved_at, EXISTS (SELECT 1 FROM incidents o WHERE o.scope_key = i.scope_key AND o.id <> i.id \
             AND o.opened_at > i.resolved_at AND o.opened_at <= i.resolved_at + ?) FROM incidents i WHERE i.id = ?",
            &[within_ms.into(), incident_id.into()],
        )?;
        Ok(rows.first().filter(|r| r.opt_int(0).is_some()).map(|r| r.int(1) != 0))
    }
}
