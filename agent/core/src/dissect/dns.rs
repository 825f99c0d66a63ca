//! DNS messages (RFC 1035): the header and the first question, which is all the analyzer needs
//! to match a response to its query.
//!
//! Name decoding follows compression pointers only backwards and at most `MAX_JUMPS` times, and
//! stops at 255 bytes of wire name, so a crafted message cannot loop or grow the output.

use super::{Layer, Result, be16, check_len};
use crate::dissect::Error;
use std::fmt::Write;
use std::net::IpAddr;

const MAX_JUMPS: usize = 16;
const MAX_NAME: usize = 255;

/// Response codes; `Unknown` keeps the value, extended rcodes included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    YxDomain,
    YxRrSet,
    NxRrSet,
    NotAuth,
    NotZone,
    Unknown(u16),
}

impl From<u16> for Rcode {
    fn from(v: u16) -> Self {
        match v {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            6 => Rcode::YxDomain,
            7 => Rcode::YxRrSet,
            8 => Rcode::NxRrSet,
            9 => Rcode::NotAuth,
            10 => Rcode::NotZone,
            other => Rcode::Unknown(other),
        }
    }
}

impl Rcode {
    /// The name tshark and dig print.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let s = match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
            Rcode::YxDomain => "YXDOMAIN",
            Rcode::YxRrSet => "YXRRSET",
            Rcode::NxRrSet => "NXRRSET",
            Rcode::NotAuth => "NOTAUTH",
            Rcode::NotZone => "NOTZONE",
            Rcode::Unknown(v) => return format!("RCODE{v}").into(),
        };
        s.into()
    }
}

/// Query type mnemonic, or `TYPEn` (RFC 3597) for the rest.
pub fn qtype_name(qtype: u16) -> std::borrow::Cow<'static, str> {
    let s = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        other => return format!("TYPE{other}").into(),
    };
    s.into()
}

/// The 12-byte DNS header.
#[derive(Clone, Copy, Debug)]
pub struct DnsMessage<'a> {
    buf: &'a [u8],
}

impl<'a> DnsMessage<'a> {
    pub const HEADER_LEN: usize = 12;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Dns, buf, Self::HEADER_LEN)?;
        Ok(DnsMessage { buf })
    }

    pub fn id(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn is_response(&self) -> bool {
        self.buf[2] & 0x80 != 0
    }

    pub fn opcode(&self) -> u8 {
        (self.buf[2] >> 3) & 0x0f
    }

    /// The TC bit: the server cut the answer to fit the transport.
    pub fn truncated(&self) -> bool {
        self.buf[2] & 0x02 != 0
    }

    pub fn rcode(&self) -> Rcode {
        Rcode::from(u16::from(self.buf[3] & 0x0f))
    }

    pub fn qdcount(&self) -> u16 {
        be16(self.buf, 4)
    }

    pub fn ancount(&self) -> u16 {
        be16(self.buf, 6)
    }

    /// The first question, its name written into `name` (lower case, no trailing dot).
    /// Returns `(qtype, qclass)`.
    pub fn first_question(&self, name: &mut String) -> Result<Question> {
        if self.qdcount() == 0 {
            return Err(Error::Malformed { layer: Layer::Dns, field: "qdcount", offset: 4 });
        }
        let end = read_name(self.buf, Self::HEADER_LEN, name)?;
        check_len(Layer::Dns, self.buf, end + 4)?;
        Ok(Question { qtype: be16(self.buf, end), qclass: be16(self.buf, end + 2), end: end + 4 })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
}

impl DnsMessage<'_> {
    /// The IPv4 and IPv6 addresses in the answer section (A and AAAA records, CNAME chains
    /// included), at most `N`. `from` is where the question ended. Stops at the first record
    /// that does not fit.
    pub fn answer_addresses<const N: usize>(&self, from: usize, out: &mut heapless::Vec<IpAddr, N>) {
        let msg = self.buf;
        let mut at = from;
        for _ in 0..self.ancount() {
            let Ok(end) = skip_name(msg, at) else { return };
            let Some(fixed) = msg.get(end..end + 10) else { return };
            let (rtype, rdlen) = (be16(fixed, 0), usize::from(be16(fixed, 8)));
            let Some(rdata) = msg.get(end + 10..end + 10 + rdlen) else { return };
            let addr = match (rtype, rdlen) {
                (1, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(rdata).unwrap_or_default())),
                (28, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(rdata).unwrap_or_default())),
                _ => None,
            };
            if let Some(addr) = addr {
                if out.push(addr).is_err() {
                    return;
                }
            }
            at = end + 10 + rdlen;
        }
    }
}

/// The offset just past the name at `at`, without decoding it.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize> {
    for _ in 0..128 {
        let Some(&len) = msg.get(at) else {
            return Err(Error::Truncated { layer: Layer::Dns, offset: at, need: 1, have: 0 });
        };
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => return Ok(at + 2),
            _ => return Err(Error::Malformed { layer: Layer::Dns, field: "label type", offset: at }),
        }
    }
    Err(Error::Malformed { layer: Layer::Dns, field: "name length", offset: at })
}

/// Fixed fields of a question and where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    pub qtype: u16,
    pub qclass: u16,
    pub end: usize,
}

/// Decodes the name at `at` into `out`; returns the offset just past it in the original position.
/// Non-printable bytes and dots inside labels are escaped as in zone files (`\DDD`, `\.`).
pub fn read_name(msg: &[u8], mut at: usize, out: &mut String) -> Result<usize> {
    out.clear();
    let mut after: Option<usize> = None;
    let mut jumps = 0;
    let mut wire_len = 0usize;
    loop {
        let Some(&len) = msg.get(at) else {
            return Err(Error::Truncated { layer: Layer::Dns, offset: at, need: 1, have: 0 });
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(after.unwrap_or(at + 1));
                }
                let len = usize::from(len);
                let Some(label) = msg.get(at + 1..at + 1 + len) else {
                    return Err(Error::Truncated {
                        layer: Layer::Dns,
                        offset: at + 1,
                        need: len,
                        have: msg.len().saturating_sub(at + 1),
                    });
                };
                wire_len += len + 1;
                if wire_len > MAX_NAME {
                    return Err(Error::Malformed { layer: Layer::Dns, field: "name length", offset: at });
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &c in label {
                    let c = c.to_ascii_lowercase();
                    match c {
                        b'.' | b'\\' => {
                            out.push('\\');
                            out.push(char::from(c));
                        }
                        0x21..=0x7e => out.push(char::from(c)),
                        _ => {
                            let _ = write!(out, "\\{c:03}");
                        }
                    }
                }
                at += 1 + len;
            }
            0xc0 => {
                let Some(&lo) = msg.get(at + 1) else {
                    return Err(Error::Truncated { layer: Layer::Dns, offset: at, need: 2, have: 1 });
                };
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                jumps += 1;
                // Only backward pointers: forward ones are never produced by real encoders and
                // are the usual building block of decoder loops.
                if jumps > MAX_JUMPS || target >= at {
                    return Err(Error::Malformed { layer: Layer::Dns, field: "compression pointer", offset: at });
                }
                after.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(Error::Malformed { layer: Layer::Dns, field: "label type", offset: at }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for `www.Example.COM A`, id 0xbeef, NXDOMAIN, with the question name repeated
    /// through a compression pointer in the authority section.
    const RESPONSE: &[u8] = &[
        0xbe, 0xef, // id
        0x81, 0x83, // QR, RD, RA, rcode 3
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // counts
        3, b'w', b'w', b'w', 7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'C', b'O', b'M', 0, 0x00, 0x01, 0x00,
        0x01, // A IN
        0xc0, 0x0c, // pointer to offset 12
    ];

    #[test]
    fn reads_header_and_question() {
        let m = DnsMessage::new_checked(RESPONSE).unwrap();
        assert_eq!(m.id(), 0xbeef);
        assert!(m.is_response());
        assert_eq!(m.rcode(), Rcode::NxDomain);
        let mut name = String::new();
        let q = m.first_question(&mut name).unwrap();
        assert_eq!(name, "www.example.com");
        assert_eq!((q.qtype, q.qclass), (1, 1));
        assert_eq!(qtype_name(q.qtype), "A");
    }

    #[test]
    fn answer_addresses_are_read() {
        let mut msg = RESPONSE[..RESPONSE.len() - 2].to_vec();
        msg[7] = 2; // two answers
        msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 80]);
        msg.extend_from_slice(&[0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        msg.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50]);
        let m = DnsMessage::new_checked(&msg).unwrap();
        let mut name = String::new();
        let q = m.first_question(&mut name).unwrap();
        let mut out = heapless::Vec::<IpAddr, 4>::new();
        m.answer_addresses(q.end, &mut out);
        assert_eq!(out.as_slice(), ["192.0.2.80".parse::<IpAddr>().unwrap(), "2001:db8::50".parse().unwrap()]);
        // Cut anywhere: no panic, fewer addresses.
        for n in 0..msg.len() {
            let mut out = heapless::Vec::<IpAddr, 4>::new();
            if let Ok(m) = DnsMessage::new_checked(&msg[..n]) {
                m.answer_addresses(q.end.min(n), &mut out);
            }
        }
    }

    #[test]
    fn pointer_is_followed_once() {
        let mut name = String::new();
        let end = read_name(RESPONSE, RESPONSE.len() - 2, &mut name).unwrap();
        assert_eq!(name, "www.example.com");
        assert_eq!(end, RESPONSE.len());
    }

    #[test]
    fn self_pointer_is_rejected() {
        let msg = [0u8, 0, 0, 0, 0xc0, 0x04];
        let mut name = String::new();
        assert!(read_name(&msg, 4, &mut name).is_err());
    }

    #[test]
    fn truncated_question_is_an_error() {
        let m = DnsMessage::new_checked(&RESPONSE[..20]).unwrap();
        let mut name = String::new();
        assert!(matches!(m.first_question(&mut name), Err(Error::Truncated { .. })));
    }

    #[test]
    fn odd_bytes_are_escaped() {
        let msg = [3u8, b'a', b'.', 0x07, 0];
        let mut name = String::new();
        read_name(&msg, 0, &mut name).unwrap();
        assert_eq!(name, "a\\.\\007");
    }
}
