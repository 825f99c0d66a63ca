//! Latency histograms on the wire: HdrHistogram V2 deflate bytes next to the summary figures a
//! reader wants without decoding them. Values are microseconds, tracked from 1 µs to one hour
//! at 3 significant digits; larger values are clamped to the highest trackable value.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use miniz_oxide::deflate::core::{
    CompressionStrategy, CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};
use serde::{Deserialize, Serialize};
use std::io::Read as _;

pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 3_600_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new, empty histogram with the schema's fixed bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS).expect("valid fixed bounds")
}

/// A histogram with the schema's buckets whose counts reach only as far as `max_us` needs
/// (clamped into the trackable range). A full one-hour histogram is 190 KB of counts to zero for
/// every histogram a window builds; values that high are rare. `HistogramEncoder` writes it
/// with the schema's bounds, byte for byte as `new_histogram` holding the same values.
fn new_histogram_upto(max_us: u64) -> Histogram<u64> {
    let high = max_us.clamp(2 * LOWEST_US, HIGHEST_US);
    Histogram::new_with_bounds(LOWEST_US, high, SIGNIFICANT_DIGITS).expect("valid bounds within the fixed ones")
}

/// Records `value_us`, clamped into the trackable range.
pub fn record(h: &mut Histogram<u64>, value_us: u64) {
    let _ = h.record(value_us.clamp(LOWEST_US, HIGHEST_US));
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHistogram {
    pub count: u64,
    pub min: u64,
    pub max: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    /// HdrHistogram V2 deflate encoding; base64 in JSON, a byte string in CBOR.
    #[serde(serialize_with = "ser_bytes", deserialize_with = "de_bytes")]
    pub hdr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("histogram: {0}")]
pub struct HistogramError(String);

impl WireHistogram {
    /// Summarises and encodes `h`.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self::from_histogram_with(h, &mut HistogramEncoder::default())
    }

    /// As `from_histogram`, reusing an encoder's buffers and compressor.
    pub fn from_histogram_with(h: &Histogram<u64>, encoder: &mut HistogramEncoder) -> Self {
        let hdr = encoder.encode(h);
        WireHistogram {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            hdr,
        }
    }

    /// Summarises and encodes latency values (µs) exactly as `from_histogram` would a
    /// histogram holding them. The percentiles come from the sorted values (the value at rank
    /// ⌈q·count⌉, widened to its bucket's highest equivalent, which is what
    /// `value_at_quantile` finds by walking every bucket up to it), and the counts reach only as
    /// far as the largest value needs. Sorts `values` in place.
    pub fn from_values(values: &mut [u64], encoder: &mut HistogramEncoder) -> Self {
        for v in values.iter_mut() {
            *v = (*v).clamp(LOWEST_US, HIGHEST_US);
        }
        values.sort_unstable();
        let mut h = new_histogram_upto(values.last().copied().unwrap_or_default());
        for run in values.chunk_by(|a, b| a == b) {
            let _ = h.record_n(run[0], run.len() as u64);
        }
        let at = |q: f64| {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            values.get(rank - 1).map_or(0, |v| h.highest_equivalent(*v))
        };
        WireHistogram {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            hdr: encoder.encode(&h),
        }
    }

    /// Decodes the HdrHistogram bytes, for merging. The bytes may come from anyone on the
    /// broker, so they are checked before the deserializer sees them: it would otherwise
    /// allocate whatever length the header claims. Only this schema's bounds are accepted.
    pub fn histogram(&self) -> Result<Histogram<u64>, HistogramError> {
        let err = |m: &str| HistogramError(m.to_string());
        let hdr = &self.hdr;
        if hdr.len() < 8 || hdr[..4] != V2_COMPRESSED_COOKIE.to_be_bytes() {
            return Err(err("not a V2 compressed histogram"));
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        if len != hdr.len() - 8 {
            return Err(err("compressed length does not match"));
        }
        // The largest V2 encoding of this schema's counts array, with room to spare.
        const MAX_PLAIN: u64 = 512 * 1024;
        let mut plain = Vec::new();
        let mut z = flate2::read::ZlibDecoder::new(&hdr[8..]).take(MAX_PLAIN + 1);
        std::io::Read::read_to_end(&mut z, &mut plain).map_err(|_| err("bad zlib stream"))?;
        if plain.len() < 40 || plain.len() as u64 > MAX_PLAIN {
            return Err(err("V2 encoding of impossible size"));
        }
        let be32 = |at: usize| u32::from_be_bytes([plain[at], plain[at + 1], plain[at + 2], plain[at + 3]]);
        let be64 = |at: usize| u64::from_be_bytes(plain[at..at + 8].try_into().unwrap_or_default());
        if be32(0) != V2_COOKIE || be32(4) as usize != plain.len() - 40 {
            return Err(err("V2 header does not match its payload"));
        }
        if be32(12) != u32::from(SIGNIFICANT_DIGITS) || be64(16) != LOWEST_US || be64(24) != HIGHEST_US {
            return Err(err("histogram bounds differ from the schema's"));
        }
        Deserializer::new().deserialize(&mut &plain[..]).map_err(|e| HistogramError(format!("{e:?}")))
    }
}

/// The V2 cookies of the HdrHistogram specification (the 0x10 bit marks V2).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

/// HdrHistogram's "V2 compressed" encoding: the cookie, the compressed length, then the V2
/// encoding as a zlib stream, which every HdrHistogram library inflates. A window histogram holds
/// a handful of samples, and for so little input miniz's default dynamic Huffman tables cost more
/// than they save, so each histogram is compressed with both fixed and dynamic codes and the
/// smaller stream is kept (about 15 % less on a browsing window). The compressors are built
/// once (hundreds of kilobytes of state each) and reset per histogram.
pub struct HistogramEncoder {
    v2: V2Serializer,
    plain: Vec<u8>,
    fixed: Box<CompressorOxide>,
    dynamic: Box<CompressorOxide>,
    scratch: Vec<u8>,
}

impl Default for HistogramEncoder {
    fn default() -> Self {
        // Level 6 is zlib's default; window_bits > 0 asks for the zlib wrapper.
        let flags = |strategy: CompressionStrategy| create_comp_flags_from_zip_params(6, 15, strategy as i32);
        HistogramEncoder {
            v2: V2Serializer::new(),
            plain: Vec::new(),
            fixed: Box::new(CompressorOxide::new(flags(CompressionStrategy::Fixed))),
            dynamic: Box::new(CompressorOxide::new(flags(CompressionStrategy::Default))),
            scratch: Vec::new(),
        }
    }
}

impl HistogramEncoder {
    pub fn encode(&mut self, h: &Histogram<u64>) -> Vec<u8> {
        self.plain.clear();
        self.v2.serialize(h, &mut self.plain).expect("serializing to memory cannot fail");
        // The V2 counts run only to the largest value's bucket, so the schema's buckets cut
        // short (`new_histogram_upto`) differ from the schema's only in the header's highest
        // trackable value (bytes 24..32).
        if h.low() == LOWEST_US && h.sigfig() == SIGNIFICANT_DIGITS && h.high() < HIGHEST_US {
            self.plain[24..32].copy_from_slice(&HIGHEST_US.to_be_bytes());
        }
        let mut out = Vec::with_capacity(8 + self.plain.len() + 16);
        out.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        zlib(&mut self.fixed, &self.plain, &mut out);
        // Dynamic tables need more input than a 40-byte header and a few counts to pay off;
        // each reset costs a memset of the compressor's tables, so small ones skip the try.
        if self.plain.len() >= 96 {
            self.scratch.clear();
            zlib(&mut self.dynamic, &self.plain, &mut self.scratch);
            if self.scratch.len() < out.len() - 8 {
                out.truncate(8);
                out.extend_from_slice(&self.scratch);
            }
        }
        let len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
        out
    }
}

/// Appends `input` as one complete zlib stream to `out`.
fn zlib(compressor: &mut CompressorOxide, mut input: &[u8], out: &mut Vec<u8>) {
    compressor.reset();
    let mut buf = [0u8; 512];
    loop {
        let (status, read, written) = compress(compressor, input, &mut buf, TDEFLFlush::Finish);
        out.extend_from_slice(&buf[..written]);
        input = &input[read..];
        match status {
            TDEFLStatus::Done => return,
            TDEFLStatus::Okay => {}
            // Only misuse of the compressor gets here, and reset() rules that out.
            s => panic!("deflate into memory failed: {s:?}"),
        }
    }
}

fn ser_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    if s.is_human_readable() {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        s.serialize_bytes(bytes)
    }
}

fn de_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine;
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("histogram bytes or base64")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            base64::engine::general_purpose::STANDARD.decode(v).map_err(E::custom)
        }
    }
    if d.is_human_readable() { d.deserialize_str(Bytes) } else { d.deserialize_bytes(Bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_standard_and_never_larger_than_the_crate_serializer() {
        use hdrhistogram::serialization::V2DeflateSerializer;
        let mut encoder = HistogramEncoder::default();
        for n in [0u64, 1, 5, 500, 20_000] {
            let mut h = new_histogram();
            for i in 0..n {
                record(&mut h, 1 + i * 977 % 3_000_000);
            }
            let mut theirs = Vec::new();
            V2DeflateSerializer::new().serialize(&h, &mut theirs).unwrap();
            let ours = encoder.encode(&h);
            assert!(ours.len() <= theirs.len(), "{n} values: {} > {}", ours.len(), theirs.len());
            let back: Histogram<u64> = Deserializer::new().deserialize(&mut &ours[..]).unwrap();
            assert_eq!(back, h, "{n} values");
        }
    }

    #[test]
    fn from_values_equals_the_full_histogram_of_the_same_values() {
        let mut encoder = HistogramEncoder::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sets: Vec<Vec<u64>> = vec![vec![], vec![0], vec![2047, 2048, 2049], vec![4_000_000_000, 1, 1]];
        for n in [1usize, 2, 3, 7, 10, 99, 100, 101, 1000] {
            // Short latencies, with some far out and repeats, as real windows have.
            sets.push((0..n).map(|_| if next() % 10 == 0 { next() % 40_000_000 } else { next() % 5_000 }).collect());
        }
        for values in sets {
            let mut full = new_histogram();
            for v in &values {
                record(&mut full, *v);
            }
            let ours = WireHistogram::from_values(&mut values.clone(), &mut encoder);
            assert_eq!(ours, WireHistogram::from_histogram_with(&full, &mut encoder), "{values:?}");
            if !values.is_empty() {
                assert_eq!(ours.histogram().unwrap(), full, "{values:?}");
            }
        }
        assert!(new_histogram_upto(100_000).distinct_values() * 2 < new_histogram().distinct_values());
    }

    #[test]
    fn hostile_histogram_bytes_are_refused_not_allocated() {
        let mut wire = WireHistogram::from_histogram(&new_histogram());
        // A V2 header claiming a 4 GB payload, compressed.
        let mut plain = V2_COOKIE.to_be_bytes().to_vec();
        plain.extend_from_slice(&u32::MAX.to_be_bytes());
        plain.extend_from_slice(&[0; 32]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &plain).unwrap();
        let body = z.finish().unwrap();
        wire.hdr = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        wire.hdr.extend_from_slice(&(body.len() as u32).to_be_bytes());
        wire.hdr.extend_from_slice(&body);
        assert!(wire.histogram().is_err());
        wire.hdr.truncate(5);
        assert!(wire.histogram().is_err());
    }

    #[test]
    fn round_trip_keeps_every_count() {
        let mut h = new_histogram();
        for v in [1, 850, 1_000, 40_123, 40_500, 7_200_000_000] {
            record(&mut h, v);
        }
        let wire = WireHistogram::from_histogram(&h);
        assert_eq!(wire.count, 6);
        assert_eq!(wire.max, h.highest_equivalent(HIGHEST_US));
        let back = wire.histogram().unwrap();
        assert_eq!(back.len(), 6);
        assert_eq!(back.value_at_quantile(0.5), wire.p50);
        assert_eq!(&back, &h);
    }
}
