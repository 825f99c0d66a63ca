//! Figures shared by the store, correlation and the console: merging stored histograms, and
//! turning windows into series.

use edgeprobe_wire::WireHistogram;
use std::collections::BTreeMap;

/// Merges a V2-encoded histogram into `into`; bytes that do not decode add nothing.
pub fn add_encoded(into: &mut Option<hdrhistogram::Histogram<u64>>, hdr: &[u8]) {
    if hdr.is_empty() {
        return;
    }
    let wire = edgeprobe_wire::WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: hdr.to_vec() };
    let Ok(h) = wire.histogram() else { return };
    match into.as_mut() {
        Some(m) => {
            let _ = m.add(&h);
        }
        None => *into = Some(h),
    }
}

/// Per window, what a set of lines says about one metric: a merged histogram, or failures
/// over attempts.
#[derive(Default)]
pub struct Figure {
    /// The only histogram so far, undecoded: its own p50/p90/p99 answer for it, and decoding
    /// (the cost of a day's plots) waits until a second one must be merged with it.
    pub first: Option<WireHistogram>,
    pub hist: Option<hdrhistogram::Histogram<u64>>,
    pub bad: u64,
    pub total: u64,
}

impl Figure {
    pub fn add(&mut self, h: &WireHistogram) {
        if self.first.is_none() && self.hist.is_none() {
            self.first = Some(h.clone());
            return;
        }
        self.decode_first();
        add_encoded(&mut self.hist, &h.hdr);
    }

    pub fn decode_first(&mut self) {
        if let Some(f) = self.first.take() {
            add_encoded(&mut self.hist, &f.hdr);
        }
    }

    pub fn absorb(&mut self, other: Figure) {
        if let Some(f) = &other.first {
            self.add(f);
        }
        if let Some(h) = other.hist {
            self.decode_first();
            match self.hist.as_mut() {
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => self.hist = Some(h),
            }
        }
        self.bad += other.bad;
        self.total += other.total;
    }

    pub fn has_latency(&self) -> bool {
        self.first.is_some() || self.hist.as_ref().is_some_and(|h| !h.is_empty())
    }

    /// p50, p90 or p99 in µs.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if let Some(h) = self.hist.as_ref().filter(|h| !h.is_empty()) {
            return Some(h.value_at_quantile(q));
        }
        self.first.as_ref().map(|f| {
            if q <= 0.5 {
                f.p50
            } else if q <= 0.9 {
                f.p90
            } else {
                f.p99
            }
        })
    }
}

/// Points per plot at most: a day of one-minute windows becomes 288 five-minute points, each
/// merged exactly, so a page stays small however fine the windows.
pub const MAX_POINTS: usize = 288;

pub fn downsample(windows: BTreeMap<i64, Figure>) -> BTreeMap<i64, Figure> {
    if windows.len() <= MAX_POINTS {
        return windows;
    }
    let per = windows.len().div_ceil(MAX_POINTS);
    let mut out: BTreeMap<i64, Figure> = BTreeMap::new();
    let mut start = 0;
    for (i, (ws, w)) in windows.into_iter().enumerate() {
        if i % per == 0 {
            start = ws;
        }
        out.entry(start).or_default().absorb(w);
    }
    out
}
