//! The report schema shared by the edgeprobe agent and collector: what an agent publishes for
//! each window, its CBOR and JSON encodings (told apart by the first byte), and histograms in
//! HdrHistogram's standard V2 deflate encoding, which the Java, Go and Python libraries decode.
//!
//! The agent owns this format. A change that old collectors cannot read bumps [`SCHEMA_VERSION`];
//! additions are optional fields, which older decoders ignore. In the packed CBOR (see
//! [`packed`]) a new field takes the next unused number of its struct; numbers are never reused.

pub mod codec;
pub mod error;
pub mod histogram;
pub mod mqtt;
pub mod named;
pub mod packed;
pub mod report;

pub use codec::{Encoding, decode, encode};
pub use error::{DecodeError, MAX_REPORT_BYTES};
pub use histogram::WireHistogram;
pub use named::{from_cbor, to_cbor};
pub use packed::Codec;
pub use report::*;

/// The `v` field of every report. Version 2 packs the CBOR form; the named form is as in 1.
pub const SCHEMA_VERSION: u16 = 2;
/// The oldest version this build decodes.
pub const MIN_SCHEMA_VERSION: u16 = 1;
/// The most any count of a window may be: 2^40, a trillion transactions. More is no
/// measurement, and sums of a million lines' counts stay far from overflowing the collector's
/// 64-bit integers.
pub const MAX_COUNT: u64 = 1 << 40;
/// The most bytes one window may count: 2^53, a day at 800 Gb/s.
pub const MAX_BYTES: u64 = 1 << 53;
