//! Linux cooked capture headers, v1 (LINKTYPE_LINUX_SLL) and v2 (LINKTYPE_LINUX_SLL2).

use super::{EtherType, Layer, Result, be16, check_len};

/// `sll_pkttype` values: who the frame was for or from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    Outgoing,
    Unknown(u8),
}

impl From<u16> for PacketType {
    fn from(v: u16) -> Self {
        match v {
            0 => PacketType::Host,
            1 => PacketType::Broadcast,
            2 => PacketType::Multicast,
            3 => PacketType::OtherHost,
            4 => PacketType::Outgoing,
            other => PacketType::Unknown(other as u8),
        }
    }
}

/// A cooked header, either version, reduced to what the dissector needs.
#[derive(Clone, Copy, Debug)]
pub struct SllHeader<'a> {
    pub packet_type: PacketType,
    pub ethertype: EtherType,
    pub addr: [u8; 8],
    pub payload: &'a [u8],
}

impl<'a> SllHeader<'a> {
    pub const V1_LEN: usize = 16;
    pub const V2_LEN: usize = 20;

    /// v1: pkttype(2) hatype(2) halen(2) addr(8) protocol(2).
    pub fn parse_v1(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Sll, buf, Self::V1_LEN)?;
        Ok(SllHeader {
            packet_type: PacketType::from(be16(buf, 0)),
            ethertype: EtherType::from(be16(buf, 14)),
            addr: buf[6..14].try_into().unwrap_or_default(),
            payload: &buf[Self::V1_LEN..],
        })
    }

    /// v2: protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8).
    pub fn parse_v2(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Sll, buf, Self::V2_LEN)?;
        Ok(SllHeader {
            packet_type: PacketType::from(u16::from(buf[10])),
            ethertype: EtherType::from(be16(buf, 0)),
            addr: buf[12..20].try_into().unwrap_or_default(),
            payload: &buf[Self::V2_LEN..],
        })
    }
}
