//! What each fuzz target does with one input, as plain functions: the libFuzzer binaries in
//! `fuzz_targets/` call them on nightly, and `tests/tests/fuzz_corpus.rs` replays every corpus
//! and regression input through them on stable, in every `cargo test`. Each returns normally
//! or panics on a broken promise.

use edgeprobe_core::analyze::dns::DnsTracker;
use edgeprobe_core::analyze::http::HttpSession;
use edgeprobe_core::analyze::quic::{QuicSession, sniff};
use edgeprobe_core::analyze::tcp::Segment;
use edgeprobe_core::analyze::tls::TlsSession;
use edgeprobe_core::counters::Counters;
use edgeprobe_core::dissect::dns::{DnsMessage, read_name};
use edgeprobe_core::dissect::quic::{InitialKeys, Version, crypto_frames, parse};
use edgeprobe_core::dissect::tls::{parse_client_hello, parse_server_hello};
use edgeprobe_core::event::Transport;
use edgeprobe_core::{CoreConfig, LinkType, Probe, Timestamp};
use edgeprobe_wire::{Encoding, decode, encode};

const LINKS: [u32; 8] = [1, 101, 113, 276, 228, 229, 0, 147];

/// Whole frames through the probe: link layer to DNS and TCP analysis. The first byte picks
/// the link type, the next the time step (backwards when its top bit is set), then a length;
/// several frames per input. The tables are tiny so evictions and timeouts are exercised too.
pub fn dissect(data: &[u8]) {
    let config = CoreConfig { flow_capacity: 4, dns_capacity: 4, fragment_slots: 2, ..CoreConfig::default() };
    let mut probe = Probe::new(config);
    let mut now = 1_700_000_000_000_000_000u64;
    let mut rest = data;
    while rest.len() > 3 {
        let link = LinkType::from_linktype(LINKS[usize::from(rest[0] % 8)]);
        let step = u64::from(rest[1]) * 7_000_000;
        now = if rest[1] & 0x80 != 0 { now - step } else { now + step };
        let len = usize::from(rest[2]) * 8 + usize::from(rest[3] & 7);
        let frame = &rest[4..(4 + len).min(rest.len())];
        probe.handle_frame(Timestamp(now), link, frame, frame.len() as u32);
        while let Some(event) = probe.poll_event() {
            assert!(event.ts.as_nanos() > 0);
        }
        rest = &rest[(4 + len).min(rest.len())..];
    }
    probe.finish(Timestamp(now));
    while probe.poll_event().is_some() {}
}

/// DNS messages: header, question and name decoding (compression pointers included), then the
/// transaction tracker, which must never match a response whose question it cannot read.
pub fn dns(data: &[u8]) {
    let mut name = String::new();
    if let Ok(msg) = DnsMessage::new_checked(data) {
        let _ = msg.rcode().name();
        if let Ok(q) = msg.first_question(&mut name) {
            assert!(q.end <= data.len());
            assert!(name.len() <= 255 * 4);
        }
    }
    for at in 0..data.len().min(64) {
        if let Ok(end) = read_name(data, at, &mut name) {
            assert!(end <= data.len());
        }
    }
    let mut tracker = DnsTracker::new(2, 5_000_000_000, 30_000_000_000);
    let mut counters = Counters::default();
    let client = "192.0.2.1:40000".parse().unwrap();
    let server = "192.0.2.53:53".parse().unwrap();
    // The same bytes as a query, then as a response: a match needs a readable question.
    let t = Timestamp(1_000_000_000);
    let line: std::sync::Arc<str> = "line-1".into();
    tracker.on_message(t, client, server, Transport::Udp, data, line.clone(), &mut counters);
    if let Some(out) = tracker.on_message(t, server, client, Transport::Udp, data, line, &mut counters) {
        assert!(DnsMessage::new_checked(data).unwrap().first_question(&mut name).is_ok());
        assert_eq!(out.event.latency_us, Some(0));
    }
    let _ = tracker.drain(t);
}

/// TLS: hello parsers on raw bodies, then a session fed the input as alternating client and
/// server segments, which must never panic whatever the records claim.
pub fn tls(data: &[u8]) {
    let _ = parse_client_hello(data);
    let _ = parse_server_hello(data);
    let mut session = TlsSession::new(4096);
    let mut seq = [1u32, 1];
    for (i, chunk) in data.chunks(97).enumerate() {
        let dir = usize::from(chunk[0] & 1 == 1 && i > 0);
        let seg = Segment { seq: seq[dir], ack: 0, flags: 0x18, window: 100, len: chunk.len() as u32 };
        seq[dir] = seq[dir].wrapping_add(chunk.len() as u32);
        match session.feed(Timestamp(i as u64 * 1000), dir, &seg, chunk) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
    }
    let _ = session.finish();
}

/// QUIC: the header and frame parsers at every offset, then a session fed the input as
/// datagrams split at 0xfe bytes. A datagram's first byte says who sends it (bit 0: the server)
/// and how: with bit 7 set, the rest are frames the target seals into a client Initial with
/// the connection's keys (bit 6: version 2), so that CRYPTO reassembly and the ClientHello
/// reader behind the AEAD are reached; otherwise the rest goes as it is.
pub fn quic(data: &[u8]) {
    let mut scratch = Vec::new();
    for at in 0..data.len().min(64) {
        if let Ok((_, next)) = parse(data, at) {
            assert!(next > at || next == data.len());
        }
        let _ = crypto_frames(&data[at..], |offset, chunk| assert!(offset < 1 << 62 && chunk.len() <= data.len()));
    }
    let _ = sniff(data, &mut scratch);
    const DCID: &[u8] = &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let mut session = QuicSession::new(0, 2048);
    for (i, chunk) in data.split(|&b| b == 0xfe).enumerate() {
        let Some((&how, rest)) = chunk.split_first() else { continue };
        let dir = usize::from(how & 1);
        let datagram = if how & 0x80 != 0 {
            let (version, first) = if how & 0x40 != 0 { (0x6b33_43cf, 0xd3) } else { (1, 0xc3) };
            let keys = InitialKeys::new(Version(version), DCID, true).expect("known version");
            keys.seal(first, Version(version), (DCID, &[]), i as u32, rest)
        } else {
            rest.to_vec()
        };
        let fed = session.feed(Timestamp(i as u64 * 1000), dir, &datagram, &mut scratch);
        if let Some(event) = fed.done {
            assert!(event.handshake_us.is_some(), "an ok handshake is timed");
            return;
        }
        let _ = session.take_name();
    }
    if let Some(event) = session.finish() {
        assert!(event.handshake_us.is_none());
    }
}

/// HTTP/1.x: the input split into client and server segments; framing must never panic or
/// loop, and every event must name a real method.
pub fn http(data: &[u8]) {
    let mut session = HttpSession::default();
    let mut seq = [1u32, 1];
    let mut done = Vec::new();
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        let dir = i % 2;
        let seg = Segment { seq: seq[dir], ack: 0, flags: 0x18, window: 100, len: chunk.len() as u32 };
        seq[dir] = seq[dir].wrapping_add(chunk.len() as u32);
        if session.feed(Timestamp(i as u64 * 1000), dir, &seg, chunk, &mut done).is_err() {
            break;
        }
    }
    for event in &done {
        assert!(!event.method.is_empty() && event.method.bytes().all(|b| b.is_ascii_uppercase()));
    }
}

/// Reports from arbitrary bytes, as a collector receives them off MQTT: decoding must fail
/// cleanly or give a report that survives encode/decode in both encodings, histograms included.
pub fn report(data: &[u8]) {
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
}

/// The collector's ingest path on one message: classified as a report off MQTT, stored in a
/// scratch SQLite store in the writer's transaction, then its window evaluated and its
/// journey figures refreshed, as the writer does. Nothing may panic; what is refused is
/// refused before the store sees it. Windows are admitted whenever they are (the fuzzer's
/// clock is not the collector's), the schema's own checks still apply.
pub fn ingest(data: &[u8], store: &mut edgeprobe_collector::store::Store) {
    use edgeprobe_collector::ingest::{Windows, Work, classify};
    // On the topic of the agent the report names, so that the fuzzer reaches past that check.
    let agent = decode(data).map_or_else(|_| "gw-1".to_string(), |r| r.agent_id);
    let topic = edgeprobe_wire::mqtt::report_topic(&agent);
    let publish = rumqttc::Publish::new(topic, rumqttc::QoS::AtLeastOnce, data.to_vec());
    let windows = Windows { max_ahead_ms: i64::MAX / 4, max_age_ms: None };
    let mut codec = edgeprobe_wire::Codec::default();
    let now = 1_800_000_000_000;
    let Ok(Some(Work::Report { report, .. })) = classify(&publish, now, &mut codec, &windows) else { return };
    let window = (report.report.window_start as i64, report.report.window_end as i64);
    store.transaction(false, |s| s.store_reports_in_tx(&[(&report, now)])).expect("a checked report stores");
    let config = edgeprobe_collector::config::CollectorConfig::default();
    // Evaluated at most once per window; later inputs for it are late reports.
    let _ = edgeprobe_collector::correlate::evaluate_window(store, &config, window, window.1 + 60_000)
        .expect("a stored window evaluates");
    edgeprobe_collector::correlate::refresh_journey_stats(store, window.0).expect("journey figures refresh");
}

/// A scratch store for [`ingest`], in a fresh directory of this process.
pub fn scratch_store(tag: &str) -> edgeprobe_collector::store::Store {
    let dir = std::env::temp_dir().join(format!("edgeprobe-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    edgeprobe_collector::store::Store::open(dir.to_str().unwrap()).unwrap()
}
