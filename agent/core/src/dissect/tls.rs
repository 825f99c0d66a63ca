//! TLS handshake messages (RFC 8446, RFC 5246): the record header, and the fields of ClientHello
//! and ServerHello the analyzer reports. Parsing is total over arbitrary bytes: every length is
//! checked against what is there, and extensions are walked at most to the end of their block.

use super::{Layer, Result, be16, check_len};
use crate::dissect::Error;

pub const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;

pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// The ServerHello random that marks a HelloRetryRequest (RFC 8446, 4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// True when `b` could start a TLS handshake record carrying a ClientHello.
pub fn looks_like_client_hello(b: &[u8]) -> bool {
    b.len() >= 6 && b[0] == CONTENT_HANDSHAKE && b[1] == 3 && b[2] <= 4 && b[5] == HANDSHAKE_CLIENT_HELLO
}

/// A ServerHello (or HelloRetryRequest) starting a server's first segment: a connection seen
/// from the middle of its handshake. The first bytes of one too short to tell count too.
pub fn may_begin_server_hello(b: &[u8]) -> bool {
    match b.len() {
        0..=5 => may_begin_client_hello(b),
        _ => b[0] == CONTENT_HANDSHAKE && b[1] == 3 && b[2] <= 4 && b[5] == HANDSHAKE_SERVER_HELLO,
    }
}

/// A ClientHello, or the first bytes of one too short to tell (a first segment cut inside the
/// record header): the analyzer must then see it from its first byte.
pub fn may_begin_client_hello(b: &[u8]) -> bool {
    let known = [CONTENT_HANDSHAKE, 3];
    match b.len() {
        0 => false,
        1..=2 => b == &known[..b.len()],
        3..=5 => b[..2] == known && b[2] <= 4,
        _ => looks_like_client_hello(b),
    }
}

/// What the analyzer keeps of a ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

/// What the analyzer keeps of a ServerHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// The negotiated version: `supported_versions` when present, else the legacy field.
    pub version: u16,
    pub hello_retry_request: bool,
}

/// A bounds-checked reader over a message body.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let Some(s) = self.buf.get(self.at..self.at + n) else {
            return Err(Error::Truncated {
                layer: Layer::Tls,
                offset: self.at,
                need: n,
                have: self.buf.len().saturating_sub(self.at),
            });
        };
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(be16(b, 0))
    }

    fn vec8(&mut self) -> Result<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    fn rest(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }
}

/// Extensions as (type, body) pairs.
fn extensions(r: &mut Reader<'_>, mut each: impl FnMut(u16, &[u8]) -> Result<()>) -> Result<()> {
    if r.rest() == 0 {
        return Ok(()); // no extensions block (TLS 1.0-era hellos)
    }
    let block = r.vec16()?;
    let mut ext = Reader { buf: block, at: 0 };
    while ext.rest() >= 4 {
        let ty = ext.u16()?;
        let body = ext.vec16()?;
        each(ty, body)?;
    }
    Ok(())
}

/// Parses a ClientHello handshake body (after the 4-byte handshake header).
pub fn parse_client_hello(body: &[u8]) -> Result<ClientHello> {
    let mut r = Reader { buf: body, at: 0 };
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = ClientHello::default();
    extensions(&mut r, |ty, ext| {
        let mut e = Reader { buf: ext, at: 0 };
        match ty {
            EXT_SERVER_NAME => {
                let mut list = Reader { buf: e.vec16()?, at: 0 };
                while list.rest() >= 3 {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        hello.sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                    }
                }
            }
            EXT_ALPN => {
                let mut list = Reader { buf: e.vec16()?, at: 0 };
                while list.rest() >= 1 {
                    let proto = list.vec8()?;
                    if hello.alpn.len() < 8 {
                        hello.alpn.push(String::from_utf8_lossy(proto).into_owned());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(hello)
}

/// Parses a ServerHello handshake body (after the 4-byte handshake header).
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello> {
    check_len(Layer::Tls, body, 2 + 32)?;
    let mut r = Reader { buf: body, at: 0 };
    let legacy = r.u16()?;
    let random = r.take(32)?;
    r.vec8()?; // session id
    r.u16()?; // cipher suite
    r.u8()?; // compression
    let mut version = legacy;
    extensions(&mut r, |ty, ext| {
        if ty == EXT_SUPPORTED_VERSIONS && ext.len() == 2 {
            version = be16(ext, 0);
        }
        Ok(())
    })?;
    Ok(ServerHello { version, hello_retry_request: random == HRR_RANDOM })
}

/// "1.2" for 0x0303 and so on; `None` for values that are not TLS versions.
pub fn version_name(v: u16) -> Option<&'static str> {
    match v {
        0x0300 => Some("ssl3"),
        0x0301 => Some("1.0"),
        0x0302 => Some("1.1"),
        0x0303 => Some("1.2"),
        0x0304 => Some("1.3"),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_client_hello_may_start_in_a_tiny_segment() {
        for b in [&[0x16][..], &[0x16, 3], &[0x16, 3, 1], &[0x16, 3, 3, 0, 0xc8], &[0x16, 3, 1, 0, 0xc8, 1]] {
            assert!(may_begin_client_hello(b), "{b:?}");
        }
        for b in [&[][..], &[0x17], &[0x16, 2], &[0x16, 3, 9], &[0x16, 3, 1, 0, 0xc8, 2], b"GET"] {
            assert!(!may_begin_client_hello(b), "{b:?}");
        }
    }

    /// A minimal ClientHello body: SNI "Example.COM", ALPN h2 and http/1.1.
    pub(crate) fn client_hello() -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[7; 32]);
        b.push(0); // session id
        b.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        b.extend_from_slice(&[1, 0]); // null compression
        let name = b"Example.COM";
        let mut sni = vec![0, 0];
        let list_len = (3 + name.len()) as u16;
        let mut body = list_len.to_be_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name);
        sni.extend_from_slice(&(body.len() as u16).to_be_bytes());
        sni.extend_from_slice(&body);
        let alpn_list = b"\x02h2\x08http/1.1";
        let mut alpn = vec![0, 16];
        alpn.extend_from_slice(&((alpn_list.len() + 2) as u16).to_be_bytes());
        alpn.extend_from_slice(&(alpn_list.len() as u16).to_be_bytes());
        alpn.extend_from_slice(alpn_list);
        let exts = [sni, alpn].concat();
        b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        b.extend_from_slice(&exts);
        b
    }

    #[test]
    fn reads_sni_and_alpn() {
        let ch = parse_client_hello(&client_hello()).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
        assert_eq!(ch.alpn, ["h2", "http/1.1"]);
    }

    #[test]
    fn every_prefix_fails_cleanly() {
        let body = client_hello();
        for n in 0..body.len() {
            let _ = parse_client_hello(&body[..n]);
            let _ = parse_server_hello(&body[..n]);
        }
    }

    #[test]
    fn server_hello_version_and_hrr() {
        let mut sh = vec![0x03, 0x03];
        sh.extend_from_slice(&HRR_RANDOM);
        sh.extend_from_slice(&[0, 0x13, 0x01, 0]);
        sh.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        let parsed = parse_server_hello(&sh).unwrap();
        assert_eq!(parsed, ServerHello { version: 0x0304, hello_retry_request: true });
        assert_eq!(version_name(parsed.version), Some("1.3"));
    }
}
