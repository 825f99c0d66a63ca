//! Judging: one customer's (or one service's, or one resolver's) window against the plan's
//! thresholds and the customer's baseline, and the window's measurements put in the shape the
//! judge reads.

use super::{
    Baselines, Finding, Findings, JOURNEY_FAILURES, JOURNEY_LATENCY, LATENCY_METRICS, Latency, Line, Measured, Verdicts,
};

use crate::config::CollectorConfig;
use crate::customers::Customer;
use crate::store::{CounterRow, Result, SampleRow, Store};
use edgeprobe_wire::{SubscriberReport, WireHistogram};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) fn merge(rows: &[&SampleRow]) -> Latency {
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

pub(crate) fn add_counters(to: &mut CounterRow, c: &CounterRow) {
    to.connects += c.connects;
    to.connect_failures += c.connect_failures;
    to.dns_total += c.dns_total;
    to.dns_failures += c.dns_failures;
}

pub(crate) fn lines(samples: &[SampleRow], counters: Vec<(String, String, CounterRow)>) -> BTreeMap<String, Line> {
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
pub(crate) fn add_journeys(lines: &mut BTreeMap<String, Line>, window_start: i64, reports: &[SubscriberReport]) {
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
pub(crate) fn resolvers_of(
    window_start: i64,
    reports: &[SubscriberReport],
) -> BTreeMap<&str, BTreeMap<&str, Measured>> {
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
pub(crate) fn judge(
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

/// Judges every known customer's whole line, and learns baselines from good windows.
pub(super) fn verdicts<'a>(
    store: &mut Store,
    config: &CollectorConfig,
    lines: &BTreeMap<String, Line>,
    customers: &'a HashMap<String, Customer>,
    baselines: &Baselines,
) -> Result<Verdicts<'a>> {
    let c = &config.correlation;
    let mut verdicts: BTreeMap<&str, (&Customer, Findings, BTreeSet<String>)> = BTreeMap::new();
    for (key, line) in lines {
        let Some(customer) = customers.get(key) else { continue };
        let plan = config.plan(&customer.plan);
        let (bad, judged) = judge(&line.whole, plan, Some(baselines), &customer.customer_id, c);
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
    Ok(verdicts)
}
