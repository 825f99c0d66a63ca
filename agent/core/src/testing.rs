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
