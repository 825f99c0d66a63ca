//! How busy each line is, so that a round trip can be told loaded or idle.
//!
//! A line's packets are summed by IP length in 100 ms buckets of packet time (aligned to
//! multiples of 100 ms since the epoch), per direction, over the last ten buckets. A moment is
//! *loaded* when either direction carried at least `loaded_bytes_per_sec` in the ten buckets up
//! to and including the current one, counting the packets seen so far. It is the line's load,
//! not the flow's: the queue a download fills delays the ACKs of everything else going up.

use hashbrown::HashMap;

const BUCKET_NS: u64 = 100_000_000;
const BUCKETS: usize = 10;

/// One line's last ten buckets, both directions, with their running sums.
#[derive(Clone, Debug, Default)]
struct Ring {
    /// The newest bucket's number (packet time / 100 ms).
    newest: u64,
    bytes: [[u32; BUCKETS]; 2],
    sum: [u64; 2],
}

impl Ring {
    /// Moves the ring forward to bucket `b`, emptying the buckets it passes.
    fn advance(&mut self, b: u64) {
        if b <= self.newest {
            return;
        }
        let steps = (b - self.newest).min(BUCKETS as u64);
        for k in 1..=steps {
            let i = ((self.newest + k) % BUCKETS as u64) as usize;
            for d in 0..2 {
                self.sum[d] -= u64::from(self.bytes[d][i]);
                self.bytes[d][i] = 0;
            }
        }
        self.newest = b;
    }
}

/// Per-line load, for at most `capacity` lines; lines beyond are never loaded. The rings sit
/// in a slab found by handle, and the last line counted is remembered: consecutive packets are
/// mostly one line's, so most packets skip the hash.
pub struct LoadMeter {
    rings: Vec<(u32, Ring)>,
    index: HashMap<u32, usize>,
    last: Option<(u32, usize)>,
    capacity: usize,
    threshold: u64,
}

impl LoadMeter {
    pub fn new(capacity: usize, loaded_bytes_per_sec: u64) -> Self {
        LoadMeter {
            rings: Vec::new(),
            index: HashMap::new(),
            last: None,
            capacity,
            threshold: loaded_bytes_per_sec.max(1),
        }
    }

    /// Bytes of memory a line costs, for the configuration's bound.
    pub const fn bytes_per_line() -> usize {
        std::mem::size_of::<(u32, Ring)>() + 16
    }

    fn slot(&mut self, line: u32) -> Option<usize> {
        if let Some((l, i)) = self.last {
            if l == line {
                return Some(i);
            }
        }
        let i = match self.index.get(&line) {
            Some(&i) => i,
            None if self.rings.len() >= self.capacity => return None,
            None => {
                self.rings.push((line, Ring::default()));
                self.index.insert(line, self.rings.len() - 1);
                self.rings.len() - 1
            }
        };
        self.last = Some((line, i));
        Some(i)
    }

    /// Counts a packet of `line` (an interned subscriber handle) of `ip_len` bytes in direction
    /// `dir` (0: from the subscriber) and says whether the line is loaded now, this packet
    /// included.
    pub fn add(&mut self, line: u32, ns: u64, dir: usize, ip_len: u32) -> bool {
        let Some(i) = self.slot(line) else { return false };
        let ring = &mut self.rings[i].1;
        let b = ns / BUCKET_NS;
        ring.advance(b);
        // A packet older than the ring (a capture's timestamps stepping back) is not counted.
        if b + BUCKETS as u64 > ring.newest {
            let i = (b % BUCKETS as u64) as usize;
            ring.bytes[dir][i] = ring.bytes[dir][i].saturating_add(ip_len);
            ring.sum[dir] += u64::from(ip_len);
        }
        ring.sum[0] >= self.threshold || ring.sum[1] >= self.threshold
    }

    /// The line's handle is no longer in use: it may name another line next.
    pub fn forget(&mut self, line: u32) {
        let Some(i) = self.index.remove(&line) else { return };
        self.rings.swap_remove(i);
        if let Some((moved, _)) = self.rings.get(i) {
            self.index.insert(*moved, i);
        }
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn loaded_when_one_direction_carries_the_rate_over_ten_buckets() {
        let mut m = LoadMeter::new(4, 10_000);
        // 9,000 bytes up over 900 ms: not yet.
        for i in 0..9 {
            assert!(!m.add(1, 10_000 * MS + i * 100 * MS, 0, 1000));
        }
        // Downstream does not add to upstream.
        assert!(!m.add(1, 10_950 * MS, 1, 9999));
        assert!(m.add(1, 10_950 * MS, 0, 1000), "ten kilobytes up in the last ten buckets");
        // One bucket later the first one has left the window.
        assert!(!m.add(1, 11_000 * MS, 0, 0));
        // Another line is its own.
        assert!(!m.add(2, 11_000 * MS, 0, 0));
    }

    #[test]
    fn a_gap_empties_the_ring() {
        let mut m = LoadMeter::new(4, 1000);
        assert!(m.add(1, 5_000 * MS, 1, 2000));
        assert!(!m.add(1, 7_000 * MS, 1, 10));
        // Time going back past the ring is not counted; within it, it is.
        assert!(!m.add(1, 5_000 * MS, 1, 2000));
        assert!(m.add(1, 6_950 * MS, 1, 2000));
    }

    #[test]
    fn lines_beyond_capacity_are_never_loaded() {
        let mut m = LoadMeter::new(1, 10);
        assert!(m.add(1, 0, 0, 100));
        assert!(!m.add(2, 0, 0, 100));
        m.forget(1);
        assert!(m.add(2, 0, 0, 100));
        // A forgotten line starts again from nothing, and the slab stays consistent.
        let mut m = LoadMeter::new(3, 250);
        let loaded: Vec<bool> = (1..=3).map(|line| m.add(line, 0, 0, 100 * line)).collect();
        assert_eq!(loaded, [false, false, true]);
        m.forget(1);
        assert!(m.add(3, 0, 1, 0), "line 3 kept its bytes after moving in the slab");
        assert!(!m.add(2, 0, 1, 0));
        assert!(!m.add(1, 0, 0, 100));
        assert!(m.add(1, 0, 0, 200));
    }
}
