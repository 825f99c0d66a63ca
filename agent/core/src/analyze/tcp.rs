//! Per-flow TCP analysis: the three-way handshake split into network and subscriber sides,
//! retransmissions, zero windows, resets and the end of the connection.
//!
//! Sequence analysis follows tshark's rules so the counts can be checked against it: a segment
//! that carries data (or SYN/FIN) and starts below the highest sequence seen in its direction is
//! a retransmission, unless it is a keep-alive, or it fills a hole shortly after the highest
//! segment (out of order: within the initial RTT, or 3 ms when the RTT is unknown). A segment
//! that answers two or more duplicate ACKs within 20 ms is a (fast) retransmission whatever
//! its timing.
//!
//! Round trips on established connections are sampled as tshark's `tcp.analysis.ack_rtt`
//! defines them: an ACK whose number is exactly the end of an earlier segment of the other
//! direction (data, SYN or FIN) gives that segment's time to the ACK. tshark keeps every
//! unacknowledged segment; a flow here keeps two per direction: the newest (the sequence
//! tracking's own `next`) and one held until it is acknowledged or passed, taken from the
//! newest when a later segment replaces it. Segments that start below the highest sequence
//! (retransmissions, keep-alives) are never held, so that a sample is always timed from the
//! first transmission, as tshark's is; with more in flight some samples are missed, never
//! mistimed.

pub use crate::event::RttSummary;
use crate::{
    dissect::tcp::flags,
    event::{ConnectOutcome, FlowEndReason, TcpConnectEvent},
    time::Timestamp,
};

/// Per-direction counters. Index 0 is client to server ("up"), 1 is server to client.
/// Zero windows and resets live with the sequence tracking, in its padding.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirStats {
    pub bytes: u64,
    pub packets: u32,
    pub retrans: u32,
}

/// One round-trip sample: which side of the probe it measured and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttSample {
    pub side: Side,
    pub us: u32,
}

/// The side of the probe a round trip covers: the subscriber's (an ACK from the client) or
/// the network's (an ACK from the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Home = 0,
    Network = 1,
}

const DEFAULT_OOO_THRESHOLD_US: u32 = 3_000;
const FAST_RETRANSMIT_WINDOW_US: u32 = 20_000;

/// Packet time in microseconds, modulo 2^32: enough to compare the short intervals the sequence
/// analysis needs (up to 71 minutes) in half the bytes of a `Timestamp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ShortTime(u32);

impl ShortTime {
    fn of(ts: Timestamp) -> Self {
        ShortTime((ts.as_nanos() / 1000) as u32)
    }

    fn micros_until(self, later: ShortTime) -> u32 {
        later.0.wrapping_sub(self.0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Handshake {
    /// The capture started after the handshake.
    #[default]
    Midstream,
    SynSent,
    SynAckSeen,
    Established,
    Refused,
    TimedOut,
}

#[derive(Clone, Copy, Debug, Default)]
struct SeqTrack {
    next: u32,
    next_ts: ShortTime,
    /// A second segment end waiting for its ACK, and when that segment passed.
    held_end: u32,
    held_ts: ShortTime,
    /// The ACKs this direction sends: the last value, when it was sent, the window it
    /// advertised, and how many pure ACKs repeated it.
    last_ack: u32,
    last_ack_ts: ShortTime,
    last_window: u16,
    dup_acks: u16,
    zero_window: u16,
    rst: u8,
    /// `KNOWN`, `FIN`, `NEXT_OPEN`, `HELD_OPEN`: one byte, so that a direction fits in 32.
    bits: u8,
}

/// The direction's sequence is known.
const KNOWN: u8 = 1;
/// It sent a FIN.
const FIN: u8 = 2;
/// `next` ends a segment (data, SYN or FIN) not yet acknowledged: a round trip to time.
const NEXT_OPEN: u8 = 4;
/// `held_end` waits for its ACK.
const HELD_OPEN: u8 = 8;

impl SeqTrack {
    fn is(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TcpState {
    pub handshake: Handshake,
    /// The first SYN is the flow's first packet; the flow keeps that time.
    pub last_syn: Timestamp,
    pub synack: Timestamp,
    /// SYNs seen from the client, the first included.
    pub syns: u16,
    pub client_isn: u32,
    /// Last SYN to ACK in microseconds, once known: the out-of-order threshold.
    pub initial_rtt_us: u32,
    seq: [SeqTrack; 2],
    pub closing: Option<FlowEndReason>,
    /// Round trips by side (`Side` as index).
    pub rtt: [RttSummary; 2],
}

/// What one segment told: a completed or refused connect, a round-trip sample.
#[derive(Clone, Debug, Default)]
pub struct SegmentOutcome {
    pub connect: Option<TcpConnectEvent>,
    pub rtt: Option<RttSample>,
}

/// The fields of a segment the analysis uses.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub len: u32,
}

impl Segment {
    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// `a` comes before `b` in sequence space (RFC 1982 serial arithmetic).
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl TcpState {
    /// A flow opened by this SYN.
    pub fn on_open_syn(&mut self, now: Timestamp, isn: u32) {
        self.handshake = Handshake::SynSent;
        self.last_syn = now;
        self.syns = 0;
        self.client_isn = isn;
    }

    /// Zero-window advertisements and resets sent in direction `dir`.
    pub fn zero_windows(&self, dir: usize) -> u16 {
        self.seq[dir].zero_window
    }

    pub fn resets(&self, dir: usize) -> u8 {
        self.seq[dir].rst
    }

    /// Feeds one segment travelling in direction `dir` (0: client to server). `first_syn` is the
    /// flow's first packet time. Returns a connect measurement when this segment completes or
    /// refuses the handshake, and the round trip its ACK closes, if any.
    pub fn on_segment(
        &mut self,
        now: Timestamp,
        first_syn: Timestamp,
        dir: usize,
        seg: Segment,
        stats: &mut [DirStats; 2],
    ) -> SegmentOutcome {
        let rtt = self.ack_rtt(now, dir, seg);
        self.sequence(now, dir, seg, &mut stats[dir]);
        if seg.window == 0 && !seg.has(flags::SYN | flags::FIN | flags::RST) {
            self.seq[dir].zero_window = self.seq[dir].zero_window.saturating_add(1);
        }
        if seg.has(flags::RST) {
            self.seq[dir].rst = self.seq[dir].rst.saturating_add(1);
            self.closing = Some(FlowEndReason::Rst);
        }
        if seg.has(flags::FIN) {
            self.seq[dir].set(FIN, true);
            if self.seq[0].is(FIN) && self.seq[1].is(FIN) && self.closing.is_none() {
                self.closing = Some(FlowEndReason::Fin);
            }
        }
        SegmentOutcome { connect: self.handshake(now, first_syn, dir, seg), rtt }
    }

    /// The round trip this segment's ACK closes: the other direction's held or newest
    /// segment end when the ACK is exactly it. Ends the ACK reaches or passes are no longer
    /// waited for.
    fn ack_rtt(&mut self, now: Timestamp, dir: usize, seg: Segment) -> Option<RttSample> {
        if !seg.has(flags::ACK) {
            return None;
        }
        let now = ShortTime::of(now);
        let t = &mut self.seq[1 - dir];
        let mut sample = None;
        // The held end is older than the newest, so it is checked last and wins a tie, as
        // tshark's oldest segment does.
        if t.is(NEXT_OPEN) && !seq_lt(seg.ack, t.next) {
            t.set(NEXT_OPEN, false);
            if seg.ack == t.next {
                sample = Some(t.next_ts.micros_until(now));
            }
        }
        if t.is(HELD_OPEN) && !seq_lt(seg.ack, t.held_end) {
            t.set(HELD_OPEN, false);
            if seg.ack == t.held_end {
                sample = Some(t.held_ts.micros_until(now));
            }
        }
        let side = if dir == 0 { Side::Home } else { Side::Network };
        sample.map(|us| RttSample { side, us })
    }

    fn handshake(&mut self, now: Timestamp, first_syn: Timestamp, dir: usize, seg: Segment) -> Option<TcpConnectEvent> {
        let syn = seg.has(flags::SYN);
        let ack = seg.has(flags::ACK);
        match (self.handshake, dir) {
            (Handshake::SynSent, 0) if syn && !ack => {
                self.syns = self.syns.saturating_add(1);
                self.last_syn = now;
                None
            }
            (Handshake::SynSent, 1) if syn && ack => {
                self.synack = now;
                self.handshake = Handshake::SynAckSeen;
                None
            }
            (Handshake::SynSent, 1) if seg.has(flags::RST) => {
                self.handshake = Handshake::Refused;
                Some(TcpConnectEvent {
                    outcome: ConnectOutcome::Refused,
                    syn_to_synack_us: None,
                    synack_to_ack_us: None,
                    rtt_us: None,
                    connect_us: Some(now.micros_since(first_syn)),
                    syn_retries: u32::from(self.syns.saturating_sub(1)),
                })
            }
            (Handshake::SynAckSeen, 0) if ack && !syn && !seg.has(flags::RST) => {
                self.handshake = Handshake::Established;
                self.initial_rtt_us = now.micros_since(self.last_syn).min(u64::from(u32::MAX)) as u32;
                Some(TcpConnectEvent {
                    outcome: ConnectOutcome::Established,
                    syn_to_synack_us: Some(self.synack.micros_since(self.last_syn)),
                    synack_to_ack_us: Some(now.micros_since(self.synack)),
                    rtt_us: Some(now.micros_since(self.last_syn)),
                    connect_us: Some(now.micros_since(first_syn)),
                    syn_retries: u32::from(self.syns.saturating_sub(1)),
                })
            }
            _ => None,
        }
    }

    /// A connect still waiting for its answer at `now`: reports it as timed out.
    pub fn connect_timeout(&mut self) -> Option<TcpConnectEvent> {
        let synack_seen = match self.handshake {
            Handshake::SynSent => false,
            Handshake::SynAckSeen => true,
            _ => return None,
        };
        self.handshake = Handshake::TimedOut;
        Some(TcpConnectEvent {
            outcome: ConnectOutcome::Timeout,
            syn_to_synack_us: synack_seen.then(|| self.synack.micros_since(self.last_syn)),
            synack_to_ack_us: None,
            rtt_us: None,
            connect_us: None,
            syn_retries: u32::from(self.syns.saturating_sub(1)),
        })
    }

    /// True while the connect has been neither answered nor given up.
    pub fn connect_pending(&self) -> bool {
        matches!(self.handshake, Handshake::SynSent | Handshake::SynAckSeen)
    }

    fn sequence(&mut self, now: Timestamp, dir: usize, seg: Segment, stats: &mut DirStats) {
        let syn_fin = u32::from(seg.has(flags::SYN)) + u32::from(seg.has(flags::FIN));
        let end = seg.seq.wrapping_add(seg.len).wrapping_add(syn_fin);
        let rst = seg.has(flags::RST);
        let ooo_threshold = if self.initial_rtt_us > 0 { self.initial_rtt_us } else { DEFAULT_OOO_THRESHOLD_US };
        let now = ShortTime::of(now);
        let rev = self.seq[1 - dir];
        let fast_retransmit = rev.dup_acks >= 2
            && rev.last_ack == seg.seq
            && rev.last_ack_ts.micros_until(now) < FAST_RETRANSMIT_WINDOW_US;
        let t = &mut self.seq[dir];
        let known = t.is(KNOWN);
        if known && !rst && (seg.len > 0 || syn_fin > 0) && seq_lt(seg.seq, t.next) {
            let keep_alive = seg.len <= 1 && syn_fin == 0 && seg.seq == t.next.wrapping_sub(1);
            let out_of_order = t.next_ts.micros_until(now) < ooo_threshold && t.next != end;
            if !keep_alive && (fast_retransmit || !out_of_order) {
                stats.retrans += 1;
            }
        }
        if seg.has(flags::ACK) && !rst {
            let pure = seg.len == 0 && syn_fin == 0;
            if pure && seg.ack == t.last_ack && seg.window == t.last_window && rev.is(KNOWN) {
                t.dup_acks = t.dup_acks.saturating_add(1);
                t.last_ack_ts = now;
            } else if seg.ack != t.last_ack {
                t.last_ack = seg.ack;
                t.last_ack_ts = now;
                t.dup_acks = 0;
            }
            t.last_window = seg.window;
        }
        if !rst && (!known || seq_lt(t.next, end)) {
            let segment = seg.len > 0 || syn_fin > 0;
            let fresh = !known || !seq_lt(seg.seq, t.next);
            // The newest end moves to the held place when that is free; else it goes untimed.
            if t.is(NEXT_OPEN) && !t.is(HELD_OPEN) {
                t.set(HELD_OPEN, true);
                t.held_end = t.next;
                t.held_ts = t.next_ts;
            }
            t.next = end;
            t.next_ts = now;
            t.set(KNOWN, true);
            // A segment that starts below the highest end repeats bytes whose first
            // transmission may not be the one held: left untimed rather than risk a wrong time.
            t.set(NEXT_OPEN, segment && fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, f: u8, len: u32) -> Segment {
        Segment { flags: f, window: 1000, ..crate::testing::segment(seq, len) }
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp(n * 1_000_000)
    }

    #[test]
    fn handshake_split_from_last_syn() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_open_syn(ms(0), 100);
        assert!(s.on_segment(ms(0), ms(0), 0, seg(100, flags::SYN, 0), &mut d).connect.is_none());
        assert!(s.on_segment(ms(1000), ms(0), 0, seg(100, flags::SYN, 0), &mut d).connect.is_none());
        assert!(s.on_segment(ms(1030), ms(0), 1, seg(900, flags::SYN | flags::ACK, 0), &mut d).connect.is_none());
        let e = s.on_segment(ms(1035), ms(0), 0, seg(101, flags::ACK, 0), &mut d).connect.unwrap();
        assert_eq!(e.outcome, ConnectOutcome::Established);
        assert_eq!(e.syn_to_synack_us, Some(30_000));
        assert_eq!(e.synack_to_ack_us, Some(5_000));
        assert_eq!(e.rtt_us, Some(35_000));
        assert_eq!(e.connect_us, Some(1_035_000));
        assert_eq!(e.syn_retries, 1);
        // The repeated SYN is a retransmission of the client's sequence range.
        assert_eq!(d[0].retrans, 1);
    }

    #[test]
    fn rst_answer_is_refused() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_open_syn(ms(0), 1);
        s.on_segment(ms(0), ms(0), 0, seg(1, flags::SYN, 0), &mut d);
        let e = s.on_segment(ms(2), ms(0), 1, seg(0, flags::RST | flags::ACK, 0), &mut d).connect.unwrap();
        assert_eq!(e.outcome, ConnectOutcome::Refused);
        assert_eq!(e.connect_us, Some(2000));
        assert_eq!(s.closing, Some(FlowEndReason::Rst));
    }

    #[test]
    fn repeated_data_is_retransmission_keepalive_is_not() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_segment(ms(0), ms(0), 0, seg(1000, flags::ACK, 100), &mut d);
        s.on_segment(ms(1), ms(0), 0, seg(1100, flags::ACK, 100), &mut d);
        s.on_segment(ms(200), ms(0), 0, seg(1100, flags::ACK, 100), &mut d);
        assert_eq!(d[0].retrans, 1);
        s.on_segment(ms(400), ms(0), 0, seg(1199, flags::ACK, 1), &mut d);
        assert_eq!(d[0].retrans, 1);
    }

    fn acking(ack: u32, len: u32, seq: u32) -> Segment {
        Segment { ack, ..seg(seq, flags::ACK, len) }
    }

    #[test]
    fn an_ack_of_a_segment_end_is_a_sample_on_the_acking_side() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_segment(ms(0), ms(0), 0, acking(500, 100, 1000), &mut d);
        // The server's ACK of the request's end: the network side, 20 ms.
        let out = s.on_segment(ms(20), ms(0), 1, acking(1100, 300, 500), &mut d);
        assert_eq!(out.rtt, Some(RttSample { side: Side::Network, us: 20_000 }));
        // The client's ACK of the answer: the home side, 3 ms.
        let out = s.on_segment(ms(23), ms(0), 0, acking(800, 0, 1100), &mut d);
        assert_eq!(out.rtt, Some(RttSample { side: Side::Home, us: 3_000 }));
        // Acknowledged already: no second sample.
        assert_eq!(s.on_segment(ms(30), ms(0), 0, acking(800, 0, 1100), &mut d).rtt, None);
    }

    #[test]
    fn an_ack_inside_or_past_a_segment_is_no_sample() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_segment(ms(0), ms(0), 0, acking(500, 100, 1000), &mut d);
        assert_eq!(s.on_segment(ms(5), ms(0), 1, acking(1050, 0, 500), &mut d).rtt, None);
        s.on_segment(ms(6), ms(0), 0, acking(500, 100, 1100), &mut d);
        // 1100 ended the first segment, now held; an ACK of 1250 passes both ends.
        assert_eq!(s.on_segment(ms(9), ms(0), 1, acking(1250, 0, 500), &mut d).rtt, None);
        assert_eq!(s.on_segment(ms(10), ms(0), 1, acking(1200, 0, 500), &mut d).rtt, None);
    }

    #[test]
    fn two_ends_are_timed_in_flight_and_a_third_is_missed() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_segment(ms(0), ms(0), 1, acking(1, 100, 0), &mut d);
        s.on_segment(ms(1), ms(0), 1, acking(1, 100, 100), &mut d); // 100 held
        s.on_segment(ms(2), ms(0), 1, acking(1, 100, 200), &mut d); // 200 untimed, 300 newest
        let sample =
            |s: &mut TcpState, d: &mut [DirStats; 2], t, ack| s.on_segment(ms(t), ms(0), 0, acking(ack, 0, 1), d).rtt;
        assert_eq!(sample(&mut s, &mut d, 10, 100).map(|r| r.us), Some(10_000));
        assert_eq!(sample(&mut s, &mut d, 11, 200), None);
        assert_eq!(sample(&mut s, &mut d, 12, 300).map(|r| r.us), Some(10_000));
    }

    #[test]
    fn a_retransmitted_segment_is_timed_from_its_first_transmission_or_not_at_all() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_segment(ms(0), ms(0), 0, acking(1, 100, 1000), &mut d);
        s.on_segment(ms(300), ms(0), 0, acking(1, 100, 1000), &mut d);
        assert_eq!(d[0].retrans, 1);
        let out = s.on_segment(ms(310), ms(0), 1, acking(1100, 0, 1), &mut d);
        assert_eq!(out.rtt.map(|r| r.us), Some(310_000), "from the first transmission, as tshark");
        // A retransmission that reaches past the highest end is not timed.
        s.on_segment(ms(400), ms(0), 0, acking(1, 100, 1100), &mut d);
        s.on_segment(ms(700), ms(0), 0, acking(1, 200, 1100), &mut d);
        assert_eq!(s.on_segment(ms(710), ms(0), 1, acking(1300, 0, 1), &mut d).rtt, None);
    }

    #[test]
    fn handshake_segments_are_timed_too() {
        let mut s = TcpState::default();
        let mut d = [DirStats::default(); 2];
        s.on_open_syn(ms(0), 100);
        s.on_segment(ms(0), ms(0), 0, seg(100, flags::SYN, 0), &mut d);
        s.on_segment(ms(1000), ms(0), 0, seg(100, flags::SYN, 0), &mut d);
        let synack = Segment { ack: 101, ..seg(900, flags::SYN | flags::ACK, 0) };
        let out = s.on_segment(ms(1030), ms(0), 1, synack, &mut d);
        assert_eq!(out.rtt, Some(RttSample { side: Side::Network, us: 1_030_000 }), "from the first SYN");
        let out = s.on_segment(ms(1035), ms(0), 0, acking(901, 0, 101), &mut d);
        assert_eq!(out.rtt, Some(RttSample { side: Side::Home, us: 5_000 }));
    }

    #[test]
    fn summary_counts_and_bounds() {
        let mut r = RttSummary::default();
        r.add(30, false);
        r.add(10, true);
        r.add(20, true);
        assert_eq!(r, RttSummary { min_us: 10, max_us: 30, samples: 3, loaded: 2 });
    }

    #[test]
    fn sequence_wraps() {
        assert!(seq_lt(u32::MAX - 5, 3));
        assert!(!seq_lt(3, u32::MAX - 5));
    }
}
