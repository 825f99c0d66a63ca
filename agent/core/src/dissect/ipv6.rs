//! IPv6 headers (RFC 8200) and the extension header chain.
//!
//! The chain walk is bounded by the packet's length: each extension header advances at least
//! eight bytes, so a crafted chain cannot loop.

use super::{IpProtocol, Layer, Result, be16, check_len};
use crate::dissect::Error;
use std::net::Ipv6Addr;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const ESP: u8 = 50;
const AUTH: u8 = 51;
const NO_NEXT: u8 = 59;
const DEST_OPTS: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;

/// The fragment header's fields, when the chain has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    pub ident: u32,
    pub offset: usize,
    pub more: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
    /// Offset of the upper-layer header after the extension chain.
    upper: usize,
    end: usize,
    declared_end: usize,
    protocol: IpProtocol,
    fragment: Option<FragmentHeader>,
    truncated: bool,
}

impl<'a> Ipv6Packet<'a> {
    pub const HEADER_LEN: usize = 40;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Ipv6, buf, Self::HEADER_LEN)?;
        if buf[0] >> 4 != 6 {
            return Err(Error::Malformed { layer: Layer::Ipv6, field: "version", offset: 0 });
        }
        let payload_len = usize::from(be16(buf, 4));
        // A zero payload length means a jumbogram or a segmentation-offloaded capture.
        let declared = if payload_len == 0 { buf.len() } else { Self::HEADER_LEN + payload_len };
        let end = declared.min(buf.len());
        let truncated = declared > buf.len();
        let mut next = buf[6];
        let mut at = Self::HEADER_LEN;
        let mut fragment = None;
        loop {
            match next {
                HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                    if end < at + 8 {
                        return Err(Error::Truncated {
                            layer: Layer::Ipv6,
                            offset: at,
                            need: 8,
                            have: end.saturating_sub(at),
                        });
                    }
                    let len = (usize::from(buf[at + 1]) + 1) * 8;
                    next = buf[at];
                    at += len;
                    if at > end {
                        return Err(Error::Truncated {
                            layer: Layer::Ipv6,
                            offset: at - len,
                            need: len,
                            have: end - (at - len),
                        });
                    }
                }
                FRAGMENT => {
                    if end < at + 8 {
                        return Err(Error::Truncated {
                            layer: Layer::Ipv6,
                            offset: at,
                            need: 8,
                            have: end.saturating_sub(at),
                        });
                    }
                    let off_flags = be16(buf, at + 2);
                    fragment = Some(FragmentHeader {
                        ident: u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]),
                        offset: usize::from(off_flags & 0xfff8),
                        more: off_flags & 1 != 0,
                    });
                    next = buf[at];
                    at += 8;
                    // Headers after a non-first fragment's header are part of the fragment data.
                    break;
                }
                AUTH => {
                    if end < at + 8 {
                        return Err(Error::Truncated {
                            layer: Layer::Ipv6,
                            offset: at,
                            need: 8,
                            have: end.saturating_sub(at),
                        });
                    }
                    let len = (usize::from(buf[at + 1]) + 2) * 4;
                    next = buf[at];
                    at += len;
                    if at > end {
                        return Err(Error::Truncated {
                            layer: Layer::Ipv6,
                            offset: at - len,
                            need: len,
                            have: end - (at - len),
                        });
                    }
                }
                ESP | NO_NEXT => break,
                _ => break,
            }
        }
        Ok(Ipv6Packet {
            buf,
            upper: at,
            end,
            declared_end: declared,
            protocol: IpProtocol::from(next),
            fragment,
            truncated,
        })
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_bytes())
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_bytes())
    }

    pub fn src_bytes(&self) -> [u8; 16] {
        self.buf[8..24].try_into().unwrap_or_default()
    }

    pub fn dst_bytes(&self) -> [u8; 16] {
        self.buf[24..40].try_into().unwrap_or_default()
    }

    /// The upper-layer protocol after the extension chain (for a fragment: the fragment's next header).
    pub fn protocol(&self) -> IpProtocol {
        self.protocol
    }

    pub fn fragment(&self) -> Option<FragmentHeader> {
        self.fragment
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Everything after the extension chain, up to the payload length.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.upper.min(self.end)..self.end]
    }

    /// Upper-layer length the header declares, whether or not the capture holds it all.
    /// The datagram's length as its header declares it, header included.
    pub fn declared_len(&self) -> usize {
        self.declared_end
    }

    pub fn declared_payload_len(&self) -> usize {
        self.declared_end.saturating_sub(self.upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn walks_hop_by_hop_and_fragment_headers() {
        let mut ext = vec![FRAGMENT, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, 8 bytes, padding option
        ext.extend_from_slice(&[17, 0, 0x00, 0x09, 0xde, 0xad, 0xbe, 0xef]); // fragment: offset 8, M=1
        ext.extend_from_slice(&[1, 2, 3, 4]);
        let buf = header(HOP_BY_HOP, &ext);
        let p = Ipv6Packet::new_checked(&buf).unwrap();
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.fragment(), Some(FragmentHeader { ident: 0xdeadbeef, offset: 8, more: true }));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn extension_running_past_the_end_is_truncated() {
        let buf = header(DEST_OPTS, &[17, 4, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(Ipv6Packet::new_checked(&buf), Err(Error::Truncated { .. })));
    }
}
