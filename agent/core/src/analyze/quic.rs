//! QUIC handshake timing on one UDP flow, passively, as RFC 9312 describes: the first packet of
//! each long-header type in each direction marks a step of the handshake, and the client's
//! Initial packets, whose keys are public, carry the ClientHello that names the service.
//!
//! Times ("first" is the first seen; a retransmission does not restart a clock):
//! - `hello_us`: the client's first Initial to the server's first Initial (network side);
//! - `home_us`: the server's first Handshake packet to the client's first (home side);
//! - `handshake_us`: the client's first Initial to its first 1-RTT (short header) packet,
//!   when the client can send data, which also makes the outcome `ok`.
//!
//! A Retry or a Version Negotiation starts the clocks again from the client's next Initial;
//! after a Retry the client's keys come from the new Destination Connection ID. CRYPTO frames
//! are reassembled by offset across packets and datagrams, in any order, into at most
//! `max_hello` bytes; the state is freed once the client sends 1-RTT.

use crate::dissect::quic::{self, InitialKeys, Kind, LongHeader, Packet, Version};
use crate::dissect::tls::{self, ClientHello};
use crate::event::{QuicEvent, QuicOutcome};
use crate::time::Timestamp;

/// CRYPTO ranges held apart before the ClientHello's start arrives; more is given up.
const MAX_RANGES: usize = 16;

/// Client Initials opened on one connection before the ClientHello is given up: a real one
/// takes a few, and each costs a decryption.
const MAX_INITIALS: u8 = 32;

/// The smallest datagram that carries a client's first Initial (RFC 9000, 14.1).
pub const MIN_CLIENT_INITIAL: usize = 1200;

/// What a flow's first client datagram says of QUIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// An Initial of a known version that opened: QUIC for certain.
    Opened,
    /// An Initial (or a reserved version inviting negotiation) that could not be opened: QUIC
    /// only where the port says so.
    Plausible,
    No,
}

/// Whether `datagram`, sent by a flow's client, begins a QUIC connection; `scratch` is where a
/// packet is opened.
pub fn sniff(datagram: &[u8], scratch: &mut Vec<u8>) -> Sniff {
    let Ok((Packet::Long(h), _)) = quic::parse(datagram, 0) else { return Sniff::No };
    if h.version.is_google() || datagram.len() < MIN_CLIENT_INITIAL {
        return Sniff::No;
    }
    if h.version.is_grease() {
        return Sniff::Plausible;
    }
    if h.kind != Kind::Initial || !h.version.is_known() {
        return Sniff::No;
    }
    let opened =
        InitialKeys::new(h.version, h.dcid, true).is_some_and(|keys| keys.open(datagram, &h, None, scratch).is_ok());
    if opened { Sniff::Opened } else { Sniff::Plausible }
}

/// CRYPTO bytes of the client's Initials, reassembled by offset.
#[derive(Debug, Default)]
struct Crypto {
    buf: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    ranges: Vec<(usize, usize)>,
}

impl Crypto {
    /// Adds `data` at `offset`; false when it does not fit the bounds.
    fn add(&mut self, offset: u64, data: &[u8], max: usize) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        let end = start.saturating_add(data.len());
        if end > max {
            return false;
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[start..end].copy_from_slice(data);
        self.ranges.push((start, end));
        self.ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.ranges.len());
        for &(s, e) in &self.ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
        self.ranges.len() <= MAX_RANGES
    }

    /// The bytes received without a gap from offset 0.
    fn prefix(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => &self.buf[..end],
            _ => &[],
        }
    }
}

/// The client's Initial keys and what opening its packets needs.
struct Opener {
    version: Version,
    keys: InitialKeys,
    largest: Option<u64>,
}

/// One QUIC connection's handshake, as seen from the middle.
pub struct QuicSession {
    /// The flow direction the client's packets travel in.
    client_dir: usize,
    max_hello: usize,
    /// The Destination Connection ID the client's Initial keys come from.
    odcid: heapless::Vec<u8, { quic::MAX_CID }>,
    opener: Option<Box<Opener>>,
    crypto: Crypto,
    hello: Option<ClientHello>,
    /// The ClientHello could not be read (too large, too scattered, not a ClientHello, or not
    /// within `MAX_INITIALS`).
    hello_lost: bool,
    /// Client Initials tried so far.
    initials: u8,
    client_version: Option<Version>,
    server_version: Option<Version>,
    retry: bool,
    /// After a Retry or Version Negotiation: the next client Initial starts over.
    restart: bool,
    client_initial: Option<Timestamp>,
    server_initial: Option<Timestamp>,
    server_handshake: Option<Timestamp>,
    client_handshake: Option<Timestamp>,
    /// The service has been told (`take_name`).
    named: bool,
}

/// What one datagram changed.
#[derive(Debug, Default, PartialEq)]
pub struct Fed {
    /// Client Initials that did not open (wrong keys, cut by the snap length, corrupt).
    pub unopened: u32,
    /// The handshake is over: the event to emit.
    pub done: Option<QuicEvent>,
}

impl QuicSession {
    pub fn new(client_dir: usize, max_hello: usize) -> Self {
        QuicSession {
            client_dir,
            max_hello,
            odcid: heapless::Vec::new(),
            opener: None,
            crypto: Crypto::default(),
            hello: None,
            hello_lost: false,
            initials: 0,
            client_version: None,
            server_version: None,
            retry: false,
            restart: true,
            client_initial: None,
            server_initial: None,
            server_handshake: None,
            client_handshake: None,
            named: false,
        }
    }

    pub fn client_dir(&self) -> usize {
        self.client_dir
    }

    /// Reads one datagram sent in flow direction `dir`, opening Initials in `scratch`.
    pub fn feed(&mut self, ts: Timestamp, dir: usize, datagram: &[u8], scratch: &mut Vec<u8>) -> Fed {
        let mut fed = Fed::default();
        let from_client = dir == self.client_dir;
        let mut at = 0;
        while at < datagram.len() {
            let Ok((packet, next)) = quic::parse(datagram, at) else { break };
            match (packet, from_client) {
                (Packet::Short, true) => {
                    if self.client_initial.is_some() {
                        fed.done = Some(self.event(Some(ts), QuicOutcome::Ok));
                        return fed;
                    }
                }
                (Packet::Short, false) => {}
                (Packet::VersionNegotiation { .. }, false) => self.start_over(),
                (Packet::VersionNegotiation { .. }, true) => {}
                (Packet::Long(h), true) => self.client_long(ts, datagram, &h, scratch, &mut fed),
                (Packet::Long(h), false) => self.server_long(ts, &h),
            }
            // Padding after the last packet (zeros) ends the datagram.
            if next <= at || datagram.get(next).is_none_or(|&b| b == 0) {
                break;
            }
            at = next;
        }
        fed
    }

    fn start_over(&mut self) {
        self.retry = true;
        self.restart = true;
        self.client_initial = None;
        self.server_initial = None;
        self.server_handshake = None;
        self.client_handshake = None;
    }

    fn client_long(
        &mut self,
        ts: Timestamp,
        datagram: &[u8],
        h: &LongHeader<'_>,
        scratch: &mut Vec<u8>,
        fed: &mut Fed,
    ) {
        match h.kind {
            Kind::Initial => {
                if self.restart {
                    // The first Initial, or the first after a Retry: its DCID keys this side.
                    self.restart = false;
                    self.client_initial = Some(ts);
                    self.odcid = heapless::Vec::from_slice(h.dcid).unwrap_or_default();
                    self.opener = None;
                    self.crypto = Crypto::default();
                }
                self.client_initial.get_or_insert(ts);
                self.client_version = Some(h.version);
                self.read_initial(datagram, h, scratch, fed);
            }
            Kind::Handshake => {
                self.client_handshake.get_or_insert(ts);
            }
            Kind::ZeroRtt | Kind::Retry => {}
        }
    }

    fn server_long(&mut self, ts: Timestamp, h: &LongHeader<'_>) {
        match h.kind {
            Kind::Retry => self.start_over(),
            Kind::Initial => {
                self.server_version = Some(h.version);
                self.server_initial.get_or_insert(ts);
            }
            Kind::Handshake => {
                self.server_version = Some(h.version);
                self.server_handshake.get_or_insert(ts);
            }
            Kind::ZeroRtt => {}
        }
    }

    /// Opens a client Initial and takes its CRYPTO frames, until the ClientHello is read.
    fn read_initial(&mut self, datagram: &[u8], h: &LongHeader<'_>, scratch: &mut Vec<u8>, fed: &mut Fed) {
        if self.hello.is_some() || self.hello_lost || !h.version.is_known() {
            return;
        }
        if self.initials >= MAX_INITIALS {
            return self.give_up_hello();
        }
        self.initials += 1;
        // A compatible version negotiation moves the client to the server's version: same
        // DCID, that version's salt.
        if self.opener.as_ref().is_none_or(|o| o.version != h.version) {
            let Some(keys) = InitialKeys::new(h.version, &self.odcid, true) else { return };
            self.opener = Some(Box::new(Opener { version: h.version, keys, largest: None }));
        }
        let Some(opener) = self.opener.as_mut() else { return };
        match opener.keys.open(datagram, h, opener.largest, scratch) {
            Ok((pn, frames)) => {
                opener.largest = Some(opener.largest.map_or(pn, |l| l.max(pn)));
                let (crypto, max) = (&mut self.crypto, self.max_hello);
                let mut fits = true;
                let read = quic::crypto_frames(frames, |offset, data| fits &= crypto.add(offset, data, max));
                if !fits || read.is_err() {
                    self.give_up_hello();
                } else {
                    self.try_hello();
                }
            }
            Err(_) => fed.unopened += 1,
        }
    }

    fn try_hello(&mut self) {
        let bytes = self.crypto.prefix();
        if bytes.len() < 4 {
            return;
        }
        if bytes[0] != tls::HANDSHAKE_CLIENT_HELLO {
            return self.give_up_hello();
        }
        let len = usize::from(bytes[1]) << 16 | usize::from(bytes[2]) << 8 | usize::from(bytes[3]);
        if 4 + len > self.max_hello {
            return self.give_up_hello();
        }
        if bytes.len() < 4 + len {
            return;
        }
        match tls::parse_client_hello(&bytes[4..4 + len]) {
            Ok(hello) => {
                self.hello = Some(hello);
                self.crypto = Crypto::default();
                self.opener = None;
            }
            Err(_) => self.give_up_hello(),
        }
    }

    fn give_up_hello(&mut self) {
        self.hello_lost = true;
        self.crypto = Crypto::default();
        self.opener = None;
    }

    /// The SNI once, when the ClientHello has been read (`Some(None)`: it named nothing).
    pub fn take_name(&mut self) -> Option<Option<String>> {
        if self.named || (self.hello.is_none() && !self.hello_lost) {
            return None;
        }
        self.named = true;
        Some(self.hello.as_ref().and_then(|h| h.sni.clone()))
    }

    /// The ClientHello could not be read.
    pub fn hello_lost(&self) -> bool {
        self.hello_lost
    }

    /// The event of a connection that ended before the client sent 1-RTT; `None` when no
    /// client Initial was seen since the last restart.
    pub fn finish(&self) -> Option<QuicEvent> {
        self.client_initial.is_some().then(|| self.event(None, QuicOutcome::Incomplete))
    }

    fn event(&self, short: Option<Timestamp>, outcome: QuicOutcome) -> QuicEvent {
        let since = |from: Option<Timestamp>, to: Option<Timestamp>| match (from, to) {
            (Some(a), Some(b)) if b >= a => Some(b.micros_since(a)),
            _ => None,
        };
        let hello = self.hello.as_ref();
        QuicEvent {
            outcome,
            version: self.server_version.or(self.client_version).map(Version::name),
            sni: hello.and_then(|h| h.sni.clone()),
            alpn: hello.map(|h| h.alpn.clone()).unwrap_or_default(),
            retry: self.retry,
            hello_us: since(self.client_initial, self.server_initial),
            home_us: since(self.server_handshake, self.client_handshake),
            handshake_us: since(self.client_initial, short),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::quic::{VERSION_1, VERSION_2};
    use crate::testing::quic::{DCID, SERVER_CID, client_initial, hello, server_long, short};

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_micros(1_700_000_000_000_000 + n * 1000)
    }

    fn feed(s: &mut QuicSession, t: u64, dir: usize, d: &[u8]) -> Fed {
        s.feed(ms(t), dir, d, &mut Vec::new())
    }

    #[test]
    fn a_handshake_is_timed_from_the_first_packet_of_each_type() {
        let whole = hello().len();
        let first = client_initial(VERSION_1, DCID, 0, &[(0, whole)]);
        assert_eq!(sniff(&first, &mut Vec::new()), Sniff::Opened);
        let mut s = QuicSession::new(0, 16_384);
        assert_eq!(feed(&mut s, 0, 0, &first), Fed::default());
        assert_eq!(s.take_name(), Some(Some("example.com".into())));
        // A retransmitted Initial does not restart the clock.
        feed(&mut s, 5, 0, &client_initial(VERSION_1, DCID, 1, &[(0, whole)]));
        // The server's Initial and Handshake coalesced, then a second Handshake.
        let coalesced = [server_long(VERSION_1, Kind::Initial), server_long(VERSION_1, Kind::Handshake)].concat();
        feed(&mut s, 30, 1, &coalesced);
        feed(&mut s, 31, 1, &server_long(VERSION_1, Kind::Handshake));
        feed(&mut s, 32, 1, &short());
        feed(&mut s, 34, 0, &server_long(VERSION_1, Kind::Handshake)); // the client's Handshake
        let done = feed(&mut s, 35, 0, &short()).done.expect("the client's 1-RTT ends the handshake");
        assert_eq!(
            done,
            QuicEvent {
                outcome: QuicOutcome::Ok,
                version: Some("v1".into()),
                sni: Some("example.com".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                retry: false,
                hello_us: Some(30_000),
                home_us: Some(4_000),
                handshake_us: Some(35_000),
            }
        );
    }

    #[test]
    fn a_hello_over_several_initials_out_of_order_is_read() {
        let n = hello().len();
        let mut s = QuicSession::new(0, 16_384);
        feed(&mut s, 0, 0, &client_initial(VERSION_1, DCID, 1, &[(n / 2, n - n / 2)]));
        assert_eq!(s.take_name(), None, "not yet");
        feed(&mut s, 1, 0, &client_initial(VERSION_1, DCID, 0, &[(10, n / 2 - 10), (0, 10)]));
        assert_eq!(s.take_name(), Some(Some("example.com".into())));
        assert_eq!(s.finish().unwrap().hello_us, None, "the server never answered");
        assert_eq!(s.finish().unwrap().outcome, QuicOutcome::Incomplete);
    }

    #[test]
    fn a_retry_starts_the_clocks_again_and_rekeys_the_client() {
        let n = hello().len();
        let mut s = QuicSession::new(0, 16_384);
        // The first Initial carries only part of the hello; the Retry comes before the rest.
        feed(&mut s, 0, 0, &client_initial(VERSION_1, DCID, 0, &[(0, 20)]));
        feed(&mut s, 10, 1, &server_long(VERSION_1, Kind::Retry));
        // The client's next Initial is keyed by the Retry's Source Connection ID.
        let after = client_initial(VERSION_1, SERVER_CID, 1, &[(0, n)]);
        assert_eq!(feed(&mut s, 20, 0, &after).unopened, 0);
        assert_eq!(s.take_name(), Some(Some("example.com".into())));
        feed(&mut s, 25, 1, &server_long(VERSION_1, Kind::Initial));
        let done = feed(&mut s, 40, 0, &short()).done.unwrap();
        assert!(done.retry);
        assert_eq!((done.hello_us, done.handshake_us), (Some(5_000), Some(20_000)));
    }

    #[test]
    fn compatible_negotiation_reports_the_servers_version_and_rekeys_with_its_salt() {
        let n = hello().len();
        let mut s = QuicSession::new(0, 16_384);
        feed(&mut s, 0, 0, &client_initial(VERSION_1, DCID, 0, &[(0, 30)]));
        feed(&mut s, 10, 1, &server_long(VERSION_2, Kind::Initial));
        // The client goes on in v2, with v2's keys from the same DCID.
        assert_eq!(feed(&mut s, 12, 0, &client_initial(VERSION_2, DCID, 1, &[(30, n - 30)])).unopened, 0);
        assert_eq!(s.take_name(), Some(Some("example.com".into())));
        let done = feed(&mut s, 20, 0, &short()).done.unwrap();
        assert_eq!((done.version.as_deref(), done.retry, done.hello_us), (Some("v2"), false, Some(10_000)));
    }

    #[test]
    fn what_cannot_be_read_is_counted_and_bounded() {
        let n = hello().len();
        // Keyed by another DCID than the connection's: does not open.
        let mut s = QuicSession::new(0, 16_384);
        feed(&mut s, 0, 0, &client_initial(VERSION_1, DCID, 0, &[(0, 10)]));
        assert_eq!(feed(&mut s, 1, 0, &client_initial(VERSION_1, SERVER_CID, 1, &[(10, n - 10)])).unopened, 1);
        // A hello longer than the bound is given up, once.
        let mut s = QuicSession::new(0, 64);
        feed(&mut s, 0, 0, &client_initial(VERSION_1, DCID, 0, &[(0, n)]));
        assert!(s.hello_lost());
        assert_eq!(s.take_name(), Some(None));
        assert_eq!(s.take_name(), None);
        // Initials that never complete the hello cost a decryption each, up to a bound.
        let mut s = QuicSession::new(0, 16_384);
        for pn in 0..40 {
            feed(&mut s, u64::from(pn), 0, &client_initial(VERSION_1, DCID, pn, &[(0, 10)]));
        }
        assert!(s.hello_lost(), "given up after {MAX_INITIALS} Initials");
        // Cut short by a snap length, an Initial still times the handshake.
        let mut s = QuicSession::new(0, 16_384);
        let cut = &client_initial(VERSION_1, DCID, 0, &[(0, n)])[..300];
        assert_eq!(sniff(cut, &mut Vec::new()), Sniff::No, "a client's first datagram is at least 1200 bytes");
        assert_eq!(feed(&mut s, 0, 0, cut).unopened, 1);
        feed(&mut s, 7, 1, &server_long(VERSION_1, Kind::Initial));
        assert_eq!(s.finish().unwrap().hello_us, Some(7_000));
    }

    #[test]
    fn google_quic_and_other_udp_are_not_quic() {
        let mut gquic = client_initial(VERSION_1, DCID, 0, &[(0, 10)]);
        gquic[1..5].copy_from_slice(b"Q050");
        assert_eq!(sniff(&gquic, &mut Vec::new()), Sniff::No);
        let mut grease = client_initial(VERSION_1, DCID, 0, &[(0, 10)]);
        grease[1..5].copy_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a]);
        assert_eq!(sniff(&grease, &mut Vec::new()), Sniff::Plausible);
        assert_eq!(sniff(&[0xc0; 1300], &mut Vec::new()), Sniff::No);
        assert_eq!(sniff(&[], &mut Vec::new()), Sniff::No);
    }
}
