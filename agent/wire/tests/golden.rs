//! Golden vectors: a fixed report encoded as CBOR and JSON must give exactly the committed bytes,
//! and the committed bytes must decode to that report. The agent's encoder and the collector's
//! decoder are both held to these files. Set `EDGEPROBE_BLESS=1` to rewrite them after a
//! deliberate schema change (and bump `SCHEMA_VERSION` if old decoders cannot read it).

use edgeprobe_wire::histogram::{new_histogram, record};
use edgeprobe_wire::*;
use std::path::PathBuf;

fn histogram(values: &[u64]) -> Option<WireHistogram> {
    let mut h = new_histogram();
    for &v in values {
        record(&mut h, v);
    }
    Some(WireHistogram::from_histogram(&h))
}

fn sample_report() -> Report {
    let mut counters = Counters {
        connects: 3,
        connect_refused: 1,
        flows: 4,
        bytes_up: 1_200,
        bytes_down: 58_000,
        ..Counters::default()
    };
    counters.dns.insert("NOERROR".into(), 5);
    counters.dns.insert("NXDOMAIN".into(), 1);
    let service = ServiceReport {
        service: "portal.example.net".into(),
        metrics: Metrics {
            dns: histogram(&[12_000, 14_500]),
            tls_handshake: histogram(&[61_000]),
            ..Metrics::default()
        },
        counters: Counters { connects: 1, tls_ok: 1, bytes_down: 58_000, ..Counters::default() },
    };
    Report {
        v: SCHEMA_VERSION,
        agent_id: "gw-0001".into(),
        boot_id: "6f1c2a9e-0d4b-4c53-9d0e-2f7a1b3c4d5e".into(),
        seq: 42,
        window_start: 1_700_000_040_000,
        window_end: 1_700_000_100_000,
        capture: CaptureHealth {
            packets: 10_000,
            bytes: 6_500_000,
            kernel_drops: 2,
            unparsed: 7,
            evictions: Evictions { flows: 1, ..Evictions::default() },
        },
        subscribers: vec![SubscriberReport {
            subscriber: "line-000123".into(),
            metrics: Metrics {
                connect_network: histogram(&[20_100, 20_400, 95_000]),
                connect_home: histogram(&[1_200, 1_900, 45_000]),
                dns: histogram(&[12_000, 14_500, 9_800, 250_000, 11_000, 13_000]),
                tls_handshake: histogram(&[61_000]),
                http_ttfb: None,
            },
            counters,
            services: vec![service],
            journeys: vec![],
            resolvers: vec![],
        }],
        agent: None,
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

#[test]
fn encodings_match_the_golden_vectors() {
    let report = sample_report();
    for (encoding, file) in [(Encoding::Cbor, "report_v1.cbor"), (Encoding::Json, "report_v1.json")] {
        let bytes = encode(&report, encoding);
        if std::env::var_os("EDGEPROBE_BLESS").is_some() {
            std::fs::write(golden(file), &bytes).unwrap();
        }
        let committed = std::fs::read(golden(file)).expect("golden vector committed");
        assert_eq!(bytes, committed, "{file}: the encoder's output changed");
        assert_eq!(decode(&committed).unwrap(), report, "{file}: decodes to the sample report");
    }
}

#[test]
fn first_byte_tells_the_encodings_apart() {
    let report = sample_report();
    assert_eq!(encode(&report, Encoding::Json)[0], b'{');
    assert!((0xa0..=0xbf).contains(&encode(&report, Encoding::Cbor)[0]));
}

#[test]
fn bad_payloads_are_refused_with_a_reason() {
    assert!(matches!(decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(decode(b"\x00garbage"), Err(DecodeError::UnknownEncoding(0))));
    assert!(matches!(decode(b"{\"v\":1"), Err(DecodeError::Json(_))));
    assert!(matches!(decode(&[0xa3, 0x01]), Err(DecodeError::Cbor(_))));
    let mut future = sample_report();
    future.v = SCHEMA_VERSION + 1;
    assert!(matches!(decode(&encode(&future, Encoding::Cbor)), Err(DecodeError::Version(_))));
    let huge = vec![b'{'; codec::MAX_REPORT_BYTES + 1];
    assert!(matches!(decode(&huge), Err(DecodeError::TooLarge(_))));
}

#[test]
fn cbor_is_compact() {
    let cbor = encode(&sample_report(), Encoding::Cbor);
    let json = encode(&sample_report(), Encoding::Json);
    assert!(cbor.len() < json.len(), "cbor {} json {}", cbor.len(), json.len());
}
