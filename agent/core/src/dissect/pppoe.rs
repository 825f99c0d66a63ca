//! PPPoE (RFC 2516) discovery and session headers, and the PPP protocol field of a session.

use super::{Layer, Result, be16, check_len};

/// PPP protocol numbers carried in a PPPoE session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PppProtocol {
    Ipv4,
    Ipv6,
    Lcp,
    Ipcp,
    Ipv6cp,
    Unknown(u16),
}

impl From<u16> for PppProtocol {
    fn from(v: u16) -> Self {
        match v {
            0x0021 => PppProtocol::Ipv4,
            0x0057 => PppProtocol::Ipv6,
            0xc021 => PppProtocol::Lcp,
            0x8021 => PppProtocol::Ipcp,
            0x8057 => PppProtocol::Ipv6cp,
            other => PppProtocol::Unknown(other),
        }
    }
}

/// The 6-byte PPPoE header, common to discovery and session stages.
#[derive(Clone, Copy, Debug)]
pub struct PppoeHeader<'a> {
    buf: &'a [u8],
}

impl<'a> PppoeHeader<'a> {
    pub const LEN: usize = 6;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Pppoe, buf, Self::LEN)?;
        Ok(PppoeHeader { buf })
    }

    pub fn code(&self) -> u8 {
        self.buf[1]
    }

    pub fn session_id(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn length(&self) -> u16 {
        be16(self.buf, 4)
    }

    /// The payload, cut to the header's length field when the frame carries Ethernet padding.
    pub fn payload(&self) -> &'a [u8] {
        let body = &self.buf[Self::LEN..];
        &body[..body.len().min(usize::from(self.length()))]
    }
}

/// A PPPoE session payload: the PPP protocol field and the packet it carries. The field may be
/// compressed to one byte (RFC 1661 PFC): a protocol number's low byte is odd, its high byte even.
pub fn session_payload<'a>(header: &PppoeHeader<'a>) -> Result<(PppProtocol, &'a [u8])> {
    let ppp = header.payload();
    check_len(Layer::Pppoe, ppp, 1)?;
    if ppp[0] & 1 == 1 {
        return Ok((PppProtocol::from(u16::from(ppp[0])), &ppp[1..]));
    }
    check_len(Layer::Pppoe, ppp, 2)?;
    Ok((PppProtocol::from(be16(ppp, 0)), &ppp[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_protocol_field() {
        let frame = [0x11, 0x00, 0x00, 0x3d, 0x00, 0x02, 0x21, 0x45];
        let h = PppoeHeader::new_checked(&frame).unwrap();
        let (proto, inner) = session_payload(&h).unwrap();
        assert_eq!(proto, PppProtocol::Ipv4);
        assert_eq!(inner, &[0x45]);
    }
}
