//! Encoding and decoding. CBOR is the default on the wire; JSON is for people and debugging.
//! A decoder tells them apart by the first byte: JSON reports start with `{`, CBOR maps with a
//! major-type-5 byte (0xa0 to 0xbf). Decoding checks the size first and the version last.

use crate::{Report, SCHEMA_VERSION};

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
    #[error("report schema version {0}; this build reads version {SCHEMA_VERSION}")]
    Version(u16),
}

pub fn encode(report: &Report, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Cbor => to_cbor(report),
        Encoding::Json => serde_json::to_vec(report).expect("reports always serialize"),
    }
}

/// Any part of a report as CBOR; the collector stores a subscriber's part this way.
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

pub fn decode(payload: &[u8]) -> Result<Report, DecodeError> {
    if payload.len() > MAX_REPORT_BYTES {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let report: Report = match sniff(payload)? {
        Encoding::Json => serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?,
        Encoding::Cbor => from_cbor(payload).map_err(DecodeError::Cbor)?,
    };
    if report.v != SCHEMA_VERSION {
        return Err(DecodeError::Version(report.v));
    }
    Ok(report)
}
