//! The named CBOR form: every field by its name, as schema version 1 wrote reports (and as the
//! collector stored rows before reports were packed).

/// Any part of a report as named CBOR, the form of schema version 1 (and of the collector's rows
/// stored before reports were packed).
pub fn to_cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = minicbor_serde::Serializer::new(Vec::with_capacity(1024));
    value.serialize(&mut out).expect("plain data serializes to memory");
    out.into_encoder().into_writer()
}

/// Reads what [`to_cbor`] wrote. The report's types bound the nesting; unknown fields are
/// skipped without recursion, and no length prefix is trusted for an allocation, so hostile
/// bytes cost at most their own size.
pub fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    minicbor_serde::from_slice(bytes).map_err(|e| e.to_string())
}
