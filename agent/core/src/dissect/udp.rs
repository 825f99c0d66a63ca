//! UDP headers (RFC 768).

use super::{Layer, Result, be16, check_len};

#[derive(Clone, Copy, Debug)]
pub struct UdpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> UdpPacket<'a> {
    pub const HEADER_LEN: usize = 8;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Udp, buf, Self::HEADER_LEN)?;
        Ok(UdpPacket { buf })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn length(&self) -> u16 {
        be16(self.buf, 4)
    }

    /// The payload, cut to the length field when the buffer is longer; what was captured when shorter.
    pub fn payload(&self) -> &'a [u8] {
        let declared = usize::from(self.length()).max(Self::HEADER_LEN);
        &self.buf[Self::HEADER_LEN..declared.min(self.buf.len())]
    }

    /// Payload length the header declares, whether or not it was all captured.
    pub fn declared_payload_len(&self) -> usize {
        usize::from(self.length()).saturating_sub(Self::HEADER_LEN)
    }
}
