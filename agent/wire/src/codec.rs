//! Encoding and decoding. CBOR is the default on the wire; JSON is for people and debugging.
//! A decoder tells them apart by the first byte: JSON reports start with `{`, CBOR maps with a
//! major-type-5 byte (0xa0 to 0xbf). CBOR comes packed (numbered fields, schema version 2, see
//! [`crate::packed`]) or named (schema version 1), told apart by the type of the first key.
//! Decoding checks the size first, then the version, then every histogram's bytes: a decoded
//! report's summary figures are always those of its histograms.

use crate::packed::Codec;
use crate::{MIN_SCHEMA_VERSION, Report, SCHEMA_VERSION};
use std::ops::Range;

/// Reports larger than this are refused before parsing.
pub const MAX_REPORT_BYTES: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Cbor,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload of {0} bytes exceeds the {MAX_REPORT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("first byte {0:#04x} starts neither a JSON object nor a CBOR map")]
    UnknownEncoding(u8),
    #[error("malformed CBOR report: {0}")]
    Cbor(String),
    #[error("malformed JSON report: {0}")]
    Json(String),
    #[error("report schema version {0}; this build reads versions {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}")]
    Version(u16),
    #[error("bad histogram: {0}")]
    Histogram(String),
    /// Counts no window can hold, which sums and merges could overflow.
    #[error("impossible count: {0}")]
    Count(String),
    /// A window that is no agent's: empty, of a span that does not divide a day, or unaligned.
    #[error("bad window: {0}")]
    Window(String),
    /// A name or id no agent writes: too long, or holding control characters.
    #[error("bad field: {0}")]
    Field(String),
}

/// Encodes a report: packed CBOR, or JSON with every field named and every histogram summarised.
pub fn encode(report: &Report, encoding: Encoding) -> Vec<u8> {
    Codec::default().encode(report, encoding)
}

/// Decodes a report from the wire; see [`Codec::decode`].
pub fn decode(payload: &[u8]) -> Result<Report, DecodeError> {
    Codec::default().decode(payload)
}

/// Any part of a report as named CBOR, the form of schema version 1 (and of the collector's rows
/// stored before reports were packed).
pub fn to_cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::with_capacity(1024), value).expect("plain data serializes to memory")
}

/// Reads what [`to_cbor`] wrote. The decoder limits nesting depth and never trusts a length
/// prefix for an allocation, so hostile bytes cost at most their own size.
pub fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| e.to_string())
}

/// The encoding a payload uses, by its first byte.
pub fn sniff(payload: &[u8]) -> Result<Encoding, DecodeError> {
    match payload.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') => Ok(Encoding::Json),
        Some(0xa0..=0xbf) => Ok(Encoding::Cbor),
        Some(&b) => Err(DecodeError::UnknownEncoding(b)),
    }
}

/// Whether a CBOR map's first key is text, as in the named form. The packed form's keys are
/// numbers.
pub(crate) fn first_key_is_text(payload: &[u8]) -> bool {
    let header = match payload.first() {
        Some(0xb8) => 2,
        Some(0xb9) => 3,
        Some(0xba) => 5,
        Some(0xbb) => 9,
        _ => 1,
    };
    payload.get(header).is_some_and(|b| b >> 5 == 3)
}

impl Codec {
    pub fn encode(&mut self, report: &Report, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Cbor => self.encode_packed(report),
            Encoding::Json => serde_json::to_vec(report).expect("reports always serialize"),
        }
    }

    /// Decodes packed or named CBOR, or JSON, of any schema version this build reads.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Report, DecodeError> {
        self.decode_with_lines(payload).map(|(report, _)| report)
    }

    /// Decodes as [`Codec::decode`] does, and, for a packed report, tells where each line lies
    /// in `payload` (none for the named forms): those bytes are what [`Codec::encode_line`]
    /// would write, so a reader can keep them as they came.
    pub fn decode_with_lines(&mut self, payload: &[u8]) -> Result<(Report, Vec<Range<usize>>), DecodeError> {
        if payload.len() > MAX_REPORT_BYTES {
            return Err(DecodeError::TooLarge(payload.len()));
        }
        let mut report: Report = match sniff(payload)? {
            Encoding::Json => serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?,
            Encoding::Cbor if first_key_is_text(payload) => from_cbor(payload).map_err(DecodeError::Cbor)?,
            Encoding::Cbor => {
                // The version first, so a newer agent's report is told as such, not as garbage.
                let v = packed_version(payload).map_err(|e| DecodeError::Cbor(e.to_string()))?;
                if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&v) {
                    return Err(DecodeError::Version(v));
                }
                let (report, spans) = self.decode_packed(payload)?;
                report.check()?;
                return Ok((report, spans));
            }
        };
        if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&report.v) {
            return Err(DecodeError::Version(report.v));
        }
        self.summarize(&mut report).map_err(DecodeError::Histogram)?;
        report.check()?;
        Ok((report, Vec::new()))
    }
}

/// A packed report's version. Encoders write it first, so the rest is not read; a report
/// that puts it later is read up to it.
fn packed_version(payload: &[u8]) -> Result<u16, minicbor::decode::Error> {
    let mut d = minicbor::Decoder::new(payload);
    let len = d.map()?;
    let mut read = 0;
    while len.is_none_or(|n| read < n) {
        if len.is_none() && d.datatype()? == minicbor::data::Type::Break {
            break;
        }
        if d.u64()? == 0 {
            return d.u16();
        }
        d.skip()?;
        read += 1;
    }
    Err(minicbor::decode::Error::message("missing field v"))
}
