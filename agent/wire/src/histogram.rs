//! Latency histograms on the wire: HdrHistogram V2 deflate bytes next to the summary figures a
//! reader wants without decoding them. Values are microseconds, tracked from 1 µs to one hour
//! at 3 significant digits; larger values are clamped to the highest trackable value.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 3_600_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new, empty histogram with the schema's fixed bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS).expect("valid fixed bounds")
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
    /// histogram holding them: the sorted values go straight into the schema's buckets (see
    /// `from_counts`). Sorts `values` in place.
    pub fn from_values(values: &mut [u64], encoder: &mut HistogramEncoder) -> Self {
        for v in values.iter_mut() {
            *v = (*v).clamp(LOWEST_US, HIGHEST_US);
        }
        values.sort_unstable();
        encoder.runs.clear();
        encoder.runs.extend(values.chunk_by(|a, b| a == b).map(|run| (run[0], run.len() as u64)));
        let runs = std::mem::take(&mut encoder.runs);
        let out = Self::from_counts(&runs, encoder);
        encoder.runs = runs;
        out
    }

    /// Summarises and encodes (value µs, count) pairs in ascending order of value (a histogram
    /// kept elsewhere in coarser buckets, each given by its representative value), exactly as
    /// `from_histogram` would a histogram holding them: the counts go straight into the
    /// schema's buckets and their V2 encoding, with no dense histogram to clear and walk.
    pub fn from_counts(counts: &[(u64, u64)], encoder: &mut HistogramEncoder) -> Self {
        let mut buckets = Buckets::default();
        for &(v, n) in counts.iter().filter(|c| c.1 > 0) {
            let index = bucket_index(v.clamp(LOWEST_US, HIGHEST_US));
            match buckets.counts.last_mut() {
                Some(last) if last.0 == index => last.1 = last.1.saturating_add(n),
                _ => buckets.counts.push((index, n)),
            }
            buckets.total = buckets.total.saturating_add(n);
        }
        encoder.plain.clear();
        buckets.write_v2(&mut encoder.plain);
        let hdr = encoder.compress();
        buckets.summary(hdr)
    }

    /// Sets the summary figures from the encoding, which is what a reader can check: a report
    /// whose figures disagree with its histogram is told by the histogram.
    pub fn summarize(&mut self, reader: &mut HistogramReader) -> Result<(), HistogramError> {
        let buckets = reader.buckets(&self.hdr)?;
        let hdr = std::mem::take(&mut self.hdr);
        *self = buckets.summary(hdr);
        Ok(())
    }

    /// Decodes the HdrHistogram bytes, for merging. The bytes may come from anyone on the
    /// broker, so they are checked before the deserializer sees them: it would otherwise
    /// allocate whatever length the header claims. Only this schema's bounds are accepted.
    pub fn histogram(&self) -> Result<Histogram<u64>, HistogramError> {
        let mut reader = HistogramReader::default();
        let plain = reader.plain(&self.hdr)?;
        Deserializer::new().deserialize(&mut &plain[..]).map_err(|e| HistogramError(format!("{e:?}")))
    }
}

/// The schema's bucket layout, as HdrHistogram derives it from 1 µs to an hour at 3 digits:
/// values below 2,048 have buckets of their own; above, each doubling of the value is split
/// into 1,024 buckets twice as wide as the last. 23 halves of 1,024 cover the range.
const HALF_BUCKET_BITS: u32 = 10;
const COUNTS_LEN: u32 = 23 << HALF_BUCKET_BITS;

/// The bucket of `value` (within the schema's range), as HdrHistogram indexes its counts.
fn bucket_index(value: u64) -> u32 {
    // Values below 2,048 have buckets of their own; each doubling above is split in 1,024.
    let bucket = 63 - (value | ((1 << (HALF_BUCKET_BITS + 1)) - 1)).leading_zeros() - HALF_BUCKET_BITS;
    let sub = (value >> bucket) as u32;
    ((bucket + 1) << HALF_BUCKET_BITS) + sub - (1 << HALF_BUCKET_BITS)
}

/// The lowest value of bucket `index`, and its width.
fn bucket_at(index: u32) -> (u64, u64) {
    let shift = (index >> HALF_BUCKET_BITS).saturating_sub(1);
    let sub = if shift == 0 { index } else { (index & ((1 << HALF_BUCKET_BITS) - 1)) | (1 << HALF_BUCKET_BITS) };
    (u64::from(sub) << shift, 1 << shift)
}

/// A histogram's non-empty buckets in index order. A window fills a few of the schema's 23,552
/// buckets, so reading, merging and summarising this way costs what the window holds, where a
/// dense histogram costs 190 KB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    counts: Vec<(u32, u64)>,
    total: u64,
}

impl Buckets {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Buckets) {
        let (a, b) = (&self.counts, &other.counts);
        let mut merged = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 > y.0 => {
                    merged.push(*y);
                    j += 1;
                }
                (Some(x), _) => {
                    merged.push(*x);
                    i += 1;
                }
                (None, Some(y)) => {
                    merged.push(*y);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.counts = merged;
        self.total = self.total.saturating_add(other.total);
    }

    /// The summary HdrHistogram computes for these counts (`min`, `max`, `value_at_quantile`),
    /// with `hdr` as the encoding.
    pub(crate) fn summary(&self, hdr: Vec<u8>) -> WireHistogram {
        let highest = |index: u32| {
            let (low, width) = bucket_at(index);
            low + width - 1
        };
        let at = |q: f64| {
            let rank = ((q * self.total as f64).ceil() as u64).max(1);
            let mut seen = 0u64;
            for &(index, count) in &self.counts {
                seen = seen.saturating_add(count);
                if seen >= rank {
                    return highest(index);
                }
            }
            0
        };
        // As the library's: a count in bucket 0 (the value 0) makes the minimum 0.
        let min = match self.counts.first() {
            Some(&(0, _)) | None => 0,
            Some(&(index, _)) => bucket_at(index).0,
        };
        WireHistogram {
            count: self.total,
            min,
            max: self.counts.last().map_or(0, |&(index, _)| highest(index)),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            hdr,
        }
    }

    /// These counts as a wire histogram whose V2 encoding is stored in its zlib stream
    /// uncompressed: any inflater reads it, and writing it takes no compressor, whose tables
    /// cost more to clear than compressing a few dozen bytes saves.
    pub fn to_stored(&self) -> WireHistogram {
        let mut plain = Vec::with_capacity(48 + 3 * self.counts.len());
        self.write_v2(&mut plain);
        let mut hdr = Vec::with_capacity(plain.len() + 24);
        stored(&plain, &mut hdr);
        self.summary(hdr)
    }

    /// The V2 encoding of these counts, as the library writes it: the header with the schema's
    /// bounds, then each bucket up to the last non-empty one as a zig-zag LEB128 count, a run
    /// of two or more empty buckets as its negated length.
    fn write_v2(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&V2_COOKIE.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&u32::from(SIGNIFICANT_DIGITS).to_be_bytes());
        out.extend_from_slice(&LOWEST_US.to_be_bytes());
        out.extend_from_slice(&HIGHEST_US.to_be_bytes());
        out.extend_from_slice(&1.0f64.to_be_bytes());
        if self.counts.is_empty() {
            write_varint(out, 0); // the library writes the empty bucket of the value 0
        }
        let mut next = 0u32;
        for &(index, count) in &self.counts {
            match index - next {
                0 => {}
                1 => write_varint(out, 0),
                run => write_varint(out, zig_zag_encode(-i64::from(run))),
            }
            write_varint(out, zig_zag_encode(i64::try_from(count).unwrap_or(i64::MAX)));
            next = index + 1;
        }
        let len = (out.len() - 40) as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
    }
}

fn deflater(window_bits: i32, mem_level: i32) -> zlib_rs::Deflate {
    zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
        level: 9,
        method: zlib_rs::Method::Deflated,
        window_bits,
        mem_level,
        strategy: zlib_rs::Strategy::Default,
    })
}

/// `plain` as a V2 compressed histogram whose zlib stream holds it uncompressed: a zlib header
/// (deflate, 32 KiB window, no preset dictionary), then stored blocks of at most 65,535 bytes,
/// the last one flagged final, then the Adler-32 of the contents.
fn stored(plain: &[u8], hdr: &mut Vec<u8>) {
    hdr.clear();
    hdr.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
    hdr.extend_from_slice(&[0; 4]);
    hdr.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = plain.chunks(0xffff).peekable();
    while let Some(block) = blocks.next() {
        let len = block.len() as u16;
        hdr.push(u8::from(blocks.peek().is_none()));
        hdr.extend_from_slice(&len.to_le_bytes());
        hdr.extend_from_slice(&(!len).to_le_bytes());
        hdr.extend_from_slice(block);
    }
    hdr.extend_from_slice(&zlib_rs::adler32::adler32(1, plain).to_be_bytes());
    let len = (hdr.len() - 8) as u32;
    hdr[4..8].copy_from_slice(&len.to_be_bytes());
}

/// Reads V2 compressed histograms, reusing its inflater and buffers from one to the next. The
/// bytes may come from anyone on the broker: the inflated size is capped, the header must
/// carry this schema's bounds, and counts may not run past the schema's buckets. A report
/// holds many small histograms, so the inflater is zlib-rs, whose fixed Huffman tables are
/// built once: miniz rebuilds them for every stream, which took ten times as long.
pub struct HistogramReader {
    inflater: zlib_rs::Inflate,
    plain: Vec<u8>,
    buckets: Buckets,
}

impl Default for HistogramReader {
    fn default() -> Self {
        HistogramReader { inflater: zlib_rs::Inflate::new(true, 15), plain: vec![0; 1024], buckets: Buckets::default() }
    }
}

/// The largest V2 encoding of this schema's counts array, with room to spare.
const MAX_PLAIN: usize = 512 * 1024;

impl HistogramReader {
    /// The V2 encoding inside `hdr`, its header checked against the schema.
    fn plain(&mut self, hdr: &[u8]) -> Result<&[u8], HistogramError> {
        let err = |m: &str| HistogramError(m.to_string());
        if hdr.len() < 8 || hdr[..4] != V2_COMPRESSED_COOKIE.to_be_bytes() {
            return Err(err("not a V2 compressed histogram"));
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        if len != hdr.len() - 8 {
            return Err(err("compressed length does not match"));
        }
        let size = loop {
            self.inflater.reset(true);
            match self.inflater.decompress(&hdr[8..], &mut self.plain, zlib_rs::InflateFlush::Finish) {
                Ok(zlib_rs::Status::StreamEnd) => break self.inflater.total_out() as usize,
                // Out of room (or out of input, which a longer buffer does not cure).
                Ok(_) if self.plain.len() < MAX_PLAIN && self.inflater.total_out() as usize == self.plain.len() => {
                    self.plain.resize((self.plain.len() * 4).min(MAX_PLAIN), 0);
                }
                Ok(_) if self.inflater.total_out() as usize == self.plain.len() => {
                    return Err(err("V2 encoding of impossible size"));
                }
                _ => return Err(err("bad zlib stream")),
            }
        };
        let plain = &self.plain[..size];
        if plain.len() < 40 {
            return Err(err("V2 encoding of impossible size"));
        }
        let be32 = |at: usize| u32::from_be_bytes([plain[at], plain[at + 1], plain[at + 2], plain[at + 3]]);
        let be64 = |at: usize| u64::from_be_bytes(plain[at..at + 8].try_into().unwrap_or_default());
        if be32(0) != V2_COOKIE || be32(4) as usize != plain.len() - 40 {
            return Err(err("V2 header does not match its payload"));
        }
        if be32(8) != 0 || be32(12) != u32::from(SIGNIFICANT_DIGITS) || be64(16) != LOWEST_US || be64(24) != HIGHEST_US
        {
            return Err(err("histogram bounds differ from the schema's"));
        }
        Ok(plain)
    }

    /// The non-empty buckets of a V2 compressed histogram, read as HdrHistogram's deserializer
    /// reads them: zig-zag LEB128 counts, negative numbers standing for runs of empty buckets.
    pub fn buckets(&mut self, hdr: &[u8]) -> Result<&Buckets, HistogramError> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.counts.clear();
        buckets.total = 0;
        let result = self.plain(hdr).and_then(|plain| {
            let mut payload = &plain[40..];
            let mut index = 0u64;
            while !payload.is_empty() {
                let n = zig_zag(varint(&mut payload).ok_or_else(|| HistogramError("truncated count".into()))?);
                if n < 0 {
                    index = index.saturating_add(n.unsigned_abs());
                    continue;
                }
                if n > 0 {
                    let at = u32::try_from(index).ok().filter(|i| *i < COUNTS_LEN);
                    let at = at.ok_or_else(|| HistogramError("counts run past the schema's buckets".into()))?;
                    buckets.counts.push((at, n as u64));
                    buckets.total = buckets.total.saturating_add(n as u64);
                    if buckets.total > crate::MAX_COUNT {
                        return Err(HistogramError(format!("more than {} samples", crate::MAX_COUNT)));
                    }
                }
                index += 1;
            }
            Ok(())
        });
        self.buckets = buckets;
        result.map(|_| &self.buckets)
    }
}

/// One LEB128 number as HdrHistogram writes them: at most 9 bytes, the 9th taken whole.
fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        if i == 8 {
            return Some(value | (u64::from(b) << 56));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn zig_zag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn zig_zag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    for _ in 0..8 {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The V2 cookies of the HdrHistogram specification (the 0x10 bit marks V2).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

/// HdrHistogram's "V2 compressed" encoding: the cookie, the compressed length, then the V2
/// encoding as a zlib stream, which every HdrHistogram library inflates. A window histogram's V2
/// encoding is tens to hundreds of bytes, so one that fits in 512 bytes goes through a stream
/// with a 512-byte window and a 2,048-entry hash, the whole input in view: resetting it between
/// histograms clears 4 KiB, where a 32 KiB window's state took a memset of hundreds of
/// kilobytes, most of the cost of a small histogram. Larger ones take the usual 32 KiB window.
/// At level 9 both compress as small as the best of miniz's fixed and dynamic codes did (120
/// bytes on average over 50 window-sized histograms), and zlib chooses stored, fixed or dynamic
/// codes for each block itself.
pub struct HistogramEncoder {
    v2: V2Serializer,
    plain: Vec<u8>,
    /// A window's values as (value, count), for `from_values`.
    runs: Vec<(u64, u64)>,
    small: zlib_rs::Deflate,
    large: zlib_rs::Deflate,
}

/// The largest V2 encoding the small stream takes whole.
const SMALL_WINDOW: usize = 512;

impl Default for HistogramEncoder {
    fn default() -> Self {
        HistogramEncoder {
            v2: V2Serializer::new(),
            plain: Vec::new(),
            runs: Vec::new(),
            // window_bits > 0 asks for the zlib wrapper; 9 is the smallest zlib writes.
            small: deflater(9, 4),
            large: deflater(15, 8),
        }
    }
}

impl HistogramEncoder {
    pub fn encode(&mut self, h: &Histogram<u64>) -> Vec<u8> {
        self.plain.clear();
        if self.v2.serialize(h, &mut self.plain).is_err() {
            // Only a count past i64::MAX fails (V2 writes counts signed): merges of many
            // reports may get there, each count being bounded. Such counts are written as
            // i64::MAX, as the sparse writer does.
            let mut clamped = h.clone();
            clamped.reset();
            for v in h.iter_recorded() {
                let _ = clamped.record_n(v.value_iterated_to(), v.count_at_value().min(i64::MAX as u64));
            }
            self.plain.clear();
            if self.v2.serialize(&clamped, &mut self.plain).is_err() {
                self.plain.clear();
                Buckets::default().write_v2(&mut self.plain);
            }
        }
        // The V2 counts run only to the largest value's bucket, so a histogram of the schema's
        // buckets cut short differs from the schema's only in the header's highest trackable
        // value (bytes 24..32).
        if h.low() == LOWEST_US && h.sigfig() == SIGNIFICANT_DIGITS && h.high() < HIGHEST_US {
            self.plain[24..32].copy_from_slice(&HIGHEST_US.to_be_bytes());
        }
        self.compress()
    }

    /// The V2 compressed form of the V2 encoding in `plain`.
    fn compress(&mut self) -> Vec<u8> {
        let mut out = vec![0u8; 8 + zlib_rs::compress_bound(self.plain.len())];
        out[..4].copy_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        let deflate = if self.plain.len() <= SMALL_WINDOW { &mut self.small } else { &mut self.large };
        deflate.reset();
        let status = deflate.compress(&self.plain, &mut out[8..], zlib_rs::DeflateFlush::Finish);
        if !matches!(status, Ok(zlib_rs::Status::StreamEnd)) {
            // A buffer of the compress bound always takes the whole stream; were it not to,
            // the histogram goes stored rather than not at all.
            stored(&self.plain, &mut out);
            return out;
        }
        let written = deflate.total_out() as usize;
        out.truncate(8 + written);
        out[4..8].copy_from_slice(&(written as u32).to_be_bytes());
        out
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
    fn from_counts_equals_the_full_histogram_of_the_same_counts() {
        let mut encoder = HistogramEncoder::default();
        for values in value_sets() {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let mut counts: Vec<(u64, u64)> = Vec::new();
            for v in sorted {
                match counts.last_mut() {
                    Some(last) if last.0 == v => last.1 += 3,
                    _ => counts.push((v, 3)),
                }
            }
            let mut full = new_histogram();
            for &(v, n) in &counts {
                let _ = full.record_n(v.clamp(LOWEST_US, HIGHEST_US), n);
            }
            let ours = WireHistogram::from_counts(&counts, &mut encoder);
            let theirs = WireHistogram::from_histogram(&full);
            // Another compressor: the same figures, and bytes that inflate to the same counts.
            assert_eq!(WireHistogram { hdr: vec![], ..ours.clone() }, WireHistogram { hdr: vec![], ..theirs });
            assert_eq!(ours.histogram().unwrap(), full, "{counts:?}");
        }
        for v in [1u64, 2047, 2048, 2049, 4095, 4096, 1 << 20, (1 << 20) + 777, HIGHEST_US] {
            let (low, width) = bucket_at(bucket_index(v));
            assert!((low..low + width).contains(&v), "{v} in bucket from {low}, {width} wide");
        }
    }

    #[test]
    fn from_values_equals_the_full_histogram_of_the_same_values() {
        let mut encoder = HistogramEncoder::default();
        for values in value_sets() {
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
    }

    /// Value sets as windows have them: short latencies, some far out, repeats.
    fn value_sets() -> Vec<Vec<u64>> {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sets: Vec<Vec<u64>> = vec![vec![], vec![0], vec![2047, 2048, 2049], vec![4_000_000_000, 1, 1]];
        for n in [1usize, 2, 3, 7, 10, 99, 100, 101, 1000] {
            sets.push((0..n).map(|_| if next() % 10 == 0 { next() % 40_000_000 } else { next() % 5_000 }).collect());
        }
        // Thousands of distinct buckets: an encoding larger than the reader's first buffer.
        sets.push((0..20_000).map(|i| 1 + i * 977 % 3_000_000).collect());
        sets
    }

    #[test]
    fn the_encoding_alone_gives_the_same_summary_and_buckets() {
        assert_eq!(COUNTS_LEN as usize, new_histogram().distinct_values());
        let mut encoder = HistogramEncoder::default();
        let mut reader = HistogramReader::default();
        let sets = value_sets();
        for values in &sets {
            let ours = WireHistogram::from_values(&mut values.clone(), &mut encoder);
            let mut read = WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: ours.hdr.clone() };
            read.summarize(&mut reader).unwrap();
            assert_eq!(read, ours, "{values:?}");
            // Each bucket's lowest value, highest value and count as the library has them.
            let full = ours.histogram().unwrap();
            let buckets = reader.buckets(&ours.hdr).unwrap().clone();
            let theirs: Vec<(u64, u64, u64)> = full
                .iter_recorded()
                .map(|v| (full.lowest_equivalent(v.value_iterated_to()), v.value_iterated_to(), v.count_at_value()))
                .collect();
            let mine: Vec<(u64, u64, u64)> =
                buckets.counts.iter().map(|&(i, c)| (bucket_at(i).0, bucket_at(i).0 + bucket_at(i).1 - 1, c)).collect();
            assert_eq!(mine, theirs, "{values:?}");
            // Stored uncompressed: the library's own V2 bytes inside, read back by the library
            // (through flate2, which checks the Adler-32) and by the reader.
            let stored = buckets.to_stored();
            let mut v2 = Vec::new();
            V2Serializer::new().serialize(&full, &mut v2).unwrap();
            assert_eq!(reader.plain(&stored.hdr).unwrap(), &v2[..], "{values:?}");
            let back: Histogram<u64> = Deserializer::new().deserialize(&mut &stored.hdr[..]).unwrap();
            assert_eq!(back, full, "{values:?}");
            assert_eq!(WireHistogram { hdr: stored.hdr.clone(), ..ours.clone() }, stored, "{values:?}");
        }
        // Merging buckets is adding histograms.
        for pair in sets.windows(2) {
            let mut both = pair[0].clone();
            both.extend(&pair[1]);
            let whole = WireHistogram::from_values(&mut both, &mut encoder);
            let mut merged =
                reader.buckets(&WireHistogram::from_values(&mut pair[0].clone(), &mut encoder).hdr).unwrap().clone();
            merged.add(reader.buckets(&WireHistogram::from_values(&mut pair[1].clone(), &mut encoder).hdr).unwrap());
            assert_eq!(merged.summary(whole.hdr.clone()), whole);
        }
    }

    #[test]
    fn counts_past_the_schema_are_refused() {
        let compressed = |plain: &[u8]| {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut z, plain).unwrap();
            let body = z.finish().unwrap();
            let mut hdr = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
            hdr.extend_from_slice(&(body.len() as u32).to_be_bytes());
            hdr.extend_from_slice(&body);
            hdr
        };
        let good = WireHistogram::from_values(&mut [5, 7], &mut HistogramEncoder::default());
        let mut reader = HistogramReader::default();
        let plain = reader.plain(&good.hdr).unwrap().to_vec();
        // A run of empty buckets up to the last one, then a count there: accepted, and one more
        // bucket on: refused.
        for (run, ok) in [(COUNTS_LEN - 1, true), (COUNTS_LEN, false)] {
            let mut p = plain[..40].to_vec();
            write_varint(&mut p, zig_zag_encode(-i64::from(run)));
            p.push(2);
            let len = (p.len() - 40) as u32;
            p[4..8].copy_from_slice(&len.to_be_bytes());
            assert_eq!(reader.buckets(&compressed(&p)).is_ok(), ok, "run of {run}");
        }
        assert!(reader.buckets(&good.hdr[..good.hdr.len() - 1]).is_err());
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
