//! The flow table: a fixed slab of flows, a hash index of slot numbers, and two recency lists
//! (TCP, UDP) threaded through the slab.
//!
//! Eviction policy: when the table is full, the flow whose last packet is oldest across both
//! lists is ended with reason `evicted`; the caller counts it. Idle expiry walks the same lists
//! from their cold ends, so it costs one step per expired flow. A flow is one entry whatever
//! the VLAN tags of its two directions, since the key holds only addresses, ports and protocol.

use crate::analyze::tcp::DirStats;
use crate::{analyze::tcp::TcpState, time::Timestamp};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const NIL: u32 = u32::MAX;

/// One endpoint as stored: address bytes (IPv4 in the first four) and port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        let mut addr = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => addr[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => addr = v6.octets(),
        }
        Endpoint { addr, port }
    }

    pub fn socket_addr(&self, v6: bool) -> SocketAddr {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            IpAddr::V4(Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]))
        };
        SocketAddr::new(ip, self.port)
    }
}

/// Direction-free flow key: the lower endpoint first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
    pub proto: u8,
    pub v6: bool,
}

impl FlowKey {
    /// The key and whether `src` is the `lo` endpoint.
    pub fn new(src: Endpoint, dst: Endpoint, proto: u8, v6: bool) -> (Self, bool) {
        if src <= dst {
            (FlowKey { lo: src, hi: dst, proto, v6 }, true)
        } else {
            (FlowKey { lo: dst, hi: src, proto, v6 }, false)
        }
    }
}

/// Where a flow's traffic is counted in the open report window: cached indices, valid while
/// `epoch` equals the window's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCell {
    pub epoch: u16,
    pub subscriber: u16,
    pub service: u16,
}

/// What a flow has counted into its current window cell, so that a name learned later in
/// the window (a ClientHello over several segments) can take those bytes with it. Names come
/// with a connection's first bytes, so the counts saturate rather than take 8 bytes more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellTraffic {
    pub bytes: [u32; 2],
    pub retrans: [u16; 2],
}

#[derive(Clone, Debug, Default)]
pub struct Flow {
    pub key: FlowKey,
    /// The client is the `lo` endpoint of the key.
    pub client_is_lo: bool,
    /// The first payload was looked at to choose an application analyzer.
    pub classified: bool,
    /// A QUIC connection: its bytes count as QUIC's too.
    pub quic: bool,
    /// Interned subscriber key (`OPTED_OUT` when not measured), service and device handles.
    pub owner: u32,
    pub service: u32,
    pub device: u32,
    pub cell: WindowCell,
    pub cell_traffic: CellTraffic,
    pub first: Timestamp,
    pub last: Timestamp,
    pub dirs: [DirStats; 2],
    pub tcp: TcpState,
    /// Bumped each time the slot is reused, so stale timers can tell.
    pub generation: u32,
    prev: u32,
    next: u32,
    list: u8,
}

/// The `owner` of a flow whose subscriber opted out.
pub const OPTED_OUT: u32 = u32::MAX - 1;

impl Flow {
    pub fn client(&self) -> SocketAddr {
        let ep = if self.client_is_lo { self.key.lo } else { self.key.hi };
        ep.socket_addr(self.key.v6)
    }

    pub fn server(&self) -> SocketAddr {
        let ep = if self.client_is_lo { self.key.hi } else { self.key.lo };
        ep.socket_addr(self.key.v6)
    }

    /// 0 when the packet went client to server.
    pub fn dir_of(&self, src_is_lo: bool) -> usize {
        usize::from(src_is_lo != self.client_is_lo)
    }
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

pub struct FlowTable {
    slots: Vec<Flow>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    lists: [List; 2],
}

/// Which recency list a flow lives on, and so which idle timeout applies.
pub const LIST_TCP: u8 = 0;
pub const LIST_OTHER: u8 = 1;

impl FlowTable {
    /// Allocates every slot now; the table never allocates afterwards.
    pub fn new(capacity: usize) -> Self {
        FlowTable {
            slots: vec![Flow::default(); capacity],
            free: (0..capacity as u32).rev().collect(),
            index: HashTable::with_capacity(capacity),
            hasher: DefaultHashBuilder::default(),
            lists: [List { head: NIL, tail: NIL }; 2],
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes held per flow slot: the slab entry, its index entry and free-list entry.
    pub fn bytes_per_flow() -> usize {
        std::mem::size_of::<Flow>() + std::mem::size_of::<u32>() * 2 + 1
    }

    pub fn get(&self, key: &FlowKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index.find(hash, |&i| self.slots[i as usize].key == *key).copied()
    }

    pub fn flow(&self, i: u32) -> &Flow {
        &self.slots[i as usize]
    }

    pub fn flow_mut(&mut self, i: u32) -> &mut Flow {
        &mut self.slots[i as usize]
    }

    /// The flow that would be evicted next: the colder of the two list tails.
    pub fn coldest(&self) -> Option<u32> {
        let [a, b] = [self.lists[0].tail, self.lists[1].tail];
        match (a, b) {
            (NIL, NIL) => None,
            (a, NIL) => Some(a),
            (NIL, b) => Some(b),
            (a, b) => Some(if self.slots[a as usize].last <= self.slots[b as usize].last { a } else { b }),
        }
    }

    /// The cold end of one list.
    pub fn tail(&self, list: u8) -> Option<u32> {
        let t = self.lists[usize::from(list)].tail;
        (t != NIL).then_some(t)
    }

    /// Inserts a new flow. The caller must have made room (`is_full` false).
    pub fn insert(&mut self, key: FlowKey, client_is_lo: bool, now: Timestamp, list: u8) -> u32 {
        let i = self.free.pop().expect("insert called on a full table");
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index.insert_unique(hash, i, |&j| self.hasher.hash_one(slots[j as usize].key));
        let generation = self.slots[i as usize].generation.wrapping_add(1);
        self.slots[i as usize] = Flow {
            key,
            client_is_lo,
            first: now,
            last: now,
            generation,
            prev: NIL,
            next: NIL,
            list,
            ..Flow::default()
        };
        self.link_front(i);
        i
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Marks the flow active now: moves it to the warm end of its list.
    pub fn touch(&mut self, i: u32, now: Timestamp) {
        let f = &mut self.slots[i as usize];
        if now > f.last {
            f.last = now;
        }
        self.unlink(i);
        self.link_front(i);
    }

    /// Removes a flow, returning it; the slot is free again.
    pub fn remove(&mut self, i: u32) -> Flow {
        self.unlink(i);
        let hash = self.hasher.hash_one(self.slots[i as usize].key);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.free.push(i);
        let f = &mut self.slots[i as usize];
        let generation = f.generation;
        let flow = std::mem::take(f);
        f.generation = generation;
        flow
    }

    /// Slot numbers of every live flow, for the end of a capture.
    pub fn live(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.index.iter().copied().collect();
        v.sort_unstable_by_key(|&i| (self.slots[i as usize].first, i));
        v
    }

    fn link_front(&mut self, i: u32) {
        let list = usize::from(self.slots[i as usize].list);
        let head = self.lists[list].head;
        {
            let f = &mut self.slots[i as usize];
            f.prev = NIL;
            f.next = head;
        }
        if head != NIL {
            self.slots[head as usize].prev = i;
        } else {
            self.lists[list].tail = i;
        }
        self.lists[list].head = i;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, list) = {
            let f = &self.slots[i as usize];
            (f.prev, f.next, usize::from(f.list))
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if self.lists[list].head == i {
            self.lists[list].head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else if self.lists[list].tail == i {
            self.lists[list].tail = prev;
        }
        let f = &mut self.slots[i as usize];
        f.prev = NIL;
        f.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        let a = Endpoint::new("192.0.2.1".parse().unwrap(), port);
        let b = Endpoint::new("198.51.100.1".parse().unwrap(), 443);
        FlowKey::new(a, b, 6, false).0
    }

    #[test]
    fn key_is_direction_free() {
        let a = Endpoint::new("192.0.2.1".parse().unwrap(), 5000);
        let b = Endpoint::new("198.51.100.1".parse().unwrap(), 443);
        let (k1, lo1) = FlowKey::new(a, b, 6, false);
        let (k2, lo2) = FlowKey::new(b, a, 6, false);
        assert_eq!(k1, k2);
        assert_ne!(lo1, lo2);
    }

    #[test]
    fn coldest_is_least_recently_touched() {
        let mut t = FlowTable::new(3);
        let ts = |s| Timestamp::from_secs_nanos(s, 0);
        let a = t.insert(key(1), true, ts(1), LIST_TCP);
        let b = t.insert(key(2), true, ts(2), LIST_OTHER);
        let c = t.insert(key(3), true, ts(3), LIST_TCP);
        assert!(t.is_full());
        assert_eq!(t.coldest(), Some(a));
        t.touch(a, ts(4));
        assert_eq!(t.coldest(), Some(b));
        t.remove(b);
        assert_eq!(t.coldest(), Some(c));
        assert_eq!(t.get(&key(1)), Some(a));
        assert_eq!(t.get(&key(2)), None);
        assert_eq!(t.len(), 2);
    }

    /// The goal is 256 bytes; round-trip sampling costs 40 (two segment ends held per
    /// direction, and each side's summary), of which 31 were found elsewhere. The README says so.
    #[test]
    fn flow_fits_the_memory_budget() {
        assert!(FlowTable::bytes_per_flow() <= 265, "{} bytes", FlowTable::bytes_per_flow());
    }
}
