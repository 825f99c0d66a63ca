//! Agents that fell silent: one incident per access node, outside the window evaluation.

use super::finish;
use crate::config::CollectorConfig;
use crate::model::{Incident, IncidentKind};
use crate::store::{Result, Store};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Agents that fell silent (last will seen, or nothing heard for `agent_silence_secs`), one
/// incident per access node; resolved when they are all back. Returns the webhook messages
/// dropped for want of room in the outbox.
pub fn evaluate_agents(store: &mut Store, config: &CollectorConfig, now_ms: i64) -> Result<u64> {
    store.transaction(true, |store| {
        let mut dropped = 0;
        let silence = config.correlation.agent_silence_secs as i64 * 1000;
        let will_grace = config.correlation.agent_offline_after_secs as i64 * 1000;
        let agents = store.agents()?;
        let mut silent: BTreeMap<String, Vec<&crate::model::Agent>> = BTreeMap::new();
        for a in &agents {
            let heard = a.state_ms.max(a.last_report_ms.unwrap_or(0));
            // The will's state_ms is when it arrived.
            let vanished = !a.online && !a.stopped && now_ms - a.state_ms >= will_grace;
            if vanished || (a.online && now_ms - heard > silence) {
                let nodes =
                    if a.access_nodes.is_empty() { vec!["unknown".to_string()] } else { a.access_nodes.clone() };
                for n in nodes {
                    silent.entry(n).or_default().push(a);
                }
            }
        }
        let mut active: HashMap<String, Incident> = store
            .active_incidents()?
            .into_iter()
            .filter(|i| i.kind == IncidentKind::AgentsOffline)
            .filter_map(|i| i.scope.get("access_node").cloned().map(|n| (n, i)))
            .collect();
        for (node, agents) in &silent {
            let mut customers = BTreeSet::new();
            for a in agents {
                customers.extend(
                    store
                        .agent_customers(&a.agent_id)?
                        .into_iter()
                        .filter(|c| &c.access_node == node)
                        .map(|c| c.customer_id),
                );
            }
            let ids: Vec<&str> = agents.iter().map(|a| a.agent_id.as_str()).collect();
            let wills = agents.iter().filter(|a| !a.online).count();
            let mut incident = active.remove(node).unwrap_or_else(|| {
                let scope = BTreeMap::from([("access_node".to_string(), node.clone())]);
                let mut i = Incident::new(IncidentKind::AgentsOffline, scope, now_ms);
                // The last will, held for agent_offline_after_secs, or the silence is the
                // evidence: no window count.
                (i.state, i.opened_at, i.metric) = ("open".into(), Some(now_ms), "agent_state".into());
                i
            });
            let before = (incident.customers.clone(), incident.evidence.clone());
            incident.last_window = now_ms;
            incident.bad_windows = agents.len() as i64;
            incident.customers = customers.into_iter().collect();
            incident.evidence = json!({"silent_agents": ids, "last_will_seen": wills});
            incident.probable_cause = format!(
                "{} agent(s) behind access node {node} went silent ({wills} with their last will seen): \
                 the gateways lost power or connectivity, or the access node is down for them.",
                agents.len()
            );
            if incident.id == 0 || before != (incident.customers.clone(), incident.evidence.clone()) {
                dropped += finish(store, config, &mut incident, now_ms)?;
            }
        }
        for (_, mut incident) in active {
            incident.state = "resolved".into();
            incident.resolved_at = Some(now_ms);
            dropped += finish(store, config, &mut incident, now_ms)?;
        }
        Ok(dropped)
    })
}
