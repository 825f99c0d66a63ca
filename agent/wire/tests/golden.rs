//! Golden vectors: a fixed report encoded as CBOR and JSON must give exactly the committed bytes,
//! and the committed bytes must decode to that report. The agent's encoder and the collector's
//! decoder are both held to these files; the version 1 files, from agents before the packed
//! CBOR, must still decode. Set `EDGEPROBE_BLESS=1` to rewrite the current version's files after
//! a deliberate schema change (and bump `SCHEMA_VERSION` if old decoders cannot read it).
//! `tests/tests/reports.rs` also reads the CBOR with an independent decoder (Python's cbor2).

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
        dns_late: 1,
        quic_ok: 1,
        quic_incomplete: 1,
        quic_bytes_up: 900,
        quic_bytes_down: 40_000,
        loaded_bytes_up: 31_000,
        loaded_bytes_down: 2_100_000,
        packets_up: 320,
        packets_down: 410,
        ..Counters::default()
    };
    counters.dns.insert("NOERROR".into(), 5);
    counters.dns.insert("NXDOMAIN".into(), 1);
    let service = ServiceReport {
        service: "portal.example.net".into(),
        metrics: Metrics {
            dns: histogram(&[12_000, 14_500]),
            tls_handshake: histogram(&[61_000]),
            quic_hello: histogram(&[40_200]),
            quic_home: histogram(&[10_300]),
            quic_handshake: histogram(&[55_100]),
            ..Metrics::default()
        },
        counters: Counters {
            connects: 1,
            tls_ok: 1,
            quic_ok: 1,
            bytes_down: 58_000,
            quic_bytes_down: 40_000,
            ..Counters::default()
        },
    };
    let mut line = SubscriberReport {
        subscriber: "line-000123".into(),
        metrics: Metrics {
            connect_network: histogram(&[20_100, 20_400, 95_000]),
            connect_home: histogram(&[1_200, 1_900, 45_000]),
            dns: histogram(&[12_000, 14_500, 9_800, 250_000, 11_000, 13_000]),
            tls_handshake: histogram(&[61_000]),
            http_ttfb: None,
            quic_hello: histogram(&[40_200, 95_000]),
            quic_home: histogram(&[10_300, 11_000]),
            quic_handshake: histogram(&[55_100]),
            rtt_home: histogram(&[2_080, 2_208, 36_352]),
            rtt_network: histogram(&[20_480, 20_992, 185_344]),
            rtt_home_loaded: histogram(&[36_352]),
            rtt_network_loaded: histogram(&[185_344]),
        },
        counters,
        services: vec![service],
        journeys: vec![],
        resolvers: vec![],
        dns_late: histogram(&[7_600_000]),
    };
    // The line's one TLS handshake is its one service's, as the agent writes it; so is its one
    // complete QUIC handshake (its incomplete one named no service).
    Codec::default().store_merges(&mut line).unwrap();
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
        subscribers: vec![line],
        agent: None,
        part: 0,
        parts: 0,
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

#[test]
fn encodings_match_the_golden_vectors() {
    let report = sample_report();
    for (encoding, file) in [(Encoding::Cbor, "report_v2.cbor"), (Encoding::Json, "report_v2.json")] {
        let bytes = encode(&report, encoding);
        // Only `1` blesses: `EDGEPROBE_BLESS=0` must not rewrite what it was meant to check.
        if std::env::var("EDGEPROBE_BLESS").as_deref() == Ok("1") {
            std::fs::write(golden(file), &bytes).unwrap();
        }
        let committed = std::fs::read(golden(file)).expect("golden vector committed");
        assert_eq!(bytes, committed, "{file}: the encoder's output changed");
        assert_eq!(decode(&committed).unwrap(), report, "{file}: decodes to the sample report");
    }
    // The named form is still written (the collector's rows of old reports, the replay figures):
    // byte for byte what those agents sent.
    let committed = std::fs::read(golden("report_v1.cbor")).expect("golden vector committed");
    assert_eq!(to_cbor(&decode(&committed).unwrap()), committed, "named CBOR encodes as version 1 agents did");
}

#[test]
fn version_1_reports_still_decode() {
    // Those agents compressed every histogram, a merge of the services' too.
    let mut report = Report { v: 1, ..sample_report() };
    report.subscribers[0].metrics.tls_handshake = histogram(&[61_000]);
    // Late DNS answers and QUIC came later.
    let line = &mut report.subscribers[0];
    line.dns_late = None;
    line.counters.dns_late = 0;
    for (metrics, counters) in std::iter::once((&mut line.metrics, &mut line.counters))
        .chain(line.services.iter_mut().map(|s| (&mut s.metrics, &mut s.counters)))
    {
        (metrics.quic_hello, metrics.quic_home, metrics.quic_handshake) = (None, None, None);
        (counters.quic_ok, counters.quic_incomplete, counters.quic_bytes_up, counters.quic_bytes_down) = (0, 0, 0, 0);
        (metrics.rtt_home, metrics.rtt_network, metrics.rtt_home_loaded, metrics.rtt_network_loaded) =
            (None, None, None, None);
        (counters.loaded_bytes_up, counters.loaded_bytes_down) = (0, 0);
        (counters.packets_up, counters.packets_down) = (0, 0);
    }
    // Their histograms were deflated by another compressor: the same counts in other bytes.
    same_compressor(&mut report);
    for file in ["report_v1.cbor", "report_v1.json"] {
        let committed = std::fs::read(golden(file)).expect("golden vector committed");
        let mut decoded = decode(&committed).unwrap();
        same_compressor(&mut decoded);
        assert_eq!(decoded, report, "{file}: decodes to the sample report");
    }
}

/// Every histogram of `report` deflated again by this encoder, from the counts its bytes hold.
fn same_compressor(report: &mut Report) {
    for line in &mut report.subscribers {
        let services = line.services.iter_mut().map(|s| &mut s.metrics);
        for metrics in std::iter::once(&mut line.metrics).chain(services) {
            for h in metrics.iter_mut() {
                *h = WireHistogram::from_histogram(&h.histogram().unwrap());
            }
        }
    }
}

/// Which whole-line histograms a packed report carries, read with field numbers alone.
fn packed_line_metrics(cbor: &[u8]) -> Vec<u64> {
    #[derive(minicbor::Decode)]
    #[cbor(map)]
    struct Packed {
        #[n(7)]
        subscribers: Vec<Line>,
    }
    #[derive(minicbor::Decode)]
    #[cbor(map)]
    struct Line {
        #[n(1)]
        metrics: std::collections::BTreeMap<u64, minicbor::bytes::ByteVec>,
    }
    let packed: Packed = minicbor::decode(cbor).unwrap();
    packed.subscribers[0].metrics.keys().copied().collect()
}

#[test]
fn a_line_histogram_that_merges_its_services_is_left_out_and_rebuilt() {
    // The sample line's one TLS handshake and one complete QUIC handshake are its one service's:
    // left out, then rebuilt. Its QUIC hello and home times include an unnamed connection's.
    let report = sample_report();
    let cbor = encode(&report, Encoding::Cbor);
    assert_eq!(
        packed_line_metrics(&cbor),
        [0, 1, 2, 5, 6, 8, 9, 10, 11],
        "connect_network, connect_home, dns, quic_hello, quic_home and the round trips"
    );
    assert_eq!(decode(&cbor).unwrap(), report);

    // A second service with a handshake the line has too: still a merge, once the agent has
    // written it as one.
    let mut two = sample_report();
    let mut second = two.subscribers[0].services[0].clone();
    second.service = "cdn.example.net".into();
    second.metrics = Metrics { tls_handshake: histogram(&[75_000]), ..Metrics::default() };
    two.subscribers[0].services.push(second);
    two.subscribers[0].metrics.tls_handshake = histogram(&[61_000, 75_000]);
    assert_eq!(
        packed_line_metrics(&encode(&two, Encoding::Cbor)),
        [0, 1, 2, 3, 5, 6, 8, 9, 10, 11],
        "compressed: sent as it is"
    );
    let compressed = two.subscribers[0].metrics.tls_handshake.clone().unwrap();
    Codec::default().store_merges(&mut two.subscribers[0]).unwrap();
    let stored = two.subscribers[0].metrics.tls_handshake.clone().unwrap();
    assert_ne!(stored.hdr, compressed.hdr);
    assert_eq!(stored.histogram().unwrap(), compressed.histogram().unwrap());
    assert_eq!(WireHistogram { hdr: vec![], ..stored }, WireHistogram { hdr: vec![], ..compressed });
    let cbor = encode(&two, Encoding::Cbor);
    assert_eq!(packed_line_metrics(&cbor), [0, 1, 2, 5, 6, 8, 9, 10, 11]);
    assert_eq!(decode(&cbor).unwrap(), two);

    // A line said to have no handshake though a service has one stays without.
    let mut none = sample_report();
    none.subscribers[0].metrics.tls_handshake = None;
    assert_eq!(decode(&encode(&none, Encoding::Cbor)).unwrap(), none);

    // A handshake no service was named for, or a different one, keeps the line's own.
    for line_tls in [&[61_000, 75_000, 90_000][..], &[61_000, 76_000]] {
        let mut other = two.clone();
        other.subscribers[0].metrics.tls_handshake = histogram(line_tls);
        let kept = other.clone();
        Codec::default().store_merges(&mut other.subscribers[0]).unwrap();
        assert_eq!(other, kept, "{line_tls:?}");
        let cbor = encode(&other, Encoding::Cbor);
        assert_eq!(packed_line_metrics(&cbor), [0, 1, 2, 3, 5, 6, 8, 9, 10, 11], "{line_tls:?}");
        assert_eq!(decode(&cbor).unwrap(), other);
    }
}

#[test]
fn a_packed_reports_lines_can_be_kept_as_they_came() {
    let mut report = sample_report();
    let mut second = report.subscribers[0].clone();
    second.subscriber = "line-000124".into();
    second.metrics.dns = None;
    report.subscribers.push(second);
    let cbor = encode(&report, Encoding::Cbor);
    let mut codec = Codec::default();
    let spans = |codec: &mut Codec, payload: &[u8]| codec.decode_with_lines(payload).map(|(_, spans)| spans);
    let lines = spans(&mut codec, &cbor).unwrap();
    assert_eq!(lines.len(), 2);
    for (span, line) in lines.into_iter().zip(&report.subscribers) {
        assert_eq!(&codec.decode_line(&cbor[span]).unwrap(), line);
        let encoded = codec.encode_line(line);
        assert_eq!(&codec.decode_line(&encoded).unwrap(), line);
        assert_eq!(&codec.decode_line(&to_cbor(line)).unwrap(), line);
    }
    assert_eq!(spans(&mut codec, &encode(&report, Encoding::Json)).unwrap(), []);
    assert_eq!(spans(&mut codec, &to_cbor(&report)).unwrap(), []);
    assert!(spans(&mut codec, &cbor[..cbor.len() - 3]).is_err());
}

#[test]
fn rcodes_travel_as_numbers_and_unknown_names_as_text() {
    let mut report = sample_report();
    let dns = &mut report.subscribers[0].counters.dns;
    for (name, n) in [("TIMEOUT", 3), ("RCODE12", 1), ("RCODE5", 2), ("SERVFAIL", 4), ("odd", 9)] {
        dns.insert(name.into(), n);
    }
    let cbor = encode(&report, Encoding::Cbor);
    assert_eq!(decode(&cbor).unwrap(), report);
    let text = |s: &str| cbor.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(!text("NOERROR") && !text("TIMEOUT") && !text("RCODE12"), "known rcodes go as numbers");
    assert!(text("RCODE5") && text("odd"), "names that are not an rcode's own stay text");
}

#[test]
fn packed_cbor_is_smaller_than_named() {
    let report = sample_report();
    let named = to_cbor(&report);
    let packed = encode(&report, Encoding::Cbor);
    assert!(packed.len() * 3 < named.len() * 2, "packed {} named {}", packed.len(), named.len());
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
    assert!(matches!(decode(&[0xa1, 0x61, b'v']), Err(DecodeError::Cbor(_))));
    let mut future = sample_report();
    future.v = SCHEMA_VERSION + 1;
    assert!(matches!(decode(&encode(&future, Encoding::Cbor)), Err(DecodeError::Version(_))));
    assert!(matches!(decode(&to_cbor(&future)), Err(DecodeError::Version(_))));
    // Histogram bytes that are no histogram, in either form.
    let mut garbage = sample_report();
    garbage.subscribers[0].services[0].metrics.dns.as_mut().unwrap().hdr[12] ^= 0xff;
    assert!(matches!(decode(&encode(&garbage, Encoding::Json)), Err(DecodeError::Histogram(_))));
    assert!(matches!(decode(&encode(&garbage, Encoding::Cbor)), Err(DecodeError::Histogram(_))));
    let huge = vec![b'{'; edgeprobe_wire::MAX_REPORT_BYTES + 1];
    assert!(matches!(decode(&huge), Err(DecodeError::TooLarge(_))));
}

#[test]
fn cbor_is_compact() {
    let cbor = encode(&sample_report(), Encoding::Cbor);
    let json = encode(&sample_report(), Encoding::Json);
    assert!(cbor.len() < json.len(), "cbor {} json {}", cbor.len(), json.len());
}

#[test]
fn summary_figures_come_from_the_histogram() {
    // A named report whose figures disagree with its histogram is told by the histogram.
    let report = sample_report();
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&report, Encoding::Json)).unwrap();
    json["subscribers"][0]["metrics"]["dns"]["p90"] = 1.into();
    json["subscribers"][0]["metrics"]["dns"]["count"] = 600.into();
    assert_eq!(decode(&serde_json::to_vec(&json).unwrap()).unwrap(), report);
}

/// Collectors built before QUIC keep reading reports that carry it. This is that schema's line
/// as it was numbered then (metrics 0 to 4, counters 0 to 14), decoded as minicbor decodes
/// every packed map: entries it does not know are skipped, what it knew reads unchanged.
#[test]
fn collectors_from_before_quic_read_reports_that_carry_it() {
    use minicbor::bytes::ByteVec;
    use std::collections::BTreeMap;
    #[derive(minicbor::Decode)]
    #[cbor(map)]
    struct OldReport {
        #[n(0)]
        v: u16,
        #[n(7)]
        subscribers: Vec<OldLine>,
    }
    #[derive(minicbor::Decode)]
    #[cbor(map)]
    struct OldLine {
        #[n(0)]
        subscriber: String,
        #[n(1)]
        metrics: Option<OldMetrics>,
        #[n(2)]
        counters: Option<OldCounters>,
        #[n(3)]
        services: Option<Vec<OldService>>,
    }
    #[derive(minicbor::Decode)]
    #[cbor(map)]
    struct OldService {
        #[n(0)]
        service: String,
        #[n(1)]
        metrics: Option<OldMetrics>,
        #[n(2)]
        counters: Option<OldCounters>,
    }
    #[derive(minicbor::Decode, Default)]
    #[cbor(map)]
    struct OldMetrics {
        #[n(0)]
        connect_network: Option<ByteVec>,
        #[n(1)]
        connect_home: Option<ByteVec>,
        #[n(2)]
        dns: Option<ByteVec>,
        #[n(3)]
        tls_handshake: Option<ByteVec>,
        #[n(4)]
        http_ttfb: Option<ByteVec>,
    }
    #[derive(minicbor::Decode, Default)]
    #[cbor(map)]
    struct OldCounters {
        #[n(0)]
        connects: Option<u64>,
        #[n(3)]
        dns: Option<BTreeMap<i64, u64>>,
        #[n(4)]
        tls_ok: Option<u64>,
        #[n(11)]
        bytes_down: Option<u64>,
        #[n(14)]
        dns_late: Option<u64>,
    }
    let committed = std::fs::read(golden("report_v2.cbor")).expect("golden vector committed");
    let now = decode(&committed).unwrap();
    let old: OldReport = minicbor::decode(&committed).expect("the old schema reads the new report");
    assert_eq!((old.v, old.subscribers.len()), (now.v, now.subscribers.len()));
    let (line, then) = (&now.subscribers[0], &old.subscribers[0]);
    assert_eq!(then.subscriber, line.subscriber);
    let m = then.metrics.as_ref().unwrap();
    let bytes = |h: &Option<WireHistogram>| h.as_ref().map(|h| h.hdr.clone());
    for (old, new) in [
        (&m.connect_network, &line.metrics.connect_network),
        (&m.connect_home, &line.metrics.connect_home),
        (&m.dns, &line.metrics.dns),
    ] {
        assert_eq!(old.as_ref().map(|b| b.to_vec()), bytes(new));
    }
    assert!(m.tls_handshake.is_none() && m.http_ttfb.is_none(), "left out as a merge, or absent");
    let c = then.counters.as_ref().unwrap();
    assert_eq!((c.connects, c.tls_ok, c.bytes_down, c.dns_late), (Some(3), None, Some(58_000), Some(1)));
    assert_eq!(c.dns.as_ref().map(|d| d.values().sum::<u64>()), Some(6));
    let service = &then.services.as_ref().unwrap()[0];
    assert_eq!(service.service, line.services[0].service);
    let sm = service.metrics.as_ref().unwrap();
    assert_eq!(sm.tls_handshake.as_ref().map(|b| b.to_vec()), bytes(&line.services[0].metrics.tls_handshake));
    assert_eq!(service.counters.as_ref().unwrap().tls_ok, Some(1));
    // And the report does carry QUIC and round trips, which this reader skipped.
    assert!(line.metrics.quic_hello.is_some() && line.services[0].metrics.quic_handshake.is_some());
    assert!(line.metrics.rtt_network_loaded.is_some() && line.counters.loaded_bytes_down > 0);
}
