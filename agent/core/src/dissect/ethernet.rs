//! Ethernet II frames and 802.1Q / 802.1ad VLAN tags.

use super::{EtherType, Layer, Result, be16, check_len};

mod field {
    pub const DST: core::ops::Range<usize> = 0..6;
    pub const SRC: core::ops::Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// An Ethernet II frame (no FCS).
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    pub const HEADER_LEN: usize = field::PAYLOAD;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Ethernet, buf, field::PAYLOAD)?;
        Ok(EthernetFrame { buf })
    }

    pub fn dst(&self) -> [u8; 6] {
        self.buf[field::DST].try_into().unwrap_or_default()
    }

    pub fn src(&self) -> [u8; 6] {
        self.buf[field::SRC].try_into().unwrap_or_default()
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buf, field::ETHERTYPE))
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[field::PAYLOAD..]
    }
}

/// One 802.1Q or 802.1ad tag: TCI then the inner EtherType.
#[derive(Clone, Copy, Debug)]
pub struct VlanTag<'a> {
    buf: &'a [u8],
}

impl<'a> VlanTag<'a> {
    pub const LEN: usize = 4;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Vlan, buf, Self::LEN)?;
        Ok(VlanTag { buf })
    }

    pub fn vid(&self) -> u16 {
        be16(self.buf, 0) & 0x0fff
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buf, 2))
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[Self::LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frame_is_truncated_not_panic() {
        assert!(EthernetFrame::new_checked(&[0u8; 13]).is_err());
    }

    #[test]
    fn qinq_tags_read() {
        // 802.1ad outer tag VID 100, inner 802.1Q VID 7, then IPv4.
        let bytes = [0x00, 0x64, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
        let outer = VlanTag::new_checked(&bytes).unwrap();
        assert_eq!(outer.vid(), 100);
        assert_eq!(outer.ethertype(), EtherType::Vlan);
        let inner = VlanTag::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.vid(), 7);
        assert_eq!(inner.ethertype(), EtherType::Ipv4);
    }
}
