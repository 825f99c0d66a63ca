//! Journey figures: episodes per window and group, merged for the API and console.

use super::{Result, Store, Value, json, row_shape};
use crate::figures::add_encoded;
use std::collections::BTreeMap;

/// One journey's episodes in a group of customers: a window's when stored, a range's when
/// read back, with the latency histogram merged exactly.
#[derive(Clone, Debug, Default)]
pub struct JourneyStats {
    pub dimension: String,
    pub group: String,
    pub journey: String,
    pub phase: String,
    pub channel: String,
    /// Customers who ran the journey.
    pub customers: u64,
    pub ok: u64,
    pub failed: u64,
    pub timeout: u64,
    pub abandoned: u64,
    pub failed_steps: BTreeMap<String, u64>,
    pub latency: Option<hdrhistogram::Histogram<u64>>,
}

impl JourneyStats {
    /// Empty figures for `journey` in one group.
    pub fn new(dimension: &str, group: &str, j: &edgeprobe_wire::JourneyReport) -> JourneyStats {
        JourneyStats {
            dimension: dimension.into(),
            group: group.into(),
            journey: j.journey.clone(),
            phase: j.phase.clone(),
            channel: j.channel.clone(),
            ..JourneyStats::default()
        }
    }

    /// Adds one subscriber-window's episodes of the journey.
    pub fn add(&mut self, j: &edgeprobe_wire::JourneyReport) {
        self.ok += j.ok;
        self.failed += j.failed;
        self.timeout += j.timeout;
        self.abandoned += j.abandoned;
        self.add_steps(&j.failed_steps);
        if let Some(h) = &j.latency {
            self.add_latency(&h.hdr);
        }
    }

    pub fn add_steps(&mut self, steps: &BTreeMap<String, u64>) {
        for (step, n) in steps {
            *self.failed_steps.entry(step.clone()).or_default() += n;
        }
    }

    /// Adds a V2-encoded histogram; bytes that do not decode add nothing.
    pub fn add_latency(&mut self, hdr: &[u8]) {
        add_encoded(&mut self.latency, hdr);
    }

    /// The API's shape: counts, success rate and latency percentiles in µs.
    pub fn to_json(&self) -> serde_json::Value {
        let episodes = self.ok + self.failed + self.timeout;
        let pct = |q: f64| self.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q));
        serde_json::json!({
            "journey": self.journey,
            "phase": self.phase,
            "channel": self.channel,
            "customers": self.customers,
            "episodes": episodes,
            "ok": self.ok,
            "failed": self.failed,
            "timeout": self.timeout,
            "abandoned": self.abandoned,
            "success_rate": (episodes > 0).then(|| (self.ok as f64 / episodes as f64 * 10_000.0).round() / 10_000.0),
            "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
            "failed_steps": self.failed_steps,
        })
    }
}

impl Store {
    /// Failed and timed-out episodes of one journey of a subscriber in `[since_ms, until_ms)`.
    pub fn journey_failures(
        &mut self,
        subscriber_id: &str,
        journey: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<u64> {
        Ok(self
            .subscriber_lines(subscriber_id, since_ms, until_ms)?
            .iter()
            .flat_map(|(_, line)| line.journeys.iter().filter(|j| j.journey == journey))
            .map(|j| j.failed + j.timeout)
            .sum())
    }

    /// Stores one window's journey figures per group (see `JourneyStats`).
    pub fn save_journey_stats(&mut self, window_start: i64, stats: &[JourneyStats]) -> Result<()> {
        let mut rows: Vec<Value> = Vec::with_capacity(stats.len() * 13);
        for s in stats {
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let hdr = s.latency.as_ref().map(|h| edgeprobe_wire::WireHistogram::from_histogram(h).hdr);
            rows.extend([
                window_start.into(),
                s.dimension.as_str().into(),
                s.group.as_str().into(),
                s.journey.as_str().into(),
                s.phase.as_str().into(),
                s.channel.as_str().into(),
                int(s.customers).into(),
                int(s.ok).into(),
                int(s.failed).into(),
                int(s.timeout).into(),
                int(s.abandoned).into(),
                json(&s.failed_steps).into(),
                hdr.unwrap_or_default().into(),
            ]);
        }
        self.insert_rows(
            "INSERT INTO journey_stats (window_start, dimension, grp, journey, phase, channel, customers, ok, failed, \
             timeout, abandoned, failed_steps, hdr)",
            &row_shape(13),
            13,
            &rows,
            "",
        )
    }

    pub fn delete_journey_stats(&mut self, window_start: i64) -> Result<()> {
        self.db.execute("DELETE FROM journey_stats WHERE window_start = ?", &[window_start.into()])?;
        Ok(())
    }

    /// Journey figures per group of one dimension (`all`, `segment`, `region` or
    /// `access_node`) over windows in `[since_ms, until_ms)`, merged.
    pub fn journey_stats(&mut self, dimension: &str, since_ms: i64, until_ms: i64) -> Result<Vec<JourneyStats>> {
        let rows = self.db.query(
            "SELECT grp, journey, phase, channel, customers, ok, failed, timeout, abandoned, failed_steps, hdr \
             FROM journey_stats WHERE dimension = ? AND window_start >= ? AND window_start < ?",
            &[dimension.into(), since_ms.into(), until_ms.into()],
        )?;
        let mut merged: BTreeMap<(String, String), JourneyStats> = BTreeMap::new();
        for r in rows {
            let u = |i: usize| u64::try_from(r.int(i)).unwrap_or(0);
            let s = merged.entry((r.text(0), r.text(1))).or_insert_with(|| JourneyStats {
                dimension: dimension.to_string(),
                group: r.text(0),
                journey: r.text(1),
                phase: r.text(2),
                channel: r.text(3),
                ..JourneyStats::default()
            });
            // Customers differ from window to window; the busiest window is a lower bound.
            s.customers = s.customers.max(u(4));
            s.ok += u(5);
            s.failed += u(6);
            s.timeout += u(7);
            s.abandoned += u(8);
            let steps: BTreeMap<String, u64> = serde_json::from_str(&r.text(9)).unwrap_or_default();
            s.add_steps(&steps);
            s.add_latency(&r.bytes(10));
        }
        Ok(merged.into_values().collect())
    }
}
