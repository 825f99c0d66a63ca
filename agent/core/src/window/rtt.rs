//! A line's round trips in one window. A busy line takes thousands of samples a minute, too many
//! for the window's sample arena, whose room the other metrics need; so they are counted as they
//! come in four log-linear histograms of 16 buckets an octave (values below 32 µs exact, above
//! within 1/32 of the bucket's middle, to 2^27 µs), 6 KiB a line, and written out at the close
//! with each bucket's middle as its value.

use crate::analyze::tcp::Side;
use edgeprobe_wire::WireHistogram;
use edgeprobe_wire::histogram::HistogramEncoder;

const SUB: u32 = 16;
const BUCKETS: usize = 384;
const MAX_US: u32 = (1 << 27) - 1;

fn index(us: u32) -> usize {
    let v = us.min(MAX_US);
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = 31 - v.leading_zeros() - 4;
    (SUB * shift + (v >> shift)) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u32;
    if i < 2 * SUB {
        return u64::from(i);
    }
    let shift = i / SUB - 1;
    let low = u64::from(i % SUB + SUB) << shift;
    low + (1u64 << shift) / 2
}

/// Home, network, home loaded, network loaded: the order of `RTT_METRICS`.
pub struct RttHistograms {
    counts: [[u32; BUCKETS]; 4],
}

impl RttHistograms {
    pub const BYTES: usize = std::mem::size_of::<RttHistograms>();

    pub fn new() -> Box<Self> {
        Box::new(RttHistograms { counts: [[0; BUCKETS]; 4] })
    }

    pub fn add(&mut self, side: Side, loaded: bool, us: u32) {
        let i = index(us);
        let s = side as usize;
        self.counts[s][i] = self.counts[s][i].saturating_add(1);
        if loaded {
            self.counts[2 + s][i] = self.counts[2 + s][i].saturating_add(1);
        }
    }

    /// The four histograms, `None` where empty.
    pub fn write(&self, encoder: &mut HistogramEncoder, pairs: &mut Vec<(u64, u64)>) -> [Option<WireHistogram>; 4] {
        std::array::from_fn(|k| {
            pairs.clear();
            pairs.extend(
                self.counts[k].iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (value(i), u64::from(*n))),
            );
            (!pairs.is_empty()).then(|| WireHistogram::from_counts(pairs, encoder))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_continuous_and_within_a_thirty_second() {
        let mut last = 0;
        for us in 0..=(1u32 << 20) {
            let i = index(us);
            assert!(i == last || i == last + 1, "{us}: {i} after {last}");
            last = i;
            let v = value(i) as f64;
            assert!((v - f64::from(us)).abs() <= f64::from(us) / 32.0 + 0.5, "{us} written as {v}");
        }
        assert_eq!(index(u32::MAX), BUCKETS - 1);
        assert_eq!(index(MAX_US), BUCKETS - 1);
    }

    #[test]
    fn the_configs_bound_counts_these() {
        assert_eq!(RttHistograms::BYTES, crate::config::RTT_HISTOGRAMS_BYTES);
    }

    #[test]
    fn loaded_samples_are_in_both() {
        let mut h = RttHistograms::new();
        h.add(Side::Home, false, 2_000);
        h.add(Side::Home, true, 40_000);
        h.add(Side::Network, true, 25_000);
        let [home, network, home_loaded, network_loaded] = h
            .write(&mut HistogramEncoder::default(), &mut Vec::new())
            .map(|w| w.map(|w| (w.count, (w.max + 500) / 1000)));
        assert_eq!(home, Some((2, 40)));
        assert_eq!(network, Some((1, 25)));
        assert_eq!(home_loaded, Some((1, 40)));
        assert_eq!(network_loaded, Some((1, 25)));
    }
}
