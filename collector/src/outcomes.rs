//! Closing the loop: what happened after the actions.
//!
//! - **Outcomes** come from the operator's systems (`POST /api/v1/outcomes`, `import-outcomes`):
//!   a customer contact with its reason, a ticket closed, a churn or downgrade, a satisfaction
//!   score, each tied to a customer, a time and optionally an action. Each item is checked on
//!   its own, and refused with its reason, as customer rows are.
//! - **Recovery** is measured from the collector's own data, once the windows after an action
//!   are in: the incident's metric for the customer over the windows before the one that
//!   decided the action and after it, and the time to the first window within the plan's limit.
//! - **Effectiveness** per action type and segment compares the customers who got the action
//!   with the random hold-out who got nothing in its place: recovery rate, time to recovery,
//!   contact rate in the following days, and whether the incident came back; rates with
//!   Wilson 95% intervals and their difference with Newcombe's (method 10, built on Wilson's),
//!   medians with bootstrap percentile intervals. Customers who got nothing because of their
//!   own rules (an opt-out, the contact cap, no channel) are shown apart, never as the control:
//!   they chose, so they differ.

use crate::config::CollectorConfig;
use crate::correlate::{is_ratio, journey_of};
use crate::figures::Figure;
use crate::store::outcomes::{ActionResult, Measured, Outcome};
use crate::store::{Result, Store};
use edgeprobe_wire::{METRICS, SubscriberReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KINDS: [&str; 5] = ["contact", "ticket_closed", "churn", "downgrade", "satisfaction"];
/// Items one request or file may hold.
pub const MAX_ITEMS: usize = 10_000;
/// How far ahead of the collector's clock an outcome may be dated.
const MAX_AHEAD_MS: i64 = 300_000;

/// One outcome as the operator's systems send it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    pub customer_id: String,
    pub kind: String,
    /// When it happened, Unix ms.
    pub at_ms: i64,
    #[serde(default)]
    pub action_id: Option<i64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub score: Option<f64>,
    /// The sender's own id for it: sending the same id again adds nothing.
    #[serde(default)]
    pub external_id: String,
}

/// Items of a batch, each by its index or line, parsed or with why not.
pub type Items = Vec<(u64, std::result::Result<OutcomeInput, String>)>;

/// What came of a batch: accepted, already known (by `external_id`), and refused with reasons,
/// by item (the index in a request, the line in a file).
#[derive(Debug, Default, Serialize)]
pub struct Recorded {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Refused>,
}

#[derive(Debug, Serialize)]
pub struct Refused {
    pub item: u64,
    pub reason: String,
}

fn text_ok(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

/// The outcome an item records, or why it records none.
fn check(
    store: &mut Store,
    config: &CollectorConfig,
    o: OutcomeInput,
    source: &str,
    now_ms: i64,
) -> Result<std::result::Result<Outcome, String>> {
    let refuse = |why: String| Ok(Err(why));
    if !KINDS.contains(&o.kind.as_str()) {
        return refuse(format!("kind {:?} is not one of {}", o.kind, KINDS.join(", ")));
    }
    let oldest = now_ms - config.storage.retention_days as i64 * 86_400_000;
    if o.at_ms > now_ms + MAX_AHEAD_MS || (config.storage.retention_days > 0 && o.at_ms < oldest) || o.at_ms <= 0 {
        return refuse(format!("at_ms {} is in the future or older than retention", o.at_ms));
    }
    match (o.kind.as_str(), o.score) {
        ("satisfaction", Some(s)) if (0.0..=10.0).contains(&s) => {}
        ("satisfaction", _) => return refuse("a satisfaction outcome needs a score from 0 to 10".into()),
        (_, Some(_)) => return refuse(format!("only satisfaction outcomes have a score, not {}", o.kind)),
        _ => {}
    }
    if !text_ok(&o.reason, 1024) || !text_ok(&o.channel, 64) || !text_ok(&o.external_id, 256) {
        return refuse(
            "reason (1 KiB), channel (64 bytes) and external_id (256 bytes) are too long or hold control characters"
                .into(),
        );
    }
    if o.customer_id.is_empty() || store.customer(&o.customer_id)?.is_none() {
        return refuse(format!("no customer {:?}", o.customer_id));
    }
    if let Some(id) = o.action_id {
        match store.action_customer(id)? {
            Some(c) if c == o.customer_id => {}
            Some(c) => return refuse(format!("action {id} was for customer {c:?}, not {:?}", o.customer_id)),
            None => return refuse(format!("no action {id}")),
        }
    }
    Ok(Ok(Outcome {
        id: 0,
        customer_id: o.customer_id,
        kind: o.kind,
        at_ms: o.at_ms,
        action_id: o.action_id,
        reason: o.reason,
        channel: o.channel,
        score: o.score,
        source: source.to_string(),
        external_id: o.external_id,
    }))
}

/// Records a batch in one transaction; each item is judged on its own.
pub fn record(
    store: &mut Store,
    config: &CollectorConfig,
    items: Items,
    source: &str,
    now_ms: i64,
) -> Result<Recorded> {
    store.transaction(false, |store| {
        let mut out = Recorded::default();
        for (item, input) in items {
            let checked = match input {
                Ok(o) => check(store, config, o, source, now_ms)?,
                Err(e) => Err(e),
            };
            match checked {
                Ok(o) if store.insert_outcome(&o, now_ms)? => out.accepted += 1,
                Ok(_) => out.duplicates += 1,
                Err(reason) => out.rejected.push(Refused { item, reason }),
            }
        }
        Ok(out)
    })
}

/// Items of a JSON request: one outcome or an array of them; index from 0.
pub fn from_json(body: serde_json::Value) -> std::result::Result<Items, String> {
    let items = match body {
        serde_json::Value::Array(items) => items,
        one @ serde_json::Value::Object(_) => vec![one],
        _ => return Err("the body must be an outcome or an array of outcomes".into()),
    };
    if items.len() > MAX_ITEMS {
        return Err(format!("at most {MAX_ITEMS} outcomes per request"));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u64, serde_json::from_value(v).map_err(|e| e.to_string())))
        .collect())
}

/// Rows of a CSV file, by line (the header is line 1). The header must name `customer_id`,
/// `kind` and `at_ms`, and may name `action_id`, `reason`, `channel`, `score`, `external_id`.
pub fn from_csv(input: impl std::io::Read) -> std::result::Result<Items, String> {
    const COLUMNS: [&str; 8] =
        ["customer_id", "kind", "at_ms", "action_id", "reason", "channel", "score", "external_id"];
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let header = reader.headers().map_err(|e| format!("line 1: unreadable header: {e}"))?.clone();
    if let Some(unknown) = header.iter().find(|h| !COLUMNS.contains(h)) {
        return Err(format!("line 1: unknown column {unknown:?}; columns are {}", COLUMNS.join(", ")));
    }
    if let Some(missing) = COLUMNS[..3].iter().find(|c| !header.iter().any(|h| h == **c)) {
        return Err(format!("line 1: missing column {missing:?}"));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        if out.len() >= MAX_ITEMS * 100 {
            return Err(format!("more than {} rows", MAX_ITEMS * 100));
        }
        let (line, row) = match record {
            Ok(r) => (r.position().map_or(0, |p| p.line()), r),
            Err(e) => {
                out.push((e.position().map_or(0, |p| p.line()), Err(format!("unreadable row: {e}"))));
                continue;
            }
        };
        if row.len() != header.len() {
            out.push((line, Err(format!("{} fields, header has {}", row.len(), header.len()))));
            continue;
        }
        let field = |name: &str| header.iter().position(|h| h == name).and_then(|i| row.get(i)).unwrap_or("");
        let number = |name: &str| -> std::result::Result<Option<String>, String> {
            Ok(Some(field(name).to_string()).filter(|v| !v.is_empty()))
        };
        let parsed = (|| -> std::result::Result<OutcomeInput, String> {
            let int = |name: &str| -> std::result::Result<Option<i64>, String> {
                number(name)?
                    .map(|v| v.parse::<i64>().map_err(|_| format!("{name} {v:?} is not a whole number")))
                    .transpose()
            };
            let score = number("score")?
                .map(|v| v.parse::<f64>().ok().filter(|s| s.is_finite()).ok_or(format!("score {v:?} is not a number")))
                .transpose()?;
            Ok(OutcomeInput {
                customer_id: field("customer_id").to_string(),
                kind: field("kind").to_string(),
                at_ms: int("at_ms")?.ok_or("at_ms is empty")?,
                action_id: int("action_id")?,
                reason: field("reason").to_string(),
                channel: field("channel").to_string(),
                score,
                external_id: field("external_id").to_string(),
            })
        })();
        out.push((line, parsed));
    }
    Ok(out)
}

/// One metric of `lines`, per window: merged histograms for a latency, failures over attempts
/// for a ratio.
pub fn windows_of(lines: &[(i64, SubscriberReport)], metric: &str) -> BTreeMap<i64, Figure> {
    let mut out: BTreeMap<i64, Figure> = BTreeMap::new();
    for (ws, line) in lines {
        let w = out.entry(*ws).or_default();
        let c = crate::store::counter_row(&line.counters);
        let int = |v: i64| u64::try_from(v).unwrap_or(0);
        match metric {
            m if METRICS.contains(&m) => {
                if let Some(h) = line.metrics.get(m).filter(|h| h.count > 0) {
                    w.add(h);
                }
            }
            "dns_failures" => {
                w.bad += int(c.dns_failures);
                w.total += int(c.dns_total);
            }
            "connect_failures" => {
                w.bad += int(c.connect_failures);
                w.total += int(c.connects + c.connect_failures);
            }
            m => {
                let Some(name) = journey_of(m) else { continue };
                let latency = !is_ratio(m);
                for j in line.journeys.iter().filter(|j| j.journey == name) {
                    if latency {
                        if let Some(h) = j.latency.as_ref().filter(|h| h.count > 0) {
                            w.add(h);
                        }
                    } else {
                        w.bad += j.failed + j.timeout;
                        w.total += j.ok + j.failed + j.timeout;
                    }
                }
            }
        }
    }
    out.retain(|_, w| w.has_latency() || w.total > 0);
    out
}

/// The metric an action's recovery is judged on: the incident's, or the rule's journey.
fn metric_of(store: &mut Store, a: &crate::model::Action) -> Result<Option<String>> {
    if let Some(rule) = &a.rule {
        return Ok(rule.strip_prefix("journey:").map(|j| format!("{}{j}", crate::correlate::JOURNEY_FAILURES)));
    }
    match a.incident_id {
        Some(id) => Ok(store.incident(id)?.map(|i| i.metric)),
        None => Ok(None),
    }
}

/// The limit a metric is judged against: a p90 in µs for a latency, a share of failures
/// for a ratio; None for a metric the plan does not bound.
fn limit(plan: &crate::config::PlanThresholds, metric: &str) -> Option<f64> {
    match metric {
        "dns_failures" => Some(plan.dns_failure_ratio),
        "connect_failures" => Some(plan.connect_failure_ratio),
        m if m.starts_with(crate::correlate::JOURNEY_FAILURES) => Some(plan.journey_failure_ratio),
        m => match m.strip_prefix(crate::correlate::JOURNEY_LATENCY) {
            Some(journey) => plan.journey_p90_ms.get(journey).map(|ms| ms * 1000.0),
            None => plan.latency_us(m),
        },
    }
}

/// A figure's value: the p90 (µs) of a latency, the share of failures of a ratio.
fn value(metric: &str, f: &Figure) -> Option<f64> {
    if is_ratio(metric) {
        (f.total > 0).then(|| f.bad as f64 / f.total as f64)
    } else {
        f.quantile(0.9).map(|v| v as f64)
    }
}

/// Measures the recovery of one action from the customer's windows around it.
fn measure_one(store: &mut Store, config: &CollectorConfig, a: &crate::model::Action) -> Result<ActionResult> {
    let Some(metric) = metric_of(store, a)? else { return Ok(ActionResult::default()) };
    let Some(customer) = store.customer(&a.customer_id)? else {
        return Ok(ActionResult { metric, ..Default::default() });
    };
    let o = &config.outcomes;
    let (before, after) = (o.before_minutes as i64 * 60_000, o.after_minutes as i64 * 60_000);
    let lines = store.subscriber_lines(&customer.subscriber_id, a.window_ms - before, a.window_ms + after + 1)?;
    let windows = windows_of(&lines, &metric);
    let threshold = limit(config.plan(&customer.plan), &metric);
    let (mut before_fig, mut after_fig) = (Figure::default(), Figure::default());
    let mut first_good = None;
    let mut judged_after = false;
    for (ws, f) in windows {
        if ws <= a.window_ms {
            before_fig.absorb(f);
            continue;
        }
        if let (Some(v), Some(limit)) = (value(&metric, &f), threshold) {
            judged_after = true;
            if v <= limit && first_good.is_none() {
                first_good = Some(ws);
            }
        }
        after_fig.absorb(f);
    }
    let recovered = (threshold.is_some() && judged_after).then_some(first_good.is_some());
    Ok(ActionResult {
        before_value: value(&metric, &before_fig),
        after_value: value(&metric, &after_fig),
        threshold,
        recovered,
        recovery_ms: first_good.map(|ws| ws - a.window_ms),
        metric,
    })
}

/// Measures the actions whose windows after are in: by the data's own clock (the latest
/// evaluated window), or by the wall clock an hour later for a line that fell silent. Returns
/// how many were measured; at most `limit` a call, so the writer is never held long.
pub fn measure(store: &mut Store, config: &CollectorConfig, now_ms: i64, limit: i64) -> Result<usize> {
    let after = config.outcomes.after_minutes as i64 * 60_000;
    let data_clock = store.latest_evaluated_window()?.unwrap_or(0);
    let due_before = (data_clock - after).max(now_ms - after - 3_600_000);
    let due = store.actions_to_measure(due_before, limit)?;
    if due.is_empty() {
        return Ok(0);
    }
    store.transaction(false, |store| {
        for a in &due {
            let result = measure_one(store, config, a)?;
            store.save_action_result(a.id, &result, now_ms)?;
        }
        Ok(due.len())
    })
}

/// A figure with its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

const Z: f64 = 1.959_963_984_540_054;

/// Wilson's score interval for `x` successes in `n`.
pub fn wilson(x: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval { value: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) })
}

/// Newcombe's interval (method 10) for the difference of two rates, `x1/n1 - x2/n2`.
pub fn newcombe(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Interval> {
    let (a, b) = (wilson(x1, n1)?, wilson(x2, n2)?);
    let d = a.value - b.value;
    let low = d - ((a.value - a.low).powi(2) + (b.high - b.value).powi(2)).sqrt();
    let high = d + ((a.high - a.value).powi(2) + (b.value - b.low).powi(2)).sqrt();
    Some(Interval { value: d, low, high })
}

/// Resamples drawn for a bootstrap interval.
const RESAMPLES: usize = 2000;

/// splitmix64: a small, seeded generator, so the same data gives the same interval.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn resampled_median(v: &[f64], state: &mut u64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend((0..v.len()).map(|_| v[(next(state) % v.len() as u64) as usize]));
    median(scratch)
}

fn percentile_interval(value: f64, mut draws: Vec<f64>) -> Interval {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    Interval { value, low: at(0.025), high: at(0.975) }
}

/// The median of `v` with a bootstrap percentile interval.
pub fn bootstrap_median(v: &[f64], seed: u64) -> Option<Interval> {
    if v.is_empty() {
        return None;
    }
    let (mut state, mut scratch) = (seed, Vec::with_capacity(v.len()));
    let draws = (0..RESAMPLES).map(|_| resampled_median(v, &mut state, &mut scratch)).collect();
    Some(percentile_interval(median(&mut v.to_vec()), draws))
}

/// The difference of the medians of `a` and `b`, each resampled on its own.
pub fn bootstrap_median_difference(a: &[f64], b: &[f64], seed: u64) -> Option<Interval> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (mut state, mut scratch) = (seed, Vec::new());
    let draws = (0..RESAMPLES)
        .map(|_| resampled_median(a, &mut state, &mut scratch) - resampled_median(b, &mut state, &mut scratch))
        .collect();
    Some(percentile_interval(median(&mut a.to_vec()) - median(&mut b.to_vec()), draws))
}

/// One arm of a comparison: the customers who got the action, the hold-out, or those whose
/// own rules stopped it.
#[derive(Debug, Default, Serialize)]
pub struct Arm {
    pub actions: u64,
    /// Of those, with a recovery judged (a metric with a limit and windows after).
    pub measured: u64,
    pub recovered: u64,
    pub recovery_rate: Option<Interval>,
    /// Median time to recovery in ms, of those that recovered.
    pub time_to_recovery_ms: Option<Interval>,
    /// Customers with a contact outcome in the `contact_days` after.
    pub contacted: u64,
    pub contact_rate: Option<Interval>,
    /// Of the incidents that resolved, those that came back within `recurrence_minutes`.
    pub resolved_incidents: u64,
    pub recurred: u64,
    pub recurrence_rate: Option<Interval>,
    #[serde(skip)]
    times: Vec<f64>,
}

impl Arm {
    fn add(&mut self, m: &Measured, contacted: bool, recurred: Option<bool>) {
        self.actions += 1;
        if let Some(r) = m.recovered {
            self.measured += 1;
            self.recovered += u64::from(r);
            if let (true, Some(t)) = (r, m.recovery_ms) {
                self.times.push(t as f64);
            }
        }
        self.contacted += u64::from(contacted);
        if let Some(r) = recurred {
            self.resolved_incidents += 1;
            self.recurred += u64::from(r);
        }
    }

    fn finish(&mut self, seed: u64) {
        self.recovery_rate = wilson(self.recovered, self.measured);
        self.time_to_recovery_ms = bootstrap_median(&self.times, seed);
        self.contact_rate = wilson(self.contacted, self.actions);
        self.recurrence_rate = wilson(self.recurred, self.resolved_incidents);
    }
}

/// The action against the hold-out: differences of rates and of median times (action minus
/// hold-out; a negative contact rate or time to recovery is better).
#[derive(Debug, Default, Serialize)]
pub struct Uplift {
    pub recovery_rate: Option<Interval>,
    pub time_to_recovery_ms: Option<Interval>,
    pub contact_rate: Option<Interval>,
}

#[derive(Debug, Serialize)]
pub struct Effect {
    /// The action type as intended; `segment` is `all` for every segment together.
    pub action: String,
    pub segment: String,
    pub treated: Arm,
    pub holdout: Arm,
    /// Customers who got nothing because they opted out, hit the contact cap or accept no
    /// channel the action uses: shown apart, never the control.
    pub refused: Arm,
    pub uplift: Uplift,
}

/// Effectiveness of the actions decided in windows of `[since, until)`.
pub fn effectiveness(store: &mut Store, config: &CollectorConfig, since: i64, until: i64) -> Result<Vec<Effect>> {
    let measured = store.measured_actions(since, until)?;
    let customers: Vec<String> = measured.iter().map(|m| m.customer_id.clone()).collect();
    let contact_span = config.outcomes.contact_days as i64 * 86_400_000;
    let contacts = store.outcome_times(&customers, "contact", since, until + contact_span)?;
    let recurrence = config.outcomes.recurrence_minutes as i64 * 60_000;
    let mut recurred: BTreeMap<i64, Option<bool>> = BTreeMap::new();
    for id in measured.iter().filter_map(|m| m.incident_id) {
        if let std::collections::btree_map::Entry::Vacant(e) = recurred.entry(id) {
            e.insert(store.incident_recurred(id, recurrence)?);
        }
    }
    let mut groups: BTreeMap<(String, String), Effect> = BTreeMap::new();
    for m in &measured {
        let contacted = contacts
            .get(&m.customer_id)
            .is_some_and(|times| times.iter().any(|t| *t >= m.window_ms && *t < m.window_ms + contact_span));
        let came_back = m.incident_id.and_then(|id| recurred.get(&id).copied().flatten());
        for segment in ["all", m.segment.as_str()] {
            let e = groups.entry((m.intended.clone(), segment.to_string())).or_insert_with(|| Effect {
                action: m.intended.clone(),
                segment: segment.to_string(),
                treated: Arm::default(),
                holdout: Arm::default(),
                refused: Arm::default(),
                uplift: Uplift::default(),
            });
            let arm = match m.action.as_str() {
                "holdout" => &mut e.holdout,
                a if a == m.intended => &mut e.treated,
                _ => &mut e.refused,
            };
            arm.add(m, contacted, came_back);
        }
    }
    let mut out: Vec<Effect> = groups.into_values().collect();
    for (i, e) in out.iter_mut().enumerate() {
        let seed = 0x5EED ^ i as u64;
        e.treated.finish(seed);
        e.holdout.finish(seed + 1);
        e.refused.finish(seed + 2);
        let (t, h) = (&e.treated, &e.holdout);
        e.uplift = Uplift {
            recovery_rate: newcombe(t.recovered, t.measured, h.recovered, h.measured),
            time_to_recovery_ms: bootstrap_median_difference(&t.times, &h.times, seed + 3),
            contact_rate: newcombe(t.contacted, t.actions, h.contacted, h.actions),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_and_newcombe_match_the_published_examples() {
        // Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 against 48/80,
        // a difference of 0.2000 with the 95% interval 0.0524 to 0.3339 (method 10).
        let a = wilson(56, 70).unwrap();
        assert!(close(a.low, 0.6918) && close(a.high, 0.8770), "{a:?}");
        let d = newcombe(56, 70, 48, 80).unwrap();
        assert!(close(d.value, 0.2) && close(d.low, 0.0524) && close(d.high, 0.3339), "{d:?}");
        // Edges: none and all.
        let none = wilson(0, 10).unwrap();
        assert!(close(none.low, 0.0) && close(none.high, 0.2775), "{none:?}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn bootstrap_intervals_hold_the_median_and_repeat() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        let m = bootstrap_median(&v, 7).unwrap();
        assert_eq!(m.value, 51.0);
        assert!(m.low < 51.0 && m.high > 51.0 && m.low > 35.0 && m.high < 67.0, "{m:?}");
        assert_eq!(bootstrap_median(&v, 7), Some(m), "seeded");
        let shifted: Vec<f64> = v.iter().map(|x| x + 30.0).collect();
        let d = bootstrap_median_difference(&shifted, &v, 9).unwrap();
        assert_eq!(d.value, 30.0);
        assert!(d.low > 0.0 && d.high < 60.0, "{d:?}");
    }

    #[test]
    fn csv_rows_are_checked_by_line() {
        let csv = "customer_id,kind,at_ms,score,reason\nC1,contact,1000,,no service\nC2,satisfaction,x,7,\nC3,satisfaction,2000,high,\n";
        let rows = from_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.as_ref().unwrap().reason, "no service");
        assert!(rows[1].1.as_ref().unwrap_err().contains("at_ms \"x\""), "{:?}", rows[1]);
        assert!(rows[2].1.as_ref().unwrap_err().contains("score \"high\""), "{:?}", rows[2]);
        assert!(from_csv("customer_id,kind,when\n".as_bytes()).unwrap_err().contains("unknown column \"when\""));
        assert!(from_csv("customer_id,kind\n".as_bytes()).unwrap_err().contains("missing column \"at_ms\""));
    }
}
