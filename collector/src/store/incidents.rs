//! Incidents and the actions proposed for them.

use super::{Result, Row, Store, Value, json};
use crate::model::{Action, Incident, IncidentKind};

pub(crate) const INCIDENT_COLUMNS: &str = "id, kind, scope, state, severity, opened_at, resolved_at, first_window, last_window, \
    bad_windows, good_windows, metric, evidence, probable_cause, customers, affected_customers, value_at_risk, \
    acked_at, acked_by";

pub(crate) fn incident(r: &Row) -> Incident {
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

pub(crate) const ACTION_COLUMNS: &str =
    "id, incident_id, customer_id, action, contact, reason, created_ms, ended_ms, rule, channels, intended, window_ms";

pub(crate) fn action(r: &Row) -> Action {
    Action {
        id: r.int(0),
        incident_id: Some(r.int(1)).filter(|id| *id > 0),
        rule: Some(r.text(8)).filter(|r| !r.is_empty()),
        customer_id: r.text(2),
        action: r.text(3),
        intended: r.text(10),
        window_ms: r.int(11),
        contact: r.int(4) != 0,
        channels: r.text(9).split(';').filter(|c| !c.is_empty()).map(str::to_string).collect(),
        reason: r.text(5),
        created_ms: r.int(6),
        ended_ms: r.opt_int(7),
    }
}

impl Store {
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

    /// Stores an action unless the same one exists for the incident and customer; returns its
    /// id if it is new.
    pub fn insert_action(&mut self, a: &Action) -> Result<Option<i64>> {
        let rows = self.db.query(
            "INSERT INTO actions (incident_id, customer_id, action, contact, reason, created_ms, rule, channels, \
             intended, window_ms, unmeasured) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, customer_id, action) WHERE incident_id > 0 \
             DO NOTHING RETURNING id",
            &[
                a.incident_id.unwrap_or(0).into(),
                a.customer_id.as_str().into(),
                a.action.as_str().into(),
                a.contact.into(),
                a.reason.as_str().into(),
                a.created_ms.into(),
                a.rule.as_deref().unwrap_or("").into(),
                a.channels.join(";").into(),
                a.intended.as_str().into(),
                a.window_ms.into(),
                // Only what effectiveness compares waits to be measured.
                (!matches!(a.intended.as_str(), "" | "none" | "hold_marketing") && a.window_ms > 0).into(),
            ],
        )?;
        Ok(rows.first().map(|r| r.int(0)))
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
}
