//! Correlation: from one window of measurements to a few incidents.
//!
//! Each customer's window is judged metric by metric against the plan's thresholds and the
//! customer's own baseline. Degradations shared by many customers are then explained from the
//! widest cause down: a resolver (DNS bad across access nodes while connections are fine), a
//! service (one service bad across access nodes while the same customers' other services are
//! fine), a region (several of its access nodes failing), an access node. What no group explains
//! becomes a customer incident; a slow home side with a healthy network side is a home-network
//! incident. A line whose round trips under load rise well above its idle baseline is a
//! bufferbloat incident, at home or on the access side (a node's, when most of its loaded lines
//! bloat at once). Every incident passes through hysteresis: `open_after` bad windows to open,
//! `resolve_after` good ones to resolve, and a window where its scope has no data counts as
//! neither.
//!
//! A window is evaluated once, by one collector, inside an exclusive transaction: collectors
//! sharing a database take turns, so they reach the same incidents as one collector would.

mod agents;
mod bloat;
mod evidence;
mod hysteresis;
mod journeys;
mod judge;
mod scopes;

pub use agents::evaluate_agents;
pub use journeys::refresh_journey_stats;

use crate::config::CollectorConfig;
use crate::customers::Customer;
use crate::model::{Incident, IncidentKind};
use crate::store::{CounterRow, Result, SampleRow, Store};
use crate::{actions, delivery};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metrics judged on the network side of the access point; `connect_home` and `quic_home` are
/// the home side.
const NETWORK_METRICS: [&str; 8] = [
    "connect_network",
    "dns",
    "dns_failures",
    "tls_handshake",
    "http_ttfb",
    "connect_failures",
    "quic_hello",
    "quic_handshake",
];
/// The transaction latencies a report carries are judged against the plan; its round-trip
/// histograms (the last four of `METRICS`) are judged against the line's own idle baseline,
/// as bufferbloat.
const LATENCY_METRICS: [&str; 8] = {
    let m = edgeprobe_wire::METRICS;
    [m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]]
};
/// Each home-side metric with the network-side one of the same handshake.
const HOME_SIDES: [(&str, &str); 2] = [("connect_home", "connect_network"), ("quic_home", "quic_hello")];
const DNS_METRICS: [&str; 2] = ["dns", "dns_failures"];
/// Journeys are judged as `journey:NAME` (the share of episodes that failed or timed out) and
/// `journey_latency:NAME` (the p90 of completed episodes, where the plan sets a limit).
pub(crate) const JOURNEY_FAILURES: &str = "journey:";
pub(crate) const JOURNEY_LATENCY: &str = "journey_latency:";

/// The journey a metric is about, if it is a journey metric.
pub(crate) fn journey_of(metric: &str) -> Option<&str> {
    metric.strip_prefix(JOURNEY_FAILURES).or_else(|| metric.strip_prefix(JOURNEY_LATENCY))
}

/// Journeys run over the network, so they count with the network-side metrics.
fn is_network(metric: &str) -> bool {
    NETWORK_METRICS.contains(&metric) || journey_of(metric).is_some()
}

/// Whether a metric is a ratio (failures over attempts) rather than a latency.
pub(crate) fn is_ratio(metric: &str) -> bool {
    metric.ends_with("_failures") || metric.starts_with(JOURNEY_FAILURES)
}

/// A window's latency for one metric: its sample count and p90 in µs.
#[derive(Clone, Copy, Debug)]
struct Latency {
    count: u64,
    p90: f64,
}

#[derive(Default)]
struct Measured {
    latency: BTreeMap<String, Latency>,
    counters: CounterRow,
    /// The subscriber's journeys, by name (whole line only).
    journeys: BTreeMap<String, JourneyWindow>,
}

/// One journey's episodes in a window, summed over the agents that saw them.
#[derive(Default)]
struct JourneyWindow {
    episodes: u64,
    /// Failed or timed out (given up included).
    failures: u64,
    failed_steps: BTreeMap<String, u64>,
    latency: Vec<SampleRow>,
}

#[derive(Default)]
struct Line {
    whole: Measured,
    services: BTreeMap<String, Measured>,
}

/// Why a metric was judged bad: the measured value against the threshold it broke.
#[derive(Clone, Debug)]
struct Finding {
    value: f64,
    threshold: f64,
    basis: &'static str,
    /// For a failing journey, the step most episodes failed at.
    step: Option<String>,
}

type Findings = BTreeMap<String, Finding>;
/// Baseline p90 (µs) and its window count, by customer and metric.
type Baselines = HashMap<(String, String), (f64, i64)>;
/// The degraded customers of one access node, keyed by (region, node).
type NodeFindings<'a> = ((&'a str, &'a str), &'a Vec<(&'a Customer, &'a Findings)>);

/// One window's candidate incident, before hysteresis.
struct Candidate {
    kind: IncidentKind,
    scope: BTreeMap<String, String>,
    metric: String,
    customers: BTreeSet<String>,
    evidence: serde_json::Value,
    cause: String,
}

/// Each judged customer's findings and the metrics that were judged at all, by customer id.
type Verdicts<'a> = BTreeMap<&'a str, (&'a Customer, Findings, BTreeSet<String>)>;

/// One window as the scopes see it. Each scope takes from `open` what it explains and adds its
/// candidates.
struct Window<'a> {
    config: &'a CollectorConfig,
    lines: &'a BTreeMap<String, Line>,
    customers: &'a HashMap<String, Customer>,
    verdicts: Verdicts<'a>,
    /// What is still unexplained, per customer: their network-side findings.
    open: BTreeMap<&'a str, Findings>,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub unknown_subscribers: u64,
    pub opened: u64,
    pub resolved: u64,
    /// Webhook messages not queued for want of room in the outbox.
    pub deliveries_dropped: u64,
}

/// Evaluates one window if no collector has; returns None if another one did.
pub fn evaluate_window(
    store: &mut Store,
    config: &CollectorConfig,
    window: (i64, i64),
    now_ms: i64,
) -> Result<Option<Summary>> {
    store.transaction(true, |store| {
        if !store.claim_window(window.0)? {
            return Ok(None);
        }
        evaluate(store, config, window, now_ms).map(Some)
    })
}

fn evaluate(store: &mut Store, config: &CollectorConfig, window: (i64, i64), now_ms: i64) -> Result<Summary> {
    let reports = store.window_lines(window.0)?;
    let samples = crate::store::samples_of(window.0, &reports);
    let counters = crate::store::counters_of(&reports);
    let mut lines = judge::lines(&samples, counters);
    judge::add_journeys(&mut lines, window.0, &reports);
    let resolvers = judge::resolvers_of(window.0, &reports);
    let keys: Vec<String> = lines.keys().cloned().collect();
    let customers = store.customers_by_subscriber(&keys)?;
    let unknown_subscribers = keys.iter().filter(|k| !customers.contains_key(*k)).count() as u64;
    let mut summary = Summary { unknown_subscribers, ..Summary::default() };
    let ids: Vec<String> = customers.values().map(|c| c.customer_id.clone()).collect();
    let baselines = store.baselines(&ids)?;
    let active: HashMap<String, Incident> = store
        .active_incidents()?
        .into_iter()
        .filter(|i| i.kind != IncidentKind::AgentsOffline)
        .map(|i| (Incident::scope_key(i.kind, &i.scope), i))
        .collect();

    let verdicts = judge::verdicts(store, config, &lines, &customers, &baselines)?;
    let quality = bloat::assess_lines(store, config, window, &reports, &customers)?;
    // What is still unexplained, per customer: their network-side findings.
    let open = verdicts
        .iter()
        .map(|(id, (_, bad, _))| {
            (*id, bad.iter().filter(|(m, _)| is_network(m)).map(|(m, f)| (m.clone(), f.clone())).collect())
        })
        .collect();
    let mut w = Window { config, lines: &lines, customers: &customers, verdicts, open, candidates: Vec::new() };
    // Widest cause first: each scope explains what it can before a narrower one is tried.
    scopes::home(&mut w);
    let loaded = bloat::candidates(&mut w, &quality);
    scopes::resolver(&mut w, &resolvers);
    let services_judged = scopes::service(&mut w);
    let journeys_judged = scopes::journey(&mut w);
    scopes::explained_by_services(&mut w, &active);
    let (node_measured, grouped_customers) = scopes::nodes(&mut w);
    scopes::customer(&mut w, &grouped_customers);

    let judged = hysteresis::Judged {
        nodes: &node_measured,
        verdicts: &w.verdicts,
        journeys: &journeys_judged,
        services: &services_judged,
        loaded: &loaded,
    };
    let touched = hysteresis::apply(w.candidates, active, &judged, window, &config.correlation, now_ms, &mut summary);
    for mut incident in touched {
        summary.deliveries_dropped += finish(store, config, &mut incident, now_ms)?;
    }

    // Offers where a side bloated in this window, for customers in no open incident. (Every
    // bloated window makes a pending bufferbloat candidate, so pending ones cannot count: an
    // offer answers a limit that recurs without ever holding for `open_after` windows.)
    if config.offers.enabled {
        let busy: BTreeSet<String> =
            store.active_incidents()?.into_iter().filter(|i| i.state == "open").flat_map(|i| i.customers).collect();
        let by_id: HashMap<&str, &Customer> = customers.values().map(|c| (c.customer_id.as_str(), c)).collect();
        for q in quality.iter().filter(|q| !busy.contains(&q.customer_id)) {
            let Some(customer) = by_id.get(q.customer_id.as_str()) else { continue };
            for (side, bloated) in [("home", q.home.bloated), ("access", q.network.bloated)] {
                if bloated {
                    let added = actions::offer(store, config, customer, side, window.0, now_ms)?;
                    summary.deliveries_dropped += delivery::enqueue_actions(store, config, &added, None, now_ms)?;
                }
            }
        }
    }

    // Journeys: the window's figures per group, and the rules on customers' own failures.
    store.save_journey_stats(window.0, &journeys::journey_stats(&reports, &customers))?;
    let mut failing: BTreeSet<(&str, &str)> = BTreeSet::new();
    for r in &reports {
        for j in r.journeys.iter().filter(|j| j.failed + j.timeout > 0) {
            if config.actions.journey_rules.iter().any(|rule| rule.journey == j.journey) {
                failing.insert((&r.subscriber, &j.journey));
            }
        }
    }
    for (subscriber, journey) in failing {
        if let Some(customer) = customers.get(subscriber) {
            let added = actions::journey_rules(store, customer, journey, window, &config.actions, now_ms)?;
            summary.deliveries_dropped += delivery::enqueue_actions(store, config, &added, None, now_ms)?;
        }
    }
    Ok(summary)
}

/// Sets value at risk and severity, stores the incident, keeps its actions current, and queues
/// what changed for the webhooks. Returns the webhook messages dropped for want of room.
fn finish(store: &mut Store, config: &CollectorConfig, incident: &mut Incident, now_ms: i64) -> Result<u64> {
    if incident.state == "resolved" && incident.opened_at.is_none() {
        // Bad for fewer than open_after windows: it never was an incident.
        return if incident.id == 0 { Ok(0) } else { store.delete_incident(incident.id).map(|_| 0) };
    }
    let customers = store.customers_by_id(&incident.customers)?;
    incident.affected_customers = customers.len() as i64;
    incident.value_at_risk = (customers.iter().map(|c| c.monthly_value).sum::<f64>() * 100.0).round() / 100.0;
    incident.severity = severity(incident).into();
    let before = match incident.id {
        0 => None,
        id => store.incident(id)?.map(|i| (i.state, i.severity, i.affected_customers)),
    };
    store.save_incident(incident)?;
    let event = delivery::incident_event(before.as_ref().map(|(s, v, n)| (s.as_str(), v.as_str(), *n)), incident);
    let mut dropped = match event {
        Some(event) if !config.webhooks.is_empty() => {
            delivery::enqueue_incident(store, config, incident, event, now_ms)?
        }
        _ => 0,
    };
    match incident.state.as_str() {
        "open" => {
            let added = actions::suggest(store, incident, &config.actions, now_ms)?;
            dropped += delivery::enqueue_actions(store, config, &added, Some(incident), now_ms)?;
        }
        "resolved" => store.end_actions(incident.id, now_ms)?,
        _ => {}
    }
    Ok(dropped)
}

fn severity(i: &Incident) -> &'static str {
    let wide = matches!(i.kind, IncidentKind::Region | IncidentKind::Resolver);
    if wide || i.affected_customers >= 50 || i.value_at_risk >= 5000.0 {
        "critical"
    } else if i.affected_customers >= 2 || matches!(i.kind, IncidentKind::AccessNode | IncidentKind::Service) {
        "major"
    } else {
        "minor"
    }
}

#[cfg(test)]
mod tests;
