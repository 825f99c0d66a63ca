//! QUIC packet headers (the invariants of RFC 8999, long and short headers of RFC 9000 section
//! 17, version 2's type code points of RFC 9369) and the protection of Initial packets (RFC 9001
//! section 5): their keys come from the client's Destination Connection ID and a salt each
//! version publishes, so a probe can read the ClientHello they carry. Parsing is total over
//! arbitrary bytes: every length is checked against what was captured.

use super::{Layer, Result, be16, check_len};
use crate::dissect::Error;
use ring::{aead, hkdf};

pub const VERSION_1: u32 = 1;
pub const VERSION_2: u32 = 0x6b33_43cf;

/// The longest connection ID any version allows.
pub const MAX_CID: usize = 20;

/// What a long header says a packet is, whatever the version's code points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// A QUIC version as the analyzer knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version(pub u32);

impl Version {
    /// Google QUIC (`Q0xx`, `T0xx`) shares the long-header form bit but is another protocol.
    pub fn is_google(self) -> bool {
        matches!(self.0 >> 24, 0x51 | 0x54) && (self.0 >> 16) & 0xff == u32::from(b'0')
    }

    /// A reserved version that clients send to provoke Version Negotiation (RFC 9000, 15).
    pub fn is_grease(self) -> bool {
        self.0 & 0x0f0f_0f0f == 0x0a0a_0a0a
    }

    /// An IETF draft number, 27 to 34.
    fn draft(self) -> Option<u32> {
        (0xff00_001b..=0xff00_0022).contains(&self.0).then_some(self.0 & 0xff)
    }

    /// Versions whose Initial packets can be opened: 1, 2 and drafts 27 to 34.
    pub fn is_known(self) -> bool {
        self.salt().is_some()
    }

    fn salt(self) -> Option<&'static [u8; 20]> {
        const V1: [u8; 20] = hex20(*b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
        const V2: [u8; 20] = hex20(*b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
        const DRAFT_29: [u8; 20] = hex20(*b"afbfec289993d24c9e9786f19c6111e04390a899");
        const DRAFT_23: [u8; 20] = hex20(*b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
        match (self.0, self.draft()) {
            (VERSION_1, _) | (_, Some(33..)) => Some(&V1),
            (VERSION_2, _) => Some(&V2),
            (_, Some(29..=32)) => Some(&DRAFT_29),
            (_, Some(_)) => Some(&DRAFT_23),
            _ => None,
        }
    }

    /// The packet kind of a long header's two type bits.
    pub fn kind(self, first: u8) -> Kind {
        let bits = (first >> 4) & 3;
        let bits = if self.0 == VERSION_2 { (bits + 3) & 3 } else { bits };
        [Kind::Initial, Kind::ZeroRtt, Kind::Handshake, Kind::Retry][usize::from(bits)]
    }

    /// `"v1"`, `"v2"`, `"draft-29"`, or the number in hex.
    pub fn name(self) -> String {
        match (self.0, self.draft()) {
            (VERSION_1, _) => "v1".into(),
            (VERSION_2, _) => "v2".into(),
            (_, Some(n)) => format!("draft-{n}"),
            (v, None) => format!("0x{v:08x}"),
        }
    }

    fn label_prefix(self) -> &'static [u8] {
        if self.0 == VERSION_2 { b"quicv2 " } else { b"quic " }
    }
}

const fn hex20(s: [u8; 40]) -> [u8; 20] {
    const fn nibble(c: u8) -> u8 {
        if c >= b'a' { c - b'a' + 10 } else { c - b'0' }
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// A variable-length integer (RFC 9000, 16) at `at`: its value and length.
pub fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(at..at + len)?;
    let mut v = u64::from(first & 0x3f);
    for &byte in &bytes[1..] {
        v = v << 8 | u64::from(byte);
    }
    Some((v, len))
}

/// One packet of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Version 0: the server lists the versions it supports instead of answering.
    VersionNegotiation {
        dcid: &'a [u8],
        scid: &'a [u8],
    },
    Long(LongHeader<'a>),
    /// A short header (1-RTT): nothing past the first byte is readable without the
    /// connection's state, and it runs to the end of the datagram.
    Short,
}

/// A long header, up to the protected packet number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub version: Version,
    pub kind: Kind,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// Initial: the token; Retry: the retry token and integrity tag.
    pub token: &'a [u8],
    /// Where the packet begins and its protected packet number begins, in the datagram, and
    /// where the packet ends (its Length field; for Retry, the datagram's end).
    pub start: usize,
    pub pn_offset: usize,
    pub end: usize,
}

/// Reads the packet at `at` of a UDP payload; `Ok((packet, next))`, `next` being where a
/// coalesced packet may follow. The caller decides whether the datagram is QUIC at all.
pub fn parse(b: &[u8], at: usize) -> Result<(Packet<'_>, usize)> {
    let bad = |offset| Error::Malformed { layer: Layer::Quic, field: "header", offset };
    let first = *b.get(at).ok_or(bad(at))?;
    if first & 0x80 == 0 {
        return Ok((Packet::Short, b.len()));
    }
    check_len(Layer::Quic, &b[at..], 7)?;
    let version = Version(u32::from(be16(b, at + 1)) << 16 | u32::from(be16(b, at + 3)));
    let mut p = at + 5;
    let cid = |p: &mut usize| -> Result<&[u8]> {
        let len = usize::from(*b.get(*p).ok_or(bad(*p))?);
        let id = b.get(*p + 1..*p + 1 + len).ok_or(bad(*p))?;
        if len > MAX_CID && version.0 != 0 {
            return Err(bad(*p));
        }
        *p += 1 + len;
        Ok(id)
    };
    let dcid = cid(&mut p)?;
    let scid = cid(&mut p)?;
    if version.0 == 0 {
        return Ok((Packet::VersionNegotiation { dcid, scid }, b.len()));
    }
    let kind = version.kind(first);
    let mut token: &[u8] = &[];
    if kind == Kind::Retry {
        token = &b[p..];
        let header = LongHeader { version, kind, dcid, scid, token, start: at, pn_offset: b.len(), end: b.len() };
        return Ok((Packet::Long(header), b.len()));
    }
    if kind == Kind::Initial {
        let (len, n) = varint(b, p).ok_or(bad(p))?;
        let len = usize::try_from(len).map_err(|_| bad(p))?;
        token = b.get(p + n..p + n + len).ok_or(bad(p))?;
        p += n + len;
    }
    let (len, n) = varint(b, p).ok_or(bad(p))?;
    let pn_offset = p + n;
    // The Length may run past what was captured (a snap length); `end` says where it ends.
    let end = usize::try_from(len).ok().and_then(|l| pn_offset.checked_add(l)).ok_or(bad(p))?;
    if end < pn_offset + 1 {
        return Err(bad(p));
    }
    let header = LongHeader { version, kind, dcid, scid, token, start: at, pn_offset, end };
    Ok((Packet::Long(header), end))
}

/// The keys that open one side's Initial packets.
pub struct InitialKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446, 7.1) with an empty context, into `out`.
fn expand_label(prk: &hkdf::Prk, (prefix, label): (&[u8], &[u8]), out: &mut [u8]) {
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + prefix.len() + label.len()) as u8];
    let info: [&[u8]; 6] = [&length, &label_len, b"tls13 ", prefix, label, &[0]];
    prk.expand(&info, Len(out.len())).and_then(|okm| okm.fill(out)).expect("lengths within HKDF's limit");
}

impl InitialKeys {
    /// The client's (`client`) or server's Initial keys of `version` for a connection whose
    /// client chose `dcid`; `None` for a version without published keys.
    pub fn new(version: Version, dcid: &[u8], client: bool) -> Option<InitialKeys> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, version.salt()?);
        let initial = salt.extract(dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, (b"", if client { b"client in" } else { b"server in" }), &mut secret);
        let secret = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let prefix = version.label_prefix();
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&secret, (prefix, b"key"), &mut key);
        expand_label(&secret, (prefix, b"iv"), &mut iv);
        expand_label(&secret, (prefix, b"hp"), &mut hp);
        Some(InitialKeys {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).ok()?,
        })
    }

    /// Removes header protection and decrypts the Initial packet `header` of `datagram` in
    /// `scratch`; returns its packet number and plaintext payload (its frames). `largest` is
    /// the largest packet number opened so far on this side, to expand a truncated one.
    pub fn open<'s>(
        &self,
        datagram: &[u8],
        header: &LongHeader<'_>,
        largest: Option<u64>,
        scratch: &'s mut Vec<u8>,
    ) -> Result<(u64, &'s [u8])> {
        let bad = |field| Error::Malformed { layer: Layer::Quic, field, offset: header.pn_offset };
        let packet = datagram.get(header.start..header.end).ok_or(bad("Initial packet cut short"))?;
        let pn_at = header.pn_offset - header.start;
        let sample = packet.get(pn_at + 4..pn_at + 20).ok_or(bad("Initial packet too short to sample"))?;
        let mask = self.hp.new_mask(sample).map_err(|_| bad("header protection"))?;
        scratch.clear();
        scratch.extend_from_slice(packet);
        scratch[0] ^= mask[0] & 0x0f;
        let pn_len = usize::from(scratch[0] & 3) + 1;
        let mut truncated = 0u64;
        for i in 0..pn_len {
            scratch[pn_at + i] ^= mask[1 + i];
            truncated = truncated << 8 | u64::from(scratch[pn_at + i]);
        }
        let pn = expand_packet_number(largest, truncated, pn_len);
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let (head, body) = scratch.split_at_mut(pn_at + pn_len);
        let plain = self
            .key
            .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(&*head), body)
            .map_err(|_| bad("Initial packet does not authenticate"))?;
        let len = plain.len();
        Ok((pn, &scratch[pn_at + pn_len..pn_at + pn_len + len]))
    }

    /// Seals `frames` as an Initial (first byte `first`, packet number `pn` in 4 bytes, no
    /// token) with these keys, as an endpoint would: for tests and fuzzing, which must reach
    /// what lies behind the AEAD.
    #[doc(hidden)]
    pub fn seal(&self, first: u8, version: Version, (dcid, scid): (&[u8], &[u8]), pn: u32, frames: &[u8]) -> Vec<u8> {
        let mut packet = vec![first];
        packet.extend_from_slice(&version.0.to_be_bytes());
        packet.push(dcid.len() as u8);
        packet.extend_from_slice(dcid);
        packet.push(scid.len() as u8);
        packet.extend_from_slice(scid);
        packet.push(0); // no token
        let len = 4 + frames.len() + 16;
        packet.extend_from_slice(&(0x4000 | len as u16).to_be_bytes());
        let pn_at = packet.len();
        packet.extend_from_slice(&pn.to_be_bytes());
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(u64::from(pn).to_be_bytes()) {
            *n ^= p;
        }
        let mut body = frames.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&packet[..]),
                &mut body,
            )
            .expect("sealing in memory");
        packet.extend_from_slice(&body);
        let mask = self.hp.new_mask(&packet[pn_at + 4..pn_at + 20]).expect("a 16-byte sample");
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_at + i] ^= mask[1 + i];
        }
        packet
    }
}

/// RFC 9000, appendix A.3.
fn expand_packet_number(largest: Option<u64>, truncated: u64, len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l + 1);
    let win = 1u64 << (8 * len);
    let half = win / 2;
    let candidate = (expected & !(win - 1)) | truncated;
    if candidate + half <= expected && candidate < (1 << 62) - win {
        candidate + win
    } else if candidate > expected + half && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// The CRYPTO frames of an Initial packet's plaintext, as (offset, data); other frames an
/// Initial may carry (PADDING, PING, ACK, CONNECTION_CLOSE) are stepped over.
pub fn crypto_frames(mut frames: &[u8], mut each: impl FnMut(u64, &[u8])) -> Result<()> {
    let bad = |field| Error::Malformed { layer: Layer::Quic, field, offset: 0 };
    while let Some((ty, n)) = varint(frames, 0) {
        let mut p = n;
        let next = |p: &mut usize| -> Result<u64> {
            let (v, n) = varint(frames, *p).ok_or(bad("frame cut short"))?;
            *p += n;
            Ok(v)
        };
        match ty {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, then gap and length per range
                next(&mut p)?;
                next(&mut p)?;
                let ranges = next(&mut p)?;
                next(&mut p)?;
                for _ in 0..ranges.min(frames.len() as u64) {
                    next(&mut p)?;
                    next(&mut p)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        next(&mut p)?; // ECN counts
                    }
                }
            }
            0x06 => {
                let offset = next(&mut p)?;
                let len = usize::try_from(next(&mut p)?).map_err(|_| bad("CRYPTO length"))?;
                let data = frames.get(p..p + len).ok_or(bad("CRYPTO frame cut short"))?;
                each(offset, data);
                p += len;
            }
            0x1c | 0x1d => {
                next(&mut p)?; // error code
                if ty == 0x1c {
                    next(&mut p)?; // frame type
                }
                let len = usize::try_from(next(&mut p)?).map_err(|_| bad("reason length"))?;
                p = p.checked_add(len).filter(|&e| e <= frames.len()).ok_or(bad("reason cut short"))?;
            }
            _ => return Err(bad("frame not allowed in an Initial packet")),
        }
        frames = &frames[p..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn varints_read_as_rfc_9000_appendix_a1_shows() {
        assert_eq!(varint(&hex("c2197c5eff14e88c"), 0), Some((151_288_809_941_952_652, 8)));
        assert_eq!(varint(&hex("9d7f3e7d"), 0), Some((494_878_333, 4)));
        assert_eq!(varint(&hex("7bbd"), 0), Some((15_293, 2)));
        assert_eq!(varint(&hex("25"), 0), Some((37, 1)));
        assert_eq!(varint(&hex("40"), 0), None, "cut short");
    }

    #[test]
    fn packet_numbers_expand_as_rfc_9000_appendix_a3_shows() {
        assert_eq!(expand_packet_number(Some(0xa82f30ea), 0x9b32, 2), 0xa82f9b32);
        assert_eq!(expand_packet_number(None, 0, 1), 0);
        assert_eq!(expand_packet_number(Some(255), 1, 1), 257);
    }

    #[test]
    fn versions_are_named_and_typed() {
        assert_eq!(Version(VERSION_1).name(), "v1");
        assert_eq!(Version(VERSION_2).name(), "v2");
        assert_eq!(Version(0xff00001d).name(), "draft-29");
        assert_eq!(Version(0xfaceb002).name(), "0xfaceb002");
        assert!(!Version(0xfaceb002).is_known());
        assert!(Version(0x51303530).is_google() && Version(0x54303531).is_google());
        assert!(Version(0x1a2a3a4a).is_grease());
        // v2 moved the code points: 0b01 is its Initial, 0b00 its Retry.
        assert_eq!(Version(VERSION_2).kind(0xd0), Kind::Initial);
        assert_eq!(Version(VERSION_2).kind(0xc0), Kind::Retry);
        assert_eq!(Version(VERSION_1).kind(0xc0), Kind::Initial);
        assert_eq!(Version(VERSION_1).kind(0xe0), Kind::Handshake);
    }

    /// The first bytes of the client Initial's frames in RFC 9001 A.2 and RFC 9369 A.2.
    const RFC_FRAMES: &str = "060040f1010000ed0303ebf8fa56f129";

    #[test]
    fn keys_match_rfc_9001_and_rfc_9369_client_initials() {
        // Sealed with our keys, the RFCs' packet gives their protected header and their sample
        // (the ciphertext's first 16 bytes, which depend only on key, IV and those bytes).
        let dcid = hex("8394c8f03e515708");
        for (version, first, protected, sample, mask) in [
            (
                VERSION_1,
                0xc3,
                "c000000001088394c8f03e5157080000449e7b9aec34",
                "d1b1c98dd7689fb8ec11d242b123dc9b",
                "437b9aec36",
            ),
            (
                VERSION_2,
                0xd3,
                "d76b3343cf088394c8f03e5157080000449ea0c95e82",
                "ffe67b6abcdb4298b485dd04de806071",
                "94a0c95e80",
            ),
        ] {
            let keys = InitialKeys::new(Version(version), &dcid, true).unwrap();
            assert_eq!(keys.hp.new_mask(&hex(sample)).unwrap(), hex(mask)[..]);
            let mut frames = hex(RFC_FRAMES);
            frames.resize(1162, 0);
            let sealed = keys.seal(first, Version(version), (&dcid, &[]), 2, &frames);
            assert_eq!(sealed[..22], hex(protected)[..], "{version:x}: protected header");
            assert_eq!(sealed[22..38], hex(sample)[..], "{version:x}: sample");
        }
    }

    #[test]
    fn an_initial_opens_and_its_crypto_frames_read() {
        let dcid = hex("8394c8f03e515708");
        let keys = InitialKeys::new(Version(VERSION_1), &dcid, true).unwrap();
        let crypto = hex("060010000102030405060708090a0b0c0d0e0f");
        let mut frames = hex("0200000000"); // an ACK first
        frames.extend(&crypto);
        frames.resize(1162, 0);
        let sealed = keys.seal(0xc3, Version(VERSION_1), (&dcid, &[]), 2, &frames);
        let (packet, next) = parse(&sealed, 0).unwrap();
        assert_eq!(next, sealed.len());
        let Packet::Long(header) = packet else { panic!("{packet:?}") };
        assert_eq!((header.kind, header.dcid, header.token), (Kind::Initial, &dcid[..], &[][..]));
        let mut scratch = Vec::new();
        let (pn, plain) = keys.open(&sealed, &header, None, &mut scratch).unwrap();
        assert_eq!((pn, plain), (2, &frames[..]));
        let mut seen = Vec::new();
        crypto_frames(plain, |offset, data| seen.push((offset, data.to_vec()))).unwrap();
        assert_eq!(seen, [(0, crypto[3..].to_vec())]);
        // One flipped bit, and it does not authenticate; the server's keys do not open it.
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keys.open(&tampered, &header, None, &mut scratch).is_err());
        let server = InitialKeys::new(Version(VERSION_1), &dcid, false).unwrap();
        assert!(server.open(&sealed, &header, None, &mut scratch).is_err());
    }

    #[test]
    fn headers_cut_anywhere_are_errors_not_panics() {
        let dcid = hex("8394c8f03e515708");
        let keys = InitialKeys::new(Version(VERSION_2), &dcid, true).unwrap();
        let sealed = keys.seal(0xd3, Version(VERSION_2), (&dcid, &[]), 0, &[0; 40]);
        let mut scratch = Vec::new();
        for cut in 0..sealed.len() {
            if let Ok((Packet::Long(h), _)) = parse(&sealed[..cut], 0) {
                assert!(keys.open(&sealed[..cut], &h, None, &mut scratch).is_err(), "cut at {cut}");
            }
        }
    }
}
