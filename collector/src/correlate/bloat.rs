//! Working latency: each known line's figures for the window (stored for the API and the
//! customer view), and the bufferbloat candidates they give. A line bloats on a side when its
//! loaded round trips rise well above its idle baseline there; the home side's queue is the
//! Wi-Fi or the gateway's LAN, the network side's is the access link's. An access node where
//! most of the lines measured under load bloat on the access side at once is one incident:
//! the node's shared queue, not each line's.

use super::evidence::median;
use super::{Candidate, Window, is_network};
use crate::customers::Customer;
use crate::model::IncidentKind;
use crate::quality::{LineQuality, LineRtt, SideFigures, assess};
use crate::store::{Result, Store};
use edgeprobe_wire::SubscriberReport;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the window measured under load: per customer, each side; and the access nodes with a
/// line loaded on the network side.
#[derive(Default)]
pub(super) struct Loaded {
    pub customers: BTreeMap<String, [bool; 2]>,
    pub nodes: BTreeSet<String>,
}

const SIDES: [(&str, &str); 2] = [("home", "rtt_home_loaded"), ("access", "rtt_network_loaded")];

/// The window's figures for every known line with round trips, stored.
pub(super) fn assess_lines(
    store: &mut Store,
    config: &crate::config::CollectorConfig,
    window: (i64, i64),
    reports: &[SubscriberReport],
    customers: &HashMap<String, Customer>,
) -> Result<Vec<LineQuality>> {
    let mut by_line: BTreeMap<&str, LineRtt> = BTreeMap::new();
    for r in reports.iter().filter(|r| customers.contains_key(&r.subscriber)) {
        by_line.entry(&r.subscriber).or_default().add(r);
    }
    by_line.retain(|_, rtt| rtt.histograms.iter().any(Option::is_some));
    let ids: Vec<String> = by_line.keys().map(|k| customers[*k].customer_id.clone()).collect();
    let history_ms = config.working_latency.baseline_history_hours as i64 * 3_600_000;
    let history = store.idle_baselines(&ids, window.0 - history_ms, window.0)?;
    let out: Vec<LineQuality> = by_line
        .iter()
        .map(|(key, rtt)| {
            let id = &customers[*key].customer_id;
            let past = history.get(id).copied().unwrap_or_default();
            assess(&config.working_latency, (id, window.0), rtt, past)
        })
        .collect();
    store.save_line_quality(&out)?;
    Ok(out)
}

/// Bufferbloat candidates; returns what the window measured under load, for hysteresis. A
/// bloated side explains the line's other findings on that side in the window (a slow connect
/// while its own download fills the queue): on the home side a home-network candidate, on the
/// access side the network-side findings left for the node and customer scopes. So it runs
/// after the home scope and before those.
pub(super) fn candidates(w: &mut Window<'_>, lines: &[LineQuality]) -> Loaded {
    let c = &w.config.correlation;
    let by_id: HashMap<&str, &Customer> = w.customers.values().map(|c| (c.customer_id.as_str(), c)).collect();
    let mut loaded = Loaded::default();
    let mut bloated: Vec<(&Customer, usize, &SideFigures, &LineQuality)> = Vec::new();
    // Per access node: lines measured under load on the network side, and those bloated there.
    let mut nodes: BTreeMap<&str, (usize, Vec<&Customer>)> = BTreeMap::new();
    for q in lines {
        let Some(customer) = by_id.get(q.customer_id.as_str()) else { continue };
        let sides = [&q.home, &q.network];
        let measured = sides.map(|s| s.loaded_p90_us.is_some() && s.baseline_us.is_some());
        loaded.customers.insert(q.customer_id.clone(), measured);
        if measured[1] {
            loaded.nodes.insert(customer.access_node.clone());
            nodes.entry(&customer.access_node).or_default().0 += 1;
        }
        for (i, s) in sides.into_iter().enumerate() {
            if s.bloated {
                bloated.push((customer, i, s, q));
                if i == 1 {
                    nodes.entry(&customer.access_node).or_default().1.push(customer);
                }
            }
        }
    }
    let home: BTreeSet<&str> = bloated.iter().filter(|b| b.1 == 0).map(|b| b.0.customer_id.as_str()).collect();
    w.candidates.retain(|c| {
        c.kind != IncidentKind::HomeNetwork || !c.scope.get("customer_id").is_some_and(|id| home.contains(id.as_str()))
    });
    for (customer, i, _, _) in &bloated {
        if *i == 1 {
            if let Some(open) = w.open.get_mut(customer.customer_id.as_str()) {
                open.retain(|m, _| !is_network(m));
            }
        }
    }
    let mut grouped: BTreeSet<&str> = BTreeSet::new();
    for (node, (measured, bad)) in &nodes {
        if bad.len() < c.group_min_customers.max(2) || (bad.len() as f64) < c.group_fraction * *measured as f64 {
            continue;
        }
        grouped.extend(bad.iter().map(|c| c.customer_id.as_str()));
        let rises: Vec<f64> = bloated
            .iter()
            .filter(|(cu, i, _, _)| *i == 1 && bad.iter().any(|b| b.customer_id == cu.customer_id))
            .filter_map(|(_, _, s, _)| s.increase_us)
            .map(|us| us as f64 / 1000.0)
            .collect();
        let median = median(rises);
        let (n, m) = (bad.len(), measured);
        w.candidates.push(Candidate {
            kind: IncidentKind::Bufferbloat,
            scope: BTreeMap::from([("access_node".into(), node.to_string()), ("side".into(), "access".into())]),
            metric: "rtt_network_loaded".into(),
            customers: bad.iter().map(|c| c.customer_id.clone()).collect(),
            evidence: json!({"metric": "rtt_network_loaded", "unit": "ms (p90 over idle baseline, median)",
                "value": median, "customers": n, "measured": m, "side": "access"}),
            cause: format!(
                "{n} of {m} lines behind access node {node} measured under load see their network-side round trips \
                 rise {median:.0} ms (median) above their idle baseline at once: a queue shared at the node (its \
                 uplink or aggregation) fills under load, not each line's own."
            ),
        });
    }
    let limits = &w.config.working_latency;
    for (customer, i, s, q) in bloated {
        if i == 1 && grouped.contains(customer.customer_id.as_str()) {
            continue;
        }
        let (side, metric) = SIDES[i];
        let ms = |us: Option<u64>| us.map_or(0.0, |v| (v as f64 / 100.0).round() / 10.0);
        let (p90, base) = (ms(s.loaded_p90_us), ms(s.baseline_us));
        let rise = (p90 - base).max(0.0);
        let place = if i == 0 {
            "inside the home: the Wi-Fi or the gateway's LAN queue fills while the line is busy"
        } else {
            "in the access link's queue: a smart-queue (AQM) setting on the line keeps it short, or a plan with \
             more capacity"
        };
        w.candidates.push(Candidate {
            kind: IncidentKind::Bufferbloat,
            scope: BTreeMap::from([("customer_id".into(), customer.customer_id.clone()), ("side".into(), side.into())]),
            metric: metric.into(),
            customers: BTreeSet::from([customer.customer_id.clone()]),
            evidence: json!({"metric": metric, "unit": "ms (p90)", "value": p90, "baseline": base, "increase": rise,
                "threshold": (base * limits.bloat_factor).max(base + limits.bloat_min_ms), "side": side,
                "loaded_samples": s.loaded, "qoo": q.qoo}),
            cause: format!(
                "Under load the {} round trips reach {p90:.0} ms at p90 against an idle baseline of {base:.0} ms \
                 (+{rise:.0} ms): the queue is {place}.",
                if i == 0 { "home-side" } else { "network-side" }
            ),
        });
    }
    loaded
}
