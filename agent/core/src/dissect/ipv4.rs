//! IPv4 headers (RFC 791). The header checksum is not verified: captures taken on the sending
//! host carry offloaded, unfilled checksums, and the agent measures what passed, not what is valid.

use super::{IpProtocol, Layer, Result, be16, check_len};
use crate::dissect::Error;
use std::net::Ipv4Addr;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const SRC: core::ops::Range<usize> = 12..16;
    pub const DST: core::ops::Range<usize> = 16..20;
}

#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
    /// End of the datagram inside `buf`: the total length, or less when the capture cut it.
    end: usize,
    /// End of the datagram as the header declares it.
    declared_end: usize,
    truncated: bool,
}

impl<'a> Ipv4Packet<'a> {
    pub const MIN_HEADER_LEN: usize = 20;

    /// Checks version, header length and total length. A datagram cut short by the snap length
    /// is accepted and marked `truncated`; link-layer padding after the total length is dropped.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Ipv4, buf, Self::MIN_HEADER_LEN)?;
        if buf[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed { layer: Layer::Ipv4, field: "version", offset: 0 });
        }
        let header_len = usize::from(buf[field::VER_IHL] & 0x0f) * 4;
        if header_len < Self::MIN_HEADER_LEN {
            return Err(Error::Malformed { layer: Layer::Ipv4, field: "ihl", offset: 0 });
        }
        check_len(Layer::Ipv4, buf, header_len)?;
        let total = usize::from(be16(buf, field::TOTAL_LEN));
        if total < header_len {
            // Segmentation offload on the capturing host can leave the total length at zero.
            if total == 0 {
                return Ok(Ipv4Packet { buf, header_len, end: buf.len(), declared_end: buf.len(), truncated: false });
            }
            return Err(Error::Malformed { layer: Layer::Ipv4, field: "total length", offset: 2 });
        }
        let end = total.min(buf.len());
        Ok(Ipv4Packet { buf, header_len, end, declared_end: total, truncated: total > buf.len() })
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buf, field::TOTAL_LEN)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buf, field::IDENT)
    }

    pub fn more_fragments(&self) -> bool {
        self.buf[field::FLAGS_FRAG] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buf, field::FLAGS_FRAG) & 0x1fff) * 8
    }

    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buf[field::PROTOCOL])
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }

    pub fn src_bytes(&self) -> [u8; 4] {
        self.buf[field::SRC].try_into().unwrap_or_default()
    }

    pub fn dst_bytes(&self) -> [u8; 4] {
        self.buf[field::DST].try_into().unwrap_or_default()
    }

    /// True when the capture holds less than the total length says.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.end]
    }

    /// Payload length the header declares, whether or not the capture holds it all.
    /// The datagram's length as its header declares it, header included.
    pub fn declared_len(&self) -> usize {
        self.declared_end
    }

    pub fn declared_payload_len(&self) -> usize {
        self.declared_end - self.header_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x1c, // v4, ihl 5, total 28
        0x12, 0x34, 0x20, 0x01, // id 0x1234, MF, offset 1 (8 bytes)
        0x40, 0x11, 0x00, 0x00, // ttl 64, udp
        192, 0, 2, 1, // src
        198, 51, 100, 7, // dst
    ];

    #[test]
    fn parses_fragment_fields() {
        let mut buf = HEADER.to_vec();
        buf.extend_from_slice(&[0u8; 8]);
        buf.extend_from_slice(&[0u8; 4]); // Ethernet padding, beyond total length
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert!(p.more_fragments());
        assert_eq!(p.frag_offset(), 8);
        assert_eq!(p.ident(), 0x1234);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert!(!p.truncated());
    }

    #[test]
    fn snapped_datagram_is_marked_truncated() {
        let p = Ipv4Packet::new_checked(&HEADER[..]).unwrap();
        assert!(p.truncated());
        assert!(p.payload().is_empty());
    }

    #[test]
    fn bad_ihl_is_an_error() {
        let mut buf = HEADER;
        buf[0] = 0x44;
        assert!(matches!(Ipv4Packet::new_checked(&buf), Err(Error::Malformed { field: "ihl", .. })));
    }
}
