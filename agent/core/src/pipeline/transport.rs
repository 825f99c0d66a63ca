//! From an IP packet to the analyzers: reassembly, transport headers, the flow a packet belongs
//! to, and the application analyzer a connection's first payload chooses.

use super::*;
use crate::analyze::quic::Sniff;
use crate::analyze::tcp::{RttSample, Side};

impl Probe {
    pub(super) fn handle_ip(&mut self, ts: Timestamp, ip: &IpLayer<'_>) {
        let ip_len = u32::try_from(ip.ip_len).unwrap_or(u32::MAX);
        let mut link =
            Link { src_mac: ip.src_mac, dst_mac: ip.dst_mac, vlan: ip.vlan, pppoe_session: ip.pppoe_session, ip_len };
        if let Some(frag) = ip.fragment {
            let key = FragKey { src: ip.src, dst: ip.dst, protocol: u8::from(ip.protocol), ident: frag.ident };
            let mut datagram = std::mem::take(&mut self.scratch);
            if self.frags.add(ts, key, frag, ip.payload, &mut datagram, &mut self.counters) {
                let len = datagram.len();
                // A reassembled datagram counts once toward its line's load, at its whole size.
                let header = ip.ip_len.saturating_sub(ip.declared_len);
                link.ip_len = u32::try_from(len + header).unwrap_or(u32::MAX);
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
    pub(super) fn transport(
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

    pub(super) fn udp(&mut self, ts: Timestamp, src: IpAddr, dst: IpAddr, udp: &UdpPacket<'_>, link: Link) {
        let (sp, dp) = (udp.src_port(), udp.dst_port());
        if DHCP_PORTS.contains(&sp) && DHCP_PORTS.contains(&dp) {
            if let Ok(lease) = crate::dissect::dhcp::parse(udp.payload()) {
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
        let loaded = self.line_load(slot, ts, dir, link.ip_len);
        let dns = sp == DNS_PORT || dp == DNS_PORT;
        if !dns {
            // Before the bytes are counted, so that the datagram that shows a flow is QUIC
            // counts as QUIC's.
            self.quic(ts, slot, dir, (sp, dp), udp.payload());
        }
        self.account(slot, dir, bytes, 0);
        self.count_loaded(slot, dir, link.ip_len, loaded);
        if dns {
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

    /// Follows a UDP flow's QUIC handshake. A flow is QUIC when one of its first datagrams
    /// is a client Initial that opens with its version's public keys (any port), or one that
    /// could be (cut short, or a reserved version asking for negotiation) on a `quic_ports`
    /// port. Once the handshake is over, a datagram costs a failed lookup.
    fn quic(&mut self, ts: Timestamp, slot: u32, dir: usize, (sp, dp): (u16, u16), payload: &[u8]) {
        /// Datagrams of a flow looked at for a client Initial before it is called not QUIC.
        const SNIFF_PACKETS: u32 = 8;
        let f = self.flows.flow_mut(slot);
        if !f.classified {
            if payload.first().is_none_or(|&b| b & 0xc0 != 0xc0) {
                f.classified = f.dirs[0].packets + f.dirs[1].packets >= SNIFF_PACKETS;
                return;
            }
            let sniffed = crate::analyze::quic::sniff(payload, &mut self.quic_scratch);
            let on_port = self.config.quic_ports.iter().any(|&p| p == sp || p == dp);
            let quic = match sniffed {
                Sniff::Opened => true,
                Sniff::Plausible => on_port,
                Sniff::No => false,
            };
            let f = self.flows.flow_mut(slot);
            if !quic {
                f.classified = f.dirs[0].packets + f.dirs[1].packets >= SNIFF_PACKETS;
                return;
            }
            f.classified = true;
            f.quic = true;
            if self.streams.len() >= self.config.stream_capacity {
                self.counters.streams_refused += 1;
                return;
            }
            let session = QuicSession::new(dir, self.config.tls_hello_max_bytes);
            self.streams.insert(slot, AppStream::Quic(Box::new(session)));
        }
        let Some(AppStream::Quic(s)) = self.streams.get_mut(&slot) else { return };
        let fed = s.feed(ts, dir, payload, &mut self.quic_scratch);
        self.counters.quic_unopened += u64::from(fed.unopened);
        let client_dir = s.client_dir();
        if let Some(name) = s.take_name() {
            if s.hello_lost() {
                self.counters.quic_hello_lost += 1;
            }
            if let Some(sni) = name {
                self.set_service(slot, &sni);
            }
        }
        if let Some(event) = fed.done {
            // The handshake is over; the analyzer's memory goes back to the pool.
            self.streams.remove(&slot);
            let f = self.flows.flow(slot);
            let (client, server) = if client_dir == 0 { (f.client(), f.server()) } else { (f.server(), f.client()) };
            self.emit_for(slot, ts, client, server, Detail::Quic(event));
        }
    }

    pub(super) fn tcp(
        &mut self,
        ts: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        tcp: &TcpPacket<'_>,
        declared: usize,
        link: Link,
    ) {
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
        let outcome = f.tcp.on_segment(ts, f.first, dir, seg, &mut f.dirs);
        let retransmitted = u64::from(f.dirs[dir].retrans - retrans_before);
        let (client, server, generation) = (f.client(), f.server(), f.generation);
        let (closing, pending) = (f.tcp.closing.is_some(), f.tcp.connect_pending());
        self.flows.touch(slot, ts);
        let loaded = self.line_load(slot, ts, dir, link.ip_len);
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
        if let Some(c) = outcome.connect {
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
        self.count_loaded(slot, dir, link.ip_len, loaded);
        if let Some(rtt) = outcome.rtt {
            self.count_rtt(slot, ts, (rtt, seg.ack), loaded);
        }
    }

    /// Counts a packet toward its line's load; true when the line is loaded now.
    fn line_load(&mut self, slot: u32, ts: Timestamp, dir: usize, ip_len: u32) -> bool {
        let f = self.flows.flow(slot);
        // "Up" is from the subscriber, who is the client.
        self.load.add(f.owner, ts.as_nanos(), dir, ip_len)
    }

    /// Counts a round trip into its flow's summary, the line's window histograms and the
    /// trace, if one is kept.
    fn count_rtt(&mut self, slot: u32, ts: Timestamp, (rtt, ack): (RttSample, u32), loaded: bool) {
        self.flows.flow_mut(slot).tcp.rtt[rtt.side as usize].add(rtt.us, loaded);
        let f = self.flows.flow(slot);
        if f.cell.epoch == self.windows.epoch() && f.cell.subscriber != u16::MAX {
            self.windows.add_rtt(f.cell.subscriber, rtt.side, loaded, rtt.us);
        }
        if let Some(trace) = &mut self.rtt_trace {
            let (client, server) = (f.client(), f.server());
            let subscriber = self.strings.get(f.owner).map_or_else(|| "unknown".into(), |s| s.to_string());
            let side = if rtt.side == Side::Home { "home" } else { "network" };
            trace.push_back(RttTrace { ts, subscriber, client, server, side, ack, rtt_us: rtt.us, loaded });
        }
    }

    /// IP bytes the line moved while loaded, in the flow's window cell.
    fn count_loaded(&mut self, slot: u32, dir: usize, ip_len: u32, loaded: bool) {
        let f = self.flows.flow(slot);
        if loaded && f.cell.epoch == self.windows.epoch() && f.cell.subscriber != u16::MAX {
            self.windows.add_loaded(f.cell.subscriber, dir, u64::from(ip_len));
        }
    }

    /// A SYN on a flow that already carried a different connection: a reused port pair.
    pub(super) fn is_new_connection(&self, slot: u32, isn: u32) -> bool {
        let f = self.flows.flow(slot);
        let seen = f.dirs[0].packets + f.dirs[1].packets > 0;
        seen && (f.tcp.closing.is_some() || !f.tcp.connect_pending()) && f.tcp.client_isn != isn
    }

    /// Hands a segment to the connection's application analyzer, choosing one from the first
    /// payload: DNS on port 53, TLS for a ClientHello, HTTP for a request line.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn app_stream(
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
            } else if dir == 0 && crate::dissect::tls::may_begin_client_hello(captured) {
                AppStream::Tls(Box::new(TlsSession::new(self.config.tls_hello_max_bytes)))
            } else if dir == 1 && crate::dissect::tls::may_begin_server_hello(captured) {
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
            AppStream::Quic(_) => {} // UDP flows only
        }
    }

    pub(super) fn push_timer(&mut self, connect: bool, timer: FlowTimer) {
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

    pub(super) fn connect_timer(&mut self, slot: u32, generation: u32, now: Timestamp) {
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
    pub(super) fn flow_for(
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
}
