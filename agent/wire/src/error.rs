//! What a decoder says about a payload it refuses.

use crate::{MIN_SCHEMA_VERSION, SCHEMA_VERSION};

/// Reports larger than this are refused before parsing.
pub const MAX_REPORT_BYTES: usize = 4 << 20;

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
