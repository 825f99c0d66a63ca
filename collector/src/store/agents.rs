//! Agents: their last state, the lines they serve, and the configuration pushed to them.

use super::{Result, Store, json};
use crate::customers::Customer;
use crate::model::{Agent, AgentState};
use crate::store::customers::{CUSTOMER_COLUMNS, STILL_THE_AGENTS, customer};
use std::collections::HashMap;

impl Store {
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
}
