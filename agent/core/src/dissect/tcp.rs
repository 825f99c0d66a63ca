//! TCP headers (RFC 9293). Options are not interpreted; the analyzers need only the fixed header.

use super::{Layer, Result, be16, be32, check_len};
use crate::dissect::Error;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> TcpPacket<'a> {
    pub const MIN_HEADER_LEN: usize = 20;

    /// Needs the fixed 20-byte header. Options cut off by the snap length are tolerated (the
    /// analysis does not read them), as tshark does; a data offset below 20 is malformed.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Tcp, buf, Self::MIN_HEADER_LEN)?;
        let header_len = usize::from(buf[12] >> 4) * 4;
        if header_len < Self::MIN_HEADER_LEN {
            return Err(Error::Malformed { layer: Layer::Tcp, field: "data offset", offset: 12 });
        }
        Ok(TcpPacket { buf, header_len })
    }

    /// The capture cut the header inside its options.
    pub fn options_truncated(&self) -> bool {
        self.buf.len() < self.header_len
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn seq(&self) -> u32 {
        be32(self.buf, 4)
    }

    pub fn ack(&self) -> u32 {
        be32(self.buf, 8)
    }

    pub fn flags(&self) -> u8 {
        self.buf[13]
    }

    pub fn window(&self) -> u16 {
        be16(self.buf, 14)
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len.min(self.buf.len())..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_syn() {
        let syn = [
            0xc3, 0x50, 0x00, 0x50, // 50000 -> 80
            0x00, 0x00, 0x00, 0x64, // seq 100
            0x00, 0x00, 0x00, 0x00, // ack 0
            0x50, 0x02, 0xfa, 0xf0, // offset 5, SYN, window 64240
            0x00, 0x00, 0x00, 0x00,
        ];
        let t = TcpPacket::new_checked(&syn).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq()), (50000, 80, 100));
        assert_eq!(t.flags(), flags::SYN);
        assert!(t.payload().is_empty());
    }

    #[test]
    fn options_cut_by_snap_length_are_tolerated() {
        let mut b = [0u8; 24];
        b[12] = 0xf0;
        let t = TcpPacket::new_checked(&b).unwrap();
        assert!(t.options_truncated());
        assert!(t.payload().is_empty());
        assert!(matches!(TcpPacket::new_checked(&b[..19]), Err(Error::Truncated { .. })));
        b[12] = 0x40;
        assert!(matches!(TcpPacket::new_checked(&b), Err(Error::Malformed { .. })));
    }
}
