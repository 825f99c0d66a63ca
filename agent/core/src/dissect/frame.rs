//! From a captured frame to the IP packet inside it: link layer, VLAN and QinQ tags at any depth,
//! MPLS label stacks, PPPoE sessions, Linux cooked headers, raw IP. Zero-copy: the result borrows
//! the frame. Nothing here allocates or panics; every frame that yields no IP packet says why.

use crate::dissect::{
    Error, EtherType, IpProtocol, Layer,
    ethernet::{EthernetFrame, VlanTag},
    ipv4::Ipv4Packet,
    ipv6::Ipv6Packet,
    mpls::MplsLabel,
    pppoe::{PppProtocol, PppoeHeader, session_payload},
    sll::SllHeader,
};
use std::net::IpAddr;

/// Tags and labels deeper than this are not followed; real stacks hold two or three.
const MAX_ENCAPSULATION_DEPTH: usize = 16;

/// Link types (the pcap LINKTYPE_ values) the core can dissect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6, told apart by the version nibble.
    RawIp,
    Ipv4,
    Ipv6,
    LinuxSll,
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host order.
    Null,
    Unknown(u32),
}

impl LinkType {
    pub fn from_linktype(v: u32) -> Self {
        match v {
            1 => LinkType::Ethernet,
            // 12 and 14 are the raw-IP DLT values some systems write instead of 101.
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 | 108 => LinkType::Null,
            other => LinkType::Unknown(other),
        }
    }
}

/// Why a frame carried nothing to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    UnknownLinkType(u32),
    UnknownEtherType(u16),
    /// A protocol the core understands and deliberately ignores (ARP, PPPoE discovery, LCP...).
    NotIp,
    /// A header could not be read.
    Bad(Error),
}

/// The IP layer of a frame, with the link-layer context the rest of the core may want.
#[derive(Clone, Copy, Debug)]
pub struct IpLayer<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: IpProtocol,
    /// The transport header and payload (for a fragment: this fragment's data).
    pub payload: &'a [u8],
    /// Length of the transport header and payload as the IP header declares it.
    pub declared_len: usize,
    /// The whole datagram's length as declared, IP header included (tshark's `ip.len`).
    pub ip_len: usize,
    /// The capture cut the datagram short.
    pub truncated: bool,
    pub fragment: Option<Fragment>,
    /// Outermost VLAN id, if tagged.
    pub vlan: Option<u16>,
    pub pppoe_session: Option<u16>,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
}

/// A fragment's place in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub ident: u32,
    pub offset: usize,
    pub more: bool,
}

#[derive(Default)]
struct Context {
    vlan: Option<u16>,
    pppoe_session: Option<u16>,
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
}

pub fn dissect(link: LinkType, frame: &[u8]) -> Result<IpLayer<'_>, Skip> {
    let mut cx = Context::default();
    match link {
        LinkType::Ethernet => {
            let eth = EthernetFrame::new_checked(frame).map_err(Skip::Bad)?;
            cx.src_mac = Some(eth.src());
            cx.dst_mac = Some(eth.dst());
            ethertype(eth.ethertype(), eth.payload(), cx)
        }
        LinkType::RawIp => raw_ip(frame, cx),
        LinkType::Ipv4 => ipv4(frame, cx),
        LinkType::Ipv6 => ipv6(frame, cx),
        LinkType::LinuxSll => {
            let h = SllHeader::parse_v1(frame).map_err(Skip::Bad)?;
            cx.src_mac = h.addr[..6].try_into().ok();
            ethertype(h.ethertype, h.payload, cx)
        }
        LinkType::LinuxSll2 => {
            let h = SllHeader::parse_v2(frame).map_err(Skip::Bad)?;
            cx.src_mac = h.addr[..6].try_into().ok();
            ethertype(h.ethertype, h.payload, cx)
        }
        LinkType::Null => {
            let Some(family) = frame.get(..4) else {
                return Err(Skip::Bad(Error::Truncated {
                    layer: Layer::Ethernet,
                    offset: 0,
                    need: 4,
                    have: frame.len(),
                }));
            };
            // Written in the capturing host's byte order: accept either.
            let af = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let af = if af > 0xffff { af.swap_bytes() } else { af };
            match af {
                2 => ipv4(&frame[4..], cx),
                // AF_INET6 differs between BSDs and Linux.
                10 | 24 | 28 | 30 => ipv6(&frame[4..], cx),
                _ => Err(Skip::NotIp),
            }
        }
        LinkType::Unknown(v) => Err(Skip::UnknownLinkType(v)),
    }
}

fn ethertype<'a>(mut ty: EtherType, mut payload: &'a [u8], mut cx: Context) -> Result<IpLayer<'a>, Skip> {
    for _ in 0..MAX_ENCAPSULATION_DEPTH {
        match ty {
            EtherType::Ipv4 => return ipv4(payload, cx),
            EtherType::Ipv6 => return ipv6(payload, cx),
            EtherType::Vlan | EtherType::QinQ => {
                let tag = VlanTag::new_checked(payload).map_err(Skip::Bad)?;
                cx.vlan.get_or_insert(tag.vid());
                ty = tag.ethertype();
                payload = tag.payload();
            }
            EtherType::Mpls | EtherType::MplsMulticast => return mpls(payload, cx),
            EtherType::PppoeSession => {
                let h = PppoeHeader::new_checked(payload).map_err(Skip::Bad)?;
                cx.pppoe_session = Some(h.session_id());
                let (proto, inner) = session_payload(&h).map_err(Skip::Bad)?;
                return match proto {
                    PppProtocol::Ipv4 => ipv4(inner, cx),
                    PppProtocol::Ipv6 => ipv6(inner, cx),
                    _ => Err(Skip::NotIp),
                };
            }
            EtherType::PppoeDiscovery | EtherType::Arp => return Err(Skip::NotIp),
            EtherType::Unknown(v) => return Err(Skip::UnknownEtherType(v)),
        }
    }
    Err(Skip::Bad(Error::Malformed { layer: Layer::Vlan, field: "tag depth", offset: 0 }))
}

fn mpls(mut payload: &[u8], cx: Context) -> Result<IpLayer<'_>, Skip> {
    for _ in 0..MAX_ENCAPSULATION_DEPTH {
        let label = MplsLabel::new_checked(payload).map_err(Skip::Bad)?;
        payload = label.payload();
        if label.bottom_of_stack() {
            // MPLS does not say what it carries; the first nibble does for IP. A pseudowire
            // control word (nibble 0) followed by Ethernet is the other common case.
            return match payload.first().map(|b| b >> 4) {
                Some(4) => ipv4(payload, cx),
                Some(6) => ipv6(payload, cx),
                Some(0) if payload.len() > 4 => {
                    let eth = EthernetFrame::new_checked(&payload[4..]).map_err(Skip::Bad)?;
                    ethertype(eth.ethertype(), eth.payload(), cx)
                }
                _ => Err(Skip::NotIp),
            };
        }
    }
    Err(Skip::Bad(Error::Malformed { layer: Layer::Mpls, field: "label depth", offset: 0 }))
}

fn raw_ip(frame: &[u8], cx: Context) -> Result<IpLayer<'_>, Skip> {
    match frame.first().map(|b| b >> 4) {
        Some(4) => ipv4(frame, cx),
        Some(6) => ipv6(frame, cx),
        _ => Err(Skip::Bad(Error::Malformed { layer: Layer::Ipv4, field: "version", offset: 0 })),
    }
}

fn ipv4(buf: &[u8], cx: Context) -> Result<IpLayer<'_>, Skip> {
    let ip = Ipv4Packet::new_checked(buf).map_err(Skip::Bad)?;
    let fragment = ip.is_fragment().then(|| Fragment {
        ident: u32::from(ip.ident()),
        offset: ip.frag_offset(),
        more: ip.more_fragments(),
    });
    Ok(IpLayer {
        src: IpAddr::V4(ip.src()),
        dst: IpAddr::V4(ip.dst()),
        protocol: ip.protocol(),
        payload: ip.payload(),
        declared_len: ip.declared_payload_len(),
        ip_len: ip.declared_len(),
        truncated: ip.truncated(),
        fragment,
        vlan: cx.vlan,
        pppoe_session: cx.pppoe_session,
        src_mac: cx.src_mac,
        dst_mac: cx.dst_mac,
    })
}

fn ipv6(buf: &[u8], cx: Context) -> Result<IpLayer<'_>, Skip> {
    let ip = Ipv6Packet::new_checked(buf).map_err(Skip::Bad)?;
    // An atomic fragment (offset 0, no more) is a whole datagram.
    let fragment = ip.fragment().filter(|f| f.more || f.offset != 0).map(|f| Fragment {
        ident: f.ident,
        offset: f.offset,
        more: f.more,
    });
    Ok(IpLayer {
        src: IpAddr::V6(ip.src()),
        dst: IpAddr::V6(ip.dst()),
        protocol: ip.protocol(),
        payload: ip.payload(),
        declared_len: ip.declared_payload_len(),
        ip_len: ip.declared_len(),
        truncated: ip.truncated(),
        fragment,
        vlan: cx.vlan,
        pppoe_session: cx.pppoe_session,
        src_mac: cx.src_mac,
        dst_mac: cx.dst_mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ethernet as eth;

    fn ipv4_udp() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1, // IPv4
            0xc3, 0x50, 0, 53, 0, 8, 0, 0, // UDP
        ];
        p.truncate(28);
        p
    }

    #[test]
    fn qinq_mpls_and_pppoe_reach_ip() {
        let ip = ipv4_udp();
        // QinQ: 802.1ad 10 / 802.1Q 20 / IPv4
        let mut tags = vec![0x00, 10, 0x81, 0x00, 0x00, 20, 0x08, 0x00];
        tags.extend_from_slice(&ip);
        let frame = eth(0x88a8, &tags);
        let l = dissect(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(l.vlan, Some(10));
        assert_eq!(l.protocol, IpProtocol::Udp);

        // Two MPLS labels then IPv4.
        let mut labels = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        labels.extend_from_slice(&ip);
        assert!(dissect(LinkType::Ethernet, &eth(0x8847, &labels)).is_ok());

        // PPPoE session 0x1234 carrying IPv4.
        let mut ppp = vec![0x11, 0x00, 0x12, 0x34];
        ppp.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        ppp.extend_from_slice(&[0x00, 0x21]);
        ppp.extend_from_slice(&ip);
        let frame = eth(0x8864, &ppp);
        let l = dissect(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(l.pppoe_session, Some(0x1234));
    }

    #[test]
    fn endless_vlan_tags_stop() {
        let mut tags = Vec::new();
        for _ in 0..40 {
            tags.extend_from_slice(&[0x00, 0x01, 0x81, 0x00]);
        }
        assert!(matches!(dissect(LinkType::Ethernet, &eth(0x8100, &tags)), Err(Skip::Bad(_))));
    }

    #[test]
    fn unknown_kinds_are_named() {
        assert_eq!(dissect(LinkType::Unknown(147), &[0; 40]).unwrap_err(), Skip::UnknownLinkType(147));
        assert_eq!(dissect(LinkType::Ethernet, &eth(0x88cc, &[0; 40])).unwrap_err(), Skip::UnknownEtherType(0x88cc));
        assert_eq!(dissect(LinkType::Ethernet, &eth(0x0806, &[0; 28])).unwrap_err(), Skip::NotIp);
    }
}
