//! What an incident says: figures in their units, the dominant metric of a group, and the
//! evidence and probable cause of a group's candidate.

use super::{Candidate, Finding, Findings, JOURNEY_FAILURES, JOURNEY_LATENCY, is_ratio, journey_of};
use crate::customers::Customer;
use crate::model::IncidentKind;
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) fn describe(metric: &str, f: &Finding) -> String {
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
pub(crate) fn metric_label(metric: &str, step: Option<&str>) -> String {
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
        "quic_hello" => "network-side QUIC handshake time",
        "quic_home" => "home-side QUIC handshake time",
        "quic_handshake" => "QUIC handshake time",
        "http_ttfb" => "HTTP time to first byte",
        "connect_failures" => "failed connects",
        _ => "experience",
    };
    label.to_string()
}

/// The metric most of the customers are bad on.
/// The metric most of the customers are bad on; on a tie, a journey, which is closest to what
/// the customers went through.
pub(crate) fn dominant<'a>(findings: impl Iterator<Item = &'a Findings>) -> String {
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn figure(metric: &str, value: f64) -> serde_json::Value {
    if is_ratio(metric) {
        json!((value * 1000.0).round() / 1000.0)
    } else {
        json!((value / 1000.0 * 10.0).round() / 10.0)
    }
}

pub(crate) fn unit(metric: &str) -> &'static str {
    if is_ratio(metric) { "ratio" } else { "ms (p90)" }
}

/// Evidence for a group: the group's median of the dominant metric against the median limit.
pub(crate) fn group_evidence(
    metric: &str,
    bad: &[(&Customer, &Findings)],
    measured: usize,
) -> (serde_json::Value, f64, f64) {
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
pub(crate) fn group_candidate(
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

pub(crate) fn fmt_value(metric: &str, v: f64) -> String {
    if is_ratio(metric) { format!("{:.0}%", v * 100.0) } else { format!("{:.0} ms", v / 1000.0) }
}
