//! IP fragment reassembly in a fixed number of slots, each holding at most `max_datagram` bytes.
//!
//! A slot is keyed by (source, destination, protocol, identification), as RFC 791 and RFC 8200
//! define. When every slot is busy the oldest is evicted; a slot older than the timeout is
//! dropped when the next fragment arrives. Both are counted. A datagram of more than
//! `MAX_PIECES` fragments is dropped: real traffic needs a handful, attacks need thousands.

use crate::{counters::Counters, dissect::Fragment, time::Timestamp};
use std::net::IpAddr;

const MAX_PIECES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ident: u32,
}

struct Slot {
    key: Option<FragKey>,
    started: Timestamp,
    buf: Vec<u8>,
    pieces: heapless::Vec<(u32, u32), MAX_PIECES>,
    /// Length of the whole datagram, known once the last fragment arrived.
    total: Option<usize>,
}

pub struct Reassembler {
    slots: Vec<Slot>,
    max_datagram: usize,
    timeout_ns: u64,
}

impl Reassembler {
    pub fn new(slots: usize, max_datagram: usize, timeout_ns: u64) -> Self {
        let slots = (0..slots)
            .map(|_| Slot {
                key: None,
                started: Timestamp::ZERO,
                buf: Vec::new(),
                pieces: heapless::Vec::new(),
                total: None,
            })
            .collect();
        Reassembler { slots, max_datagram, timeout_ns }
    }

    /// Adds one fragment. When it completes its datagram, the reassembled payload is copied into
    /// `out` and `true` is returned.
    pub fn add(
        &mut self,
        now: Timestamp,
        key: FragKey,
        frag: Fragment,
        data: &[u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> bool {
        counters.ip_fragments += 1;
        let end = frag.offset + data.len();
        if end > self.max_datagram || self.slots.is_empty() {
            counters.ip_fragments_dropped += 1;
            return false;
        }
        let i = match self.slots.iter().position(|s| s.key == Some(key)) {
            Some(i) if now.nanos_since(self.slots[i].started) > self.timeout_ns => {
                counters.ip_reassembly_timeout += 1;
                self.reset(i, key, now);
                i
            }
            Some(i) => i,
            None => {
                let i = self.free_slot(now, counters);
                self.reset(i, key, now);
                i
            }
        };
        let slot = &mut self.slots[i];
        if slot.buf.len() < end {
            slot.buf.resize(end, 0);
        }
        slot.buf[frag.offset..end].copy_from_slice(data);
        if slot.pieces.push((frag.offset as u32, end as u32)).is_err() {
            counters.ip_fragments_dropped += 1;
            slot.key = None;
            return false;
        }
        if !frag.more {
            slot.total = Some(end);
        }
        let Some(total) = slot.total else { return false };
        slot.pieces.sort_unstable();
        let mut covered = 0u32;
        for &(start, stop) in slot.pieces.iter() {
            if start > covered {
                return false;
            }
            covered = covered.max(stop);
        }
        if (covered as usize) < total {
            return false;
        }
        out.clear();
        out.extend_from_slice(&slot.buf[..total]);
        slot.key = None;
        counters.ip_reassembled += 1;
        true
    }

    fn free_slot(&mut self, now: Timestamp, counters: &mut Counters) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.key.is_none()) {
            return i;
        }
        let (i, oldest) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.started)
            .map(|(i, s)| (i, s.started))
            .unwrap_or((0, now));
        if now.nanos_since(oldest) > self.timeout_ns {
            counters.ip_reassembly_timeout += 1;
        } else {
            counters.ip_reassembly_evicted += 1;
        }
        i
    }

    fn reset(&mut self, i: usize, key: FragKey, now: Timestamp) {
        let slot = &mut self.slots[i];
        slot.key = Some(key);
        slot.started = now;
        slot.buf.clear();
        slot.pieces.clear();
        slot.total = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ident: u32) -> FragKey {
        FragKey { src: "192.0.2.1".parse().unwrap(), dst: "192.0.2.2".parse().unwrap(), protocol: 17, ident }
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut r = Reassembler::new(2, 65535, 30_000_000_000);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let t = Timestamp::from_secs_nanos(1, 0);
        assert!(!r.add(t, key(1), Fragment { ident: 1, offset: 8, more: false }, b"world!", &mut out, &mut c));
        assert!(r.add(t, key(1), Fragment { ident: 1, offset: 0, more: true }, b"hello, x", &mut out, &mut c));
        assert_eq!(out, b"hello, xworld!");
    }

    #[test]
    fn full_table_evicts_oldest_and_counts() {
        let mut r = Reassembler::new(1, 65535, 30_000_000_000);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let t = Timestamp::from_secs_nanos(1, 0);
        r.add(t, key(1), Fragment { ident: 1, offset: 0, more: true }, &[0; 8], &mut out, &mut c);
        r.add(t, key(2), Fragment { ident: 2, offset: 0, more: true }, &[0; 8], &mut out, &mut c);
        assert_eq!(c.ip_reassembly_evicted, 1);
        // The evicted datagram cannot complete any more.
        assert!(!r.add(t, key(1), Fragment { ident: 1, offset: 8, more: false }, &[0; 8], &mut out, &mut c));
    }

    #[test]
    fn oversized_datagram_is_dropped() {
        let mut r = Reassembler::new(1, 1500, 30_000_000_000);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let t = Timestamp::ZERO;
        assert!(!r.add(t, key(1), Fragment { ident: 1, offset: 1496, more: false }, &[0; 8], &mut out, &mut c));
        assert_eq!(c.ip_fragments_dropped, 1);
    }
}
