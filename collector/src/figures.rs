//! Figures shared by the store, correlation and the console: merging stored histograms, and
//! turning windows into series.

/// Merges a V2-encoded histogram into `into`; bytes that do not decode add nothing.
pub fn add_encoded(into: &mut Option<hdrhistogram::Histogram<u64>>, hdr: &[u8]) {
    if hdr.is_empty() {
        return;
    }
    let wire = edgeprobe_wire::WireHistogram { count: 0, min: 0, max: 0, p50: 0, p90: 0, p99: 0, hdr: hdr.to_vec() };
    let Ok(h) = wire.histogram() else { return };
    match into.as_mut() {
        Some(m) => {
            let _ = m.add(&h);
        }
        None => *into = Some(h),
    }
}
