//! The packed CBOR encoding of a report (schema version 2), what agents publish. Every field
//! has a number instead of its name (declared beside it in `report.rs`; numbers are never
//! reused or changed), and the report carries nothing a reader can compute from the rest:
//!
//! - a histogram is its HdrHistogram V2 compressed bytes alone; the decoder reads its count,
//!   min, max and percentiles from them, as any HdrHistogram library can;
//! - a subscriber's histogram that holds exactly its services' samples of that metric (every
//!   sample of the line was named) is sent as their merge, stored uncompressed, in JSON (see
//!   [`Codec::store_merges`]) and left out here: the decoder merges the services' again;
//! - DNS rcodes are their numbers (`TIMEOUT` is -1).
//!
//! Zero counters and empty parts are left out as in JSON. The named form (JSON, and the CBOR of
//! schema version 1) decodes to the same report.

use crate::histogram::{Buckets, HistogramReader};
use crate::{METRICS, Report, SubscriberReport, WireHistogram};
use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::encode::{Encoder, Error as EncodeError, Write};
use std::collections::BTreeMap;

/// Reusable state for encoding and decoding reports: the inflater and buffers that read
/// histograms.
#[derive(Default)]
pub struct Codec {
    pub(crate) reader: HistogramReader,
}

impl Codec {
    pub(crate) fn encode_packed(&mut self, report: &Report) -> Vec<u8> {
        let mut packed = report.clone();
        for line in &mut packed.subscribers {
            self.leave_out_merges(line);
        }
        minicbor::to_vec(&packed).expect("encoding into memory cannot fail")
    }

    /// Drops the line's histograms that [`Codec::store_merges`] wrote, as the packed form does.
    /// A line that lacks a histogram its services have (no agent writes one, but a JSON report
    /// may say so) gets an empty one instead, which the reader takes for "none", not a merge.
    pub fn leave_out_merges(&mut self, line: &mut SubscriberReport) {
        for name in METRICS {
            let named = line.services.iter().filter_map(|s| s.metrics.get(name));
            let (services, count) = named.fold((0, 0), |(n, c), h| (n + 1, c + h.count));
            let slot = match line.metrics.get(name) {
                None if services > 0 => Some(WireHistogram::none()),
                // Counts first: most lines that differ differ there.
                Some(whole)
                    if count == whole.count
                        && self.merge_of_services(line, name).ok().flatten().as_ref() == Some(whole) =>
                {
                    None
                }
                _ => continue,
            };
            *line.metrics.slot(name).expect("a metric name") = slot;
        }
    }

    /// Writes each of the line's histograms that holds exactly its services' samples as their
    /// merge, which the packed form leaves out and its reader rebuilds, byte for byte. The
    /// agent calls this on every line it reports; a line with samples no service was named for
    /// keeps its own histogram.
    pub fn store_merges(&mut self, line: &mut SubscriberReport) -> Result<(), String> {
        for name in METRICS {
            let Some(whole) = line.metrics.get(name) else { continue };
            let named: u64 = line.services.iter().filter_map(|s| s.metrics.get(name)).map(|h| h.count).sum();
            if named != whole.count {
                continue;
            }
            let whole = self.reader.buckets(&whole.hdr).map_err(|e| e.to_string())?.clone();
            if let Some(merged) = self.merged_buckets(line, name)?.filter(|m| *m == whole) {
                *line.metrics.slot(name).expect("a metric name") = Some(merged.to_stored());
            }
        }
        Ok(())
    }

    /// Decodes a packed report, noting where each line lies in `payload` (see
    /// [`Codec::decode_with_lines`]).
    pub(crate) fn decode_packed(
        &mut self,
        payload: &[u8],
    ) -> Result<(Report, Vec<std::ops::Range<usize>>), crate::error::DecodeError> {
        let mut spans = Vec::new();
        let mut report: Report =
            minicbor::decode_with(payload, &mut spans).map_err(|e| crate::error::DecodeError::Cbor(e.to_string()))?;
        for line in &mut report.subscribers {
            self.complete(line).map_err(crate::error::DecodeError::Histogram)?;
        }
        Ok((report, spans))
    }

    /// A subscriber's part of a report in the packed form, as the collector stores it.
    pub fn encode_line(&mut self, line: &SubscriberReport) -> Vec<u8> {
        let mut packed = line.clone();
        self.leave_out_merges(&mut packed);
        minicbor::to_vec(&packed).expect("encoding into memory cannot fail")
    }

    /// Reads what [`Codec::encode_line`] wrote, or the named CBOR of [`crate::to_cbor`].
    pub fn decode_line(&mut self, bytes: &[u8]) -> Result<SubscriberReport, String> {
        if first_key_is_text(bytes) {
            return crate::named::from_cbor(bytes);
        }
        let mut line = minicbor::decode(bytes).map_err(|e| e.to_string())?;
        self.complete(&mut line)?;
        Ok(line)
    }

    /// Makes a packed line whole: the summaries read from the histograms' bytes, and the line's
    /// histograms left out as merges merged again. Each service histogram is inflated once,
    /// for its summary and for the merge it is part of.
    fn complete(&mut self, line: &mut SubscriberReport) -> Result<(), String> {
        // Which of the line's histograms are left out (merges), and which are said to be none.
        let left_out = METRICS.map(|name| {
            let slot = line.metrics.slot(name).expect("a metric name");
            if slot.as_ref().is_some_and(|h| h.hdr.is_empty()) {
                *slot = None;
                return false;
            }
            slot.is_none()
        });
        let subscriber = &line.subscriber;
        let err = |e: crate::histogram::HistogramError| format!("subscriber {subscriber}: {e}");
        let mut merged: [Option<Buckets>; METRICS.len()] = Default::default();
        for service in &mut line.services {
            for (i, name) in METRICS.iter().enumerate() {
                let Some(h) = service.metrics.slot(name).expect("a metric name") else { continue };
                let buckets = self.reader.buckets(&h.hdr).map_err(err)?;
                *h = buckets.summary(std::mem::take(&mut h.hdr));
                if left_out[i] {
                    match &mut merged[i] {
                        Some(m) => m.add(buckets),
                        None => merged[i] = Some(buckets.clone()),
                    }
                }
            }
        }
        let journeys = line.journeys.iter_mut().filter_map(|j| j.latency.as_mut());
        let resolvers = line.resolvers.iter_mut().filter_map(|r| r.latency.as_mut());
        let late = line.dns_late.as_mut();
        for h in line.metrics.iter_mut().chain(journeys).chain(resolvers).chain(late) {
            h.summarize(&mut self.reader).map_err(err)?;
        }
        for (name, merged) in METRICS.iter().zip(merged) {
            if let Some(m) = merged {
                *line.metrics.slot(name).expect("a metric name") = Some(m.to_stored());
            }
        }
        Ok(())
    }

    /// Sets every histogram's summary from its bytes, refusing bytes that are no histogram of
    /// this schema.
    pub(crate) fn summarize(&mut self, report: &mut Report) -> Result<(), String> {
        report.subscribers.iter_mut().try_for_each(|line| self.summarize_line(line))
    }

    fn summarize_line(&mut self, line: &mut SubscriberReport) -> Result<(), String> {
        let journeys = line.journeys.iter_mut().filter_map(|j| j.latency.as_mut());
        let resolvers = line.resolvers.iter_mut().filter_map(|r| r.latency.as_mut());
        let services = line.services.iter_mut().flat_map(|s| s.metrics.iter_mut());
        let late = line.dns_late.as_mut();
        for h in line.metrics.iter_mut().chain(services).chain(journeys).chain(resolvers).chain(late) {
            h.summarize(&mut self.reader).map_err(|e| format!("subscriber {}: {e}", line.subscriber))?;
        }
        Ok(())
    }

    /// The merge of the line's services' histograms of `metric`, if any service has one,
    /// stored uncompressed (see [`Buckets::to_stored`]).
    fn merge_of_services(&mut self, line: &SubscriberReport, metric: &str) -> Result<Option<WireHistogram>, String> {
        Ok(self.merged_buckets(line, metric)?.map(|m| m.to_stored()))
    }

    fn merged_buckets(&mut self, line: &SubscriberReport, metric: &str) -> Result<Option<Buckets>, String> {
        let mut merged: Option<Buckets> = None;
        for h in line.services.iter().filter_map(|s| s.metrics.get(metric)) {
            let buckets = self.reader.buckets(&h.hdr).map_err(|e| format!("subscriber {}: {e}", line.subscriber))?;
            match &mut merged {
                Some(m) => m.add(buckets),
                None => merged = Some(buckets.clone()),
            }
        }
        Ok(merged)
    }
}

impl WireHistogram {
    /// No histogram, where the packed form would otherwise read a merge; see
    /// [`Codec::leave_out_merges`].
    fn none() -> WireHistogram {
        WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: Vec::new() }
    }
}

impl<C> minicbor::Encode<C> for WireHistogram {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.bytes(&self.hdr)?.ok()
    }
}

/// The bytes alone; [`Codec::summarize`] fills in the rest.
impl<'b, C> minicbor::Decode<'b, C> for WireHistogram {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        Ok(WireHistogram { hdr: d.bytes()?.to_vec(), ..WireHistogram::none() })
    }
}

/// A field left out when it holds its default (zero, empty), and read as that when missing.
pub(crate) mod or_default {
    use super::*;

    pub fn encode<C, T: minicbor::Encode<C>, W: Write>(
        v: &T,
        e: &mut Encoder<W>,
        ctx: &mut C,
    ) -> Result<(), EncodeError<W::Error>> {
        v.encode(e, ctx)
    }

    pub fn decode<'b, C, T: minicbor::Decode<'b, C>>(d: &mut Decoder<'b>, ctx: &mut C) -> Result<T, DecodeError> {
        T::decode(d, ctx)
    }

    pub fn is_nil<T: Default + PartialEq>(v: &T) -> bool {
        *v == T::default()
    }

    pub fn nil<T: Default>() -> Option<T> {
        Some(T::default())
    }
}

/// Where the lines of a packed report lie in its bytes, noted while it is decoded, so that a
/// reader can keep each line's bytes as they came: they are what [`Codec::encode_line`] would
/// write, for [`Codec::decode_line`] to read.
pub trait LineSpans {
    fn line(&mut self, span: std::ops::Range<usize>);
}

impl LineSpans for () {
    fn line(&mut self, _: std::ops::Range<usize>) {}
}

impl LineSpans for Vec<std::ops::Range<usize>> {
    fn line(&mut self, span: std::ops::Range<usize>) {
        self.push(span);
    }
}

/// `Report::subscribers`, each line's span told to the context.
pub(crate) mod lines {
    use super::*;

    pub fn decode<'b, C: LineSpans>(d: &mut Decoder<'b>, ctx: &mut C) -> Result<Vec<SubscriberReport>, DecodeError> {
        let len = d.array()?;
        let mut lines = Vec::new();
        while len.is_none_or(|n| lines.len() < n as usize) {
            if len.is_none() && d.datatype()? == Type::Break {
                d.skip()?;
                break;
            }
            let start = d.position();
            lines.push(d.decode_with(ctx)?);
            ctx.line(start..d.position());
        }
        Ok(lines)
    }
}

/// DNS transactions by rcode: a known rcode's number for its name, -1 for `TIMEOUT`; any other
/// name stays text.
pub(crate) mod rcodes {
    use super::*;

    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
        "NOTZONE",
    ];
    const TIMEOUT: i64 = -1;

    /// The number for a name, where the name is the one that number decodes to.
    fn number(name: &str) -> Option<i64> {
        if name == "TIMEOUT" {
            return Some(TIMEOUT);
        }
        if let Some(i) = NAMES.iter().position(|n| *n == name) {
            return Some(i as i64);
        }
        let n: u16 = name.strip_prefix("RCODE")?.parse().ok()?;
        (usize::from(n) >= NAMES.len() && format!("RCODE{n}") == name).then_some(i64::from(n))
    }

    fn name(number: i64) -> Option<String> {
        match number {
            TIMEOUT => Some("TIMEOUT".into()),
            n if (0..NAMES.len() as i64).contains(&n) => Some(NAMES[n as usize].into()),
            n if (0..=i64::from(u16::MAX)).contains(&n) => Some(format!("RCODE{n}")),
            _ => None,
        }
    }

    pub fn encode<C, W: Write>(
        map: &BTreeMap<String, u64>,
        e: &mut Encoder<W>,
        _: &mut C,
    ) -> Result<(), EncodeError<W::Error>> {
        e.map(map.len() as u64)?;
        for (k, v) in map {
            match number(k) {
                Some(n) => e.i64(n)?,
                None => e.str(k)?,
            };
            e.u64(*v)?;
        }
        Ok(())
    }

    pub fn decode<C>(d: &mut Decoder<'_>, _: &mut C) -> Result<BTreeMap<String, u64>, DecodeError> {
        let len = d.map()?.ok_or_else(|| DecodeError::message("an rcode map of indefinite length"))?;
        let mut map = BTreeMap::new();
        for _ in 0..len {
            let key = match d.datatype()? {
                Type::String => d.str()?.to_string(),
                _ => name(d.i64()?).ok_or_else(|| DecodeError::message("rcode out of range"))?,
            };
            map.insert(key, d.u64()?);
        }
        Ok(map)
    }

    pub fn is_nil(map: &BTreeMap<String, u64>) -> bool {
        map.is_empty()
    }

    pub fn nil() -> Option<BTreeMap<String, u64>> {
        Some(BTreeMap::new())
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
