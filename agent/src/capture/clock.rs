//! Packet time across wall-clock steps.
//!
//! The kernel stamps captured packets with CLOCK_REALTIME, so a step of the wall clock (NTP's
//! first sync on a gateway without an RTC, an operator's `date -s`) moves the stamps, and a
//! transaction that spans it would be timed across the step. The core wants a timeline without
//! steps, and the reports want their windows labelled in the (corrected) wall time.
//!
//! Each reading of both clocks gives REALTIME - MONOTONIC. Slewing moves it by at most 500 ppm;
//! a change of more than `STEP_NS` between two readings is a step. Each step starts a new
//! *scale*, and the core timeline is a kernel stamp minus the steps of its scale, so it equals
//! the kernel stamp exactly until the first step (the live tests compare it with tshark's).
//! Packets read just after a step may have been stamped before it: a stamp is placed in the
//! newest scale in which its arrival, converted to the monotonic clock, is plausible (after the
//! scale began, before the clocks were read for the batch that held the packet). Steps under `STEP_NS` go unnoticed, and a step of
//! less than the time packets wait in the capture ring can misplace the few packets stamped
//! around it.

use edgeprobe_core::{Probe, Timestamp};
use std::collections::VecDeque;

/// Smallest change of REALTIME - MONOTONIC taken for a step. Slewing at the kernel's 500 ppm
/// maximum takes 20 s between two readings to move this far; readings come every 100 ms.
pub const STEP_NS: i64 = 10_000_000;
/// How far a conversion may miss: the readings' own jitter and slew between them.
const SLACK_NS: i64 = 2_000_000;
/// Older scales are kept this long after the step that ended them: no packet waits longer in
/// a ring before it is read.
const KEEP_NS: i64 = 10_000_000_000;
/// Steps remembered at once; a clock stepping faster than this is not worth following.
const MAX_SCALES: usize = 8;

/// Both clocks at one moment, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub monotonic: i64,
    /// REALTIME - MONOTONIC.
    pub offset: i64,
}

/// Reads both clocks back to back, retrying if the thread was preempted between them.
/// Monotonic time counts from the first reading; only differences of it matter.
pub fn read_clocks() -> Reading {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    let mono = || base.elapsed().as_nanos() as i64;
    let real = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let mut reading = Reading { monotonic: 0, offset: 0 };
    for _ in 0..3 {
        let (before, wall, after) = (mono(), real(), mono());
        let mid = before + (after - before) / 2;
        reading = Reading { monotonic: mid, offset: wall - mid };
        if after - before < 50_000 {
            break;
        }
    }
    reading
}

#[derive(Clone, Copy, Debug)]
struct Scale {
    /// REALTIME - MONOTONIC while this scale was current (followed through slewing).
    offset: i64,
    /// The sum of the steps before this scale: core time = kernel stamp - shift.
    shift: i64,
    /// The last reading before the step that began this scale.
    from: i64,
    /// The reading that saw the next step, for all but the newest.
    until: Option<i64>,
    /// Core time when this scale began: events up to then are labelled with earlier scales.
    core_from: i64,
}

#[derive(Debug, Default)]
pub struct PacketClock {
    scales: VecDeque<Scale>,
    /// The monotonic time of the previous reading.
    last: i64,
    steps: u64,
}

impl PacketClock {
    /// Feeds one reading. Returns the new wall offset (wall time = core time + offset) when the
    /// reading shows a step.
    pub fn observe(&mut self, r: Reading) -> Option<i64> {
        let previous = std::mem::replace(&mut self.last, r.monotonic);
        let Some(newest) = self.scales.back_mut() else {
            self.scales.push_back(Scale {
                offset: r.offset,
                shift: 0,
                from: i64::MIN,
                until: None,
                core_from: i64::MIN,
            });
            return None;
        };
        let step = r.offset - newest.offset;
        if step.abs() < STEP_NS {
            newest.offset = r.offset;
            return None;
        }
        newest.until = Some(r.monotonic);
        let shift = newest.shift + step;
        let core_from = r.monotonic + r.offset - shift;
        let scale = Scale { offset: r.offset, shift, from: previous, until: None, core_from };
        self.steps += 1;
        self.scales.push_back(scale);
        while self.scales.len() > MAX_SCALES
            || self.scales.front().is_some_and(|s| s.until.is_some_and(|u| r.monotonic - u > KEEP_NS))
        {
            self.scales.pop_front();
        }
        Some(scale.shift)
    }

    /// The core's timeline for a packet stamped `kernel_ns`, known to have arrived before the
    /// monotonic time `read_at`.
    pub fn convert(&self, kernel_ns: u64, read_at: i64) -> Timestamp {
        let k = kernel_ns as i64;
        let plausible = |s: &Scale| {
            let arrival = k - s.offset;
            arrival > s.from.saturating_sub(SLACK_NS)
                && arrival <= read_at + SLACK_NS
                && s.until.is_none_or(|u| arrival <= u + SLACK_NS)
        };
        let scale = self.scales.iter().rev().find(|s| plausible(s)).or(self.scales.back());
        let shift = scale.map_or(0, |s| s.shift);
        Timestamp(k.saturating_sub(shift).max(0) as u64)
    }

    /// The core's timeline now, for timers between packets.
    pub fn now(&self, r: Reading) -> Timestamp {
        let newest = self.scales.back().map_or(0, |s| s.shift);
        Timestamp((r.monotonic + r.offset - newest).max(0) as u64)
    }

    /// Wall time minus core time: the sum of the steps seen.
    pub fn wall_offset(&self) -> i64 {
        self.scales.back().map_or(0, |s| s.shift)
    }

    /// Wall time minus core time at the core time `core`: an event told after a step that
    /// measured something before it keeps the label of its moment (while that scale is kept).
    pub fn wall_offset_at(&self, core: Timestamp) -> i64 {
        let core = core.as_nanos() as i64;
        self.scales.iter().rev().find(|s| s.core_from <= core).or(self.scales.front()).map_or(0, |s| s.shift)
    }

    /// Steps seen since the start.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

/// A live capture's time, sans-IO: the packet clock and the latest reading of both clocks. The
/// capture loop feeds it readings and frame stamps; a test feeds it recorded or made-up ones.
#[derive(Debug)]
pub struct LiveTime {
    clock: PacketClock,
    /// The latest reading. One is taken before each batch is read, so every frame of the batch
    /// was stamped before it: an upper bound on its arrival, without a clock read per packet
    /// (they cost about 80 ns, a fifth of the agent's per-packet time).
    reading: Reading,
}

impl LiveTime {
    pub fn new(reading: Reading) -> LiveTime {
        let mut clock = PacketClock::default();
        clock.observe(reading);
        LiveTime { clock, reading }
    }

    /// Takes a new reading. A step it shows is taken out of packet times from now on, and the
    /// probe relabels its windows; returns the step in nanoseconds.
    pub fn sample(&mut self, reading: Reading, probe: &mut Probe) -> Option<i64> {
        self.reading = reading;
        let before = self.clock.wall_offset();
        let offset = self.clock.observe(reading)?;
        probe.clock_stepped(self.clock.now(reading), offset);
        Some(offset - before)
    }

    /// The core's time for a frame the kernel stamped `kernel_ns`, read since the last sample.
    pub fn frame(&self, kernel_ns: u64) -> Timestamp {
        self.clock.convert(kernel_ns, self.reading.monotonic)
    }

    /// The core's time at the last sample, for timers.
    pub fn now(&self) -> Timestamp {
        self.clock.now(self.reading)
    }

    /// The wall time of a core time: events are labelled with it.
    pub fn wall(&self, core: Timestamp) -> Timestamp {
        Timestamp(core.as_nanos().saturating_add_signed(self.clock.wall_offset_at(core)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;

    /// Packets every 7 ms for `secs`, each read `delay` after it arrived, while REALTIME -
    /// MONOTONIC is `offset(t)`. Returns, per packet, (arrival, core time) and the clock.
    fn run(secs: i64, delay: i64, offset: impl Fn(i64) -> i64) -> (Vec<(i64, i64)>, PacketClock) {
        let mut clock = PacketClock::default();
        let mut out = Vec::new();
        let mut a = S;
        while a < (secs + 1) * S {
            let read_at = a + delay;
            clock.observe(Reading { monotonic: read_at, offset: offset(read_at) });
            let stamp = (a + offset(a)) as u64;
            out.push((a, clock.convert(stamp, read_at).as_nanos() as i64));
            a += 7 * MS;
        }
        (out, clock)
    }

    const BOOT: i64 = 1_700_000_000 * S;

    #[test]
    fn without_steps_core_time_is_the_kernel_stamp() {
        let (packets, clock) = run(5, 30 * MS, |_| BOOT);
        assert!(packets.iter().all(|&(a, core)| core == a + BOOT));
        assert_eq!((clock.steps(), clock.wall_offset()), (0, 0));
    }

    #[test]
    fn slewing_is_not_a_step() {
        // 500 ppm, the kernel's maximum slew rate, for a minute.
        let (packets, clock) = run(60, 30 * MS, |t| BOOT + t / 2000);
        assert_eq!(clock.steps(), 0);
        assert!(packets.iter().all(|&(a, core)| core == a + BOOT + a / 2000));
    }

    #[test]
    fn steps_either_way_leave_the_timeline_continuous() {
        for step in [-30 * S, -200 * MS, 200 * MS, 3_600 * S, 56 * 365 * 86_400 * S] {
            for delay in [0, 30 * MS, 90 * MS] {
                let at = 3 * S + 3 * MS;
                let (packets, clock) = run(6, delay, |t| BOOT + if t >= at { step } else { 0 });
                let wrong: Vec<_> = packets.iter().filter(|&&(a, core)| core != a + BOOT).collect();
                assert!(wrong.is_empty(), "step {step}, delay {delay}: {} misplaced: {wrong:?}", wrong.len());
                assert_eq!(clock.steps(), 1);
                assert_eq!(clock.wall_offset(), step);
                // Timers run on the same timeline.
                let r = Reading { monotonic: 7 * S, offset: BOOT + step };
                assert_eq!(clock.now(r).as_nanos() as i64, 7 * S + BOOT);
            }
        }
    }

    #[test]
    fn a_gateway_booting_in_1970_then_syncing_keeps_its_latencies() {
        // No RTC: the wall clock starts near the epoch, then NTP steps it forward, twice.
        let first = 1_764_000_000 * S;
        let (packets, clock) = run(8, 20 * MS, |t| {
            if t < 2 * S {
                0
            } else if t < 5 * S {
                first
            } else {
                first - 700 * MS
            }
        });
        assert_eq!(clock.steps(), 2);
        assert_eq!(clock.wall_offset(), first - 700 * MS);
        // Every gap between consecutive packets is the 7 ms they were sent apart.
        assert!(packets.windows(2).all(|w| w[1].1 - w[0].1 == 7 * MS));
    }

    /// The live path on a recorded capture, its kernel stamps made up as a clock stepped an hour
    /// forward and back would give them: the capture loop's order (a reading, then the frames
    /// that arrived before it, then the timers), with frames waiting in the ring for up to a
    /// reading's interval. Every measurement must equal a plain replay's, and only the labels
    /// (event times, report windows) follow the wall clock.
    #[test]
    fn a_recorded_capture_across_two_steps_keeps_every_measurement() {
        use edgeprobe_core::{CoreConfig, LinkType};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lab_journeys.pcapng");
        let mut frames: Vec<(Timestamp, LinkType, Vec<u8>, u32)> = Vec::new();
        let mut file = crate::capture::file::CaptureFile::open(&path).unwrap();
        file.for_each_frame(|f| frames.push((f.ts, f.link, f.data.to_vec(), f.wire_len))).unwrap();
        let config = CoreConfig { report_interval_secs: 1, ..CoreConfig::default() };
        let measured = |events: &mut Vec<serde_json::Value>, probe: &mut Probe| {
            while let Some(e) = probe.poll_event() {
                events.push(serde_json::to_value(&e).unwrap());
            }
        };

        let mut replay = Probe::new(config.clone());
        let mut expected = Vec::new();
        for (ts, link, data, len) in &frames {
            replay.handle_frame(*ts, *link, data, *len);
            measured(&mut expected, &mut replay);
        }
        replay.finish(frames.last().unwrap().0);
        measured(&mut expected, &mut replay);

        // True time t is the capture's; MONOTONIC counts from a second before its first frame.
        let t0 = frames[0].0.as_nanos() as i64;
        let end = frames.last().unwrap().0.as_nanos() as i64;
        let (forward, back) = (t0 + (end - t0) / 3, t0 + 2 * (end - t0) / 3);
        let hour = 3_600 * S;
        let stepped = |t: i64| if (forward..back).contains(&t) { hour } else { 0 };
        let reading = |t: i64| Reading { monotonic: t - (t0 - S), offset: t0 - S + stepped(t) };
        let mut probe = Probe::new(config);
        let mut time = LiveTime::new(reading(t0 - 50 * MS));
        let (mut live, mut wall, mut windows, mut steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut next = frames.iter().peekable();
        let mut at = t0;
        while next.peek().is_some() {
            at += 100 * MS;
            steps.extend(time.sample(reading(at), &mut probe));
            while let Some((ts, link, data, len)) = next.next_if(|f| f.0.as_nanos() as i64 <= at) {
                let t = ts.as_nanos() as i64;
                probe.handle_frame(time.frame((t + stepped(t)) as u64), *link, data, *len);
                while let Some(e) = probe.poll_event() {
                    wall.push((e.ts, time.wall(e.ts)));
                    live.push(serde_json::to_value(&e).unwrap());
                }
            }
            probe.handle_timeout(time.now());
            measured(&mut live, &mut probe);
            windows.extend(std::iter::from_fn(|| probe.poll_report()).map(|r| r.window_start as i64 * MS));
        }
        probe.finish(frames.last().unwrap().0);
        measured(&mut live, &mut probe);
        windows.extend(std::iter::from_fn(|| probe.poll_report()).map(|r| r.window_start as i64 * MS));

        assert_eq!(steps, [hour, -hour]);
        // What packets time, to the nanosecond; events the timers end (timeouts, idle flows)
        // may come at another tick than in the replay.
        let timed = |events: &[serde_json::Value]| {
            let mut v: Vec<String> = events
                .iter()
                .filter(|e| ["dns", "tcp_connect", "tls", "http"].contains(&e["kind"].as_str().unwrap()))
                .filter(|e| e["rcode"] != "TIMEOUT" && e["outcome"] != "timeout")
                .map(|e| e.to_string())
                .collect();
            v.sort();
            v
        };
        let expected = timed(&expected);
        assert!(expected.len() >= 12, "too little in the capture: {}", expected.len());
        assert_eq!(timed(&live), expected);
        // Labels: the stepped hour while it lasted (a frame read just after a step may carry
        // either), the capture's own time otherwise.
        for (core, wall) in wall {
            let (t, w) = (core.as_nanos() as i64, wall.as_nanos() as i64);
            if (forward + 100 * MS..back).contains(&t) {
                assert_eq!(w, t + hour);
            } else if t < forward || t >= back + 100 * MS {
                assert_eq!(w, t);
            }
        }
        let in_step = |w: i64| (forward - S..back + S).contains(&(w - hour));
        let present = |w: i64| (t0 - S..end + S).contains(&w);
        assert!(windows.iter().any(|&w| in_step(w)), "a window in the stepped hour: {windows:?}");
        assert!(windows.last().is_some_and(|&w| present(w)), "the last window in the present: {windows:?}");
        assert!(windows.iter().all(|&w| in_step(w) || present(w)), "windows: {windows:?}");
    }

    #[test]
    fn the_clocks_read_together() {
        let a = read_clocks();
        let b = read_clocks();
        assert!(b.monotonic >= a.monotonic);
        assert!((b.offset - a.offset).abs() < STEP_NS);
    }
}
