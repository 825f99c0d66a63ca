//! Per-flow TCP analysis: the three-way handshake split into network and subscriber sides,
//! retransmissions, zero windows, resets and the end of the connection.
//!
//! Sequence analysis follows tshark's rules so the counts can be checked against it: a segment
//! that carries data (or SYN/FIN) and starts below the highest sequence seen in its direction is
//! a retransmission, unless it is a keep-alive, or it fills a hole shortly after the highest
//! segment (out of order: within the initial RTT, or 3 ms when the RTT is unknown). A segment
//! that answers two or more duplicate ACKs within 20 ms is a (fast) retransmission whatever
//! its timing.

use crate::{
    dissect::tcp::flags,
    event::{ConnectOutcome, FlowEndReason, TcpConnectEvent},
    time::Timestamp,
};

/// Per-direction counters. Index 0 is client to server ("up"), 1 is server to client.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirStats {
    pub bytes: u64,
    pub packets: u32,
    pub retrans: u32,
    pub zero_window: u16,
    pub rst: u16,
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
    known: bool,
    fin: bool,
    /// The ACKs this direction sends: the last value, when it was sent, the window it
    /// advertised, and how many pure ACKs repeated it.
    last_ack: u32,
    last_ack_ts: ShortTime,
    last_window: u16,
    dup_acks: u16,
}

#[derive(Clone, Debug, Default)]
pub struct TcpState {
    pub handshake: Handshake,
    /// The first SYN is the flow's first packet; the flow keeps that time.
    pub last_syn: Timestamp,
    pub synack: Timestamp,
    /// SYNs seen from the client, the first included.
    pub syns: u32,
    pub client_isn: u32,
    /// Last SYN to ACK in microseconds, once known: the out-of-order threshold.
    pub initial_rtt_us: u32,
    seq: [SeqTrack; 2],
    pub closing: Option<FlowEndReason>,
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

    /// Feeds one segment travelling in direction `dir` (0: client to server). `first_syn` is the
    /// flow's first packet time. Returns a connect measurement when this segment completes or
    /// refuses the handshake.
    pub fn on_segment(
        &mut self,
        now: Timestamp,
        first_syn: Timestamp,
        dir: usize,
        seg: Segment,
        stats: &mut [DirStats; 2],
    ) -> Option<TcpConnectEvent> {
        self.sequence(now, dir, seg, &mut stats[dir]);
        if seg.window == 0 && !seg.has(flags::SYN | flags::FIN | flags::RST) {
            stats[dir].zero_window = stats[dir].zero_window.saturating_add(1);
        }
        if seg.has(flags::RST) {
            stats[dir].rst = stats[dir].rst.saturating_add(1);
            self.closing = Some(FlowEndReason::Rst);
        }
        if seg.has(flags::FIN) {
            self.seq[dir].fin = true;
            if self.seq[0].fin && self.seq[1].fin && self.closing.is_none() {
                self.closing = Some(FlowEndReason::Fin);
            }
        }
        self.handshake(now, first_syn, dir, seg)
    }

    fn handshake(&mut self, now: Timestamp, first_syn: Timestamp, dir: usize, seg: Segment) -> Option<TcpConnectEvent> {
        let syn = seg.has(flags::SYN);
        let ack = seg.has(flags::ACK);
        match (self.handshake, dir) {
            (Handshake::SynSent, 0) if syn && !ack => {
                self.syns += 1;
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
                    syn_retries: self.syns.saturating_sub(1),
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
                    syn_retries: self.syns.saturating_sub(1),
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
            syn_retries: self.syns.saturating_sub(1),
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
        if t.known && !rst && (seg.len > 0 || syn_fin > 0) && seq_lt(seg.seq, t.next) {
            let keep_alive = seg.len <= 1 && syn_fin == 0 && seg.seq == t.next.wrapping_sub(1);
            let out_of_order = t.next_ts.micros_until(now) < ooo_threshold && t.next != end;
            if !keep_alive && (fast_retransmit || !out_of_order) {
                stats.retrans += 1;
            }
        }
        if seg.has(flags::ACK) && !rst {
            let pure = seg.len == 0 && syn_fin == 0;
            if pure && seg.ack == t.last_ack && seg.window == t.last_window && rev.known {
                t.dup_acks = t.dup_acks.saturating_add(1);
                t.last_ack_ts = now;
            } else if seg.ack != t.last_ack {
                t.last_ack = seg.ack;
                t.last_ack_ts = now;
                t.dup_acks = 0;
            }
            t.last_window = seg.window;
        }
        if !rst && (!t.known || seq_lt(t.next, end)) {
            t.next = end;
            t.next_ts = now;
            t.known = true;
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
        assert!(s.on_segment(ms(0), ms(0), 0, seg(100, flags::SYN, 0), &mut d).is_none());
        assert!(s.on_segment(ms(1000), ms(0), 0, seg(100, flags::SYN, 0), &mut d).is_none());
        assert!(s.on_segment(ms(1030), ms(0), 1, seg(900, flags::SYN | flags::ACK, 0), &mut d).is_none());
        let e = s.on_segment(ms(1035), ms(0), 0, seg(101, flags::ACK, 0), &mut d).unwrap();
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
        let e = s.on_segment(ms(2), ms(0), 1, seg(0, flags::RST | flags::ACK, 0), &mut d).unwrap();
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

    #[test]
    fn sequence_wraps() {
        assert!(seq_lt(u32::MAX - 5, 3));
        assert!(!seq_lt(3, u32::MAX - 5));
    }
}
