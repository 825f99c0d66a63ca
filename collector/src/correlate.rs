//! Correlation: from one window of measurements to a few incidents.
//!
//! Each customer's window is judged metric by metric against the plan's thresholds and the
//! customer's own baseline. Degradations shared by many customers are then explained from the
//! widest cause down: a resolver (DNS bad across access nodes while connections are fine), a
//! service (one service bad across access nodes while the same customers' other services are
//! fine), a region (several of its access nodes failing), an access node. What no group explains
//! becomes a customer incident; a slow home side with a healthy network side is a home-network
//! incident. Every incident passes through hysteresis: `open_after` bad windows to open,
//! `resolve_after` good ones to resolve, and a window where its scope has no data counts as
//! neither.
//!
//! A window is evaluated once, by one collector, inside an exclusive transaction: collectors
//! sharing a database take turns, so they reach the same incidents as one collector would.

use crate::actions;
use crate::config::CollectorConfig;
use crate::customers::Customer;
use crate::model::{Incident, IncidentKind};
use crate::store::{CounterRow, JourneyStats, Result, SampleRow, Store};
use edgeprobe_wire::{SubscriberReport, WireHistogram};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metrics judged on the network side of the access point; `connect_home` is the home side.
const NETWORK_METRICS: [&str; 6] =
    ["connect_network", "dns", "dns_failures", "tls_handshake", "http_ttfb", "connect_failures"];
const LATENCY_METRICS: [&str; 5] = ["connect_network", "connect_home", "dns", "tls_handshake", "http_ttfb"];
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

#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub unknown_subscribers: u64,
    pub opened: u64,
    pub resolved: u64,
}

fn merge(rows: &[&SampleRow]) -> Latency {
    if let [one] = rows {
        return Latency { count: one.count.max(0) as u64, p90: one.p90 as f64 };
    }
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    for r in rows {
        let wire = WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: r.hdr.clone() };
        if let Ok(h) = wire.histogram() {
            match merged.as_mut() {
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => merged = Some(h),
            }
        }
    }
    match merged {
        Some(h) => Latency { count: h.len(), p90: h.value_at_quantile(0.9) as f64 },
        // Undecodable bytes: fall back to the largest sample's own summary.
        None => {
            let best = rows.iter().max_by_key(|r| r.count).expect("rows are never empty");
            Latency { count: best.count.max(0) as u64, p90: best.p90 as f64 }
        }
    }
}

fn add_counters(to: &mut CounterRow, c: &CounterRow) {
    to.connects += c.connects;
    to.connect_failures += c.connect_failures;
    to.dns_total += c.dns_total;
    to.dns_failures += c.dns_failures;
}

fn lines(samples: &[SampleRow], counters: Vec<(String, String, CounterRow)>) -> BTreeMap<String, Line> {
    let mut grouped: BTreeMap<(&str, &str, &str), Vec<&SampleRow>> = BTreeMap::new();
    for s in samples {
        grouped.entry((&s.subscriber_id, &s.service, &s.metric)).or_default().push(s);
    }
    let mut out: BTreeMap<String, Line> = BTreeMap::new();
    for ((sub, service, metric), rows) in grouped {
        let line = out.entry(sub.to_string()).or_default();
        let m =
            if service.is_empty() { &mut line.whole } else { line.services.entry(service.to_string()).or_default() };
        m.latency.insert(metric.to_string(), merge(&rows));
    }
    for (sub, service, c) in counters {
        let line = out.entry(sub).or_default();
        let m = if service.is_empty() { &mut line.whole } else { line.services.entry(service).or_default() };
        add_counters(&mut m.counters, &c);
    }
    out
}

/// Adds each subscriber's journeys, summed over the agents that reported them.
fn add_journeys(lines: &mut BTreeMap<String, Line>, window_start: i64, reports: &[SubscriberReport]) {
    for r in reports {
        let line = lines.entry(r.subscriber.clone()).or_default();
        for j in &r.journeys {
            let w = line.whole.journeys.entry(j.journey.clone()).or_default();
            w.episodes += j.ok + j.failed + j.timeout;
            w.failures += j.failed + j.timeout;
            for (step, n) in &j.failed_steps {
                *w.failed_steps.entry(step.clone()).or_default() += n;
            }
            if let Some(h) = j.latency.as_ref().filter(|h| h.count > 0) {
                let metric = format!("{JOURNEY_LATENCY}{}", j.journey);
                w.latency.push(SampleRow::new(window_start, &r.subscriber, "", &metric, h));
            }
        }
    }
}

/// Each subscriber's DNS per resolver (where its agents name them), summed over its agents.
fn resolvers_of(window_start: i64, reports: &[SubscriberReport]) -> BTreeMap<&str, BTreeMap<&str, Measured>> {
    let mut rows: BTreeMap<(&str, &str), (Vec<SampleRow>, CounterRow)> = BTreeMap::new();
    for r in reports {
        for res in &r.resolvers {
            let (latency, counters) = rows.entry((r.subscriber.as_str(), res.resolver.as_str())).or_default();
            counters.dns_total += res.dns.values().sum::<u64>() as i64;
            counters.dns_failures += crate::store::failed_rcodes(&res.dns) as i64;
            if let Some(h) = r.resolver_latency(res).filter(|h| h.count > 0) {
                latency.push(SampleRow::new(window_start, &r.subscriber, "", "dns", h));
            }
        }
    }
    let mut out: BTreeMap<&str, BTreeMap<&str, Measured>> = BTreeMap::new();
    for ((sub, resolver), (latency, counters)) in rows {
        let mut m = Measured { counters, ..Measured::default() };
        if !latency.is_empty() {
            m.latency.insert("dns".into(), merge(&latency.iter().collect::<Vec<_>>()));
        }
        out.entry(sub).or_default().insert(resolver, m);
    }
    out
}

/// Judges one customer's (or one service's) window against the plan and, for the whole line,
/// the customer's baseline.
fn judge(
    m: &Measured,
    plan: &crate::config::PlanThresholds,
    baseline: Option<&Baselines>,
    customer_id: &str,
    config: &crate::config::CorrelationConfig,
) -> (Findings, BTreeSet<String>) {
    let mut bad = Findings::new();
    let mut judged = BTreeSet::new();
    for metric in LATENCY_METRICS {
        let Some(l) = m.latency.get(metric) else { continue };
        if l.count < plan.min_samples {
            continue;
        }
        judged.insert(metric.to_string());
        let threshold = plan.latency_us(metric).expect("a latency metric");
        if l.p90 > threshold {
            bad.insert(metric.to_string(), Finding { value: l.p90, threshold, basis: "plan", step: None });
            continue;
        }
        if let Some(&(base, windows)) = baseline.and_then(|b| b.get(&(customer_id.to_string(), metric.to_string()))) {
            if windows >= config.baseline_min_windows as i64 {
                let limit = (base * config.baseline_factor).max(base + config.baseline_min_ms * 1000.0);
                if l.p90 > limit {
                    bad.insert(
                        metric.to_string(),
                        Finding { value: l.p90, threshold: limit, basis: "baseline", step: None },
                    );
                }
            }
        }
    }
    let c = &m.counters;
    let ratios = [
        ("dns_failures", c.dns_failures, c.dns_total, plan.dns_failure_ratio),
        ("connect_failures", c.connect_failures, c.connects + c.connect_failures, plan.connect_failure_ratio),
    ];
    for (metric, failures, total, limit) in ratios {
        if total < plan.min_samples as i64 {
            continue;
        }
        judged.insert(metric.to_string());
        let ratio = failures as f64 / total as f64;
        if ratio > limit {
            bad.insert(metric.to_string(), Finding { value: ratio, threshold: limit, basis: "plan", step: None });
        }
    }
    for (name, j) in &m.journeys {
        if j.episodes < plan.min_samples {
            continue;
        }
        let key = format!("{JOURNEY_FAILURES}{name}");
        judged.insert(key.clone());
        let ratio = j.failures as f64 / j.episodes as f64;
        if ratio > plan.journey_failure_ratio {
            let step = j.failed_steps.iter().max_by_key(|(s, n)| (**n, std::cmp::Reverse(*s))).map(|(s, _)| s.clone());
            bad.insert(key, Finding { value: ratio, threshold: plan.journey_failure_ratio, basis: "plan", step });
            continue;
        }
        let Some(limit) = plan.journey_p90_ms.get(name).map(|ms| ms * 1000.0) else { continue };
        if j.latency.is_empty() {
            continue;
        }
        let l = merge(&j.latency.iter().collect::<Vec<_>>());
        if l.count >= plan.min_samples {
            let key = format!("{JOURNEY_LATENCY}{name}");
            judged.insert(key.clone());
            if l.p90 > limit {
                bad.insert(key, Finding { value: l.p90, threshold: limit, basis: "plan", step: None });
            }
        }
    }
    (bad, judged)
}

fn describe(metric: &str, f: &Finding) -> String {
    if let (Some(j), true) = (journey_of(metric), is_ratio(metric)) {
        let at = f.step.as_ref().map(|s| format!(", most at step {s:?}")).unwrap_or_default();
        format!("journey {j:?} failing {:.0}% (limit {:.0}%{at})", f.value * 100.0, f.threshold * 100.0)
    } else if is_ratio(metric) {
        format!("{metric} {:.0}% (limit {:.0}%)", f.value * 100.0, f.threshold * 100.0)
    } else {
        let basis = if f.basis == "plan" { "plan limit" } else { "baseline limit" };
        format!("{metric} p90 {:.1} ms ({basis} {:.1} ms)", f.value / 1000.0, f.threshold / 1000.0)
    }
}

/// Plain words for a metric; a failing journey names the step it fails at.
fn metric_label(metric: &str, step: Option<&str>) -> String {
    if let Some(j) = metric.strip_prefix(JOURNEY_FAILURES) {
        return match step {
            Some(s) => format!("failures of the {j:?} journey (most at step {s:?})"),
            None => format!("failures of the {j:?} journey"),
        };
    }
    if let Some(j) = metric.strip_prefix(JOURNEY_LATENCY) {
        return format!("the {j:?} journey's time");
    }
    let label = match metric {
        "connect_network" => "network-side connect time",
        "connect_home" => "home-side connect time",
        "dns" => "DNS latency",
        "dns_failures" => "DNS failures",
        "tls_handshake" => "TLS handshake time",
        "http_ttfb" => "HTTP time to first byte",
        "connect_failures" => "failed connects",
        _ => "experience",
    };
    label.to_string()
}

/// The metric most of the customers are bad on.
/// The metric most of the customers are bad on; on a tie, a journey, which is closest to what
/// the customers went through.
fn dominant<'a>(findings: impl Iterator<Item = &'a Findings>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in findings {
        for m in f.keys() {
            *counts.entry(m).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(m, n)| (*n, journey_of(m).is_some(), std::cmp::Reverse(*m)))
        .map_or("experience".into(), |(m, _)| m.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn figure(metric: &str, value: f64) -> serde_json::Value {
    if is_ratio(metric) {
        json!((value * 1000.0).round() / 1000.0)
    } else {
        json!((value / 1000.0 * 10.0).round() / 10.0)
    }
}

fn unit(metric: &str) -> &'static str {
    if is_ratio(metric) { "ratio" } else { "ms (p90)" }
}

/// Evidence for a group: the group's median of the dominant metric against the median limit.
fn group_evidence(metric: &str, bad: &[(&Customer, &Findings)], measured: usize) -> (serde_json::Value, f64, f64) {
    let values: Vec<f64> = bad.iter().filter_map(|(_, f)| f.get(metric).map(|x| x.value)).collect();
    let limits: Vec<f64> = bad.iter().filter_map(|(_, f)| f.get(metric).map(|x| x.threshold)).collect();
    let (v, t) = (median(values), median(limits));
    let evidence = json!({
        "metric": metric,
        "unit": unit(metric),
        "median_value": figure(metric, v),
        "median_threshold": figure(metric, t),
        "degraded_customers": bad.len(),
        "measured_customers": measured,
    });
    (evidence, v, t)
}

/// The candidate for a failing group: its customers, its dominant metric (one of `only`, when
/// given), the group's median figures as evidence, and a cause worded by
/// `cause(metric label, value, threshold)`.
fn group_candidate(
    kind: IncidentKind,
    scope: (&str, &str),
    bad: &[(&Customer, &Findings)],
    measured: usize,
    only: &[&str],
    cause: impl FnOnce(&str, String, String) -> String,
) -> Candidate {
    let mut metric = dominant(bad.iter().map(|(_, f)| *f));
    if !only.is_empty() && !only.contains(&metric.as_str()) {
        metric = only[0].to_string();
    }
    let (mut evidence, v, t) = group_evidence(&metric, bad, measured);
    // A failing journey names the step most of the group's episodes failed at.
    let mut steps: BTreeMap<&str, usize> = BTreeMap::new();
    for s in bad.iter().filter_map(|(_, f)| f.get(&metric).and_then(|x| x.step.as_deref())) {
        *steps.entry(s).or_default() += 1;
    }
    let step = steps.into_iter().max_by_key(|(s, n)| (*n, std::cmp::Reverse(*s))).map(|(s, _)| s);
    if let Some(j) = journey_of(&metric) {
        evidence["journey"] = json!(j);
        evidence["step"] = json!(step);
    }
    Candidate {
        kind,
        scope: BTreeMap::from([(scope.0.to_string(), scope.1.to_string())]),
        customers: bad.iter().map(|(c, _)| c.customer_id.clone()).collect(),
        evidence,
        cause: cause(&metric_label(&metric, step), fmt_value(&metric, v), fmt_value(&metric, t)),
        metric,
    }
}

fn fmt_value(metric: &str, v: f64) -> String {
    if is_ratio(metric) { format!("{:.0}%", v * 100.0) } else { format!("{:.0} ms", v / 1000.0) }
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
    let c = &config.correlation;
    let reports = store.window_lines(window.0)?;
    let samples = crate::store::samples_of(window.0, &reports);
    let counters = crate::store::counters_of(&reports);
    let mut lines = lines(&samples, counters);
    add_journeys(&mut lines, window.0, &reports);
    let resolvers = resolvers_of(window.0, &reports);
    let keys: Vec<String> = lines.keys().cloned().collect();
    let customers = store.customers_by_subscriber(&keys)?;
    let unknown_subscribers = keys.iter().filter(|k| !customers.contains_key(*k)).count() as u64;
    let mut summary = Summary { unknown_subscribers, ..Summary::default() };
    let ids: Vec<String> = customers.values().map(|c| c.customer_id.clone()).collect();
    let baselines = store.baselines(&ids)?;
    let mut active: HashMap<String, Incident> = store
        .active_incidents()?
        .into_iter()
        .filter(|i| i.kind != IncidentKind::AgentsOffline)
        .map(|i| (Incident::scope_key(i.kind, &i.scope), i))
        .collect();

    // Judge every known customer's whole line, and learn baselines from good windows.
    let mut verdicts: BTreeMap<&str, (&Customer, Findings, BTreeSet<String>)> = BTreeMap::new();
    for (key, line) in &lines {
        let Some(customer) = customers.get(key) else { continue };
        let plan = config.plan(&customer.plan);
        let (bad, judged) = judge(&line.whole, plan, Some(&baselines), &customer.customer_id, c);
        for metric in LATENCY_METRICS {
            if judged.contains(metric) && !bad.contains_key(metric) {
                let p90 = line.whole.latency[metric].p90;
                let k = (customer.customer_id.clone(), metric.to_string());
                let (base, n) = baselines.get(&k).copied().unwrap_or((p90, 0));
                // An exponentially weighted p90 over good windows only, so an outage does not
                // become the norm.
                let alpha = if n < c.baseline_min_windows as i64 { 1.0 / (n as f64 + 1.0) } else { 0.1 };
                store.save_baseline(&customer.customer_id, metric, base + alpha * (p90 - base), n + 1)?;
            }
        }
        verdicts.insert(customer.customer_id.as_str(), (customer, bad, judged));
    }

    // What is still unexplained, per customer: their network-side findings.
    let mut open: BTreeMap<&str, Findings> = verdicts
        .iter()
        .map(|(id, (_, bad, _))| {
            (*id, bad.iter().filter(|(m, _)| is_network(m)).map(|(m, f)| (m.clone(), f.clone())).collect())
        })
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();

    // Home network: the home side is slow while the network side is measured and fine.
    for (id, (customer, bad, judged)) in &verdicts {
        if let Some(f) = bad.get("connect_home") {
            if judged.contains("connect_network") && !bad.contains_key("connect_network") {
                let network =
                    lines[&customer.subscriber_id].whole.latency.get("connect_network").map_or(0.0, |l| l.p90);
                candidates.push(Candidate {
                    kind: IncidentKind::HomeNetwork,
                    scope: BTreeMap::from([("customer_id".to_string(), id.to_string())]),
                    metric: "connect_home".into(),
                    customers: BTreeSet::from([id.to_string()]),
                    evidence: json!({"metric": "connect_home", "unit": "ms (p90)", "value": figure("connect_home", f.value),
                        "threshold": figure("connect_home", f.threshold), "connect_network": figure("connect_network", network)}),
                    cause: format!(
                        "Home-side connect time is {} at p90 against {} allowed, while the network side is {}: \
                         the delay is inside the home (Wi-Fi, a busy or distant device), not in the network.",
                        fmt_value("connect_home", f.value),
                        fmt_value("connect_home", f.threshold),
                        fmt_value("connect_network", network)
                    ),
                });
            }
        }
    }

    // Resolver: DNS bad for customers on several access nodes while their connects are fine.
    {
        let dns_measured: Vec<&str> = verdicts
            .iter()
            .filter(|(_, (_, _, judged))| DNS_METRICS.iter().any(|m| judged.contains(*m)))
            .map(|(id, _)| *id)
            .collect();
        let dns_bad: Vec<(&Customer, &Findings)> = verdicts
            .iter()
            .filter(|(_, (_, bad, judged))| {
                DNS_METRICS.iter().any(|m| bad.contains_key(*m))
                    && judged.contains("connect_network")
                    && !bad.contains_key("connect_network")
            })
            .map(|(_, (cust, bad, _))| (*cust, bad))
            .collect();
        let nodes: BTreeSet<&str> = dns_bad.iter().map(|(c, _)| c.access_node.as_str()).collect();
        if dns_bad.len() >= c.group_min_customers
            && nodes.len() >= 2
            && dns_bad.len() as f64 >= c.group_fraction * dns_measured.len() as f64
        {
            // Where agents say which resolvers a line asked, each failing one is named: judged on
            // its own answers, it is bad for enough of the customers who asked it.
            let mut asked: BTreeMap<&str, usize> = BTreeMap::new();
            let mut failing: BTreeMap<&str, Vec<(&Customer, Findings)>> = BTreeMap::new();
            // dns_bad already holds only customers whose connections were judged fine.
            let dns_bad_ids: BTreeSet<&str> = dns_bad.iter().map(|(c, _)| c.customer_id.as_str()).collect();
            for (cust, _, _) in verdicts.values() {
                let Some(theirs) = resolvers.get(cust.subscriber_id.as_str()) else { continue };
                let plan = config.plan(&cust.plan);
                let on_dns_bad = dns_bad_ids.contains(cust.customer_id.as_str());
                for (ip, m) in theirs {
                    let (bad, judged) = judge(m, plan, None, &cust.customer_id, c);
                    if DNS_METRICS.iter().any(|d| judged.contains(*d)) {
                        *asked.entry(ip).or_default() += 1;
                    }
                    if on_dns_bad && DNS_METRICS.iter().any(|d| bad.contains_key(*d)) {
                        failing.entry(ip).or_default().push((cust, bad));
                    }
                }
            }
            failing.retain(|ip, bad| {
                let nodes: BTreeSet<&str> = bad.iter().map(|(c, _)| c.access_node.as_str()).collect();
                bad.len() >= c.group_min_customers
                    && nodes.len() >= 2
                    && bad.len() as f64 >= c.group_fraction * asked.get(ip).copied().unwrap_or(0) as f64
            });
            if failing.is_empty() {
                for (cust, _) in &dns_bad {
                    if let Some(f) = open.get_mut(cust.customer_id.as_str()) {
                        f.retain(|m, _| !DNS_METRICS.contains(&m.as_str()));
                    }
                }
                let scope = ("resolver", "subscriber resolvers");
                let (n, measured, nodes) = (dns_bad.len(), dns_measured.len(), nodes.len());
                candidates.push(group_candidate(IncidentKind::Resolver, scope, &dns_bad, measured, &DNS_METRICS, |m, v, t| {
                    format!(
                        "{m} is {v} (median) against {t} allowed for {n} of {measured} customers with DNS traffic, \
                         across {nodes} access nodes, while their connections are fine: the resolvers they use are failing."
                    )
                }));
            }
            for (ip, bad) in &failing {
                for (cust, _) in bad {
                    if let Some(f) = open.get_mut(cust.customer_id.as_str()) {
                        f.retain(|m, _| !DNS_METRICS.contains(&m.as_str()));
                    }
                }
                let bad: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f)| (*c, f)).collect();
                let nodes = bad.iter().map(|(c, _)| c.access_node.as_str()).collect::<BTreeSet<_>>().len();
                let (n, measured) = (bad.len(), asked.get(ip).copied().unwrap_or(0));
                candidates.push(group_candidate(IncidentKind::Resolver, ("resolver", ip), &bad, measured, &DNS_METRICS, |m, v, t| {
                    format!(
                        "{m} from resolver {ip} is {v} (median) against {t} allowed for {n} of the {measured} customers \
                         who asked it, across {nodes} access nodes, while their connections are fine: resolver {ip} is failing."
                    )
                }));
            }
        }
    }

    // Service: one service bad across access nodes, while the same customers' other services
    // are fine on that metric.
    let mut services_judged: BTreeSet<String> = BTreeSet::new();
    {
        let mut per_service: BTreeMap<&str, Vec<(&Customer, Findings, bool)>> = BTreeMap::new();
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, line) in &lines {
            let Some(customer) = customers.get(key) else { continue };
            let plan = config.plan(&customer.plan);
            let judged_services: Vec<(&str, Findings, BTreeSet<String>)> = line
                .services
                .iter()
                .filter(|(s, _)| s.as_str() != edgeprobe_wire::OTHER_SERVICE)
                .map(|(s, m)| {
                    let (bad, judged) = judge(m, plan, None, &customer.customer_id, c);
                    (s.as_str(), bad, judged)
                })
                .collect();
            for (service, bad, judged) in &judged_services {
                if judged.is_empty() {
                    continue;
                }
                *users.entry(service).or_default() += 1;
                if bad.is_empty() {
                    continue;
                }
                // Contrast: another service of this customer is measured and fine on a metric
                // this one fails.
                let contrast = judged_services.iter().any(|(other, obad, ojudged)| {
                    other != service && bad.keys().any(|m| ojudged.contains(m) && !obad.contains_key(m))
                });
                per_service.entry(service).or_default().push((customer, bad.clone(), contrast));
            }
        }
        services_judged.extend(users.keys().map(|s| s.to_string()));
        for (service, bad) in per_service {
            let measured = users.get(service).copied().unwrap_or(0);
            let nodes: BTreeSet<&str> = bad.iter().map(|(c, _, _)| c.access_node.as_str()).collect();
            let contrasted = bad.iter().filter(|(_, _, contrast)| *contrast).count();
            if bad.len() < c.group_min_customers
                || (bad.len() as f64) < c.group_fraction * measured as f64
                || nodes.len() < 2
                || contrasted < c.group_min_customers.min(bad.len())
            {
                continue;
            }
            let findings: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f, _)| (*c, f)).collect();
            for (cust, f) in &findings {
                if let Some(open) = open.get_mut(cust.customer_id.as_str()) {
                    open.retain(|m, _| !f.contains_key(m));
                }
            }
            let (n, nodes) = (findings.len(), nodes.len());
            let scope = ("service", service);
            candidates.push(group_candidate(IncidentKind::Service, scope, &findings, measured, &[], |m, v, t| {
                format!(
                    "{service}: {m} is {v} (median) against {t} allowed for {n} of {measured} customers using it, \
                     across {nodes} access nodes, while their other services are fine: the service itself is degraded."
                )
            }));
        }
    }

    // Journeys: one journey failing for customers across access nodes while their connections
    // are otherwise fine: the service behind the journey is at fault, not their lines.
    let mut journeys_judged: BTreeSet<&str> = BTreeSet::new();
    {
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        let mut per_metric: BTreeMap<&str, Vec<(&Customer, &Findings, bool)>> = BTreeMap::new();
        for (customer, bad, judged) in verdicts.values() {
            let runs: BTreeSet<&str> = judged.iter().filter_map(|m| journey_of(m)).collect();
            for j in runs {
                *users.entry(j).or_default() += 1;
            }
            let contrast = judged.iter().any(|m| NETWORK_METRICS.contains(&m.as_str()) && !bad.contains_key(m));
            for m in bad.keys().filter(|m| journey_of(m).is_some()) {
                per_metric.entry(m).or_default().push((customer, bad, contrast));
            }
        }
        journeys_judged.extend(users.keys());
        let mut explained: BTreeSet<&str> = BTreeSet::new();
        // Failures before latency, so a journey gives one incident.
        let ordered =
            per_metric.iter().filter(|(m, _)| is_ratio(m)).chain(per_metric.iter().filter(|(m, _)| !is_ratio(m)));
        for (metric, bad) in ordered {
            let journey = journey_of(metric).expect("journey metrics only");
            let measured = users.get(journey).copied().unwrap_or(0);
            let nodes: BTreeSet<&str> = bad.iter().map(|(c, _, _)| c.access_node.as_str()).collect();
            let contrasted = bad.iter().filter(|(_, _, contrast)| *contrast).count();
            if explained.contains(journey)
                || bad.len() < c.group_min_customers
                || (bad.len() as f64) < c.group_fraction * measured as f64
                || nodes.len() < 2
                || contrasted < c.group_min_customers.min(bad.len())
            {
                continue;
            }
            explained.insert(journey);
            let findings: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f, _)| (*c, *f)).collect();
            for (cust, _) in &findings {
                if let Some(open) = open.get_mut(cust.customer_id.as_str()) {
                    open.retain(|m, _| journey_of(m) != Some(journey));
                }
            }
            let (n, nodes) = (findings.len(), nodes.len());
            candidates.push(group_candidate(
                IncidentKind::Service,
                ("journey", journey),
                &findings,
                measured,
                &[metric],
                |m, v, t| {
                    format!(
                        "{m} reach {v} (median) against {t} allowed for {n} of {measured} customers who ran it, across \
                         {nodes} access nodes, while their connections are otherwise fine: the service behind the \
                         journey is failing."
                    )
                },
            ));
        }
    }

    // A failing service also explains what a customer saw of it in a window too sparse to judge
    // the service on its own (a few slow samples that still make the whole line's p90).
    let implicated: BTreeSet<String> = candidates
        .iter()
        .filter(|c| c.kind == IncidentKind::Service)
        .filter_map(|c| c.scope.get("service").cloned())
        .chain(
            active.values().filter(|i| i.kind == IncidentKind::Service).filter_map(|i| i.scope.get("service").cloned()),
        )
        .collect();
    for (key, line) in &lines {
        let Some(customer) = customers.get(key) else { continue };
        let Some(findings) = open.get_mut(customer.customer_id.as_str()) else { continue };
        let plan = config.plan(&customer.plan);
        findings.retain(|metric, _| {
            !implicated.iter().any(|service| {
                let slow = line.services.get(service).and_then(|m| m.latency.get(metric.as_str()));
                slow.is_some_and(|l| plan.latency_us(metric).is_some_and(|t| l.p90 > t))
            })
        });
    }

    // Access nodes, and regions where several nodes fail together.
    let mut node_measured: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut node_bad: BTreeMap<(&str, &str), Vec<(&Customer, &Findings)>> = BTreeMap::new();
    for (id, (customer, _, judged)) in &verdicts {
        if !judged.iter().any(|m| is_network(m)) {
            continue;
        }
        let node = (customer.region.as_str(), customer.access_node.as_str());
        *node_measured.entry(node).or_default() += 1;
        let findings = &open[id];
        if !findings.is_empty() {
            node_bad.entry(node).or_default().push((customer, findings));
        }
    }
    let failing: Vec<NodeFindings> = node_bad
        .iter()
        .filter(|(node, bad)| {
            bad.len() >= c.group_min_customers && bad.len() as f64 >= c.group_fraction * node_measured[*node] as f64
        })
        .map(|(n, b)| (*n, b))
        .collect();
    let mut by_region: BTreeMap<&str, Vec<NodeFindings>> = BTreeMap::new();
    for f in &failing {
        by_region.entry(f.0.0).or_default().push(*f);
    }
    let mut grouped_customers: BTreeSet<String> = BTreeSet::new();
    for (region, nodes) in by_region {
        if nodes.len() >= c.region_min_nodes.max(2) {
            let all: Vec<(&Customer, &Findings)> = nodes.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            let measured: usize = nodes.iter().map(|(n, _)| node_measured[n]).sum();
            let names: Vec<&str> = nodes.iter().map(|(n, _)| n.1).collect();
            grouped_customers.extend(all.iter().map(|(c, _)| c.customer_id.clone()));
            let (count, list, n) = (names.len(), names.join(", "), all.len());
            let mut region_candidate =
                group_candidate(IncidentKind::Region, ("region", region), &all, measured, &[], |m, v, t| {
                    format!(
                        "{count} access nodes in region {region} ({list}) are failing together: {m} is {v} (median) \
                         against {t} allowed for {n} of {measured} measured customers. A shared upstream \
                         (aggregation, transport or core) in the region is the likely fault."
                    )
                });
            region_candidate.evidence["access_nodes"] = json!(names);
            candidates.push(region_candidate);
        } else {
            for ((_, node), bad) in nodes {
                let measured = node_measured[&(region, node)];
                let home_fine =
                    bad.iter().all(|(c, _)| !verdicts[c.customer_id.as_str()].1.contains_key("connect_home"));
                grouped_customers.extend(bad.iter().map(|(c, _)| c.customer_id.clone()));
                let home = if home_fine { ", while their home side is fine" } else { "" };
                let n = bad.len();
                let scope = ("access_node", node);
                candidates.push(group_candidate(IncidentKind::AccessNode, scope, bad, measured, &[], |m, v, t| {
                    format!(
                        "{n} of {measured} measured customers behind access node {node} have {m} of {v} (median) \
                         against {t} allowed{home}: the fault lies at the access node or upstream of it."
                    )
                }));
            }
        }
    }

    // Customers: degraded, and nothing wider explains it.
    for (id, findings) in &open {
        if findings.is_empty() || grouped_customers.contains(*id) {
            continue;
        }
        let (customer, _, _) = &verdicts[id];
        let (metric, f) = findings
            .iter()
            .max_by(|a, b| (a.1.value / a.1.threshold).total_cmp(&(b.1.value / b.1.threshold)))
            .expect("not empty");
        let all: Vec<String> = findings.iter().map(|(m, f)| describe(m, f)).collect();
        candidates.push(Candidate {
            kind: IncidentKind::Customer,
            scope: BTreeMap::from([("customer_id".to_string(), id.to_string())]),
            metric: metric.to_string(),
            customers: BTreeSet::from([id.to_string()]),
            evidence: json!({"metric": metric, "unit": unit(metric), "value": figure(metric, f.value),
                "threshold": figure(metric, f.threshold), "basis": f.basis, "findings": all}),
            cause: format!(
                "Only this customer is degraded: {}. Other customers on access node {} are fine, so the fault is on \
                 this line (drop cable, CPE, line card port).",
                all.join("; "),
                customer.access_node
            ),
        });
    }

    // Hysteresis against the incidents already pending or open.
    let measured_scope = |kind: IncidentKind, scope: &BTreeMap<String, String>| -> bool {
        let get = |k: &str| scope.get(k).map(String::as_str).unwrap_or("");
        match kind {
            IncidentKind::AccessNode => node_measured.keys().any(|(_, n)| *n == get("access_node")),
            IncidentKind::Region => node_measured.keys().any(|(r, _)| *r == get("region")),
            IncidentKind::Customer | IncidentKind::HomeNetwork => verdicts.contains_key(get("customer_id")),
            IncidentKind::Service => match scope.get("journey") {
                Some(j) => journeys_judged.contains(j.as_str()),
                None => services_judged.contains(get("service")),
            },
            IncidentKind::Resolver => verdicts.values().any(|(_, _, j)| j.contains("dns")),
            IncidentKind::AgentsOffline => false,
        }
    };
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
        if !broken && !measured_scope(incident.kind, &incident.scope) {
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
    for mut incident in touched {
        finish(store, config, &mut incident, now_ms)?;
    }

    // Journeys: the window's figures per group, and the rules on customers' own failures.
    store.save_journey_stats(window.0, &journey_stats(&reports, &customers))?;
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
            actions::journey_rules(store, customer, journey, window.1, &config.actions, now_ms)?;
        }
    }
    Ok(summary)
}

/// Computes a window's journey figures again, after a report for it arrived late.
pub fn refresh_journey_stats(store: &mut Store, window_start: i64) -> Result<()> {
    store.transaction(true, |store| {
        let reports = store.window_lines(window_start)?;
        let keys: Vec<String> = reports.iter().map(|r| r.subscriber.clone()).collect();
        let customers = store.customers_by_subscriber(&keys)?;
        store.delete_journey_stats(window_start)?;
        store.save_journey_stats(window_start, &journey_stats(&reports, &customers))
    })
}

/// A window's journey figures for every customer, segment, region and access node group.
/// Subscribers with no customer record count nowhere, as in correlation.
fn journey_stats(reports: &[SubscriberReport], customers: &HashMap<String, Customer>) -> Vec<JourneyStats> {
    let mut out: BTreeMap<(&str, &str, &str), (JourneyStats, BTreeSet<&str>)> = BTreeMap::new();
    for r in reports {
        let Some(c) = customers.get(&r.subscriber) else { continue };
        for j in &r.journeys {
            let groups =
                [("all", "all"), ("segment", &c.segment), ("region", &c.region), ("access_node", &c.access_node)];
            for (dimension, group) in groups {
                let (s, who) = out
                    .entry((dimension, group, &j.journey))
                    .or_insert_with(|| (JourneyStats::new(dimension, group, j), BTreeSet::new()));
                who.insert(&c.customer_id);
                s.add(j);
            }
        }
    }
    out.into_values()
        .map(|(mut s, who)| {
            s.customers = who.len() as u64;
            s
        })
        .collect()
}

/// Sets value at risk and severity, stores the incident, and keeps its actions current.
fn finish(store: &mut Store, config: &CollectorConfig, incident: &mut Incident, now_ms: i64) -> Result<()> {
    if incident.state == "resolved" && incident.opened_at.is_none() {
        // Bad for fewer than open_after windows: it never was an incident.
        return if incident.id == 0 { Ok(()) } else { store.delete_incident(incident.id) };
    }
    let customers = store.customers_by_id(&incident.customers)?;
    incident.affected_customers = customers.len() as i64;
    incident.value_at_risk = (customers.iter().map(|c| c.monthly_value).sum::<f64>() * 100.0).round() / 100.0;
    incident.severity = severity(incident).into();
    store.save_incident(incident)?;
    match incident.state.as_str() {
        "open" => {
            actions::suggest(store, incident, &config.actions, now_ms)?;
        }
        "resolved" => store.end_actions(incident.id, now_ms)?,
        _ => {}
    }
    Ok(())
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

/// Agents that fell silent (last will seen, or nothing heard for `agent_silence_secs`), one
/// incident per access node; resolved when they are all back.
pub fn evaluate_agents(store: &mut Store, config: &CollectorConfig, now_ms: i64) -> Result<()> {
    store.transaction(true, |store| {
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
                finish(store, config, &mut incident, now_ms)?;
            }
        }
        for (_, mut incident) in active {
            incident.state = "resolved".into();
            incident.resolved_at = Some(now_ms);
            finish(store, config, &mut incident, now_ms)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeprobe_wire::histogram::{new_histogram, record};
    use edgeprobe_wire::{CaptureHealth, Counters, Metrics, Report, SubscriberReport};

    const WINDOW: i64 = 60_000;

    fn customer(id: &str, node: &str, region: &str) -> Customer {
        Customer {
            customer_id: id.into(),
            subscriber_id: format!("sub-{id}"),
            segment: "residential".into(),
            plan: "basic".into(),
            region: region.into(),
            access_node: node.into(),
            monthly_value: 10.0,
            contact_opt_out: false,
            attributes: Default::default(),
        }
    }

    fn line(id: &str, network_ms: u64) -> SubscriberReport {
        let mut h = new_histogram();
        let mut home = new_histogram();
        for _ in 0..10 {
            record(&mut h, network_ms * 1000);
            record(&mut home, 5_000);
        }
        let metrics = Metrics {
            connect_network: Some(WireHistogram::from_histogram(&h)),
            connect_home: Some(WireHistogram::from_histogram(&home)),
            ..Metrics::default()
        };
        SubscriberReport {
            subscriber: format!("sub-{id}"),
            metrics,
            counters: Counters { connects: 10, ..Counters::default() },
            services: vec![],
            journeys: vec![],
            resolvers: vec![],
            dns_late: None,
        }
    }

    /// Stores one window in which each (customer, network ms) line was measured, and evaluates it.
    fn window(store: &mut Store, config: &CollectorConfig, n: i64, lines: &[(&str, u64)]) {
        let lines: Vec<SubscriberReport> = lines.iter().map(|(id, ms)| line(id, *ms)).collect();
        window_of(store, config, n, lines);
    }

    /// A healthy line that ran the `portal` journey 5 times, `failed` of them failing at `step`.
    fn journey_line(id: &str, failed: u64, step: &str) -> SubscriberReport {
        let mut l = line(id, 20);
        let mut h = new_histogram();
        for _ in failed..5 {
            record(&mut h, 300_000);
        }
        l.journeys.push(edgeprobe_wire::JourneyReport {
            journey: "portal".into(),
            phase: "assurance".into(),
            latency: (failed < 5).then(|| WireHistogram::from_histogram(&h)),
            ok: 5 - failed,
            failed,
            failed_steps: if failed > 0 { [(step.to_string(), failed)].into() } else { Default::default() },
            ..Default::default()
        });
        l
    }

    /// Agent `agent`'s report `seq` of window `n`.
    fn report(agent: &str, seq: u64, n: i64, lines: Vec<SubscriberReport>) -> Report {
        Report {
            v: edgeprobe_wire::SCHEMA_VERSION,
            agent_id: agent.into(),
            boot_id: "b".into(),
            seq,
            window_start: (n * WINDOW) as u64,
            window_end: ((n + 1) * WINDOW) as u64,
            capture: CaptureHealth::default(),
            subscribers: lines,
            agent: None,
        }
    }

    fn window_of(store: &mut Store, config: &CollectorConfig, n: i64, lines: Vec<SubscriberReport>) {
        store.store_reports(&[&report("edge-1", n as u64, n, lines)], 0).unwrap();
        evaluate_window(store, config, (n * WINDOW, (n + 1) * WINDOW), n * WINDOW + WINDOW).unwrap().unwrap();
    }

    fn setup(tag: &str) -> (Store, CollectorConfig, std::path::PathBuf) {
        let dir = crate::test_dir(&format!("correlate-{tag}"));
        let mut store = Store::open(dir.to_str().unwrap()).unwrap();
        let customers = [
            customer("a1", "OLT-1", "north"),
            customer("a2", "OLT-1", "north"),
            customer("a3", "OLT-1", "north"),
            customer("b1", "OLT-2", "north"),
            customer("b2", "OLT-2", "north"),
            customer("c1", "OLT-3", "south"),
            customer("c2", "OLT-3", "south"),
        ];
        store.upsert_customers(&customers, 0).unwrap();
        (store, CollectorConfig::default(), dir)
    }

    fn summary(store: &mut Store) -> Vec<(String, String, String, Vec<String>)> {
        let mut all: Vec<_> = store
            .incidents("all", 100)
            .unwrap()
            .into_iter()
            .map(|i| (i.kind.as_str().to_string(), i.scope.values().cloned().collect(), i.state, i.customers))
            .collect();
        all.sort();
        all
    }

    /// A healthy line whose DNS went to `resolvers`: (address, answers, each in ms).
    fn dns_line(id: &str, resolvers: &[(&str, u64, u64)]) -> SubscriberReport {
        let mut l = line(id, 20);
        let mut all = new_histogram();
        for (ip, n, ms) in resolvers {
            let mut h = new_histogram();
            for _ in 0..*n {
                record(&mut h, ms * 1000);
                record(&mut all, ms * 1000);
            }
            l.resolvers.push(edgeprobe_wire::ResolverReport {
                resolver: ip.to_string(),
                dns: [("NOERROR".to_string(), *n)].into(),
                latency: (resolvers.len() > 1).then(|| WireHistogram::from_histogram(&h)),
            });
            *l.counters.dns.entry("NOERROR".into()).or_default() += n;
        }
        l.metrics.dns = Some(WireHistogram::from_histogram(&all));
        l
    }

    #[test]
    fn a_failing_resolver_is_named_and_only_its_customers_are_in_it() {
        let (mut store, config, dir) = setup("resolver");
        let (slow, fast) = ("192.0.2.53", "192.0.2.54");
        for n in 1..=3 {
            let lines = vec![
                dns_line("a1", &[(slow, 10, 400), (fast, 2, 10)]),
                dns_line("b1", &[(slow, 10, 400), (fast, 2, 10)]),
                dns_line("c1", &[(slow, 10, 400)]),
                dns_line("a2", &[(fast, 12, 10)]),
                dns_line("b2", &[(fast, 12, 10)]),
                dns_line("c2", &[(fast, 12, 10)]),
            ];
            window_of(&mut store, &config, n, lines);
        }
        let all = summary(&mut store);
        assert_eq!(
            all,
            vec![("resolver".into(), slow.into(), "open".into(), vec!["a1".into(), "b1".into(), "c1".into()])]
        );
        let incident = store.incidents("open", 10).unwrap().remove(0);
        assert!(incident.probable_cause.contains("resolver 192.0.2.53 is failing"), "{}", incident.probable_cause);
        assert!(incident.probable_cause.contains("3 of the 3 customers who asked it"), "{}", incident.probable_cause);

        // Agents that do not name resolvers: the same failure, unnamed.
        let (mut store, config, dir2) = setup("resolver-unnamed");
        for n in 1..=3 {
            let mut lines = vec![
                dns_line("a1", &[(slow, 10, 400)]),
                dns_line("b1", &[(slow, 10, 400)]),
                dns_line("c1", &[(slow, 10, 400)]),
                dns_line("a2", &[(fast, 12, 10)]),
            ];
            lines.iter_mut().for_each(|l| l.resolvers.clear());
            window_of(&mut store, &config, n, lines);
        }
        let all = summary(&mut store);
        assert_eq!(
            all,
            vec![(
                "resolver".into(),
                "subscriber resolvers".into(),
                "open".into(),
                vec!["a1".into(), "b1".into(), "c1".into()]
            )]
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn hysteresis_opens_after_n_bad_windows_and_resolves_after_m_good_ones() {
        let (mut store, config, dir) = setup("hysteresis");
        let bad = [("a1", 200), ("a2", 210), ("a3", 20), ("b1", 20), ("b2", 20)];
        let good = [("a1", 20), ("a2", 20), ("a3", 20), ("b1", 20), ("b2", 20)];
        for n in 1..=2 {
            window(&mut store, &config, n, &bad);
        }
        let node = |s: &str| {
            vec![(
                "access_node".to_string(),
                "OLT-1".to_string(),
                s.to_string(),
                vec!["a1".to_string(), "a2".to_string()],
            )]
        };
        assert_eq!(summary(&mut store), node("pending"));
        window(&mut store, &config, 3, &bad);
        assert_eq!(summary(&mut store), node("open"));
        for n in 4..=5 {
            window(&mut store, &config, n, &good);
            assert_eq!(summary(&mut store), node("open"), "window {n}");
        }
        window(&mut store, &config, 6, &good);
        assert_eq!(summary(&mut store), node("resolved"));
        // Actions were suggested while open, and ended when it resolved.
        let actions = store.actions(None, false, 100).unwrap();
        assert!(actions.iter().any(|a| a.customer_id == "a1" && a.action == "outage_notice"));
        assert!(actions.iter().all(|a| a.ended_ms.is_some()), "{actions:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gap_or_a_good_window_ends_a_pending_incident() {
        let (mut store, config, dir) = setup("pending");
        let bad = [("a1", 200), ("a2", 210), ("a3", 220)];
        window(&mut store, &config, 1, &bad);
        window(&mut store, &config, 2, &bad);
        window(&mut store, &config, 4, &[("b1", 20), ("b2", 20)]);
        assert_eq!(summary(&mut store), vec![], "a pending incident needs consecutive windows");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_bad_customer_is_a_customer_incident_and_nodes_failing_together_a_region() {
        let (mut store, config, dir) = setup("scopes");
        let lines = [("a1", 300), ("a2", 20), ("a3", 20), ("c1", 20), ("c2", 20)];
        for n in 1..=3 {
            window(&mut store, &config, n, &lines);
        }
        assert_eq!(summary(&mut store), vec![("customer".into(), "a1".into(), "open".into(), vec!["a1".into()])]);

        let (mut store, config, dir2) = setup("region");
        let lines = [("a1", 300), ("a2", 300), ("b1", 300), ("b2", 300), ("c1", 20), ("c2", 20)];
        for n in 1..=3 {
            window(&mut store, &config, n, &lines);
        }
        let all = summary(&mut store);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("region", "north"));
        assert_eq!(all[0].3, ["a1", "a2", "b1", "b2"]);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn a_journey_failing_behind_one_node_is_that_node_and_across_nodes_the_journey() {
        let (mut store, config, dir) = setup("journey-node");
        for n in 1..=3 {
            let lines = vec![
                journey_line("a1", 5, "connect"),
                journey_line("a2", 4, "connect"),
                journey_line("a3", 0, ""),
                journey_line("b1", 0, ""),
                journey_line("b2", 1, "tls"),
            ];
            window_of(&mut store, &config, n, lines);
        }
        let all = store.incidents("all", 10).unwrap();
        assert_eq!(all.len(), 1, "{all:#?}");
        let i = &all[0];
        assert_eq!((i.kind, i.state.as_str(), i.metric.as_str()), (IncidentKind::AccessNode, "open", "journey:portal"));
        assert_eq!(i.customers, ["a1", "a2"]);
        assert_eq!((&i.evidence["journey"], &i.evidence["step"]), (&json!("portal"), &json!("connect")));
        assert_eq!(i.evidence["median_value"], json!(1.0), "{}", i.evidence);
        assert!(i.probable_cause.contains("\"portal\" journey (most at step \"connect\")"), "{}", i.probable_cause);
        assert!(i.probable_cause.contains("OLT-1"), "{}", i.probable_cause);

        let (mut store, config, dir2) = setup("journey-wide");
        for n in 1..=3 {
            let lines = vec![
                journey_line("a1", 5, "tls"),
                journey_line("a2", 5, "tls"),
                journey_line("b1", 4, "tls"),
                journey_line("c1", 5, "tls"),
                journey_line("c2", 0, ""),
            ];
            window_of(&mut store, &config, n, lines);
        }
        let all = store.incidents("all", 10).unwrap();
        assert_eq!(all.len(), 1, "{all:#?}");
        let i = &all[0];
        assert_eq!((i.kind, i.scope.get("journey").map(String::as_str)), (IncidentKind::Service, Some("portal")));
        assert_eq!(i.customers, ["a1", "a2", "b1", "c1"]);
        assert_eq!(i.evidence["step"], json!("tls"));
        assert!(i.probable_cause.contains("across 3 access nodes"), "{}", i.probable_cause);
        // Good windows resolve it: the journey is measured and fine again.
        for n in 4..=6 {
            let lines = ["a1", "a2", "b1", "c1", "c2"].iter().map(|id| journey_line(id, 0, "")).collect();
            window_of(&mut store, &config, n, lines);
        }
        assert_eq!(store.incidents("resolved", 10).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn journey_rules_act_on_a_customers_own_failures_and_groups_get_figures() {
        let (mut store, mut config, dir) = setup("journey-rules");
        let mut premium = customer("a1", "OLT-1", "north");
        premium.segment = "premium".into();
        let quiet = Customer {
            customer_id: "a2".into(),
            subscriber_id: "sub-a2".into(),
            contact_opt_out: true,
            ..premium.clone()
        };
        store.upsert_customers(&[premium, quiet], 0).unwrap();
        config.actions.journey_rules = vec![crate::config::JourneyRule {
            journey: "portal".into(),
            failures: 3,
            within_hours: 24,
            segments: vec!["premium".into()],
            plans: vec![],
            action: "service_ticket".into(),
            contact: true,
        }];
        // One failed episode in five per window: 20%, not enough for an incident.
        let lines = || ["a1", "a2", "a3"].iter().map(|id| journey_line(id, 1, "tls")).collect::<Vec<_>>();
        for n in 1..=2 {
            window_of(&mut store, &config, n, lines());
        }
        assert!(store.actions(None, false, 10).unwrap().is_empty(), "two failures are below the rule");
        for n in 3..=4 {
            window_of(&mut store, &config, n, lines());
        }
        let actions = store.actions(None, false, 10).unwrap();
        assert_eq!(actions.len(), 2, "{actions:#?}");
        let a1 = actions.iter().find(|a| a.customer_id == "a1").unwrap();
        assert_eq!((a1.action.as_str(), a1.contact, a1.incident_id), ("service_ticket", true, None));
        assert_eq!(a1.rule.as_deref(), Some("journey:portal"));
        assert!(a1.reason.contains("3 \"portal\" journeys failed"), "{}", a1.reason);
        let a2 = actions.iter().find(|a| a.customer_id == "a2").unwrap();
        assert_eq!(a2.action, "none");
        assert!(a2.reason.contains("opted out"), "{}", a2.reason);
        assert!(store.incidents("all", 10).unwrap().is_empty());

        // Four windows of three customers with five episodes each, one failed at "tls".
        let stats = store.journey_stats("access_node", 0, i64::MAX).unwrap();
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!((s.group.as_str(), s.customers, s.ok, s.failed), ("OLT-1", 3, 48, 12));
        assert_eq!(s.failed_steps, [("tls".to_string(), 12)].into());
        let h = s.latency.as_ref().unwrap();
        assert_eq!(h.len(), 48);
        assert!(h.equivalent(h.value_at_quantile(0.9), 300_000));
        assert_eq!(s.to_json()["success_rate"], json!(0.8));
        let segments = store.journey_stats("segment", 2 * WINDOW, 3 * WINDOW).unwrap();
        let by: BTreeMap<&str, u64> = segments.iter().map(|s| (s.group.as_str(), s.ok + s.failed)).collect();
        assert_eq!(by, BTreeMap::from([("premium", 10), ("residential", 5)]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_late_report_counts_in_its_windows_journey_figures() {
        let (mut store, config, dir) = setup("journey-late");
        window_of(&mut store, &config, 1, vec![journey_line("a1", 1, "tls")]);
        let before = store.journey_stats("all", 0, i64::MAX).unwrap();
        assert_eq!((before[0].ok, before[0].failed), (4, 1));
        let late = report("edge-2", 0, 1, vec![journey_line("b1", 0, "")]);
        assert_eq!(store.store_reports(&[&late], 0).unwrap(), [crate::store::Stored::AfterEvaluation]);
        refresh_journey_stats(&mut store, WINDOW).unwrap();
        let after = store.journey_stats("all", 0, i64::MAX).unwrap();
        assert_eq!((after.len(), after[0].ok, after[0].failed, after[0].customers), (1, 9, 1, 2));
        let nodes = store.journey_stats("access_node", 0, i64::MAX).unwrap();
        assert_eq!(nodes.iter().map(|s| s.group.as_str()).collect::<Vec<_>>(), ["OLT-1", "OLT-2"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_silent_agent_speaks_only_for_the_lines_no_other_agent_reported_since() {
        let (mut store, config, dir) = setup("moved");
        // gw-1 served a1 and a2; a2's gateway was then swapped for gw-2.
        store.store_reports(&[&report("gw-1", 0, 1, vec![line("a1", 20), line("a2", 20)])], 0).unwrap();
        store.store_reports(&[&report("gw-2", 0, 2, vec![line("a2", 20)])], 0).unwrap();
        // A report of gw-1's from before the swap, arriving late, changes nothing.
        store.store_reports(&[&report("gw-1", 1, 0, vec![line("a2", 20)])], 0).unwrap();
        let ids = |cs: Vec<Customer>| cs.into_iter().map(|c| c.customer_id).collect::<Vec<_>>();
        assert_eq!(ids(store.agent_customers("gw-1").unwrap()), ["a1"]);
        assert_eq!(ids(store.agent_customers("gw-2").unwrap()), ["a2"]);

        let state = |online: bool| -> crate::model::AgentState {
            serde_json::from_value(json!({"online": online, "boot_id": "b"})).unwrap()
        };
        let now = 10 * WINDOW;
        store.record_state("gw-1", &state(false), now, false).unwrap();
        store.record_state("gw-2", &state(true), now, false).unwrap();
        evaluate_agents(&mut store, &config, now + config.correlation.agent_offline_after_secs as i64 * 1000).unwrap();
        let offline = summary(&mut store);
        assert_eq!(offline, [("agents_offline".into(), "OLT-1".into(), "open".into(), vec!["a1".into()])]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_forgets_the_lines_an_agent_no_longer_serves() {
        let (mut store, _, dir) = setup("retention-lines");
        // gw-1 served a1 and later only a2; gw-2 fell silent after a3; b1 moved from gw-3 to gw-4.
        store.store_reports(&[&report("gw-1", 0, 1, vec![line("a1", 20), line("a2", 20)])], 0).unwrap();
        store.store_reports(&[&report("gw-1", 1, 20, vec![line("a2", 20)])], 0).unwrap();
        store.store_reports(&[&report("gw-2", 0, 1, vec![line("a3", 20)])], 0).unwrap();
        store.store_reports(&[&report("gw-3", 0, 1, vec![line("b1", 20)])], 0).unwrap();
        store.store_reports(&[&report("gw-4", 0, 2, vec![line("b1", 20)])], 0).unwrap();
        let ids = |store: &mut Store, agent: &str| {
            store.agent_customers(agent).unwrap().into_iter().map(|c| c.customer_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&mut store, "gw-1"), ["a1", "a2"]);
        assert_eq!(store.rows("agent_subscribers"), 5);
        store.prune(10 * WINDOW).unwrap();
        assert_eq!(ids(&mut store, "gw-1"), ["a2"], "not reported by gw-1 for the whole retention");
        assert_eq!(ids(&mut store, "gw-2"), ["a3"], "a silent agent keeps its lines");
        assert_eq!(ids(&mut store, "gw-4"), ["b1"]);
        assert_eq!(store.rows("agent_subscribers"), 3, "gw-3's pair for b1 is gone too");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_drops_old_windows_and_resolved_incidents_only() {
        let (mut store, config, dir) = setup("retention");
        let bad = [("a1", 200), ("a2", 210), ("a3", 220)];
        for n in 1..=3 {
            window(&mut store, &config, n, &bad);
        }
        for n in 4..=6 {
            window(&mut store, &config, n, &[("a1", 20), ("a2", 20), ("a3", 20)]);
        }
        window(&mut store, &config, 20, &bad);
        assert_eq!(store.incidents("resolved", 10).unwrap().len(), 1);
        let resolved_at = store.incidents("resolved", 10).unwrap()[0].resolved_at.unwrap();
        // Everything before window 10 goes, and the incident that resolved before it.
        store.prune((10 * WINDOW).max(resolved_at + 1)).unwrap();
        assert!(store.incidents("resolved", 10).unwrap().is_empty());
        assert_eq!(store.incidents("pending", 10).unwrap().len(), 1, "the newer pending incident stays");
        assert!(store.subscriber_samples("sub-a1", 0).unwrap().iter().all(|s| s.window_start >= 10 * WINDOW));
        assert_eq!(store.subscriber_samples("sub-a1", 0).unwrap().len(), 2, "window 20 is kept");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
