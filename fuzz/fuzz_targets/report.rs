//! Reports from arbitrary bytes, as a collector receives them off MQTT: decoding must fail
//! cleanly or give a report that survives encode/decode in both encodings, histograms included.
#![no_main]

use edgeprobe_wire::{Encoding, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = decode(data) else { return };
    for encoding in [Encoding::Cbor, Encoding::Json] {
        let again = decode(&encode(&report, encoding)).expect("a decoded report re-encodes");
        assert_eq!(again, report);
    }
    for s in &report.subscribers {
        for m in edgeprobe_wire::METRICS {
            if let Some(h) = s.metrics.get(m) {
                let _ = h.histogram();
            }
        }
    }
});
