//! Dissection: checked, zero-copy views over protocol headers, one file per protocol, and the
//! dispatcher ([`frame`]) that walks a captured frame from its link layer to the IP packet.
//!
//! Each view is built with `new_checked`, which verifies every length the accessors rely on, so
//! no accessor can panic afterwards. Values the core does not know are kept as `Unknown(n)`.
//! Errors name the layer and the byte offset (within the view's buffer) that failed.

pub mod dhcp;
pub mod dns;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod ipv6;
pub mod mpls;
pub mod pppoe;
pub mod quic;
pub mod sll;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::fmt;

pub use frame::{Fragment, IpLayer, LinkType, Skip, dissect};

/// The protocol layer a parse error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Ethernet,
    Vlan,
    Mpls,
    Pppoe,
    Sll,
    Ipv4,
    Ipv6,
    Tcp,
    Udp,
    Dns,
    Tls,
    Quic,
    Http,
    Dhcp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Mpls => "mpls",
            Layer::Pppoe => "pppoe",
            Layer::Sll => "sll",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Dns => "dns",
            Layer::Tls => "tls",
            Layer::Quic => "quic",
            Layer::Http => "http",
            Layer::Dhcp => "dhcp",
        };
        f.write_str(name)
    }
}

/// Why a header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{layer}: truncated, {need} bytes needed at offset {offset}, {have} present")]
    Truncated { layer: Layer, offset: usize, need: usize, have: usize },
    #[error("{layer}: malformed {field} at offset {offset}")]
    Malformed { layer: Layer, field: &'static str, offset: usize },
}

impl Error {
    pub fn layer(&self) -> Layer {
        match self {
            Error::Truncated { layer, .. } | Error::Malformed { layer, .. } => *layer,
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// Fails with `Truncated` unless `buf` holds at least `need` bytes.
pub(crate) fn check_len(layer: Layer, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need { Err(Error::Truncated { layer, offset: 0, need, have: buf.len() }) } else { Ok(()) }
}

/// Big-endian reads on slices whose length was already checked.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// EtherType values the dissector follows; anything else is `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Ipv6,
    Arp,
    Vlan,
    QinQ,
    Mpls,
    MplsMulticast,
    PppoeDiscovery,
    PppoeSession,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            // 0x9100 is the pre-standard QinQ outer tag still seen on access networks.
            0x88a8 | 0x9100 => EtherType::QinQ,
            0x8847 => EtherType::Mpls,
            0x8848 => EtherType::MplsMulticast,
            0x8863 => EtherType::PppoeDiscovery,
            0x8864 => EtherType::PppoeSession,
            other => EtherType::Unknown(other),
        }
    }
}

/// IP protocol numbers the analyzers care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            1 => IpProtocol::Icmp,
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Icmp => 1,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Unknown(v) => v,
        }
    }
}
