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

/// Per-line load, for at most `capacity` lines; lines beyond are never loaded.
pub struct LoadMeter {
    lines: HashMap<u32, Ring>,
    capacity: usize,
    threshold: u64,
}

impl LoadMeter {
    pub fn new(capacity: usize, loaded_bytes_per_sec: u64) -> Self {
        LoadMeter { lines: HashMap::new(), capacity, threshold: loaded_bytes_per_sec.max(1) }
    }

    /// Bytes of memory a line costs, for the configuration's bound.
    pub const fn bytes_per_line() -> usize {
        std::mem::size_of::<Ring>() + 8
    }

    /// Counts a packet of `line` (an interned subscriber handle) of `ip_len` bytes in direction
    /// `dir` (0: from the subscriber) and says whether the line is loaded now, this packet
    /// included.
    pub fn add(&mut self, line: u32, ns: u64, dir: usize, ip_len: u32) -> bool {
        let full = self.lines.len() >= self.capacity;
        let ring = match self.lines.get_mut(&line) {
            Some(r) => r,
            None if full => return false,
            None => self.lines.entry(line).or_default(),
        };
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
        self.lines.remove(&line);
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
    }
}
