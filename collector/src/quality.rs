//! Latency under load and Quality of Outcome, per line and window.
//!
//! The agents time round trips on established TCP connections on both sides of the probe, and
//! tell those taken while the line was loaded (`rtt_*_loaded`). Per line and side:
//! - the **idle baseline**: each window's idle round trips (all minus loaded) give their low
//!   percentile (`baseline_percentile`); the baseline is the lowest of those over the last
//!   `baseline_history_hours`, as LEDBAT keeps its base delay (RFC 6817, section 3.4.2), so a
//!   busy evening does not raise it and a route change lowers it at once;
//! - the **working-latency increase**: the loaded round trips' p90 minus that baseline.
//!
//! **Quality of Outcome** follows draft-ietf-ippm-qoo-10 (15 May 2026), section 3.3: per
//! application profile, each latency percentile of the requirement scores
//! `1 - (measured - ROP) / (CPUP - ROP)` clamped to [0, 1], the loss ratio the same way, and the
//! score is the lowest, times 100. The measured latency is the line's two-way client-to-server
//! round trip: the home side's and the network side's distributions convolved (Quality
//! Attenuation composes segments so, TR-452.1), all of the window's samples, loaded or not.
//! A passive probe sees no loss ratio; the retransmitted segments over all packets of the line
//! stand in for it. Nor does it measure capacity, so the draft's binary throughput component is
//! left out: the score is min(latency, loss).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// `[working_latency]`: baselines, the bufferbloat rule and the QoO profiles.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkingLatencyConfig {
    /// The percentile of a window's idle round trips that stands for it (10: the low end of
    /// what the line does when nothing queues).
    pub baseline_percentile: f64,
    /// How far back the lowest of those reaches.
    pub baseline_history_hours: u64,
    /// Round trips a side needs in a window, idle for its baseline, loaded for its increase.
    pub min_samples: u64,
    /// Bufferbloat: a side's loaded p90 at least this far above its baseline ...
    pub bloat_min_ms: f64,
    /// ... and this many times it, in `correlation.open_after` windows running.
    pub bloat_factor: f64,
    /// Application profiles to score; the defaults are below.
    pub profiles: Vec<QooProfile>,
}

/// One application's requirements, as draft-ietf-ippm-qoo-10 section 3.2 describes them:
/// latency at percentiles for optimal performance (ROP) and at the point of unacceptable
/// performance (CPUP), and a loss ratio for each.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QooProfile {
    pub name: String,
    /// `[percentile, milliseconds]` pairs; CPUP names the same percentiles.
    pub rop: Vec<[f64; 2]>,
    pub cpup: Vec<[f64; 2]>,
    pub rop_loss: f64,
    pub cpup_loss: f64,
}

impl Default for WorkingLatencyConfig {
    fn default() -> Self {
        WorkingLatencyConfig {
            baseline_percentile: 10.0,
            baseline_history_hours: 24,
            min_samples: 20,
            bloat_min_ms: 100.0,
            bloat_factor: 2.0,
            profiles: default_profiles(),
        }
    }
}

/// The defaults. The drafts give one application's requirements: draft-ietf-ippm-qoo-02
/// section 7.1's video-conferencing example (ROP {0 %: 70 ms, 99 %: 100 ms}, CPUP {0 %:
/// 500 ms, 99 %: 1000 ms}), used here with the loss bounds of draft-ietf-ippm-qoo-10 section
/// 3.4's generic example (1 % and 5 %). The other three are edgeprobe's own, to be replaced by
/// an operator's: web browsing after BITAG's "Latency Explained" (a page load takes tens of
/// round trips), gaming after the sources the draft cites (Microsoft's remote-play test results,
/// the CS:GO study: play suffers past 50 ms and breaks down past a few hundred), and streaming
/// after what a player's seconds of buffer absorb (delay matters little, loss more).
pub fn default_profiles() -> Vec<QooProfile> {
    let p = |name: &str, rop: &[[f64; 2]], cpup: &[[f64; 2]], loss: (f64, f64)| QooProfile {
        name: name.into(),
        rop: rop.to_vec(),
        cpup: cpup.to_vec(),
        rop_loss: loss.0,
        cpup_loss: loss.1,
    };
    vec![
        p("web_browsing", &[[50.0, 50.0], [90.0, 150.0]], &[[50.0, 400.0], [90.0, 1000.0]], (0.01, 0.10)),
        p("video_streaming", &[[99.0, 500.0], [99.9, 800.0]], &[[99.0, 2000.0], [99.9, 3000.0]], (0.01, 0.05)),
        p("video_conferencing", &[[0.0, 70.0], [99.0, 100.0]], &[[0.0, 500.0], [99.0, 1000.0]], (0.01, 0.05)),
        p("online_gaming", &[[50.0, 20.0], [99.0, 50.0]], &[[50.0, 100.0], [99.0, 250.0]], (0.001, 0.02)),
    ]
}

impl WorkingLatencyConfig {
    /// Every problem, as (dotted field, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: String, reason: &str| out.push((field, reason.to_string()));
        if !(0.0..100.0).contains(&self.baseline_percentile) {
            bad("working_latency.baseline_percentile".into(), "must be at least 0 and below 100");
        }
        if self.baseline_history_hours == 0 {
            bad("working_latency.baseline_history_hours".into(), "must be at least 1");
        }
        if !(self.bloat_min_ms >= 0.0 && self.bloat_factor >= 1.0) {
            bad("working_latency.bloat_min_ms".into(), "needs bloat_min_ms >= 0 and bloat_factor >= 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.profiles.iter().enumerate() {
            let at = format!("working_latency.profiles[{i}]");
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                bad(format!("{at}.name"), "must be given, once");
            }
            let pct = |v: &[[f64; 2]]| v.iter().map(|x| x[0].to_bits()).collect::<Vec<_>>();
            if p.rop.is_empty() || pct(&p.rop) != pct(&p.cpup) {
                bad(format!("{at}.cpup"), "must name the same percentiles as rop, in the same order");
            }
            let sound = |[q, ms]: [f64; 2]| (0.0..=100.0).contains(&q) && ms >= 0.0;
            if !p.rop.iter().chain(&p.cpup).all(|x| sound(*x)) || p.rop.iter().zip(&p.cpup).any(|(r, c)| c[1] <= r[1]) {
                bad(format!("{at}.rop"), "percentiles in 0..=100, CPUP latencies above ROP's");
            }
            if !((0.0..1.0).contains(&p.rop_loss) && p.cpup_loss > p.rop_loss && p.cpup_loss <= 1.0) {
                bad(format!("{at}.cpup_loss"), "loss ratios with 0 <= rop_loss < cpup_loss <= 1");
            }
        }
        out
    }
}

/// One side of the probe in one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SideFigures {
    /// Round trips taken, and how many of them while the line was loaded.
    pub samples: u64,
    pub loaded: u64,
    /// The idle round trips' low percentile (µs), given `min_samples` of them.
    pub idle_low_us: Option<u64>,
    /// The lowest idle low percentile over the history, this window's included.
    pub baseline_us: Option<u64>,
    /// The loaded round trips' p90, given `min_samples` of them, and its rise over the baseline.
    pub loaded_p90_us: Option<u64>,
    pub increase_us: Option<i64>,
    /// The rise passes the bufferbloat rule.
    pub bloated: bool,
}

/// One line's working latency and Quality of Outcome in one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineQuality {
    pub customer_id: String,
    pub window_start: i64,
    pub home: SideFigures,
    pub network: SideFigures,
    /// Retransmitted segments over the line's packets.
    pub loss_ratio: Option<f64>,
    /// Score (0 to 100) by profile name, where the line had round trips on both sides.
    pub qoo: std::collections::BTreeMap<String, f64>,
}

/// A line's round trips in a window: all and loaded, home and network side (the order of
/// `edgeprobe_wire::RTT_METRICS`), merged over the agents that reported it.
#[derive(Default)]
pub struct LineRtt {
    pub histograms: [Option<Histogram<u64>>; 4],
    pub retrans: u64,
    pub packets: u64,
}

impl LineRtt {
    pub fn add(&mut self, line: &edgeprobe_wire::SubscriberReport) {
        for (slot, name) in self.histograms.iter_mut().zip(edgeprobe_wire::RTT_METRICS) {
            let Some(h) = line.metrics.get(name).and_then(|w| w.histogram().ok()) else { continue };
            match slot {
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => *slot = Some(h),
            }
        }
        let c = &line.counters;
        self.retrans += c.retrans_up + c.retrans_down;
        self.packets += c.packets_up + c.packets_down;
    }
}

/// Judges one line's window: working latency by side against `history` (the lowest idle low
/// percentile of earlier windows, by side), and QoO by profile.
pub fn assess(
    config: &WorkingLatencyConfig,
    (customer_id, window_start): (&str, i64),
    rtt: &LineRtt,
    history: [Option<u64>; 2],
) -> LineQuality {
    let side = |i: usize| {
        let (all, loaded) = (rtt.histograms[i].as_ref(), rtt.histograms[2 + i].as_ref());
        let mut f = SideFigures {
            samples: all.map_or(0, |h| h.len()),
            loaded: loaded.map_or(0, |h| h.len()),
            ..SideFigures::default()
        };
        if let Some(all) = all {
            let mut idle = all.clone();
            if let Some(l) = loaded {
                let _ = idle.subtract(l);
            }
            if idle.len() >= config.min_samples {
                f.idle_low_us = Some(idle.value_at_percentile(config.baseline_percentile));
            }
        }
        f.baseline_us = match (history[i], f.idle_low_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(l) = loaded.filter(|l| l.len() >= config.min_samples) {
            let p90 = l.value_at_quantile(0.9);
            f.loaded_p90_us = Some(p90);
            if let Some(base) = f.baseline_us {
                let rise = p90 as i64 - base as i64;
                f.increase_us = Some(rise);
                f.bloated =
                    rise as f64 >= config.bloat_min_ms * 1000.0 && p90 as f64 >= base as f64 * config.bloat_factor;
            }
        }
        f
    };
    let (home, network) = (side(0), side(1));
    let loss_ratio = (rtt.packets > 0).then(|| rtt.retrans as f64 / rtt.packets as f64);
    let mut qoo = std::collections::BTreeMap::new();
    if let (Some(h), Some(n)) = (&rtt.histograms[0], &rtt.histograms[1]) {
        let trip = Distribution::of(h).convolve(&Distribution::of(n));
        let ms = |q: f64| trip.percentile(q).unwrap_or(0) as f64 / 1000.0;
        for p in &config.profiles {
            let s = score(p, ms, loss_ratio.unwrap_or(0.0));
            qoo.insert(p.name.clone(), (s * 10.0).round() / 10.0);
        }
    }
    LineQuality { customer_id: customer_id.to_string(), window_start, home, network, loss_ratio, qoo }
}

/// One component: `1 - (measured - rop) / (cpup - rop)`, clamped to [0, 1].
fn component(measured: f64, rop: f64, cpup: f64) -> f64 {
    (1.0 - (measured - rop) / (cpup - rop)).clamp(0.0, 1.0)
}

/// The QoO score (0 to 100) of `latency_ms` (the measured latency at a percentile) and a
/// loss ratio against `profile`.
pub fn score(profile: &QooProfile, latency_ms: impl Fn(f64) -> f64, loss: f64) -> f64 {
    let latency =
        profile.rop.iter().zip(&profile.cpup).map(|(r, c)| component(latency_ms(r[0]), r[1], c[1])).fold(1.0, f64::min);
    latency.min(component(loss, profile.rop_loss, profile.cpup_loss)) * 100.0
}

/// A latency distribution as (value µs, count), sorted by value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution(Vec<(u64, u64)>);

impl Distribution {
    pub fn of(h: &Histogram<u64>) -> Distribution {
        Distribution(
            h.iter_recorded().map(|v| (h.median_equivalent(v.value_iterated_to()), v.count_at_value())).collect(),
        )
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|v| v.1).sum()
    }

    /// The distribution of the sum of one value from each: the round trip over both segments,
    /// their delays independent. Values are grouped to 1/16 of an octave first (the agents'
    /// own precision for round trips), which bounds the work to under 200,000 pairs whatever
    /// a report holds.
    pub fn convolve(&self, other: &Distribution) -> Distribution {
        let (a, b) = (self.coarse(), other.coarse());
        let mut sums: Vec<(u64, u64)> = Vec::with_capacity(a.0.len() * b.0.len());
        for &(x, n) in &a.0 {
            for &(y, m) in &b.0 {
                sums.push((x + y, n.saturating_mul(m)));
            }
        }
        sums.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(sums.len());
        for (v, n) in sums {
            match out.last_mut() {
                Some(last) if last.0 == v => last.1 = last.1.saturating_add(n),
                _ => out.push((v, n)),
            }
        }
        Distribution(out)
    }

    fn coarse(&self) -> Distribution {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &(v, n) in &self.0 {
            let step = if v < 32 { 1 } else { 1u64 << (63 - v.leading_zeros() - 4) };
            let v = v / step * step + step / 2;
            match out.last_mut() {
                Some(last) if last.0 == v => last.1 += n,
                _ => out.push((v, n)),
            }
        }
        Distribution(out)
    }

    /// The value at percentile `p` (0 to 100) by nearest rank: the smallest value with at
    /// least p % of the samples at or below it; percentile 0 is the minimum.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(v, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return Some(v);
            }
        }
        self.0.last().map(|v| v.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(rop: &[[f64; 2]], cpup: &[[f64; 2]], loss: (f64, f64)) -> QooProfile {
        QooProfile { name: "p".into(), rop: rop.to_vec(), cpup: cpup.to_vec(), rop_loss: loss.0, cpup_loss: loss.1 }
    }

    /// draft-ietf-ippm-qoo-10 section 3.4: latency 50, loss 75, overall 50.
    #[test]
    fn the_drafts_worked_example() {
        let p = profile(&[[99.0, 200.0], [99.9, 300.0]], &[[99.0, 500.0], [99.9, 600.0]], (0.01, 0.05));
        let measured = |q: f64| if q == 99.0 { 350.0 } else { 375.0 };
        assert_eq!(score(&p, measured, 0.02), 50.0);
        // The loss component alone: 75.
        assert_eq!(score(&p, |_| 0.0, 0.02), 75.0);
        // At or beyond CPUP anywhere, 0; within ROP everywhere, 100.
        assert_eq!(score(&p, |_| 600.0, 0.0), 0.0);
        assert_eq!(score(&p, |_| 100.0, 0.005), 100.0);
    }

    /// draft-ietf-ippm-qoo-02 section 6, the same formula with NRP and NRPoU: 33.33.
    #[test]
    fn the_earlier_drafts_example() {
        let p = profile(&[[99.0, 250.0], [99.9, 350.0]], &[[99.0, 400.0], [99.9, 401.0]], (0.001, 0.01));
        let measured = |q: f64| if q == 99.0 { 350.0 } else { 352.0 };
        let s = score(&p, measured, 0.005);
        assert!((s - 33.333).abs() < 0.01, "{s}");
        assert!((score(&p, |_| 0.0, 0.005) - 55.556).abs() < 0.01);
    }

    #[test]
    fn a_bloated_line_scores_lower_for_interactive_profiles_than_for_streaming() {
        let profiles = default_profiles();
        let by = |name: &str| profiles.iter().find(|p| p.name == name).unwrap();
        // Idle round trips of 30 ms, with a tenth of them stuck behind a 250 ms queue.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record_n(30_000, 900).unwrap();
        h.record_n(280_000, 100).unwrap();
        let d = Distribution::of(&h);
        let ms = |q: f64| d.percentile(q).unwrap() as f64 / 1000.0;
        let stream = score(by("video_streaming"), ms, 0.0);
        let call = score(by("video_conferencing"), ms, 0.0);
        let game = score(by("online_gaming"), ms, 0.0);
        assert!(call < stream && game < stream, "streaming {stream}, conferencing {call}, gaming {game}");
        assert_eq!(game, 0.0);
    }

    #[test]
    fn convolution_adds_the_segments() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let mut b = a.clone();
        a.record_n(5_000, 3).unwrap();
        a.record_n(100, 1).unwrap();
        b.record_n(40_000, 2).unwrap();
        let sum = Distribution::of(&a).convolve(&Distribution::of(&b));
        assert_eq!(sum.count(), 8);
        let p0 = sum.percentile(0.0).unwrap();
        let p99 = sum.percentile(99.0).unwrap();
        // Exact to within the grouping: 1/32 of the value either way.
        assert!(p0.abs_diff(40_100) <= 40_100 / 32, "{p0}");
        assert!(p99.abs_diff(45_000) <= 45_000 / 32, "{p99}");
    }

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert!(WorkingLatencyConfig::default().problems().is_empty());
        let mut c = WorkingLatencyConfig::default();
        c.profiles[0].cpup.pop();
        c.profiles[1].cpup_loss = 0.0;
        let fields: Vec<String> = c.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(fields, ["working_latency.profiles[0].cpup", "working_latency.profiles[1].cpup_loss"]);
    }
}
