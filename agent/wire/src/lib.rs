//! The report schema shared by the edgeprobe agent and collector: what an agent publishes for
//! each window, its CBOR and JSON encodings (told apart by the first byte), and histograms in
//! HdrHistogram's standard V2 deflate encoding, which the Java, Go and Python libraries decode.
//!
//! The agent owns this format. A change that old collectors cannot read bumps [`SCHEMA_VERSION`];
//! additions are optional fields, which older decoders ignore.

pub mod codec;
pub mod histogram;
pub mod mqtt;
pub mod report;

pub use codec::{DecodeError, Encoding, MAX_REPORT_BYTES, decode, encode, from_cbor, to_cbor};
pub use histogram::WireHistogram;
pub use report::*;

/// The `v` field of every report.
pub const SCHEMA_VERSION: u16 = 1;
