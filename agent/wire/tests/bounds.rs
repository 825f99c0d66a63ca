//! What no agent sends is refused at decode, in every encoding: histograms and counts past
//! what a window can hold (their sums and merges would overflow the collector's integers) and
//! windows that are no agent's. And encoding a merge, however large, never panics.

use edgeprobe_wire::histogram::new_histogram;
use edgeprobe_wire::*;

/// One bucket of `n` samples.
fn samples(n: u64) -> WireHistogram {
    let mut h = new_histogram();
    h.record_n(40_000, n).unwrap();
    WireHistogram::from_histogram(&h)
}

/// A one-line report of a 60-second window, with a journey of `n` samples listed twice.
fn report(n: u64) -> Report {
    let journey = JourneyReport {
        journey: "selfcare".into(),
        phase: "care".into(),
        channel: "app".into(),
        latency: Some(samples(n)),
        ok: 1,
        failed: 0,
        timeout: 0,
        abandoned: 0,
        failed_steps: Default::default(),
    };
    Report {
        v: SCHEMA_VERSION,
        agent_id: "gw-1".into(),
        boot_id: "b".into(),
        seq: 0,
        window_start: 1_700_000_040_000,
        window_end: 1_700_000_100_000,
        capture: CaptureHealth::default(),
        subscribers: vec![SubscriberReport {
            subscriber: "line-1".into(),
            metrics: Metrics { dns: Some(samples(n)), ..Metrics::default() },
            counters: Counters::default(),
            services: vec![],
            journeys: vec![journey.clone(), journey],
            resolvers: vec![],
            dns_late: None,
        }],
        agent: None,
        part: 0,
        parts: 0,
    }
}

fn decode_all(report: &Report) -> Vec<Result<Report, DecodeError>> {
    let mut codec = Codec::default();
    [encode(report, Encoding::Cbor), encode(report, Encoding::Json), to_cbor(report)]
        .iter()
        .map(|bytes| codec.decode(bytes))
        .collect()
}

#[test]
fn histograms_past_a_windows_count_are_refused() {
    for n in [MAX_COUNT + 1, 1 << 62, i64::MAX as u64] {
        for result in decode_all(&report(n)) {
            assert!(matches!(result, Err(DecodeError::Histogram(_))), "{n}: {result:?}");
        }
    }
    for result in decode_all(&report(MAX_COUNT)) {
        assert_eq!(result.unwrap().subscribers[0].journeys[0].latency.as_ref().unwrap().count, MAX_COUNT);
    }
}

#[test]
fn merges_past_i64_are_encoded_saturated_not_panicked() {
    let mut merged = new_histogram();
    for _ in 0..3 {
        merged.add(samples(1 << 62).histogram().unwrap()).unwrap();
    }
    let wire = WireHistogram::from_histogram(&merged);
    let back = wire.histogram().unwrap();
    assert_eq!(back.count_at(40_000), i64::MAX as u64);
}

#[test]
fn counts_past_a_windows_are_refused() {
    type Change = fn(&mut Report);
    let cases: [(&str, Change); 6] = [
        ("connects", |r| r.subscribers[0].counters.connects = MAX_COUNT + 1),
        ("dns rcode", |r| {
            r.subscribers[0].counters.dns.insert("NOERROR".into(), u64::MAX);
        }),
        ("bytes", |r| r.subscribers[0].counters.bytes_down = MAX_BYTES + 1),
        ("journey", |r| r.subscribers[0].journeys[0].failed = 1 << 62),
        ("capture", |r| r.capture.packets = u64::MAX),
        ("service", |r| {
            r.subscribers[0].services.push(ServiceReport {
                service: "video".into(),
                metrics: Metrics::default(),
                counters: Counters { retrans_up: MAX_COUNT + 1, ..Counters::default() },
            })
        }),
    ];
    for (what, change) in cases {
        let mut r = report(10);
        change(&mut r);
        for result in decode_all(&r) {
            assert!(matches!(result, Err(DecodeError::Count(_))), "{what}: {result:?}");
        }
    }
    let mut r = report(10);
    r.subscribers[0].counters.bytes_down = MAX_BYTES;
    r.subscribers[0].counters.connects = MAX_COUNT;
    assert!(decode_all(&r).into_iter().all(|d| d.is_ok()));
}

#[test]
fn windows_no_agent_reports_are_refused() {
    let minute = 60_000;
    let start = 1_700_000_040_000;
    for (window_start, window_end) in [
        (start, 0),
        (start, start),
        (start + minute, start),
        (start, start + 7_000),
        (start + 1_000, start + 1_000 + minute),
        (start, start + 2 * 86_400_000),
        (start, start + 1_500),
        (0, u64::MAX),
        (u64::MAX - 59_999, u64::MAX),
    ] {
        let mut r = report(10);
        (r.window_start, r.window_end) = (window_start, window_end);
        for result in decode_all(&r) {
            assert!(matches!(result, Err(DecodeError::Window(_))), "{window_start}..{window_end}: {result:?}");
        }
    }
    // Every span that divides a day, aligned to itself, is some agent's.
    for secs in [1, 5, 10, 60, 300, 3_600, 86_400] {
        let span = secs * 1000;
        let mut r = report(10);
        r.window_start = start / span * span;
        r.window_end = r.window_start + span;
        assert!(decode_all(&r).into_iter().all(|d| d.is_ok()), "{secs} s");
    }
}

#[test]
fn names_no_agent_writes_are_refused() {
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    type Change = fn(&mut Report);
    let cases: [(&str, Change); 7] = [
        ("agent id with a wildcard", |r| r.agent_id = "gw-#".into()),
        ("empty agent id", |r| r.agent_id.clear()),
        ("long boot id", |r| r.boot_id = "b".repeat(65)),
        ("long subscriber", |r| r.subscribers[0].subscriber = "s".repeat(MAX_NAME_BYTES + 1)),
        ("control character", |r| r.subscribers[0].subscriber = "line\u{7}1".into()),
        ("long journey", |r| r.subscribers[0].journeys[0].journey = "j".repeat(MAX_NAME_BYTES + 1)),
        ("long rcode", |r| {
            r.subscribers[0].counters.dns.insert("R".repeat(33), 1);
        }),
    ];
    for (what, change) in cases {
        let mut r = report(10);
        change(&mut r);
        for result in decode_all(&r) {
            assert!(matches!(result, Err(DecodeError::Field(_))), "{what}: {result:?}");
        }
    }
    let mut r = report(10);
    r.subscribers[0].subscriber = "s".repeat(MAX_NAME_BYTES);
    assert!(decode_all(&r).into_iter().all(|d| d.is_ok()));
    assert!(!acceptable_name(&long) && acceptable_name(&long[1..]));
}

#[test]
fn deep_nesting_in_named_cbor_costs_no_stack() {
    // An unknown field holding 100,000 nested arrays, spliced into a named report's top map:
    // skipped without recursion on a test thread's small stack, the known fields still read.
    let named = to_cbor(&report(1));
    let fields = named[0] & 0x1f;
    assert!(named[0] & 0xe0 == 0xa0 && fields < 23, "a short map heads a named report");
    let mut hostile = vec![0xa0 | (fields + 1), 0x61, b'z'];
    hostile.extend(std::iter::repeat_n(0x81, 100_000));
    hostile.push(0x00);
    hostile.extend_from_slice(&named[1..]);
    assert_eq!(from_cbor::<Report>(&hostile).unwrap(), report(1));
    // Unclosed, it is an error, not a crash.
    assert!(from_cbor::<Report>(&hostile[..100_003]).is_err());
}

/// A window's report of many lines goes out in numbered parts under a size, every line in
/// exactly one, each part a report the collector takes; part numbers out of range are refused.
#[test]
fn a_large_report_splits_into_parts_that_each_decode() {
    let mut big = report(10);
    big.capture.packets = 12_345;
    let line = big.subscribers[0].clone();
    big.subscribers = (0..3000).map(|i| SubscriberReport { subscriber: format!("line-{i}"), ..line.clone() }).collect();
    for encoding in [Encoding::Cbor, Encoding::Json] {
        let mut codec = Codec::default();
        let whole = codec.encode(&big, encoding).len();
        let max = 64 * 1024;
        let parts = codec.split(big.clone(), max, encoding);
        assert!(parts.len() >= whole / max, "{encoding:?}: {} parts for {whole} bytes", parts.len());
        let mut lines = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let bytes = codec.encode(p, encoding);
            assert!(bytes.len() <= max, "{encoding:?} part {i}: {} bytes", bytes.len());
            let back = codec.decode(&bytes).unwrap();
            assert_eq!((back.part, back.parts, back.seq), (i as u32, parts.len() as u32, big.seq));
            assert_eq!(back.capture.packets, if i == 0 { 12_345 } else { 0 }, "capture health once");
            lines.extend(back.subscribers.into_iter().map(|s| s.subscriber));
        }
        let want: Vec<String> = big.subscribers.iter().map(|s| s.subscriber.clone()).collect();
        assert_eq!(lines, want, "{encoding:?}: every line once, in order");
    }
    // Small enough: one piece, as it was.
    assert_eq!(Codec::default().split(report(10), 64 * 1024, Encoding::Cbor), vec![report(10)]);
    for (part, parts) in [(1, 1), (3, 2), (0, MAX_PARTS + 1), (1, 0)] {
        for result in decode_all(&Report { part, parts, ..report(10) }) {
            assert!(matches!(result, Err(DecodeError::Field(_))), "{part}/{parts}: {result:?}");
        }
    }
}
