//! The probe: the sans-IO measurement core. Feed it frames with their capture timestamps
//! (`handle_frame`), advance time when no frame comes (`handle_timeout`), end a capture with
//! `finish`, and drain `poll_event` after each call. It reads no clock and does no I/O.
//!
//! Time only moves forward for timers: a frame stamped earlier than one already seen (a clock
//! step, concatenated captures) is measured with its own timestamp, and durations saturate at zero.

use crate::{
    analyze::{
        dns::{DnsOutcome, DnsTracker, stream::DnsStream},
        frag::{FragKey, Reassembler},
        http::{self, HttpSession},
        journey::Tracker,
        load::LoadMeter,
        quic::QuicSession,
        services::{NameCache, host_service},
        tcp::{Segment, Side},
        tls::TlsSession,
    },
    config::{CoreConfig, secs_to_nanos},
    counters::Counters,
    dissect::{IpLayer, IpProtocol, Layer, LinkType, Skip, dissect, tcp::TcpPacket, tcp::flags, udp::UdpPacket},
    event::{
        ConnectOutcome, Detail, Event, FlowEndEvent, FlowEndReason, FlowProto, HttpEvent, TcpConnectEvent, Transport,
    },
    flow::{CellTraffic, Endpoint, Flow, FlowKey, FlowTable, LIST_OTHER, LIST_TCP, OPTED_OUT, WindowCell},
    subscriber::{ClientContext, Mode, Owner, Resolver, mac_string},
    tables::interner::{Interner, NONE},
    time::Timestamp,
    window::{Identity, Windows},
};
use edgeprobe_wire::Report;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

mod transport;

const DNS_PORT: u16 = 53;
const DHCP_PORTS: [u16; 2] = [67, 68];

/// The link-layer facts about a packet that say whose it is, and its IP length, which is what
/// a line's load counts.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    vlan: Option<u16>,
    pppoe_session: Option<u16>,
    ip_len: u32,
}

/// A timer on a flow slot; `generation` tells whether the slot still holds the same flow.
type FlowTimer = (Timestamp, u32, u32);

pub struct Probe {
    config: CoreConfig,
    flows: FlowTable,
    frags: Reassembler,
    dns: DnsTracker,
    /// Application analyzers of TCP connections, by flow slot; at most `stream_capacity`.
    streams: HashMap<u32, AppStream>,
    /// Established connects (with their time) waiting for their flow's name, by flow slot; at
    /// most `stream_capacity` (see `hold_connect`). `end_flow` tells a flow's before its slot
    /// is freed, so an entry always belongs to the slot's live flow.
    held: HashMap<u32, (Timestamp, TcpConnectEvent)>,
    connect_timers: VecDeque<FlowTimer>,
    close_timers: VecDeque<FlowTimer>,
    events: VecDeque<Event>,
    reports: VecDeque<Report>,
    windows: Windows,
    names: NameCache,
    resolver: Resolver,
    /// Subscriber keys, service names and devices of live flows.
    strings: Interner,
    counters: Counters,
    now: Timestamp,
    scratch: Vec<u8>,
    /// Where QUIC Initial packets are opened.
    quic_scratch: Vec<u8>,
    dns_done: Vec<Vec<u8>>,
    http_done: Vec<HttpEvent>,
    timeouts: Timeouts,
    journeys: Tracker,
    /// Each line's load, by interned subscriber handle.
    load: LoadMeter,
    /// Every round-trip sample, when asked for (a replay checking itself against tshark).
    rtt_trace: Option<VecDeque<RttTrace>>,
}

/// One round-trip sample as taken: the ACK's time and flow, the side it timed, its length and
/// whether the line was loaded. Not an event (there would be one per ACK); a replay prints them
/// on request.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RttTrace {
    #[serde(serialize_with = "crate::event::unix_secs")]
    pub ts: Timestamp,
    pub subscriber: String,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub side: &'static str,
    /// The ACK's acknowledgement number, as sent: which segment end it timed.
    pub ack: u32,
    pub rtt_us: u32,
    pub loaded: bool,
}

/// The analyzer following a TCP connection's bytes.
enum AppStream {
    Dns(DnsStream),
    Tls(Box<TlsSession>),
    Http(Box<HttpSession>),
    /// A QUIC connection's handshake (on a UDP flow).
    Quic(Box<QuicSession>),
}

struct Timeouts {
    connect: u64,
    idle: [u64; 2],
    linger: u64,
}

impl Probe {
    /// Builds every table at its configured size. The config must have passed `validate`.
    pub fn new(config: CoreConfig) -> Self {
        let cap = config.flow_capacity;
        Probe {
            flows: FlowTable::new(cap),
            frags: Reassembler::new(
                config.fragment_slots,
                config.fragment_max_bytes,
                secs_to_nanos(config.fragment_timeout_secs),
            ),
            dns: DnsTracker::new(
                config.dns_capacity,
                secs_to_nanos(config.dns_timeout_secs),
                secs_to_nanos(config.dns_late_answer_secs),
            ),
            streams: HashMap::with_capacity(config.stream_capacity.min(1 << 16)),
            held: HashMap::new(),
            connect_timers: VecDeque::with_capacity(cap.min(1 << 16)),
            close_timers: VecDeque::with_capacity(cap.min(1 << 16)),
            events: VecDeque::new(),
            reports: VecDeque::new(),
            windows: Windows::new(&config, Identity { agent_id: "edgeprobe".into(), boot_id: "0".into() }),
            names: NameCache::new(config.service_cache_capacity),
            resolver: Resolver::new(config.subscribers.clone()),
            strings: Interner::default(),
            counters: Counters::default(),
            now: Timestamp::ZERO,
            scratch: Vec::with_capacity(config.fragment_max_bytes.min(65_535)),
            quic_scratch: Vec::new(),
            dns_done: Vec::new(),
            http_done: Vec::new(),
            timeouts: Timeouts {
                connect: secs_to_nanos(config.tcp_connect_timeout_secs),
                idle: [secs_to_nanos(config.tcp_idle_timeout_secs), secs_to_nanos(config.udp_idle_timeout_secs)],
                linger: secs_to_nanos(config.tcp_close_linger_secs),
            },
            journeys: Tracker::new(config.journeys.clone(), config.episode_capacity),
            load: LoadMeter::new(config.max_subscribers, config.loaded_bytes_per_sec),
            rtt_trace: None,
            config,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// The next measurement event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Keeps every round-trip sample for `poll_rtt_sample` from now on.
    pub fn trace_rtt(&mut self) {
        self.rtt_trace.get_or_insert_with(VecDeque::new);
    }

    /// The next round-trip sample kept since `trace_rtt`, oldest first.
    pub fn poll_rtt_sample(&mut self) -> Option<RttTrace> {
        self.rtt_trace.as_mut()?.pop_front()
    }

    /// The next window report, oldest first.
    pub fn poll_report(&mut self) -> Option<Report> {
        self.reports.pop_front()
    }

    /// Packets the capture lost before the core saw them, for the reports' capture health.
    pub fn add_kernel_drops(&mut self, drops: u64) {
        self.counters.kernel_drops += drops;
    }

    /// New journey definitions, from now on; open episodes of a journey whose definition
    /// changed or went end unreported and count as evicted, the others go on.
    pub fn set_journeys(&mut self, journeys: Vec<crate::analyze::journey::JourneyConfig>) {
        self.config.journeys = journeys.clone();
        self.journeys.replace(journeys);
    }

    /// The subscriber keys not measured, from now on. Their flows and journey episodes already
    /// open stop being measured too, and what the open window holds of them is not reported.
    pub fn set_opt_out(&mut self, opt_out: Vec<String>) {
        let keys: Vec<Arc<str>> = opt_out.iter().map(|k| self.resolver.reported_key(k)).collect();
        self.config.subscribers.opt_out = opt_out.clone();
        self.resolver.set_opt_out(opt_out);
        if keys.is_empty() {
            return;
        }
        for slot in self.flows.live() {
            let owner = self.flows.flow(slot).owner;
            if self.strings.get(owner).is_some_and(|k| keys.contains(k)) {
                self.release(owner);
                self.flows.flow_mut(slot).owner = OPTED_OUT;
            }
        }
        self.windows.withhold(&keys);
        self.journeys.forget(&keys);
    }

    /// Names the agent and this run in reports.
    pub fn set_identity(&mut self, agent_id: String, boot_id: String) {
        self.windows.set_identity(Identity { agent_id, boot_id });
    }

    /// One captured frame. `wire_len` is its length on the wire, which may exceed `frame.len()`
    /// when the capture had a snap length.
    pub fn handle_frame(&mut self, ts: Timestamp, link: LinkType, frame: &[u8], wire_len: u32) {
        self.handle_timeout(ts);
        self.counters.packets += 1;
        self.counters.bytes += u64::from(wire_len.max(frame.len() as u32));
        match dissect(link, frame) {
            Ok(ip) => self.handle_ip(ts, &ip),
            Err(skip) => self.count_skip(skip),
        }
    }

    /// Runs every timer due at `now`: DNS and connect timeouts, idle flows, closed flows.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now <= self.now {
            return;
        }
        self.now = now;
        if self.windows.due(now) {
            self.close_window(now);
        } else if self.counters.packets == 0 {
            // The first packet opens the first window.
            self.windows.advance(now, &self.counters);
        }
        while let Some(out) = self.dns.poll_timeout(now) {
            self.emit_dns(out);
        }
        if self.journeys.due(now) {
            // A connect held for its name may be a step taken before the deadline.
            self.release_connects(self.journeys.next_deadline());
            self.journeys.poll_timeouts(now);
            self.drain_episodes();
        }
        while let Some(&(due, slot, generation)) = self.connect_timers.front() {
            if due > now {
                break;
            }
            self.connect_timers.pop_front();
            self.connect_timer(slot, generation, now);
        }
        while let Some(&(due, slot, generation)) = self.close_timers.front() {
            if due > now {
                break;
            }
            self.close_timers.pop_front();
            if self.flows.flow(slot).generation == generation && self.flows.flow(slot).tcp.closing.is_some() {
                let reason = self.flows.flow(slot).tcp.closing.unwrap_or(FlowEndReason::Fin);
                let ts = self.flows.flow(slot).last;
                self.end_flow(slot, reason, ts);
            }
        }
        for list in [LIST_TCP, LIST_OTHER] {
            let idle = self.timeouts.idle[usize::from(list)];
            while let Some(slot) = self.flows.tail(list) {
                let last = self.flows.flow(slot).last;
                if now.nanos_since(last) < idle {
                    break;
                }
                self.end_flow(slot, FlowEndReason::Idle, last.add_nanos(idle));
            }
        }
    }

    /// The end of a capture: every pending query and connect times out, every flow ends, and
    /// the last (partial) window is reported.
    pub fn finish(&mut self, now: Timestamp) {
        self.handle_timeout(now);
        let now = now.max(self.now);
        for out in self.dns.drain(now) {
            self.emit_dns(out);
        }
        for slot in self.flows.live() {
            self.end_flow(slot, FlowEndReason::EndOfCapture, now);
        }
        self.journeys.finish_all(now);
        self.drain_episodes();
        self.connect_timers.clear();
        self.close_timers.clear();
        self.sync_cache_counters();
        if let Some(report) = self.windows.flush(&self.counters) {
            self.reports.push_back(report);
        }
    }

    /// The capture's wall clock stepped (see the agent's packet clock): packet timestamps stay on
    /// their step-free timeline, and windows are labelled from now on in packet time plus
    /// `wall_offset` nanoseconds. The open window closes early, under its old label.
    pub fn clock_stepped(&mut self, now: Timestamp, wall_offset: i64) {
        self.handle_timeout(now);
        self.release_connects(None);
        self.sync_cache_counters();
        if let Some(report) = self.windows.step(now.max(self.now), wall_offset, &self.counters) {
            self.reports.push_back(report);
        }
    }

    /// Closes the open window. Flows count their traffic as it passes, so nothing is left to
    /// collect from them.
    fn close_window(&mut self, now: Timestamp) {
        self.release_connects(None);
        self.sync_cache_counters();
        if let Some(report) = self.windows.advance(now, &self.counters) {
            self.reports.push_back(report);
        }
    }

    fn sync_cache_counters(&mut self) {
        self.counters.dhcp_binding_evictions = self.resolver.learned_evictions();
        self.counters.service_name_evictions = self.names.evictions;
        self.counters.episode_evictions = self.journeys.evicted();
    }

    /// Counts a packet's payload (and a retransmission) for its flow's subscriber and service
    /// in the open window. The window cell is looked up once per flow and window.
    fn account(&mut self, slot: u32, dir: usize, bytes: u64, retrans: u64) {
        self.journey_payload(slot, dir, bytes);
        self.count_traffic(slot, dir, bytes, retrans);
    }

    /// Server bytes toward an episode that is completing.
    fn journey_payload(&mut self, slot: u32, dir: usize, bytes: u64) {
        let f = self.flows.flow(slot);
        if f.owner != OPTED_OUT && dir == 1 && bytes > 0 && self.journeys.completing() {
            let (client, server, now) = (f.client(), f.server(), self.now);
            self.journeys.on_payload(client, server, bytes, now);
            self.drain_episodes();
        }
    }

    /// The flow's bytes and retransmissions in its window cell: its subscriber and service.
    fn count_traffic(&mut self, slot: u32, dir: usize, bytes: u64, retrans: u64) {
        let f = self.flows.flow(slot);
        if f.owner == OPTED_OUT {
            return;
        }
        let epoch = self.windows.epoch();
        let cell = if f.cell.epoch == epoch {
            f.cell
        } else {
            let subscriber = self.strings.get(f.owner).cloned().unwrap_or_else(|| "unknown".into());
            let service = self.strings.get(f.service).cloned();
            let (sub, svc) = self.windows.cell(&subscriber, service.as_deref()).unwrap_or((u16::MAX, u16::MAX));
            let cell = WindowCell { epoch, subscriber: sub, service: svc };
            let f = self.flows.flow_mut(slot);
            f.cell = cell;
            f.cell_traffic = CellTraffic::default();
            cell
        };
        if cell.subscriber != u16::MAX {
            let quic = self.flows.flow(slot).quic;
            self.windows.add_traffic(cell.subscriber, cell.service, dir, (bytes, retrans), quic);
            let t = &mut self.flows.flow_mut(slot).cell_traffic;
            t.bytes[dir] = t.bytes[dir].saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
            t.retrans[dir] = t.retrans[dir].saturating_add(u16::try_from(retrans).unwrap_or(u16::MAX));
        }
    }

    /// Names the service a flow reaches (from SNI or Host), replacing a DNS-derived name.
    fn set_service(&mut self, slot: u32, name: &str) {
        let old = self.flows.flow(slot).service;
        if self.strings.get(old).is_some_and(|s| &**s == name) {
            return;
        }
        let new = self.strings.acquire(name);
        let f = self.flows.flow_mut(slot);
        f.service = new;
        let (cell, moved, owner, quic) = (f.cell, f.cell_traffic, f.owner, f.quic);
        // What this window already counted for the flow moves to the name with the rest: the
        // request or ClientHello segments that came before the name was read.
        let mut renamed = None;
        if cell.epoch == self.windows.epoch() && cell.subscriber != u16::MAX && owner != OPTED_OUT {
            let subscriber = self.strings.get(owner).cloned().unwrap_or_else(|| "unknown".into());
            if let Some((sub, svc)) = self.windows.cell(&subscriber, Some(name)) {
                if sub == cell.subscriber {
                    self.windows.move_traffic(sub, cell.service, svc, &moved, quic);
                    renamed = Some(WindowCell { epoch: cell.epoch, subscriber: sub, service: svc });
                }
            }
        }
        let f = self.flows.flow_mut(slot);
        match renamed {
            Some(c) => f.cell = c,
            None => f.cell.epoch = f.cell.epoch.wrapping_sub(1), // count the rest under the new name
        }
        if old != NONE {
            self.release(old);
        }
    }

    /// One user fewer for an interned string. A handle freed here may name another line next,
    /// so the load kept under it goes with it.
    fn release(&mut self, handle: u32) {
        self.strings.release(handle);
        if self.strings.get(handle).is_none() {
            self.load.forget(handle);
        }
    }

    /// The subscriber key of a flow; `None` when the subscriber opted out.
    fn owner_key(&self, slot: u32) -> Option<Arc<str>> {
        let owner = self.flows.flow(slot).owner;
        if owner == OPTED_OUT { None } else { self.strings.get(owner).cloned() }
    }

    /// Subscriber, device and service of a flow, for its events; `None` when opted out.
    fn who(&self, f: &Flow) -> Option<(String, Option<String>, Option<String>)> {
        if f.owner == OPTED_OUT {
            return None;
        }
        let text = |h: u32| self.strings.get(h).map(|s| s.to_string());
        Some((text(f.owner).unwrap_or_default(), text(f.device), text(f.service)))
    }

    fn count_skip(&mut self, skip: Skip) {
        match skip {
            Skip::UnknownLinkType(_) => self.counters.unparsed(|c| &mut c.unknown_linktype),
            Skip::UnknownEtherType(_) => self.counters.unparsed(|c| &mut c.unknown_ethertype),
            Skip::NotIp => self.counters.non_ip += 1,
            Skip::Bad(e) => match e.layer() {
                Layer::Ethernet | Layer::Vlan | Layer::Mpls | Layer::Pppoe | Layer::Sll => {
                    self.counters.unparsed(|c| &mut c.truncated_link)
                }
                _ => self.counters.unparsed(|c| &mut c.malformed_ip),
            },
        }
    }

    fn end_flow(&mut self, slot: u32, reason: FlowEndReason, ts: Timestamp) {
        self.release_connect(slot);
        let stream = self.streams.remove(&slot);
        let mut f = self.flows.remove(slot);
        let (client, server) = (f.client(), f.server());
        let who = self.who(&f);
        for handle in [f.owner, f.service, f.device] {
            if handle != NONE && handle != OPTED_OUT {
                self.release(handle);
            }
        }
        let Some(who) = who else { return }; // opted out: nothing to report
        match stream {
            Some(AppStream::Tls(tls)) => {
                if let Some(event) = tls.finish() {
                    self.emit_as(&who, f.last, client, server, Detail::Tls(event));
                }
            }
            Some(AppStream::Quic(quic)) => {
                if let Some(event) = quic.finish() {
                    let (client, server) = if quic.client_dir() == 0 { (client, server) } else { (server, client) };
                    self.emit_as(&who, f.last, client, server, Detail::Quic(event));
                }
            }
            _ => {}
        }
        // An evicted connect was not answered *yet*: calling it a timeout would be a guess.
        if reason != FlowEndReason::Evicted {
            if let Some(c) = f.tcp.connect_timeout() {
                let due = f.tcp.last_syn.add_nanos(self.timeouts.connect).min(ts);
                self.emit_as(&who, due, client, server, Detail::TcpConnect(c));
            }
        }
        let [up, down] = f.dirs;
        let event = FlowEndEvent {
            proto: if f.key.proto == 6 { FlowProto::Tcp } else { FlowProto::Udp },
            bytes_up: up.bytes,
            bytes_down: down.bytes,
            packets_up: u64::from(up.packets),
            packets_down: u64::from(down.packets),
            retrans_up: u64::from(up.retrans),
            retrans_down: u64::from(down.retrans),
            zero_window_up: u64::from(f.tcp.zero_windows(0)),
            zero_window_down: u64::from(f.tcp.zero_windows(1)),
            rst_up: u64::from(f.tcp.resets(0)),
            rst_down: u64::from(f.tcp.resets(1)),
            duration_us: f.last.micros_since(f.first),
            reason,
            rtt_home: Some(f.tcp.rtt[Side::Home as usize]).filter(|r| r.samples > 0),
            rtt_network: Some(f.tcp.rtt[Side::Network as usize]).filter(|r| r.samples > 0),
        };
        self.emit_as(&who, ts, client, server, Detail::FlowEnd(event));
    }

    fn emit_dns(&mut self, out: DnsOutcome) {
        for addr in &out.addresses {
            self.names.insert(*addr, out.event.query.clone());
        }
        let service = Some(out.event.query.clone());
        // The device that asked, from the query's flow, so a journey's later steps can follow it.
        let proto = if out.event.transport == Transport::Tcp { 6 } else { 17 };
        let (key, _) = FlowKey::new(
            Endpoint::new(out.client.ip(), out.client.port()),
            Endpoint::new(out.server.ip(), out.server.port()),
            proto,
            out.client.is_ipv6(),
        );
        let device =
            self.flows.get(&key).and_then(|slot| self.strings.get(self.flows.flow(slot).device)).map(|d| d.to_string());
        let event = Event {
            ts: out.ts,
            subscriber: out.subscriber.to_string(),
            device,
            client: out.client,
            server: out.server,
            service,
            detail: Detail::Dns(out.event),
        };
        self.journeys.on_event(&event, &out.addresses);
        self.push_event(event);
        self.drain_episodes();
    }

    /// Episodes the tracker finished go out like any other event.
    fn drain_episodes(&mut self) {
        for event in self.journeys.take_finished() {
            self.push_event(event);
        }
    }

    /// An established connect waits for its flow's name: the flow's first payload names it by
    /// TLS SNI or HTTP Host (a server the client reached without a lookup the probe saw, or a
    /// shared address whose last answer named another site). Refusals and timeouts end the
    /// flow's story and are told at once, as are connects past `stream_capacity` waiting.
    fn hold_connect(&mut self, slot: u32, ts: Timestamp, event: TcpConnectEvent) {
        if event.outcome == ConnectOutcome::Established && self.held.len() < self.config.stream_capacity {
            self.held.insert(slot, (ts, event));
        } else {
            self.tell_connect(slot, ts, event);
        }
    }

    /// Tells the connect held for the flow in `slot`, under the flow's name as it stands.
    fn release_connect(&mut self, slot: u32) {
        if self.held.is_empty() {
            return;
        }
        if let Some((ts, event)) = self.held.remove(&slot) {
            self.tell_connect(slot, ts, event);
        }
    }

    /// Tells the connects held since `until` or earlier (all, at a window's close, so each stays
    /// in its own window), oldest first, as journeys take their steps.
    fn release_connects(&mut self, until: Option<Timestamp>) {
        if self.held.is_empty() {
            return;
        }
        let mut due: Vec<(Timestamp, u32)> = self
            .held
            .iter()
            .filter(|(_, (ts, _))| until.is_none_or(|u| *ts <= u))
            .map(|(&slot, &(ts, _))| (ts, slot))
            .collect();
        due.sort_unstable();
        for (_, slot) in due {
            self.release_connect(slot);
        }
    }

    fn tell_connect(&mut self, slot: u32, ts: Timestamp, event: TcpConnectEvent) {
        let (client, server) = (self.flows.flow(slot).client(), self.flows.flow(slot).server());
        self.emit_for(slot, ts, client, server, Detail::TcpConnect(event));
    }

    /// An event of the live flow in `slot`, for its subscriber; nothing for an opted-out one.
    fn emit_for(&mut self, slot: u32, ts: Timestamp, client: SocketAddr, server: SocketAddr, detail: Detail) {
        if let Some(who) = self.who(self.flows.flow(slot)) {
            self.emit_as(&who, ts, client, server, detail);
        }
    }

    fn emit_as(
        &mut self,
        (subscriber, device, service): &(String, Option<String>, Option<String>),
        ts: Timestamp,
        client: SocketAddr,
        server: SocketAddr,
        detail: Detail,
    ) {
        let (subscriber, device, service) = (subscriber.clone(), device.clone(), service.clone());
        let event = Event { detail, ts, subscriber, device, client, server, service };
        if !self.journeys.is_empty() && !matches!(event.detail, Detail::FlowEnd(_)) {
            self.journeys.on_event(&event, &[]);
        }
        self.push_event(event);
        self.drain_episodes();
    }

    fn push_event(&mut self, event: Event) {
        self.windows.on_event(&event);
        self.events.push_back(event);
    }
}

/// Without a handshake to go by, the side on a well-known port is the server; otherwise the
/// sender of the first packet is the client.
fn client_by_port(src_port: u16, dst_port: u16) -> bool {
    !(src_port < 1024 && dst_port >= 1024)
}

#[cfg(test)]
mod tests;
