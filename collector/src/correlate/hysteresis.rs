//! Hysteresis: a candidate opens an incident after `open_after` bad windows in a row, and an
//! open incident resolves after `resolve_after` good ones. A window where an incident's scope was
//! not measured counts as neither.

use super::{Candidate, Summary, Verdicts};
use crate::config::CorrelationConfig;
use crate::model::{Incident, IncidentKind};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the window measured, by scope.
pub(super) struct Judged<'a> {
    pub nodes: &'a BTreeMap<(&'a str, &'a str), usize>,
    pub verdicts: &'a Verdicts<'a>,
    pub journeys: &'a BTreeSet<String>,
    pub services: &'a BTreeSet<String>,
    pub loaded: &'a super::bloat::Loaded,
}

impl Judged<'_> {
    /// Whether the window measured an incident's scope.
    fn covers(&self, kind: IncidentKind, scope: &BTreeMap<String, String>) -> bool {
        let get = |k: &str| scope.get(k).map(String::as_str).unwrap_or("");
        match kind {
            IncidentKind::AccessNode => self.nodes.keys().any(|(_, n)| *n == get("access_node")),
            IncidentKind::Region => self.nodes.keys().any(|(r, _)| *r == get("region")),
            IncidentKind::Customer | IncidentKind::HomeNetwork => self.verdicts.contains_key(get("customer_id")),
            IncidentKind::Service => match scope.get("journey") {
                Some(j) => self.journeys.contains(j),
                None => self.services.contains(get("service")),
            },
            IncidentKind::Resolver => self.verdicts.values().any(|(_, _, j)| j.contains("dns")),
            IncidentKind::AgentsOffline => false,
            // Only a window with the line (or a line of the node) under load can show it.
            IncidentKind::Bufferbloat => match scope.get("customer_id") {
                Some(id) => {
                    let side = usize::from(get("side") == "access");
                    self.loaded.customers.get(id).is_some_and(|m| m[side])
                }
                None => self.loaded.nodes.contains(get("access_node")),
            },
        }
    }
}

/// Moves the active incidents on by one window: the candidates are bad windows for their
/// scope, the rest good ones where the scope was measured. Returns every incident touched.
pub(super) fn apply(
    candidates: Vec<Candidate>,
    mut active: HashMap<String, Incident>,
    judged: &Judged<'_>,
    window: (i64, i64),
    c: &CorrelationConfig,
    now_ms: i64,
    summary: &mut Summary,
) -> Vec<Incident> {
    let mut touched: Vec<Incident> = Vec::new();
    for cand in candidates {
        let key = Incident::scope_key(cand.kind, &cand.scope);
        let mut incident =
            active.remove(&key).unwrap_or_else(|| Incident::new(cand.kind, cand.scope.clone(), window.0));
        incident.bad_windows += 1;
        incident.good_windows = 0;
        incident.last_window = window.0;
        incident.metric = cand.metric;
        incident.evidence = cand.evidence;
        incident.evidence["window_start"] = json!(window.0);
        incident.probable_cause = cand.cause;
        let mut all: BTreeSet<String> = incident.customers.iter().cloned().collect();
        all.extend(cand.customers);
        incident.customers = all.into_iter().collect();
        if incident.state == "pending" && incident.bad_windows >= c.open_after as i64 {
            incident.state = "open".into();
            incident.opened_at = Some(now_ms);
            summary.opened += 1;
        }
        touched.push(incident);
    }
    let previous_window = window.0 - (window.1 - window.0);
    for (_, mut incident) in active {
        // Pending needs consecutive bad windows: a gap ends it, measured or not.
        let broken = incident.state == "pending" && incident.last_window < previous_window;
        if !broken && !judged.covers(incident.kind, &incident.scope) {
            continue;
        }
        if incident.state == "pending" {
            incident.state = "resolved".into();
            incident.resolved_at = Some(now_ms);
            incident.bad_windows = 0;
            touched.push(incident);
            continue;
        }
        incident.good_windows += 1;
        incident.bad_windows = 0;
        if incident.good_windows >= c.resolve_after as i64 {
            incident.state = "resolved".into();
            incident.resolved_at = Some(now_ms);
            summary.resolved += 1;
        }
        touched.push(incident);
    }
    touched
}
