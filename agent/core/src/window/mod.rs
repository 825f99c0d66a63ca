//! Window aggregation: turns measurement events into one report per clock-aligned interval, per
//! subscriber and per service.
//!
//! Latency samples are kept raw in one arena of `sample_capacity` entries (12 bytes each) and
//! turned into HdrHistograms only when the window closes. A dense HdrHistogram at 3 significant
//! digits from 1 µs to an hour costs tens of kilobytes; one per subscriber, service and metric
//! would not fit a gateway, while the arena gives exact histograms at a fixed cost. Subscribers
//! beyond `max_subscribers`, services beyond `services_tracked_per_subscriber` and samples beyond
//! the arena are refused and counted, never allocated.

mod rtt;

pub use rtt::RttHistograms;

use crate::analyze::tcp::Side;
use crate::config::CoreConfig;
use crate::counters::Counters as CaptureCounters;
use crate::event::{ConnectOutcome, Detail, EpisodeOutcome, Event, QuicOutcome, TlsOutcome};
use crate::time::Timestamp;
use edgeprobe_wire::histogram::HistogramEncoder;
use edgeprobe_wire::{
    CaptureHealth, Codec, Counters, Evictions, JourneyReport, MAX_RESOLVERS, Metrics, OTHER_SERVICE, Report,
    ResolverReport, SCHEMA_VERSION, ServiceReport, SubscriberReport, WireHistogram,
};
use hashbrown::HashMap;
use std::net::IpAddr;

const NO_SERVICE: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Metric {
    ConnectNetwork,
    ConnectHome,
    Dns,
    TlsHandshake,
    HttpTtfb,
    QuicHello,
    QuicHome,
    QuicHandshake,
    /// A journey's latency; the sample's `service` is the journey's index in the subscriber.
    Journey,
    /// A resolver's DNS latency; the sample's `service` is the resolver's index.
    Resolver,
    /// A DNS answer that came after its query's timeout; per subscriber.
    DnsLate,
}

impl Metric {
    /// Where the metric's histogram goes in a report; journeys and resolvers have their own.
    fn slot(self, m: &mut Metrics) -> Option<&mut Option<WireHistogram>> {
        Some(match self {
            Metric::ConnectNetwork => &mut m.connect_network,
            Metric::ConnectHome => &mut m.connect_home,
            Metric::Dns => &mut m.dns,
            Metric::TlsHandshake => &mut m.tls_handshake,
            Metric::HttpTtfb => &mut m.http_ttfb,
            Metric::QuicHello => &mut m.quic_hello,
            Metric::QuicHome => &mut m.quic_home,
            Metric::QuicHandshake => &mut m.quic_handshake,
            Metric::Journey | Metric::Resolver | Metric::DnsLate => return None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    subscriber: u16,
    service: u16,
    metric: Metric,
    value_us: u32,
}

struct Service {
    name: String,
    counters: Counters,
}

struct Subscriber {
    key: String,
    counters: Counters,
    services: Vec<Service>,
    by_name: HashMap<String, u16>,
    journeys: Vec<JourneyReport>,
    /// By address, so a lookup compares addresses rather than formatting one.
    resolvers: Vec<(IpAddr, ResolverReport)>,
    /// Round trips, once the line has one in the window.
    rtt: Option<Box<RttHistograms>>,
    /// Opted out during the window: left out of its report.
    withheld: bool,
}

/// Names the agent in its reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub agent_id: String,
    pub boot_id: String,
}

pub struct Windows {
    interval_ns: u64,
    max_subscribers: usize,
    top_services: usize,
    max_services: usize,
    identity: Identity,
    seq: u64,
    /// Changes at every window close, so cached cells can tell they are stale.
    epoch: u16,
    /// Start of the open window in wall time, once the first packet set it.
    start: Option<u64>,
    /// Wall time minus packet time: non-zero once the capture shell saw the wall clock step.
    wall_offset: i64,
    subscribers: Vec<Subscriber>,
    index: HashMap<String, u16>,
    samples: Vec<Sample>,
    sample_capacity: usize,
    refused_subscribers: u64,
    dropped_samples: u64,
    /// The capture counters when the window opened: a report carries the difference.
    baseline: CaptureCounters,
    serializer: HistogramEncoder,
    /// Writes a line's histograms that merge its services' as that merge (see `store_merges`).
    codec: Codec,
    /// One histogram's values, sorted to summarise them.
    values: Vec<u64>,
    /// One round-trip histogram's buckets as (value, count).
    pairs: Vec<(u64, u64)>,
}

impl Windows {
    pub fn new(config: &CoreConfig, identity: Identity) -> Self {
        Windows {
            interval_ns: config.report_interval_secs * 1_000_000_000,
            max_subscribers: config.max_subscribers,
            top_services: config.services_per_subscriber,
            max_services: config.services_tracked_per_subscriber,
            identity,
            seq: 0,
            epoch: 0,
            start: None,
            wall_offset: 0,
            subscribers: Vec::new(),
            index: HashMap::new(),
            samples: Vec::with_capacity(config.sample_capacity),
            sample_capacity: config.sample_capacity,
            refused_subscribers: 0,
            dropped_samples: 0,
            baseline: CaptureCounters::default(),
            serializer: HistogramEncoder::default(),
            codec: Codec::default(),
            values: Vec::new(),
            pairs: Vec::new(),
        }
    }

    pub fn set_identity(&mut self, identity: Identity) {
        self.identity = identity;
    }

    /// Windows are aligned to and labelled in wall time.
    fn wall(&self, now: Timestamp) -> u64 {
        now.as_nanos().saturating_add_signed(self.wall_offset)
    }

    /// True when `now` closes the open window.
    pub fn due(&self, now: Timestamp) -> bool {
        self.start.is_some_and(|start| self.wall(now) >= start + self.interval_ns)
    }

    /// Closes the open window if `now` is past its end. Returns its report, if it saw packets.
    /// Windows with no packet at all are skipped, so a gap in the capture yields no empty reports.
    pub fn advance(&mut self, now: Timestamp, capture: &CaptureCounters) -> Option<Report> {
        let wall = self.wall(now);
        let aligned = wall / self.interval_ns * self.interval_ns;
        let Some(start) = self.start else {
            self.start = Some(aligned);
            return None;
        };
        if wall < start + self.interval_ns {
            return None;
        }
        let report = self.close(start, capture);
        self.start = Some(aligned);
        report
    }

    /// The wall clock stepped: wall time is now packet time plus `wall_offset`. The open window
    /// is closed under its old label and the next one is aligned to the new wall time.
    pub fn step(&mut self, now: Timestamp, wall_offset: i64, capture: &CaptureCounters) -> Option<Report> {
        let report = self.start.take().and_then(|start| self.close(start, capture));
        self.wall_offset = wall_offset;
        self.start = Some(self.wall(now) / self.interval_ns * self.interval_ns);
        report
    }

    /// Closes the open window whatever the time: the end of a capture.
    pub fn flush(&mut self, capture: &CaptureCounters) -> Option<Report> {
        let start = self.start.take()?;
        self.close(start, capture)
    }

    /// Counts one event for its subscriber and service.
    pub fn on_event(&mut self, event: &Event) {
        let Some((sub, svc)) = self.cell(&event.subscriber, event.service.as_deref()) else { return };
        let mut sample = |metric: Metric, value: Option<u64>| {
            if let Some(v) = value {
                self.push_sample(sub, svc, metric, v);
            }
        };
        let mut counters = Counters::default();
        match &event.detail {
            // The query was counted as a TIMEOUT when it timed out; its late answer only says
            // when the server did answer.
            Detail::Dns(d) if d.late => {
                counters.dns_late = 1;
                if let Some(v) = d.latency_us {
                    self.push_sample(sub, NO_SERVICE, Metric::DnsLate, v);
                }
            }
            Detail::Dns(d) => {
                counters.dns.insert(d.rcode.clone(), 1);
                sample(Metric::Dns, d.latency_us);
                self.on_resolver(sub, event.server.ip(), &d.rcode, d.latency_us);
            }
            Detail::TcpConnect(c) => match c.outcome {
                ConnectOutcome::Established => {
                    counters.connects = 1;
                    sample(Metric::ConnectNetwork, c.syn_to_synack_us);
                    sample(Metric::ConnectHome, c.synack_to_ack_us);
                }
                ConnectOutcome::Refused => counters.connect_refused = 1,
                ConnectOutcome::Timeout => counters.connect_timeout = 1,
            },
            Detail::Tls(t) => {
                if t.outcome == TlsOutcome::Ok {
                    counters.tls_ok = 1;
                    sample(Metric::TlsHandshake, t.handshake_us);
                } else {
                    counters.tls_failed = 1;
                }
            }
            Detail::Http(h) => {
                counters.http_responses = 1;
                counters.http_4xx = u64::from((400..500).contains(&h.status));
                counters.http_5xx = u64::from(h.status >= 500);
                sample(Metric::HttpTtfb, Some(h.ttfb_us));
            }
            Detail::FlowEnd(_) => counters.flows = 1,
            Detail::Quic(q) => {
                sample(Metric::QuicHello, q.hello_us);
                sample(Metric::QuicHome, q.home_us);
                if q.outcome == QuicOutcome::Ok {
                    counters.quic_ok = 1;
                    sample(Metric::QuicHandshake, q.handshake_us);
                } else {
                    counters.quic_incomplete = 1;
                }
            }
            Detail::Episode(e) => {
                // Journeys are per subscriber, not per service.
                let journeys = &mut self.subscribers[usize::from(sub)].journeys;
                let i = match journeys.iter().position(|j| j.journey == e.journey) {
                    Some(i) => i,
                    None => {
                        journeys.push(JourneyReport {
                            journey: e.journey.clone(),
                            phase: e.phase.clone(),
                            channel: e.channel.clone(),
                            ..Default::default()
                        });
                        journeys.len() - 1
                    }
                };
                let j = &mut journeys[i];
                match e.outcome {
                    EpisodeOutcome::Ok => j.ok += 1,
                    EpisodeOutcome::Failed => j.failed += 1,
                    EpisodeOutcome::Timeout => j.timeout += 1,
                }
                j.abandoned += u64::from(e.abandoned);
                if let Some(step) = &e.failed_step {
                    *j.failed_steps.entry(step.clone()).or_default() += 1;
                }
                if e.outcome == EpisodeOutcome::Ok {
                    self.push_sample(sub, i as u16, Metric::Journey, e.latency_us.unwrap_or(0));
                }
                return;
            }
        }
        self.add(sub, svc, &counters);
    }

    /// Counts a DNS transaction for its resolver, among the subscriber's first `MAX_RESOLVERS`.
    fn on_resolver(&mut self, sub: u16, resolver: IpAddr, rcode: &str, latency_us: Option<u64>) {
        let resolvers = &mut self.subscribers[usize::from(sub)].resolvers;
        let i = match resolvers.iter().position(|(ip, _)| *ip == resolver) {
            Some(i) => i,
            None if resolvers.len() < MAX_RESOLVERS => {
                resolvers.push((resolver, ResolverReport { resolver: resolver.to_string(), ..Default::default() }));
                resolvers.len() - 1
            }
            None => return,
        };
        let counts = &mut resolvers[i].1.dns;
        match counts.get_mut(rcode) {
            Some(n) => *n += 1,
            None => {
                counts.insert(rcode.to_string(), 1);
            }
        }
        if let Some(v) = latency_us {
            self.push_sample(sub, i as u16, Metric::Resolver, v);
        }
    }

    /// The current window's epoch: cells from `cell` are valid while it lasts.
    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// Leaves these subscribers out of the open window's report, with everything gathered of
    /// them so far. Their cells stay in place, since open flows may still point at them.
    pub fn withhold(&mut self, keys: &[std::sync::Arc<str>]) {
        for key in keys {
            if let Some(&i) = self.index.get(&**key) {
                let s = &mut self.subscribers[usize::from(i)];
                s.withheld = true;
                s.counters = Counters::default();
                s.journeys.clear();
                s.resolvers.clear();
                s.rtt = None;
                self.samples.retain(|x| x.subscriber != i);
            }
        }
    }

    /// One packet: its payload bytes and retransmissions, in direction `dir` (0 is up), for a
    /// cell from `cell`; the line counts the packet too.
    pub fn add_traffic(&mut self, subscriber: u16, service: u16, dir: usize, (bytes, retrans): (u64, u64), quic: bool) {
        let Some(s) = self.subscribers.get_mut(usize::from(subscriber)) else { return };
        let add = |c: &mut Counters| {
            if dir == 0 {
                c.bytes_up += bytes;
                c.retrans_up += retrans;
                c.quic_bytes_up += if quic { bytes } else { 0 };
            } else {
                c.bytes_down += bytes;
                c.retrans_down += retrans;
                c.quic_bytes_down += if quic { bytes } else { 0 };
            }
        };
        add(&mut s.counters);
        // Packets per line only: a service's would have to move with its name, as bytes do.
        if dir == 0 {
            s.counters.packets_up += 1;
        } else {
            s.counters.packets_down += 1;
        }
        if let Some(svc) = s.services.get_mut(usize::from(service)) {
            add(&mut svc.counters);
        }
    }

    /// A round trip of the subscriber's, for a cell from `cell`.
    pub fn add_rtt(&mut self, subscriber: u16, side: Side, loaded: bool, us: u32) {
        let Some(s) = self.subscribers.get_mut(usize::from(subscriber)) else { return };
        s.rtt.get_or_insert_with(RttHistograms::new).add(side, loaded, us);
    }

    /// IP bytes of a packet that went while the line was loaded.
    pub fn add_loaded(&mut self, subscriber: u16, dir: usize, ip_len: u64) {
        let Some(s) = self.subscribers.get_mut(usize::from(subscriber)) else { return };
        let c = &mut s.counters;
        if dir == 0 { c.loaded_bytes_up += ip_len } else { c.loaded_bytes_down += ip_len }
    }

    /// Moves a flow's traffic counted in this window from one of the subscriber's services (or
    /// none) to another; the subscriber's totals stay as they are.
    pub fn move_traffic(&mut self, subscriber: u16, from: u16, to: u16, t: &crate::flow::CellTraffic, quic: bool) {
        let Some(s) = self.subscribers.get_mut(usize::from(subscriber)) else { return };
        if from == to {
            return;
        }
        let q = |b: u64| if quic { b } else { 0 };
        let bytes = t.bytes.map(u64::from);
        if let Some(c) = s.services.get_mut(usize::from(from)).map(|svc| &mut svc.counters) {
            c.bytes_up = c.bytes_up.saturating_sub(bytes[0]);
            c.bytes_down = c.bytes_down.saturating_sub(bytes[1]);
            c.retrans_up = c.retrans_up.saturating_sub(u64::from(t.retrans[0]));
            c.retrans_down = c.retrans_down.saturating_sub(u64::from(t.retrans[1]));
            c.quic_bytes_up = c.quic_bytes_up.saturating_sub(q(bytes[0]));
            c.quic_bytes_down = c.quic_bytes_down.saturating_sub(q(bytes[1]));
        }
        if let Some(c) = s.services.get_mut(usize::from(to)).map(|svc| &mut svc.counters) {
            c.bytes_up += bytes[0];
            c.bytes_down += bytes[1];
            c.retrans_up += u64::from(t.retrans[0]);
            c.retrans_down += u64::from(t.retrans[1]);
            c.quic_bytes_up += q(bytes[0]);
            c.quic_bytes_down += q(bytes[1]);
        }
    }

    fn add(&mut self, sub: u16, svc: u16, counters: &Counters) {
        let s = &mut self.subscribers[usize::from(sub)];
        s.counters.add(counters);
        if svc != NO_SERVICE {
            s.services[usize::from(svc)].counters.add(counters);
        }
    }

    fn push_sample(&mut self, subscriber: u16, service: u16, metric: Metric, value: u64) {
        if self.samples.len() >= self.sample_capacity {
            self.dropped_samples += 1;
            return;
        }
        let value_us = value.min(u64::from(u32::MAX)) as u32;
        self.samples.push(Sample { subscriber, service, metric, value_us });
    }

    /// The subscriber's index and the service's (or `NO_SERVICE`) in this window, created if
    /// new and there is room; `None` (and counted) when the subscriber table is full.
    pub fn cell(&mut self, subscriber: &str, service: Option<&str>) -> Option<(u16, u16)> {
        let sub = match self.index.get(subscriber) {
            Some(&i) => i,
            None if self.subscribers.len() >= self.max_subscribers => {
                self.refused_subscribers += 1;
                return None;
            }
            None => {
                let i = self.subscribers.len() as u16;
                self.subscribers.push(Subscriber {
                    key: subscriber.to_string(),
                    counters: Counters::default(),
                    services: Vec::new(),
                    by_name: HashMap::new(),
                    journeys: Vec::new(),
                    resolvers: Vec::new(),
                    rtt: None,
                    withheld: false,
                });
                self.index.insert(subscriber.to_string(), i);
                i
            }
        };
        let s = &mut self.subscribers[usize::from(sub)];
        let Some(name) = service else { return Some((sub, NO_SERVICE)) };
        // A name longer than any DNS name, or with control characters, came from a client's
        // SNI or Host header and names nothing a collector keeps.
        let name = if edgeprobe_wire::report::acceptable_name(name) { name } else { OTHER_SERVICE };
        let name =
            if s.by_name.contains_key(name) || s.services.len() < self.max_services { name } else { OTHER_SERVICE };
        let svc = match s.by_name.get(name) {
            Some(&i) => i,
            None => {
                let i = s.services.len() as u16;
                s.services.push(Service { name: name.to_string(), counters: Counters::default() });
                s.by_name.insert(name.to_string(), i);
                i
            }
        };
        Some((sub, svc))
    }

    fn close(&mut self, start: u64, capture: &CaptureCounters) -> Option<Report> {
        let packets = capture.packets - self.baseline.packets;
        let health = CaptureHealth {
            packets,
            bytes: capture.bytes - self.baseline.bytes,
            kernel_drops: capture.kernel_drops - self.baseline.kernel_drops,
            unparsed: capture.unparsed - self.baseline.unparsed,
            evictions: Evictions {
                flows: capture.flow_evictions - self.baseline.flow_evictions,
                dns: capture.dns_evictions - self.baseline.dns_evictions,
                streams: capture.streams_refused - self.baseline.streams_refused,
                fragments: capture.ip_reassembly_evicted - self.baseline.ip_reassembly_evicted,
                subscribers: std::mem::take(&mut self.refused_subscribers),
                samples: std::mem::take(&mut self.dropped_samples),
                dhcp_bindings: capture.dhcp_binding_evictions - self.baseline.dhcp_binding_evictions,
                service_names: capture.service_name_evictions - self.baseline.service_name_evictions,
                episodes: capture.episode_evictions - self.baseline.episode_evictions,
            },
        };
        self.baseline = capture.clone();
        self.epoch = self.epoch.wrapping_add(1);
        let subscribers = self.build_subscribers();
        self.subscribers.clear();
        self.index.clear();
        self.samples.clear();
        if packets == 0 && subscribers.is_empty() {
            return None;
        }
        let start_ms = start / 1_000_000;
        let report = Report {
            v: SCHEMA_VERSION,
            agent_id: self.identity.agent_id.clone(),
            boot_id: self.identity.boot_id.clone(),
            seq: self.seq,
            window_start: start_ms,
            window_end: start_ms + self.interval_ns / 1_000_000,
            capture: health,
            subscribers,
            agent: None,
            part: 0,
            parts: 0,
        };
        self.seq += 1;
        Some(report)
    }

    fn build_subscribers(&mut self) -> Vec<SubscriberReport> {
        // Which services each subscriber keeps: the top N by traffic; the rest map to `other`.
        let mut keep: Vec<Vec<u16>> = Vec::with_capacity(self.subscribers.len());
        let mut out: Vec<SubscriberReport> = Vec::with_capacity(self.subscribers.len());
        for s in &self.subscribers {
            let mut order: Vec<u16> = (0..s.services.len() as u16).collect();
            let traffic = |c: &Counters| c.bytes_up + c.bytes_down;
            order.sort_by(|&a, &b| {
                let (a, b) = (&s.services[usize::from(a)], &s.services[usize::from(b)]);
                let other = |svc: &Service| svc.name == OTHER_SERVICE;
                (other(a), std::cmp::Reverse(traffic(&a.counters)), &a.name).cmp(&(
                    other(b),
                    std::cmp::Reverse(traffic(&b.counters)),
                    &b.name,
                ))
            });
            let mut services: Vec<ServiceReport> = Vec::new();
            let mut map = vec![0u16; s.services.len()];
            let mut other: Option<usize> = None;
            for (rank, &i) in order.iter().enumerate() {
                let svc = &s.services[usize::from(i)];
                if rank < self.top_services && svc.name != OTHER_SERVICE {
                    map[usize::from(i)] = services.len() as u16;
                    services.push(ServiceReport {
                        service: svc.name.clone(),
                        metrics: Metrics::default(),
                        counters: svc.counters.clone(),
                    });
                } else {
                    let o = *other.get_or_insert_with(|| {
                        services.push(ServiceReport {
                            service: OTHER_SERVICE.into(),
                            metrics: Metrics::default(),
                            counters: Counters::default(),
                        });
                        services.len() - 1
                    });
                    services[o].counters.add(&svc.counters);
                    map[usize::from(i)] = o as u16;
                }
            }
            keep.push(map);
            let mut metrics = Metrics::default();
            if let Some(rtt) = &s.rtt {
                let [home, network, home_loaded, network_loaded] = rtt.write(&mut self.serializer, &mut self.pairs);
                (metrics.rtt_home, metrics.rtt_network) = (home, network);
                (metrics.rtt_home_loaded, metrics.rtt_network_loaded) = (home_loaded, network_loaded);
            }
            out.push(SubscriberReport {
                subscriber: s.key.clone(),
                metrics,
                counters: s.counters.clone(),
                services,
                journeys: s.journeys.clone(),
                resolvers: s.resolvers.iter().map(|(_, r)| r.clone()).collect(),
                dns_late: None,
            });
        }
        // Subscriber-wide histograms: every sample of the subscriber; journeys by journey and
        // resolvers by resolver, where the line asked more than one.
        let per_index = |m: Metric| matches!(m, Metric::Journey | Metric::Resolver);
        self.samples.sort_unstable_by_key(|s| (s.subscriber, s.metric, s.service));
        for run in self.samples.chunk_by(|a, b| {
            (a.subscriber, a.metric) == (b.subscriber, b.metric) && (!per_index(a.metric) || a.service == b.service)
        }) {
            let (sub, metric, i) = (usize::from(run[0].subscriber), run[0].metric, usize::from(run[0].service));
            if metric == Metric::Resolver && out[sub].resolvers.len() < 2 {
                continue;
            }
            let histogram = Some(histogram_of(&mut self.serializer, &mut self.values, run));
            match metric.slot(&mut out[sub].metrics) {
                Some(slot) => *slot = histogram,
                None if metric == Metric::Journey => out[sub].journeys[i].latency = histogram,
                None if metric == Metric::DnsLate => out[sub].dns_late = histogram,
                None => out[sub].resolvers[i].latency = histogram,
            }
        }
        self.samples.retain(|s| !per_index(s.metric));
        // Per-service histograms, through the top-N mapping.
        for s in self.samples.iter_mut() {
            if s.service != NO_SERVICE {
                s.service = keep[usize::from(s.subscriber)][usize::from(s.service)];
            }
        }
        self.samples.sort_unstable_by_key(|s| (s.subscriber, s.service, s.metric));
        for run in
            self.samples.chunk_by(|a, b| (a.subscriber, a.service, a.metric) == (b.subscriber, b.service, b.metric))
        {
            let s = run[0];
            if s.service == NO_SERVICE {
                continue;
            }
            let service = &mut out[usize::from(s.subscriber)].services[usize::from(s.service)];
            if let Some(slot) = s.metric.slot(&mut service.metrics) {
                *slot = Some(histogram_of(&mut self.serializer, &mut self.values, run));
            }
        }
        out.into_iter()
            .zip(&self.subscribers)
            .filter(|(_, s)| !s.withheld)
            .map(|(mut line, _)| {
                // The packed report leaves these merges out. The histograms were just written
                // here, so they read back; were one not to, the line would go whole.
                let _ = self.codec.store_merges(&mut line);
                line
            })
            .collect()
    }
}

fn histogram_of(serializer: &mut HistogramEncoder, values: &mut Vec<u64>, samples: &[Sample]) -> WireHistogram {
    values.clear();
    values.extend(samples.iter().map(|s| u64::from(s.value_us)));
    WireHistogram::from_values(values, serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name a client made up (a Host header or SNI longer than any DNS name, or with control
    /// characters) is counted under `other`: the collector refuses reports naming it.
    #[test]
    fn names_no_report_may_carry_are_folded_into_other() {
        let identity = Identity { agent_id: "gw-1".into(), boot_id: "b".into() };
        let mut w = Windows::new(&CoreConfig::default(), identity);
        let long = "a".repeat(edgeprobe_wire::report::MAX_NAME_BYTES + 1);
        let (sub, other) = w.cell("line-1", Some(&long)).unwrap();
        assert_eq!(w.cell("line-1", Some("portal\u{1b}[2J")), Some((sub, other)));
        let (_, portal) = w.cell("line-1", Some("portal.example")).unwrap();
        assert_ne!(portal, other);
        let names: Vec<&str> = w.subscribers[0].services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [OTHER_SERVICE, "portal.example"]);
    }
}
