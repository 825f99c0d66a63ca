//! The named CBOR form: every field by its name, as schema version 1 wrote reports (and as the
//! collector stored rows before reports were packed).

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
