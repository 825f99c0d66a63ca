//! The probe: the sans-IO measurement core. Feed it frames with their capture timestamps
//! (`handle_frame`), advance time when no frame comes (`handle_timeout`), end a capture with
//! `finish`, and drain `poll_event` after each call. It reads no clock and does no I/O.
//!
//! Time only moves forward for timers: a frame stamped earlier than one already seen (a clock
//! step, concatenated captures) is measured with its own timestamp, and durations saturate at zero.

use crate::{
    config::{CoreConfig, secs_to_nanos},
    counters::Counters,
    dissect::{IpLayer, LinkType, Skip, dissect},
    dns::{DnsOutcome, DnsTracker},
    dns_stream::DnsStream,
    event::{
        ConnectOutcome, Detail, Event, FlowEndEvent, FlowEndReason, FlowProto, HttpEvent, TcpConnectEvent, Transport,
    },
    flow::{CellTraffic, Endpoint, Flow, FlowKey, FlowTable, LIST_OTHER, LIST_TCP, OPTED_OUT, WindowCell},
    frag::{FragKey, Reassembler},
    http::{self, HttpSession},
    interner::{Interner, NONE},
    journey::Tracker,
    services::{NameCache, host_service},
    subscriber::{ClientContext, Mode, Owner, Resolver, mac_string},
    tcp::Segment,
    time::Timestamp,
    tls::TlsSession,
    window::{Identity, Windows},
    wire::{IpProtocol, Layer, tcp::TcpPacket, tcp::flags, udp::UdpPacket},
};
use edgeprobe_wire::Report;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

const DNS_PORT: u16 = 53;
const DHCP_PORTS: [u16; 2] = [67, 68];

/// The link-layer facts about a packet that say whose it is.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    vlan: Option<u16>,
    pppoe_session: Option<u16>,
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
    dns_done: Vec<Vec<u8>>,
    http_done: Vec<HttpEvent>,
    timeouts: Timeouts,
    journeys: Tracker,
}

/// The analyzer following a TCP connection's bytes.
enum AppStream {
    Dns(DnsStream),
    Tls(Box<TlsSession>),
    Http(Box<HttpSession>),
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
            dns_done: Vec::new(),
            http_done: Vec::new(),
            timeouts: Timeouts {
                connect: secs_to_nanos(config.tcp_connect_timeout_secs),
                idle: [secs_to_nanos(config.tcp_idle_timeout_secs), secs_to_nanos(config.udp_idle_timeout_secs)],
                linger: secs_to_nanos(config.tcp_close_linger_secs),
            },
            journeys: Tracker::new(config.journeys.clone(), config.episode_capacity),
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
    pub fn set_journeys(&mut self, journeys: Vec<crate::journey::JourneyConfig>) {
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
                self.strings.release(owner);
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
            self.windows.add_traffic(cell.subscriber, cell.service, dir, bytes, retrans);
            let t = &mut self.flows.flow_mut(slot).cell_traffic;
            t.bytes[dir] = t.bytes[dir].saturating_add(bytes);
            t.retrans[dir] = t.retrans[dir].saturating_add(u32::try_from(retrans).unwrap_or(u32::MAX));
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
        let (cell, moved, owner) = (f.cell, f.cell_traffic, f.owner);
        // What this window already counted for the flow moves to the name with the rest: the
        // request or ClientHello segments that came before the name was read.
        let mut renamed = None;
        if cell.epoch == self.windows.epoch() && cell.subscriber != u16::MAX && owner != OPTED_OUT {
            let subscriber = self.strings.get(owner).cloned().unwrap_or_else(|| "unknown".into());
            if let Some((sub, svc)) = self.windows.cell(&subscriber, Some(name)) {
                if sub == cell.subscriber {
                    self.windows.move_traffic(sub, cell.service, svc, &moved);
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
            self.strings.release(old);
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

    fn handle_ip(&mut self, ts: Timestamp, ip: &IpLayer<'_>) {
        let link = Link { src_mac: ip.src_mac, dst_mac: ip.dst_mac, vlan: ip.vlan, pppoe_session: ip.pppoe_session };
        if let Some(frag) = ip.fragment {
            let key = FragKey { src: ip.src, dst: ip.dst, protocol: u8::from(ip.protocol), ident: frag.ident };
            let mut datagram = std::mem::take(&mut self.scratch);
            if self.frags.add(ts, key, frag, ip.payload, &mut datagram, &mut self.counters) {
                let len = datagram.len();
                self.transport(ts, ip.src, ip.dst, ip.protocol, &datagram, len, link);
            }
            self.scratch = datagram;
            return;
        }
        if ip.truncated {
            self.counters.truncated_ip += 1;
        }
        self.transport(ts, ip.src, ip.dst, ip.protocol, ip.payload, ip.declared_len, link);
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        ts: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        proto: IpProtocol,
        payload: &[u8],
        declared: usize,
        link: Link,
    ) {
        match proto {
            IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
                Ok(tcp) => self.tcp(ts, src, dst, &tcp, declared, link),
                Err(_) => self.counters.unparsed(|c| &mut c.malformed_transport),
            },
            IpProtocol::Udp => match UdpPacket::new_checked(payload) {
                Ok(udp) => self.udp(ts, src, dst, &udp, link),
                Err(_) => self.counters.unparsed(|c| &mut c.malformed_transport),
            },
            _ => self.counters.other_ip_protocol += 1,
        }
    }

    fn udp(&mut self, ts: Timestamp, src: IpAddr, dst: IpAddr, udp: &UdpPacket<'_>, link: Link) {
        let (sp, dp) = (udp.src_port(), udp.dst_port());
        if DHCP_PORTS.contains(&sp) && DHCP_PORTS.contains(&dp) {
            if let Ok(lease) = crate::wire::dhcp::parse(udp.payload()) {
                self.resolver.learn(&lease);
            }
        }
        let (slot, dir) =
            self.flow_for(ts, SocketAddr::new(src, sp), SocketAddr::new(dst, dp), 17, client_by_port(sp, dp), link);
        let Some(owner) = self.owner_key(slot) else {
            self.flows.touch(slot, ts);
            return; // opted out: not measured
        };
        let f = self.flows.flow_mut(slot);
        let bytes = udp.declared_payload_len() as u64;
        f.dirs[dir].packets += 1;
        f.dirs[dir].bytes += bytes;
        self.flows.touch(slot, ts);
        self.account(slot, dir, bytes, 0);
        if sp == DNS_PORT || dp == DNS_PORT {
            let out = self.dns.on_message(
                ts,
                SocketAddr::new(src, sp),
                SocketAddr::new(dst, dp),
                Transport::Udp,
                udp.payload(),
                owner,
                &mut self.counters,
            );
            if let Some(out) = out {
                self.emit_dns(out);
            }
        }
    }

    fn tcp(&mut self, ts: Timestamp, src: IpAddr, dst: IpAddr, tcp: &TcpPacket<'_>, declared: usize, link: Link) {
        let (sp, dp) = (tcp.src_port(), tcp.dst_port());
        let fl = tcp.flags();
        let seg = Segment {
            seq: tcp.seq(),
            ack: tcp.ack(),
            flags: fl,
            window: tcp.window(),
            len: declared.saturating_sub(tcp.header_len()) as u32,
        };
        let syn_only = fl & (flags::SYN | flags::ACK) == flags::SYN;
        let src_is_client = if syn_only {
            true
        } else if fl & (flags::SYN | flags::ACK) == flags::SYN | flags::ACK {
            false
        } else {
            client_by_port(sp, dp)
        };
        let (mut slot, mut dir) =
            self.flow_for(ts, SocketAddr::new(src, sp), SocketAddr::new(dst, dp), 6, src_is_client, link);
        if syn_only && self.is_new_connection(slot, seg.seq) {
            let reason = self.flows.flow(slot).tcp.closing.unwrap_or(FlowEndReason::Idle);
            let last = self.flows.flow(slot).last;
            self.end_flow(slot, reason, last);
            (slot, dir) = self.flow_for(ts, SocketAddr::new(src, sp), SocketAddr::new(dst, dp), 6, true, link);
        }
        let Some(owner) = self.owner_key(slot) else {
            self.flows.touch(slot, ts);
            return; // opted out: not measured
        };
        let timers_before = (self.flows.flow(slot).tcp.closing.is_some(), self.flows.flow(slot).tcp.connect_pending());
        let f = self.flows.flow_mut(slot);
        if syn_only && f.dirs[0].packets == 0 && f.dirs[1].packets == 0 {
            f.tcp.on_open_syn(ts, seg.seq);
        }
        f.dirs[dir].packets += 1;
        f.dirs[dir].bytes += u64::from(seg.len);
        let retrans_before = f.dirs[dir].retrans;
        let connect = f.tcp.on_segment(ts, f.first, dir, seg, &mut f.dirs);
        let retransmitted = u64::from(f.dirs[dir].retrans - retrans_before);
        let (client, server, generation) = (f.client(), f.server(), f.generation);
        let (closing, pending) = (f.tcp.closing.is_some(), f.tcp.connect_pending());
        self.flows.touch(slot, ts);
        if dir == 1 && seg.len > 0 {
            self.release_connect(slot); // the server spoke first: the client names nothing
        }
        self.journey_payload(slot, dir, u64::from(seg.len));
        if pending && !timers_before.1 {
            self.push_timer(true, (ts.add_nanos(self.timeouts.connect), slot, generation));
        }
        if closing && !timers_before.0 {
            self.push_timer(false, (ts.add_nanos(self.timeouts.linger), slot, generation));
        }
        if let Some(c) = connect {
            self.hold_connect(slot, ts, c);
        }
        if seg.has(flags::FIN | flags::RST) {
            self.release_connect(slot);
            if self.journeys.has_open() {
                // A connection closing under an episode that has not completed: given up by
                // the customer's side, or cut by the server's.
                self.journeys.on_close(client, server, dir == 0, ts);
                self.drain_episodes();
            }
        }
        if seg.len > 0 {
            let dns_port = sp == DNS_PORT || dp == DNS_PORT;
            self.app_stream(ts, slot, dir, &seg, tcp.payload(), (client, server), owner, dns_port);
        }
        // Counted once the segment has been read: a request or ClientHello that names the
        // service counts under that service, as the rest of its connection does.
        self.count_traffic(slot, dir, u64::from(seg.len), retransmitted);
    }

    /// A SYN on a flow that already carried a different connection: a reused port pair.
    fn is_new_connection(&self, slot: u32, isn: u32) -> bool {
        let f = self.flows.flow(slot);
        let seen = f.dirs[0].packets + f.dirs[1].packets > 0;
        seen && (f.tcp.closing.is_some() || !f.tcp.connect_pending()) && f.tcp.client_isn != isn
    }

    /// Hands a segment to the connection's application analyzer, choosing one from the first
    /// payload: DNS on port 53, TLS for a ClientHello, HTTP for a request line.
    #[allow(clippy::too_many_arguments)]
    fn app_stream(
        &mut self,
        ts: Timestamp,
        slot: u32,
        dir: usize,
        seg: &Segment,
        captured: &[u8],
        (client, server): (SocketAddr, SocketAddr),
        owner: Arc<str>,
        dns_port: bool,
    ) {
        let flow = self.flows.flow_mut(slot);
        if !flow.classified {
            flow.classified = true;
            let stream = if dns_port {
                AppStream::Dns(DnsStream::default())
            } else if dir == 0 && crate::wire::tls::may_begin_client_hello(captured) {
                AppStream::Tls(Box::new(TlsSession::new(self.config.tls_hello_max_bytes)))
            } else if dir == 1 && crate::wire::tls::may_begin_server_hello(captured) {
                // Seen from the middle of its handshake: the capture began after the hello.
                AppStream::Tls(Box::new(TlsSession::partial(self.config.tls_hello_max_bytes)))
            } else if dir == 0 && http::may_begin_request(captured) {
                AppStream::Http(Box::default())
            } else {
                self.release_connect(slot);
                return;
            };
            if self.streams.len() >= self.config.stream_capacity {
                self.counters.streams_refused += 1;
                self.release_connect(slot);
                return;
            }
            self.streams.insert(slot, stream);
        }
        // Only TLS and HTTP name a connection.
        if !self.held.is_empty() && matches!(self.streams.get(&slot), None | Some(AppStream::Dns(_))) {
            self.release_connect(slot);
        }
        let Some(stream) = self.streams.get_mut(&slot) else { return };
        if captured.len() < seg.len as usize && matches!(stream, AppStream::Tls(_) | AppStream::Http(_)) {
            self.counters.segments_truncated += 1;
        }
        let (src, dst) = if dir == 0 { (client, server) } else { (server, client) };
        match stream {
            AppStream::Dns(s) => {
                let mut done = std::mem::take(&mut self.dns_done);
                let fed = s.feed(dir, seg, captured, &mut done);
                for msg in done.drain(..) {
                    if let Some(out) =
                        self.dns.on_message(ts, src, dst, Transport::Tcp, &msg, owner.clone(), &mut self.counters)
                    {
                        self.emit_dns(out);
                    }
                }
                self.dns_done = done;
                if fed.is_err() {
                    self.counters.streams_lost += 1;
                    self.streams.remove(&slot);
                }
            }
            AppStream::Tls(s) => {
                let fed = s.feed(ts, dir, seg, captured);
                if let Some(sni) = s.take_name() {
                    if let Some(sni) = sni {
                        self.set_service(slot, &sni);
                    }
                    self.release_connect(slot);
                }
                match fed {
                    Ok(Some(event)) => {
                        // The handshake is over; the analyzer's memory goes back to the pool.
                        self.streams.remove(&slot);
                        self.emit_for(slot, ts, client, server, Detail::Tls(event));
                    }
                    Ok(None) => {}
                    Err(_) => {
                        self.counters.streams_lost += 1;
                        self.streams.remove(&slot);
                        self.release_connect(slot);
                    }
                }
            }
            AppStream::Http(s) => {
                let mut done = std::mem::take(&mut self.http_done);
                let fed = s.feed(ts, dir, seg, captured, &mut done);
                if let Some(host) = s.take_name() {
                    if let Some(host) = host {
                        self.set_service(slot, host_service(&host));
                    }
                    self.release_connect(slot);
                }
                for event in done.drain(..) {
                    if let Some(host) = &event.host {
                        self.set_service(slot, host_service(host));
                    }
                    self.emit_for(slot, ts, client, server, Detail::Http(event));
                }
                self.http_done = done;
                if fed.is_err() {
                    self.counters.streams_lost += 1;
                    self.streams.remove(&slot);
                    self.release_connect(slot);
                }
            }
        }
    }

    fn push_timer(&mut self, connect: bool, timer: FlowTimer) {
        let cap = self.flows.capacity() * 2;
        let queue = if connect { &mut self.connect_timers } else { &mut self.close_timers };
        // Bounded: a full queue fires its oldest timer early rather than grow.
        if queue.len() >= cap {
            if let Some((_, slot, generation)) = queue.pop_front() {
                if connect {
                    let now = self.now;
                    self.connect_timer(slot, generation, now);
                } else if self.flows.flow(slot).generation == generation {
                    let f = self.flows.flow(slot);
                    let (reason, ts) = (f.tcp.closing.unwrap_or(FlowEndReason::Fin), f.last);
                    self.end_flow(slot, reason, ts);
                }
            }
        }
        let queue = if connect { &mut self.connect_timers } else { &mut self.close_timers };
        queue.push_back(timer);
    }

    fn connect_timer(&mut self, slot: u32, generation: u32, now: Timestamp) {
        let f = self.flows.flow(slot);
        if f.generation != generation || !f.tcp.connect_pending() {
            return;
        }
        let due = f.tcp.last_syn.add_nanos(self.timeouts.connect);
        if due > now {
            // A retried SYN restarted the wait.
            self.connect_timers.push_back((due, slot, generation));
            return;
        }
        let (client, server) = (f.client(), f.server());
        if let Some(c) = self.flows.flow_mut(slot).tcp.connect_timeout() {
            self.emit_for(slot, due, client, server, Detail::TcpConnect(c));
        }
    }

    /// The flow for this packet, created if new (evicting the coldest flow when full), and the
    /// packet's direction in it.
    #[allow(clippy::too_many_arguments)]
    fn flow_for(
        &mut self,
        ts: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        src_is_client: bool,
        link: Link,
    ) -> (u32, usize) {
        let (key, src_is_lo) = FlowKey::new(
            Endpoint::new(src.ip(), src.port()),
            Endpoint::new(dst.ip(), dst.port()),
            proto,
            src.is_ipv6(),
        );
        if let Some(slot) = self.flows.get(&key) {
            return (slot, self.flows.flow(slot).dir_of(src_is_lo));
        }
        if self.flows.is_full() {
            if let Some(victim) = self.flows.coldest() {
                self.counters.flow_evictions += 1;
                self.end_flow(victim, FlowEndReason::Evicted, ts);
            }
        }
        self.counters.flows_created += 1;
        let list = if proto == 6 { LIST_TCP } else { LIST_OTHER };
        let client_is_lo = src_is_lo == src_is_client;
        let slot = self.flows.insert(key, client_is_lo, ts, list);
        let (client, server) = if src_is_client { (src.ip(), dst.ip()) } else { (dst.ip(), src.ip()) };
        let service = match self.names.get(&server) {
            Some(name) => self.strings.acquire(name),
            None => NONE,
        };
        let mac = if src_is_client { link.src_mac } else { link.dst_mac };
        let owner = match self.resolver.resolve(&ClientContext {
            ip: Some(client),
            mac,
            vlan: link.vlan,
            pppoe_session: link.pppoe_session,
        }) {
            Owner::Subscriber(key) => self.strings.acquire(&key),
            Owner::OptedOut => OPTED_OUT,
        };
        let device = match mac {
            Some(mac) if self.config.subscribers.mode == Mode::Cpe => self.strings.acquire(&mac_string(&mac)),
            _ => NONE,
        };
        let epoch = self.windows.epoch();
        let f = self.flows.flow_mut(slot);
        f.owner = owner;
        f.service = service;
        f.device = device;
        f.cell = WindowCell { epoch: epoch.wrapping_sub(1), ..WindowCell::default() };
        (slot, self.flows.flow(slot).dir_of(src_is_lo))
    }

    fn end_flow(&mut self, slot: u32, reason: FlowEndReason, ts: Timestamp) {
        self.release_connect(slot);
        let stream = self.streams.remove(&slot);
        let mut f = self.flows.remove(slot);
        let (client, server) = (f.client(), f.server());
        let who = self.who(&f);
        for handle in [f.owner, f.service, f.device] {
            if handle != NONE && handle != OPTED_OUT {
                self.strings.release(handle);
            }
        }
        let Some(who) = who else { return }; // opted out: nothing to report
        if let Some(AppStream::Tls(tls)) = stream {
            if let Some(event) = tls.finish() {
                self.emit_as(&who, f.last, client, server, Detail::Tls(event));
            }
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
            zero_window_up: u64::from(up.zero_window),
            zero_window_down: u64::from(down.zero_window),
            rst_up: u64::from(up.rst),
            rst_down: u64::from(down.rst),
            duration_us: f.last.micros_since(f.first),
            reason,
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
mod tests {
    use super::*;
    use crate::subscriber::Mode;
    use edgeprobe_wire::SubscriberReport;

    /// An Ethernet/IPv4/UDP frame.
    fn udp_frame(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn dns(response: bool) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, if response { 0x81 } else { 0x01 }, if response { 0x80 } else { 0 }];
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(b"\x06portal\x07example\x00\x00\x01\x00\x01");
        m
    }

    /// `dns(true)` with `rcode` and, if given, one A record.
    fn dns_answer(rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
        let mut m = dns(true);
        m[3] |= rcode;
        if let Some(ip) = a {
            m[7] = 1; // ANCOUNT
            m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            m.extend_from_slice(&ip);
        }
        m
    }

    #[test]
    fn a_journey_counted_from_its_second_step_leaves_out_failed_lookups_only() {
        use crate::event::EpisodeOutcome;
        use crate::journey::{JourneyConfig, StepConfig};
        let journey = |name: &str, dns: &str, count_from_step: usize| JourneyConfig {
            name: name.into(),
            steps: vec![
                StepConfig { name: "dns".into(), dns: Some(dns.into()), ..Default::default() },
                StepConfig { name: "connect".into(), port: Some(80), ..Default::default() },
            ],
            count_from_step,
            ..portal_journey()
        };
        let episodes = |answer: Vec<u8>, refused: bool| {
            let journeys = vec![journey("any_site", "*", 2), journey("portal", "portal.example", 1)];
            let mut p = Probe::new(CoreConfig { journeys, ..CoreConfig::default() });
            let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
            let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
            p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
            p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
            if refused {
                p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
                p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x14, (0, 101), &[]), 0);
            }
            p.finish(t(100));
            let mut out: Vec<(String, EpisodeOutcome, Option<String>)> = std::iter::from_fn(|| p.poll_event())
                .filter_map(|e| match e.detail {
                    Detail::Episode(ep) => Some((ep.journey, ep.outcome, ep.failed_step)),
                    _ => None,
                })
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        };
        let failed = |journey: &str, step: &str| (journey.to_string(), EpisodeOutcome::Failed, Some(step.to_string()));
        // NXDOMAIN: a failed portal visit, but no visit to any site.
        assert_eq!(episodes(dns_answer(3, None), false), vec![failed("portal", "dns")]);
        // The server refuses the connection the lookup led to: a failure at step 2 counts for both.
        let refused = episodes(dns_answer(0, Some([203, 0, 113, 80])), true);
        assert_eq!(refused, vec![failed("any_site", "connect"), failed("portal", "connect")]);
    }

    /// A connect is held until the request names it; an episode whose deadline passes in
    /// between has still taken the connect step, and times out waiting for the response.
    #[test]
    fn a_held_connect_counts_for_an_episode_whose_deadline_passes_before_its_name() {
        use crate::event::EpisodeOutcome;
        use crate::journey::{JourneyConfig, StepConfig};
        let step = |name: &str| StepConfig { name: name.into(), ..Default::default() };
        let journey = JourneyConfig {
            steps: vec![
                StepConfig { dns: Some("portal.example".into()), ..step("lookup") },
                StepConfig { port: Some(80), ..step("connect") },
                StepConfig { http_host: Some("www.example".into()), ..step("request") },
            ],
            timeout_secs: 0.055,
            ..portal_journey()
        };
        let mut p = Probe::new(CoreConfig { journeys: vec![journey], ..CoreConfig::default() });
        let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
        let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
        p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
        let answer = dns_answer(0, Some(web));
        p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
        p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
        p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x12, (500, 101), &[]), 0);
        p.handle_frame(t(51), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x10, (101, 501), &[]), 0);
        // The deadline (55 ms) passes before the request that names the connection.
        let get = b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n";
        p.handle_frame(t(60), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x18, (101, 501), get), 0);
        p.finish(t(100));
        let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
        let episode = events
            .iter()
            .find_map(|e| match &e.detail {
                Detail::Episode(ep) => Some(ep),
                _ => None,
            })
            .expect("an episode");
        assert_eq!((episode.outcome, episode.failed_step.as_deref()), (EpisodeOutcome::Timeout, Some("request")));
        let steps: Vec<(&str, u64)> = episode.steps.iter().map(|s| (s.name.as_str(), s.duration_us)).collect();
        assert_eq!(steps, vec![("lookup", 20_000), ("connect", 21_000)]);
        let connect = events.iter().find(|e| matches!(e.detail, Detail::TcpConnect(_))).unwrap();
        assert_eq!(connect.service.as_deref(), Some("portal.example"), "told before its name, under the lookup's");
    }

    #[test]
    fn dhcp_ack_with_option_82_names_the_line() {
        let subscribers =
            crate::subscriber::SubscriberConfig { mode: Mode::Edge, learn_dhcp: true, ..Default::default() };
        let mut p = Probe::new(CoreConfig { subscribers, ..CoreConfig::default() });
        let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
        let ack = crate::wire::dhcp::tests::ack();
        p.handle_frame(t(0), LinkType::Ethernet, &udp_frame([192, 0, 2, 1], 67, [255; 4], 68, &ack), 0);
        let query = udp_frame([192, 0, 2, 55], 40000, [198, 51, 100, 53], 53, &dns(false));
        let answer = udp_frame([198, 51, 100, 53], 53, [192, 0, 2, 55], 40000, &dns(true));
        p.handle_frame(t(10), LinkType::Ethernet, &query, 0);
        p.handle_frame(t(25), LinkType::Ethernet, &answer, 0);
        let event = std::iter::from_fn(|| p.poll_event()).find(|e| matches!(e.detail, Detail::Dns(_))).unwrap();
        assert_eq!(event.subscriber, "line-000123");
        assert_eq!(event.service.as_deref(), Some("portal.example"));
    }

    #[test]
    fn a_wall_clock_step_relabels_windows_and_keeps_the_query_latency() {
        let mut p = Probe::new(CoreConfig { report_interval_secs: 60, ..CoreConfig::default() });
        // Packet time: a gateway that booted at the epoch. Its clock is then found to be
        // 1,700,000,000 s behind, while a query is in flight.
        let t = |ms: u64| Timestamp(3_000_000_000_000 + ms * 1_000_000);
        let query = udp_frame([192, 0, 2, 55], 40000, [198, 51, 100, 53], 53, &dns(false));
        let answer = udp_frame([198, 51, 100, 53], 53, [192, 0, 2, 55], 40000, &dns(true));
        p.handle_frame(t(10), LinkType::Ethernet, &query, 0);
        let offset = 1_700_000_000_000_000_000i64;
        p.clock_stepped(t(12), offset);
        p.handle_frame(t(35), LinkType::Ethernet, &answer, 0);
        p.finish(t(100));
        let dns = std::iter::from_fn(|| p.poll_event()).find_map(|e| match e.detail {
            Detail::Dns(d) => Some(d),
            _ => None,
        });
        assert_eq!(dns.unwrap().latency_us, Some(25_000));
        let reports: Vec<_> = std::iter::from_fn(|| p.poll_report()).collect();
        assert_eq!(reports.len(), 2, "the step closes the open window");
        assert_eq!(reports[0].window_start, 3_000_000 / 60_000 * 60_000);
        let wall_ms = (3_000_000_000_000 + offset as u64) / 1_000_000;
        assert_eq!(reports[1].window_start, wall_ms / 60_000 * 60_000);
        assert_eq!(reports[1].subscribers[0].metrics.dns.as_ref().unwrap().count, 1);
    }

    /// An Ethernet/IPv4/TCP frame from `(address, port)` to another, with `(seq, ack)`.
    fn tcp_frame(
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        flags: u8,
        (seq, ack): (u32, u32),
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 20 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&from.0);
        f.extend_from_slice(&to.0);
        f.extend_from_slice(&from.1.to_be_bytes());
        f.extend_from_slice(&to.1.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// The journey `line_with_change_midway` follows: a lookup, then a request.
    fn portal_journey() -> crate::journey::JourneyConfig {
        use crate::journey::{JourneyConfig, StepConfig};
        let step = |dns: Option<&str>, http_host: Option<&str>| StepConfig {
            name: "s".into(),
            dns: dns.map(Into::into),
            http_host: http_host.map(Into::into),
            ..Default::default()
        };
        JourneyConfig {
            name: "portal".into(),
            phase: String::new(),
            channel: String::new(),
            steps: vec![step(Some("portal.example"), None), step(None, Some("www.example"))],
            complete_bytes: None,
            timeout_secs: 10.0,
            count_from_step: 1,
        }
    }

    /// A lookup that starts a journey episode, then a connection that is still open when the
    /// line opts out, and then carries a request: the window's subscriber reports, and the
    /// events after the opt-out.
    fn line_with_opt_out_midway(secret: Option<&str>, opt_out: &[&str]) -> (Vec<SubscriberReport>, usize) {
        let opt_out: Vec<String> = opt_out.iter().map(|s| s.to_string()).collect();
        let (reports, events) = line_with_change_midway(secret, |p| p.set_opt_out(opt_out));
        (reports.into_iter().flat_map(|r| r.subscribers).collect(), events)
    }

    /// The same traffic with `change` made between the handshake and the request: the reports,
    /// and the events after the change.
    fn line_with_change_midway(secret: Option<&str>, change: impl FnOnce(&mut Probe)) -> (Vec<Report>, usize) {
        let subscribers =
            crate::subscriber::SubscriberConfig { pseudonymize_secret: secret.map(String::from), ..Default::default() };
        let journeys = vec![portal_journey()];
        let mut p = Probe::new(CoreConfig { subscribers, journeys, ..CoreConfig::default() });
        let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
        let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
        p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
        p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &dns(true)), 0);
        p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
        p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x12, (500, 101), &[]), 0);
        p.handle_frame(t(51), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x10, (101, 501), &[]), 0);
        while p.poll_event().is_some() {}
        change(&mut p);
        let get = b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n";
        p.handle_frame(t(60), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x18, (101, 501), get), 0);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        p.handle_frame(
            t(90),
            LinkType::Ethernet,
            &tcp_frame((web, 80), (me, 50000), 0x18, (501, 101 + get.len() as u32), ok),
            0,
        );
        p.finish(t(100));
        let events = std::iter::from_fn(|| p.poll_event()).count();
        (std::iter::from_fn(|| p.poll_report()).collect(), events)
    }

    #[test]
    fn a_journey_swap_keeps_the_open_episodes_of_journeys_it_left_as_they_were() {
        let run = |journeys: Vec<crate::journey::JourneyConfig>| {
            let (reports, _) = line_with_change_midway(None, |p| p.set_journeys(journeys));
            let completed: Vec<String> = reports
                .iter()
                .flat_map(|r| &r.subscribers)
                .flat_map(|s| &s.journeys)
                .filter(|j| j.ok == 1)
                .map(|j| j.journey.clone())
                .collect();
            let evicted: u64 = reports.iter().map(|r| r.capture.evictions.episodes).sum();
            (completed, evicted)
        };
        let portal = || vec!["portal".to_string()];
        let mut added = crate::journey::JourneyConfig { name: "video".into(), ..portal_journey() };
        added.steps.truncate(1);
        // Another journey added in front: the portal episode goes on, under its new place.
        assert_eq!(run(vec![added.clone(), portal_journey()]), (portal(), 0));
        assert_eq!(run(vec![portal_journey()]), (portal(), 0), "the same definitions again");
        // The portal journey changed, or gone: its open episode ends unreported, evicted.
        let changed = crate::journey::JourneyConfig { timeout_secs: 20.0, ..portal_journey() };
        assert_eq!(run(vec![changed]), (vec![], 1));
        assert_eq!(run(vec![added]), (vec![], 1));
        assert_eq!(run(vec![]), (vec![], 1));
    }

    #[test]
    fn an_opt_out_stops_open_flows_and_withholds_the_open_window() {
        let (measured, events) = line_with_opt_out_midway(None, &[]);
        assert_eq!(measured.len(), 1);
        assert!(events > 0, "the request and the flow's end");
        let line = &measured[0];
        assert_eq!(line.journeys.len(), 1, "the episode ended in the window");
        assert_eq!(line.subscriber, "192.0.2.55");
        assert_eq!(line.metrics.dns.as_ref().map(|h| h.count), Some(1));
        assert_eq!(line.metrics.http_ttfb.as_ref().map(|h| h.count), Some(1));
        assert!(line.counters.bytes_up > 0 && line.counters.bytes_down > 0);

        assert_eq!(line_with_opt_out_midway(None, &["192.0.2.55"]), (vec![], 0), "the line opted out");
        // Reported under a pseudonym, opted out by its own key.
        let (pseudonymous, _) = line_with_opt_out_midway(Some("k"), &[]);
        assert_eq!(pseudonymous[0].subscriber, crate::subscriber::pseudonym("k", "192.0.2.55"));
        assert_eq!(line_with_opt_out_midway(Some("k"), &["192.0.2.55"]), (vec![], 0));
        // Another line's opt-out changes nothing here.
        assert_eq!(line_with_opt_out_midway(None, &["192.0.2.56"]), (measured, events));
    }

    #[test]
    fn a_connect_is_measured_under_the_name_its_first_payload_gives() {
        let mut p = Probe::new(CoreConfig { report_interval_secs: 60, ..CoreConfig::default() });
        // 40 s before a window boundary.
        let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
        let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
        // The last lookup that named the shared address was the portal's.
        let answer = dns_answer(0, Some(web));
        p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
        p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
        let hello = crate::wire::tls::tests::client_hello();
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&((hello.len() + 4) as u16).to_be_bytes());
        record.extend_from_slice(&[1, 0]);
        record.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        record.extend_from_slice(&hello);
        let get = b"GET / HTTP/1.1\r\nHost: www.example:8080\r\n\r\n".to_vec();
        // The handshake's first packet (ms), the client and server ports, and what the client
        // sends first (at `then` ms), if anything.
        type Connection<'a> = (u64, u16, u16, Option<(u64, &'a [u8])>);
        let connections: [Connection; 4] = [
            (1_000, 50001, 443, Some((1_040, &record))),
            (2_000, 50002, 80, Some((2_040, &get))),
            (3_000, 50003, 443, None),                     // closed before a byte was sent
            (39_980, 50004, 443, Some((40_010, &record))), // named in the next window
        ];
        for &(at, port, server_port, first) in &connections {
            let (c, s) = ((me, port), (web, server_port));
            p.handle_frame(t(at), LinkType::Ethernet, &tcp_frame(c, s, 0x02, (100, 0), &[]), 0);
            p.handle_frame(t(at + 10), LinkType::Ethernet, &tcp_frame(s, c, 0x12, (500, 101), &[]), 0);
            p.handle_frame(t(at + 11), LinkType::Ethernet, &tcp_frame(c, s, 0x10, (101, 501), &[]), 0);
            match first {
                Some((then, payload)) => {
                    p.handle_frame(t(then), LinkType::Ethernet, &tcp_frame(c, s, 0x18, (101, 501), payload), 0)
                }
                None => p.handle_frame(t(at + 12), LinkType::Ethernet, &tcp_frame(c, s, 0x11, (101, 501), &[]), 0),
            }
        }
        p.finish(t(41_000));
        let connects: Vec<(u16, Option<String>)> = std::iter::from_fn(|| p.poll_event())
            .filter(|e| matches!(e.detail, Detail::TcpConnect(_)))
            .map(|e| (e.client.port(), e.service))
            .collect();
        let named = |port: u16, name: &str| (port, Some(name.to_string()));
        assert_eq!(
            connects,
            [
                named(50001, "example.com"),
                named(50002, "www.example"),
                named(50003, "portal.example"),
                named(50004, "portal.example"),
            ]
        );
        let reports: Vec<Report> = std::iter::from_fn(|| p.poll_report()).collect();
        assert_eq!(reports.len(), 2);
        let connects_in = |r: &Report, service: &str| {
            let s = r.subscribers[0].services.iter().find(|s| s.service == service);
            s.and_then(|s| s.metrics.connect_network.as_ref()).map_or(0, |h| h.count)
        };
        assert_eq!(connects_in(&reports[0], "example.com"), 1);
        assert_eq!(connects_in(&reports[0], "www.example"), 1);
        assert_eq!(connects_in(&reports[0], "portal.example"), 2, "told by the lookup's name at the close");
        assert_eq!(reports[1].subscribers[0].counters.connects, 0);
        assert_eq!(connects_in(&reports[1], "example.com"), 0);
    }

    #[test]
    fn tcp_connect_timeout_config_is_honoured() {
        let p = Probe::new(CoreConfig { tcp_connect_timeout_secs: 3.0, ..CoreConfig::default() });
        assert_eq!(p.timeouts.connect, 3_000_000_000);
    }
}
