//! Frames and segments for the core's unit tests, built the same way everywhere: Ethernet from
//! 02:00:00:00:00:01 to 02:00:00:00:00:02, IPv4 with TTL 64, checksums left zero (the core does
//! not check them).

use crate::analyze::tcp::Segment;

/// An Ethernet frame of `ethertype` around `payload`.
pub(crate) fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header of `protocol` from `src` to `dst` for a payload of `len` bytes.
fn ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + len) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p
}

/// An Ethernet/IPv4/UDP frame.
pub(crate) fn udp_frame(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = ipv4(17, src, dst, 8 + payload.len());
    p.extend_from_slice(&sp.to_be_bytes());
    p.extend_from_slice(&dp.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    ethernet(0x0800, &p)
}

/// An Ethernet/IPv4/TCP frame from `(address, port)` to another, with `(seq, ack)`.
pub(crate) fn tcp_frame(
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    flags: u8,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4(6, from.0, to.0, 20 + payload.len());
    p.extend_from_slice(&from.1.to_be_bytes());
    p.extend_from_slice(&to.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    ethernet(0x0800, &p)
}

/// A data segment (PSH, ACK) of `len` bytes at `seq`.
pub(crate) fn segment(seq: u32, len: u32) -> Segment {
    Segment { seq, ack: 0, flags: 0x18, window: 100, len }
}

/// QUIC datagrams: a client's Initials sealed with the real keys, carrying a ClientHello, and
/// the server's long-header packets and short ones (whose payloads the analyzer never reads).
pub(crate) mod quic {
    use crate::dissect::quic::{InitialKeys, Kind, VERSION_2, Version};
    use crate::dissect::tls;

    pub(crate) const DCID: &[u8] = &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    pub(crate) const SCID: &[u8] = &[0xc1, 0x1e, 0x47];
    pub(crate) const SERVER_CID: &[u8] = &[0x5e, 0x4e, 0xe4];

    /// The ClientHello handshake message (SNI example.com, ALPN h2 and http/1.1).
    pub(crate) fn hello() -> Vec<u8> {
        let body = crate::dissect::tls::tests::client_hello();
        let mut m = vec![tls::HANDSHAKE_CLIENT_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        m.extend_from_slice(&body);
        m
    }

    /// A client Initial datagram (padded to 1200 bytes) of `version` keyed by `dcid`, carrying
    /// CRYPTO frames of `hello()` at the given offsets and lengths.
    pub(crate) fn client_initial(version: u32, dcid: &[u8], pn: u32, pieces: &[(usize, usize)]) -> Vec<u8> {
        let hello = hello();
        let mut frames = Vec::new();
        for &(at, len) in pieces {
            frames.push(0x06);
            frames.extend_from_slice(&(0x4000 | at as u16).to_be_bytes());
            frames.extend_from_slice(&(0x4000 | len as u16).to_be_bytes());
            frames.extend_from_slice(&hello[at..at + len]);
        }
        frames.resize(1160, 0); // a datagram of at least 1200 bytes
        let first = if version == VERSION_2 { 0xd3 } else { 0xc3 };
        let keys = InitialKeys::new(Version(version), dcid, true).unwrap();
        keys.seal(first, Version(version), (dcid, SCID), pn, &frames)
    }

    /// A long-header packet of `kind` from the server (its payload is not read).
    pub(crate) fn server_long(version: u32, kind: Kind) -> Vec<u8> {
        let bits: u8 = match kind {
            Kind::Initial => 0,
            Kind::ZeroRtt => 1,
            Kind::Handshake => 2,
            Kind::Retry => 3,
        };
        let bits = if version == VERSION_2 { (bits + 1) & 3 } else { bits };
        let mut p = vec![0xc0 | bits << 4 | 3];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(SCID.len() as u8);
        p.extend_from_slice(SCID);
        p.push(SERVER_CID.len() as u8);
        p.extend_from_slice(SERVER_CID);
        if kind == Kind::Retry {
            p.extend_from_slice(&[0xaa; 24]); // token and integrity tag
            return p;
        }
        if kind == Kind::Initial {
            p.push(0);
        }
        p.extend_from_slice(&[0x40, 40]);
        p.extend_from_slice(&[0x55; 40]);
        p
    }

    pub(crate) fn short() -> Vec<u8> {
        let mut p = vec![0x43];
        p.extend_from_slice(SERVER_CID);
        p.extend_from_slice(&[0x66; 30]);
        p
    }
}
