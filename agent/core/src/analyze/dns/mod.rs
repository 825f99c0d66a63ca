//! DNS transaction matching over UDP and TCP.
//!
//! A transaction is keyed by client address, server, transport, id *and question*: a response is
//! matched only to a query that asked the same thing, so a reused id or a response whose question
//! was cut by the snap length never yields a false latency. A query repeated with the same key
//! while pending is a retry, even from a new source port (as dig and many stub resolvers do):
//! latency runs from the last try (tshark's `dns.time`), and `retries` counts the earlier ones.
//! Unanswered queries become `TIMEOUT` after the configured time. A timed-out query is
//! remembered a while longer (`dns_late_answer_secs` from its last try): an answer that then
//! comes, to the same port, is reported as a `late` event with the server's real latency,
//! while the query stays a `TIMEOUT` (what the client saw, its resolver having given up).
//!
//! The pending table holds at most `capacity` queries; when full, the oldest is dropped and
//! counted. The expiry queue holds at most twice that, stale entries included. The timed-out
//! table holds at most `capacity` too, the oldest going first.

pub mod stream;

use crate::{
    counters::Counters,
    dissect::dns::{DnsMessage, qtype_name},
    event::{DnsEvent, Transport},
    time::Timestamp,
};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TxKey {
    client: IpAddr,
    server: SocketAddr,
    transport: Transport,
    id: u16,
    qtype: u16,
    qname: Box<str>,
}

struct Pending {
    /// Whose query this is, resolved from its flow.
    subscriber: Arc<str>,
    /// The source port of the last try; events name the client by it.
    client_port: u16,
    last: Timestamp,
    retries: u32,
    serial: u64,
}

/// Addresses an answer may carry that the service cache keeps.
pub const MAX_ANSWER_ADDRESSES: usize = 8;

/// A finished transaction: the event's fields and the endpoints it belongs to.
pub struct DnsOutcome {
    pub subscriber: Arc<str>,
    pub ts: Timestamp,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub event: DnsEvent,
    /// A and AAAA addresses of the answer, for naming the flows that follow.
    pub addresses: heapless::Vec<IpAddr, MAX_ANSWER_ADDRESSES>,
}

pub struct DnsTracker {
    pending: HashMap<TxKey, Pending>,
    expiry: VecDeque<(Timestamp, TxKey, u64)>,
    /// Queries reported as `TIMEOUT` whose answer may still come, until the deadline queued
    /// with them in `late_expiry`.
    timed_out: HashMap<TxKey, Pending>,
    late_expiry: VecDeque<(Timestamp, TxKey, u64)>,
    capacity: usize,
    timeout_ns: u64,
    late_ns: u64,
    serial: u64,
    name: String,
}

impl DnsTracker {
    /// What one pending query may take at most: its table slot, two expiry entries, and a
    /// query name of the longest a name can be.
    /// One timed-out query kept for a late answer costs as much again, less one queue entry.
    pub fn bytes_per_query() -> usize {
        2 * (std::mem::size_of::<(TxKey, Pending)>() + 1 + 255) + 3 * std::mem::size_of::<(Timestamp, TxKey, u64)>()
    }

    /// `late_ns` 0 reports no late answers.
    pub fn new(capacity: usize, timeout_ns: u64, late_ns: u64) -> Self {
        DnsTracker {
            pending: HashMap::with_capacity(capacity),
            expiry: VecDeque::with_capacity(capacity * 2),
            timed_out: HashMap::new(),
            late_expiry: VecDeque::new(),
            capacity,
            timeout_ns,
            late_ns,
            serial: 0,
            name: String::with_capacity(256),
        }
    }

    /// One DNS message seen from `src` to `dst`. Returns the finished transaction when it is a
    /// response to a pending query.
    #[allow(clippy::too_many_arguments)] // one packet's facts; a struct would only rename them
    pub fn on_message(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        payload: &[u8],
        subscriber: Arc<str>,
        counters: &mut Counters,
    ) -> Option<DnsOutcome> {
        let Ok(msg) = DnsMessage::new_checked(payload) else {
            counters.dns_malformed += 1;
            return None;
        };
        // Only standard queries (opcode 0) are transactions a user waits on.
        if msg.opcode() != 0 {
            return None;
        }
        let question = msg.first_question(&mut self.name);
        let response = msg.is_response();
        if response {
            counters.dns_responses += 1;
        } else {
            counters.dns_queries += 1;
        }
        let Ok(q) = question else {
            if response {
                counters.dns_unmatched_responses += 1;
            } else {
                counters.dns_malformed += 1;
            }
            return None;
        };
        let (client, server) = if response { (dst, src) } else { (src, dst) };
        let key = TxKey {
            client: client.ip(),
            server,
            transport,
            id: msg.id(),
            qtype: q.qtype,
            qname: self.name.as_str().into(),
        };
        if response {
            let (p, late) = match self.pending.remove(&key) {
                Some(p) => (p, false),
                None => match self.timed_out.remove(&key) {
                    // To the port the last try came from, within the late window.
                    Some(p) if p.client_port == client.port() && now <= p.last.add_nanos(self.late_ns) => (p, true),
                    other => {
                        if let Some(p) = other {
                            self.timed_out.insert(key, p);
                        }
                        counters.dns_unmatched_responses += 1;
                        return None;
                    }
                },
            };
            let mut addresses = heapless::Vec::new();
            msg.answer_addresses(q.end, &mut addresses);
            return Some(DnsOutcome {
                subscriber: p.subscriber,
                addresses,
                ts: now,
                client: SocketAddr::new(key.client, p.client_port),
                server,
                event: DnsEvent {
                    query: key.qname.into(),
                    qtype: qtype_name(key.qtype).into_owned(),
                    rcode: msg.rcode().name().into_owned(),
                    latency_us: Some(now.micros_since(p.last)),
                    retries: p.retries,
                    transport,
                    late,
                },
            });
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.retries += 1;
            p.last = now;
            p.client_port = client.port();
            return None;
        }
        self.make_room(counters);
        self.serial += 1;
        let deadline = now.add_nanos(self.timeout_ns);
        self.expiry.push_back((deadline, key.clone(), self.serial));
        self.pending.insert(
            key,
            Pending { subscriber, client_port: client.port(), last: now, retries: 0, serial: self.serial },
        );
        None
    }

    /// Queries unanswered at `now`, as `TIMEOUT` outcomes; call until it returns `None`.
    pub fn poll_timeout(&mut self, now: Timestamp) -> Option<DnsOutcome> {
        while let Some((deadline, _, _)) = self.late_expiry.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, key, serial)) = self.late_expiry.pop_front() {
                if self.timed_out.get(&key).is_some_and(|p| p.serial == serial) {
                    self.timed_out.remove(&key);
                }
            }
        }
        while let Some((deadline, _, _)) = self.expiry.front() {
            if *deadline > now {
                return None;
            }
            let (_, key, serial) = self.expiry.pop_front()?;
            let Some(p) = self.pending.get(&key) else { continue };
            if p.serial != serial {
                continue;
            }
            let due = p.last.add_nanos(self.timeout_ns);
            if due > now {
                // Retried since: wait for the retry's own deadline.
                self.expiry.push_back((due, key, serial));
                continue;
            }
            return self.timed_out(key, due);
        }
        None
    }

    /// Every query still pending, as `TIMEOUT` at `now`: the end of a capture.
    pub fn drain(&mut self, now: Timestamp) -> Vec<DnsOutcome> {
        let mut keys: Vec<(Timestamp, TxKey)> = self.pending.iter().map(|(k, p)| (p.last, k.clone())).collect();
        keys.sort_by_key(|k| k.0);
        self.expiry.clear();
        let outcomes = keys.into_iter().filter_map(|(_, k)| self.timed_out(k, now)).collect();
        // Nothing more comes at the end of a capture.
        self.timed_out.clear();
        self.late_expiry.clear();
        outcomes
    }

    fn timed_out(&mut self, key: TxKey, ts: Timestamp) -> Option<DnsOutcome> {
        let p = self.pending.remove(&key)?;
        if self.late_ns > self.timeout_ns {
            // Room first: the oldest goes, as in the pending table.
            while self.timed_out.len() >= self.capacity || self.late_expiry.len() >= self.capacity * 2 {
                let Some((_, old, serial)) = self.late_expiry.pop_front() else { break };
                if self.timed_out.get(&old).is_some_and(|q| q.serial == serial) {
                    self.timed_out.remove(&old);
                }
            }
            self.late_expiry.push_back((p.last.add_nanos(self.late_ns), key.clone(), p.serial));
            let kept = Pending { subscriber: p.subscriber.clone(), ..p };
            self.timed_out.insert(key.clone(), kept);
        }
        Some(DnsOutcome {
            subscriber: p.subscriber,
            addresses: heapless::Vec::new(),
            ts,
            client: SocketAddr::new(key.client, p.client_port),
            server: key.server,
            event: DnsEvent {
                query: key.qname.into(),
                qtype: qtype_name(key.qtype).into_owned(),
                rcode: "TIMEOUT".into(),
                latency_us: None,
                retries: p.retries,
                transport: key.transport,
                late: false,
            },
        })
    }

    /// Keeps both tables within bounds: drops stale queue entries, then the oldest live query.
    fn make_room(&mut self, counters: &mut Counters) {
        while self.pending.len() >= self.capacity || self.expiry.len() >= self.capacity * 2 {
            let Some((_, key, serial)) = self.expiry.pop_front() else { break };
            if self.pending.get(&key).is_some_and(|p| p.serial == serial) {
                self.pending.remove(&key);
                counters.dns_evictions += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u16, response: bool, rcode: u8, name: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.push(if response { 0x81 } else { 0x01 });
        m.push(if response { 0x80 | rcode } else { 0 });
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    const NAME: &[u8] = b"\x07example\x03com\x00";
    const OTHER: &[u8] = b"\x05other\x03com\x00";

    fn sub() -> Arc<str> {
        Arc::from("sub-1")
    }

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp(n * 1_000_000)
    }

    /// An answer 7.6 s after its query, with a 5 s timeout: the query stays a TIMEOUT, and
    /// the answer is its own late event with the server's latency. Too late, to another port,
    /// or a second time, it is unmatched.
    #[test]
    fn late_answers_are_reported_apart() {
        let mut t = DnsTracker::new(8, 5_000_000_000, 30_000_000_000);
        let mut c = Counters::default();
        let (cl, sv) = (ep("192.0.2.1:40000"), ep("192.0.2.53:53"));
        assert!(t.on_message(ms(0), cl, sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c).is_none());
        assert!(t.on_message(ms(100), cl, sv, Transport::Udp, &msg(8, false, 0, OTHER), sub(), &mut c).is_none());
        let timeout = t.poll_timeout(ms(5000)).unwrap();
        assert_eq!((timeout.event.rcode.as_str(), timeout.event.late), ("TIMEOUT", false));
        assert_eq!(t.poll_timeout(ms(5100)).unwrap().event.query, "other.com");
        let late = t.on_message(ms(7600), sv, cl, Transport::Udp, &msg(7, true, 0, NAME), sub(), &mut c).unwrap();
        assert!(late.event.late);
        assert_eq!((late.event.rcode.as_str(), late.event.latency_us), ("NOERROR", Some(7_600_000)));
        // Once only.
        assert!(t.on_message(ms(7700), sv, cl, Transport::Udp, &msg(7, true, 0, NAME), sub(), &mut c).is_none());
        // Another port is another socket: not this query's answer.
        let elsewhere = ep("192.0.2.1:40001");
        assert!(
            t.on_message(ms(8000), sv, elsewhere, Transport::Udp, &msg(8, true, 0, OTHER), sub(), &mut c).is_none()
        );
        // Past the late window the query is forgotten.
        assert!(t.poll_timeout(ms(30_200)).is_none());
        assert!(t.on_message(ms(30_200), sv, cl, Transport::Udp, &msg(8, true, 0, OTHER), sub(), &mut c).is_none());
        assert_eq!(c.dns_unmatched_responses, 3);
        // Off: a late answer is unmatched.
        let mut off = DnsTracker::new(8, 5_000_000_000, 0);
        assert!(off.on_message(ms(0), cl, sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c).is_none());
        assert!(off.poll_timeout(ms(5000)).is_some());
        assert!(off.on_message(ms(7600), sv, cl, Transport::Udp, &msg(7, true, 0, NAME), sub(), &mut c).is_none());
    }

    #[test]
    fn timed_out_queries_kept_for_late_answers_are_bounded() {
        let mut t = DnsTracker::new(2, 1_000_000_000, 30_000_000_000);
        let mut c = Counters::default();
        let (cl, sv) = (ep("192.0.2.1:40000"), ep("192.0.2.53:53"));
        for id in 0..10u16 {
            assert!(
                t.on_message(ms(u64::from(id)), cl, sv, Transport::Udp, &msg(id, false, 0, NAME), sub(), &mut c)
                    .is_none()
            );
            while t.poll_timeout(ms(u64::from(id) + 1000)).is_some() {}
        }
        assert!(t.timed_out.len() <= 2 && t.late_expiry.len() <= 4, "{} {}", t.timed_out.len(), t.late_expiry.len());
        // The newest is still answerable, the oldest not.
        assert!(t.on_message(ms(2000), sv, cl, Transport::Udp, &msg(9, true, 0, NAME), sub(), &mut c).is_some());
        assert!(t.on_message(ms(2000), sv, cl, Transport::Udp, &msg(0, true, 0, NAME), sub(), &mut c).is_none());
    }

    #[test]
    fn retry_times_from_last_query() {
        let mut t = DnsTracker::new(8, 5_000_000_000, 0);
        let mut c = Counters::default();
        let (cl, sv) = (ep("192.0.2.1:40000"), ep("192.0.2.53:53"));
        assert!(t.on_message(ms(0), cl, sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c).is_none());
        assert!(t.on_message(ms(1000), cl, sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c).is_none());
        let out = t.on_message(ms(1012), sv, cl, Transport::Udp, &msg(7, true, 3, NAME), sub(), &mut c).unwrap();
        assert_eq!(out.event.latency_us, Some(12_000));
        assert_eq!(out.event.retries, 1);
        assert_eq!(out.event.rcode, "NXDOMAIN");
        assert_eq!(out.event.query, "example.com");
        assert_eq!(out.client, cl);
    }

    #[test]
    fn retry_from_new_port_is_the_same_lookup() {
        let mut t = DnsTracker::new(8, 5_000_000_000, 0);
        let mut c = Counters::default();
        let sv = ep("192.0.2.53:53");
        t.on_message(ms(0), ep("192.0.2.1:40000"), sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c);
        t.on_message(ms(900), ep("192.0.2.1:40001"), sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c);
        let out =
            t.on_message(ms(910), sv, ep("192.0.2.1:40001"), Transport::Udp, &msg(7, true, 0, NAME), sub(), &mut c);
        let out = out.unwrap();
        assert_eq!((out.event.latency_us, out.event.retries), (Some(10_000), 1));
        assert_eq!(out.client, ep("192.0.2.1:40001"));
    }

    #[test]
    fn response_to_other_question_does_not_match() {
        let mut t = DnsTracker::new(8, 5_000_000_000, 0);
        let mut c = Counters::default();
        let (cl, sv) = (ep("192.0.2.1:40000"), ep("192.0.2.53:53"));
        t.on_message(ms(0), cl, sv, Transport::Udp, &msg(7, false, 0, NAME), sub(), &mut c);
        assert!(t.on_message(ms(5), sv, cl, Transport::Udp, &msg(7, true, 0, OTHER), sub(), &mut c).is_none());
        assert_eq!(c.dns_unmatched_responses, 1);
        // Cut inside the question: cannot be matched either.
        let cut = &msg(7, true, 0, NAME)[..16];
        assert!(t.on_message(ms(6), sv, cl, Transport::Udp, cut, sub(), &mut c).is_none());
        assert_eq!(c.dns_unmatched_responses, 2);
    }

    #[test]
    fn unanswered_query_times_out_after_its_last_retry() {
        let mut t = DnsTracker::new(8, 5_000_000_000, 0);
        let mut c = Counters::default();
        let (cl, sv) = (ep("192.0.2.1:40000"), ep("192.0.2.53:53"));
        t.on_message(ms(0), cl, sv, Transport::Udp, &msg(9, false, 0, NAME), sub(), &mut c);
        t.on_message(ms(2000), cl, sv, Transport::Udp, &msg(9, false, 0, NAME), sub(), &mut c);
        assert!(t.poll_timeout(ms(5000)).is_none());
        let out = t.poll_timeout(ms(7000)).unwrap();
        assert_eq!(out.event.rcode, "TIMEOUT");
        assert_eq!(out.event.retries, 1);
        assert_eq!(out.ts, ms(7000));
    }

    #[test]
    fn full_table_evicts_oldest() {
        let mut t = DnsTracker::new(2, 5_000_000_000, 0);
        let mut c = Counters::default();
        let sv = ep("192.0.2.53:53");
        let cl = ep("192.0.2.1:40000");
        for id in 1..=5u16 {
            t.on_message(ms(u64::from(id)), cl, sv, Transport::Udp, &msg(id, false, 0, NAME), sub(), &mut c);
        }
        assert_eq!(c.dns_evictions, 3);
        assert_eq!(t.drain(ms(10)).len(), 2);
    }
}
