//! Encoding and decoding. CBOR is the default on the wire; JSON is for people and debugging.
//! A decoder tells them apart by the first byte: JSON reports start with `{`, CBOR maps with a
//! major-type-5 byte (0xa0 to 0xbf). CBOR comes packed (numbered fields, schema version 2, see
//! [`crate::packed`]) or named (schema version 1), told apart by the type of the first key.
//! Decoding checks the size first, then the version, then every histogram's bytes: a decoded
//! report's summary figures are always those of its histograms.

use crate::SubscriberReport;
use crate::error::{DecodeError, MAX_REPORT_BYTES};
use crate::named::from_cbor;
use crate::packed::{Codec, first_key_is_text};
use crate::{MIN_SCHEMA_VERSION, Report, SCHEMA_VERSION};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Cbor,
    Json,
}

/// Encodes a report: packed CBOR, or JSON with every field named and every histogram summarised.
pub fn encode(report: &Report, encoding: Encoding) -> Vec<u8> {
    Codec::default().encode(report, encoding)
}

/// Decodes a report from the wire; see [`Codec::decode`].
pub fn decode(payload: &[u8]) -> Result<Report, DecodeError> {
    Codec::default().decode(payload)
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

impl Codec {
    pub fn encode(&mut self, report: &Report, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Cbor => self.encode_packed(report),
            Encoding::Json => serde_json::to_vec(report).expect("reports always serialize"),
        }
    }

    /// `report` in parts of at most about `max_bytes` each once encoded, numbered, the first
    /// keeping the capture health; one part, as it was, when it fits. A line larger than
    /// `max_bytes` by itself goes alone in a part.
    pub fn split(&mut self, mut report: Report, max_bytes: usize, encoding: Encoding) -> Vec<Report> {
        // Room for what a part adds after this (part numbers, the agent's health) and for the
        // array's length growing.
        const SLACK: usize = 160;
        if self.encode(&report, encoding).len() + SLACK <= max_bytes {
            return vec![report];
        }
        let lines = std::mem::take(&mut report.subscribers);
        let base = self.encode(&report, encoding).len() + SLACK;
        let mut groups: Vec<Vec<SubscriberReport>> = vec![Vec::new()];
        let mut size = base;
        for line in lines {
            let bytes = match encoding {
                Encoding::Cbor => self.encode_line(&line).len(),
                Encoding::Json => serde_json::to_vec(&line).map_or(0, |v| v.len() + 1),
            };
            let current = groups.last_mut().expect("never empty");
            if !current.is_empty() && size + bytes > max_bytes {
                groups.push(Vec::new());
                size = base;
            }
            size += bytes;
            groups.last_mut().expect("never empty").push(line);
        }
        let parts = groups.len() as u32;
        groups
            .into_iter()
            .enumerate()
            .map(|(i, subscribers)| Report {
                subscribers,
                part: i as u32,
                parts,
                capture: if i == 0 { report.capture.clone() } else { Default::default() },
                ..report.clone()
            })
            .collect()
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
