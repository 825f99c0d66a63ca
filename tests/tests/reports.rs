//! Window reports checked against the events of the same run: every histogram's count, min,
//! max and percentiles equal an HdrHistogram built from the events of that window, subscriber
//! and service; counters equal the event counts. And the Python `hdrhistogram` package decodes
//! every histogram to the same figures.

use edgeprobe_tests::{fixtures, prerequisite, replay, workspace_root};
use edgeprobe_wire::histogram::{new_histogram, record};
use edgeprobe_wire::{Encoding, Report, WireHistogram, encode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURES: [&str; 5] = ["lab_dns.pcapng", "lab_tcp.pcap", "lab_tls.pcapng", "lab_http.pcap", "lab_quic.pcapng"];

/// Each window's report with the events emitted while it was open (they precede it in output).
fn windows(fixture: &str) -> Vec<(Report, Vec<Value>)> {
    let out = replay(&fixtures().join(fixture), &["--reports", "--rtt-samples"]);
    assert!(out.success, "{}", out.stderr);
    let mut result = Vec::new();
    let mut pending = Vec::new();
    for line in out.events {
        if line.get("v").is_some() {
            let report: Report = serde_json::from_value(line).expect("report decodes");
            result.push((report, std::mem::take(&mut pending)));
        } else {
            pending.push(line);
        }
    }
    assert!(pending.is_empty(), "events after the last report");
    result
}

/// The latency each event contributes to a metric, as the report defines it.
fn metric_value(e: &Value, metric: &str) -> Option<u64> {
    match (e["kind"].as_str()?, metric) {
        ("dns", "dns") => e["latency_us"].as_u64(),
        ("tcp_connect", "connect_network") if e["outcome"] == "established" => e["syn_to_synack_us"].as_u64(),
        ("tcp_connect", "connect_home") if e["outcome"] == "established" => e["synack_to_ack_us"].as_u64(),
        ("tls", "tls_handshake") if e["outcome"] == "ok" => e["handshake_us"].as_u64(),
        ("http", "http_ttfb") => e["ttfb_us"].as_u64(),
        ("quic", "quic_hello") => e["hello_us"].as_u64(),
        ("quic", "quic_home") => e["home_us"].as_u64(),
        ("quic", "quic_handshake") if e["outcome"] == "ok" => e["handshake_us"].as_u64(),
        ("rtt_sample", m) if m.starts_with("rtt_") => {
            let side = e["side"].as_str()?;
            let loaded = e["loaded"].as_bool()?;
            let wanted = m == format!("rtt_{side}") || (loaded && m == format!("rtt_{side}_loaded"));
            if wanted { Some(bucket_middle(e["rtt_us"].as_u64()?)) } else { None }
        }
        _ => None,
    }
}

/// Round trips are counted in buckets of 16 an octave (values under 32 µs exact, the rest from
/// 2^k to 2^(k+1) in 16 equal steps, up to 2^27 µs) and written as each bucket's middle.
fn bucket_middle(us: u64) -> u64 {
    let v = us.min((1 << 27) - 1);
    if v < 32 {
        return v;
    }
    let step = 1u64 << (63 - v.leading_zeros() - 4);
    v / step * step + step / 2
}

fn expected(events: &[&Value], metric: &str) -> Option<WireHistogram> {
    let mut h = new_histogram();
    for e in events {
        if let Some(v) = metric_value(e, metric) {
            record(&mut h, v);
        }
    }
    (!h.is_empty()).then(|| WireHistogram::from_histogram(&h))
}

/// A DNS transaction: every dns event but a late answer, whose query was its TIMEOUT.
fn is_transaction(e: &Value) -> bool {
    e["kind"] == "dns" && e.get("late").is_none()
}

/// Every counter of a line or service, from its events as the schema defines them. Bytes and
/// retransmissions come from `flow_end`: every flow of the fixtures ends within the capture.
fn counters_of(events: &[&Value]) -> edgeprobe_wire::Counters {
    let count = |kind: &str, pred: &dyn Fn(&Value) -> bool| {
        events.iter().filter(|e| e["kind"] == kind && pred(e)).count() as u64
    };
    let sum = |field: &str| -> u64 {
        events.iter().filter(|e| e["kind"] == "flow_end").map(|e| e[field].as_u64().unwrap()).sum()
    };
    let status = |e: &Value| e["status"].as_u64().unwrap();
    // The flows a quic event was told for.
    let quic: Vec<(&Value, &Value)> =
        events.iter().filter(|e| e["kind"] == "quic").map(|e| (&e["client"], &e["server"])).collect();
    let quic_sum = |field: &str| -> u64 {
        events
            .iter()
            .filter(|e| e["kind"] == "flow_end" && quic.contains(&(&e["client"], &e["server"])))
            .map(|e| e[field].as_u64().unwrap())
            .sum()
    };
    let mut dns = BTreeMap::new();
    for e in events.iter().filter(|e| is_transaction(e)) {
        *dns.entry(e["rcode"].as_str().unwrap().to_string()).or_insert(0u64) += 1;
    }
    edgeprobe_wire::Counters {
        connects: count("tcp_connect", &|e| e["outcome"] == "established"),
        connect_refused: count("tcp_connect", &|e| e["outcome"] == "refused"),
        connect_timeout: count("tcp_connect", &|e| e["outcome"] == "timeout"),
        dns,
        tls_ok: count("tls", &|e| e["outcome"] == "ok"),
        tls_failed: count("tls", &|e| e["outcome"] != "ok"),
        http_responses: count("http", &|_| true),
        http_4xx: count("http", &|e| (400..500).contains(&status(e))),
        http_5xx: count("http", &|e| status(e) >= 500),
        flows: count("flow_end", &|_| true),
        bytes_up: sum("bytes_up"),
        bytes_down: sum("bytes_down"),
        retrans_up: sum("retrans_up"),
        retrans_down: sum("retrans_down"),
        dns_late: count("dns", &|e| e.get("late").is_some()),
        quic_ok: count("quic", &|e| e["outcome"] == "ok"),
        quic_incomplete: count("quic", &|e| e["outcome"] != "ok"),
        quic_bytes_up: quic_sum("bytes_up"),
        quic_bytes_down: quic_sum("bytes_down"),
        loaded_bytes_up: 0,
        loaded_bytes_down: 0,
        packets_up: sum("packets_up"),
        packets_down: sum("packets_down"),
    }
}

/// A histogram as a report means it: its figures and its counts. Bytes may differ: a line's
/// histogram that merges its services' is stored uncompressed.
fn figures(h: Option<&WireHistogram>) -> Option<impl PartialEq + std::fmt::Debug + use<>> {
    h.map(|h| (h.count, h.min, h.max, h.p50, h.p90, h.p99, h.histogram().expect("a histogram of the schema")))
}

#[test]
fn histograms_and_counters_agree_with_the_events() {
    let mut checked = 0;
    let mut resolvers_checked = 0;
    let mut services_checked = 0;
    for fixture in FIXTURES {
        for (report, events) in windows(fixture) {
            for sub in &report.subscribers {
                let mine: Vec<&Value> = events.iter().filter(|e| e["subscriber"] == sub.subscriber.as_str()).collect();
                for metric in edgeprobe_wire::METRICS {
                    assert_eq!(
                        figures(sub.metrics.get(metric)),
                        figures(expected(&mine, metric).as_ref()),
                        "{fixture} {} {metric}",
                        sub.subscriber
                    );
                    checked += usize::from(sub.metrics.get(metric).is_some());
                }
                // Bytes moved while loaded are per packet, which events do not tell: checked
                // against tshark's packet lengths in `rtt_samples.rs`.
                let mut counters = sub.counters.clone();
                (counters.loaded_bytes_up, counters.loaded_bytes_down) = (0, 0);
                assert_eq!(counters, counters_of(&mine), "{fixture} {}", sub.subscriber);
                // Per resolver, in the order first asked: its rcodes, and its own latency
                // histogram where the line asked more than one.
                let resolver = |e: &Value| e["server"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap().ip();
                let mut asked: Vec<std::net::IpAddr> = Vec::new();
                for e in mine.iter().filter(|e| is_transaction(e)) {
                    if !asked.contains(&resolver(e)) && asked.len() < edgeprobe_wire::MAX_RESOLVERS {
                        asked.push(resolver(e));
                    }
                }
                let names: Vec<String> = asked.iter().map(|ip| ip.to_string()).collect();
                let listed: Vec<&str> = sub.resolvers.iter().map(|r| r.resolver.as_str()).collect();
                assert_eq!(listed, names, "{fixture}");
                for (r, ip) in sub.resolvers.iter().zip(&asked) {
                    let theirs: Vec<&Value> =
                        mine.iter().copied().filter(|e| is_transaction(e) && resolver(e) == *ip).collect();
                    let mut rcodes = BTreeMap::new();
                    for e in &theirs {
                        *rcodes.entry(e["rcode"].as_str().unwrap().to_string()).or_insert(0u64) += 1;
                    }
                    assert_eq!(r.dns, rcodes, "{fixture} {ip}");
                    let own = expected(&theirs, "dns");
                    assert_eq!(r.latency, if asked.len() > 1 { own.clone() } else { None }, "{fixture} {ip}");
                    assert_eq!(figures(sub.resolver_latency(r)), figures(own.as_ref()), "{fixture} {ip}");
                    resolvers_checked += 1;
                }
                // Each named service's histograms come from the events naming it.
                for svc in sub.services.iter().filter(|s| s.service != "other") {
                    let named: Vec<&Value> =
                        mine.iter().copied().filter(|e| e["service"] == svc.service.as_str()).collect();
                    // Packets are counted per line only.
                    let mut counted = counters_of(&named);
                    (counted.packets_up, counted.packets_down) = (0, 0);
                    assert_eq!(svc.counters, counted, "{fixture} {}", svc.service);
                    services_checked += 1;
                    for metric in edgeprobe_wire::METRICS {
                        assert_eq!(
                            figures(svc.metrics.get(metric)),
                            figures(expected(&named, metric).as_ref()),
                            "{fixture} {} {metric}",
                            svc.service
                        );
                    }
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} histograms checked");
    assert!(resolvers_checked >= 2, "only {resolvers_checked} resolvers checked");
    assert!(services_checked >= 5, "only {services_checked} services' counters checked");
}

#[test]
fn python_hdrhistogram_decodes_every_histogram() {
    let python_ok = Command::new("python3").args(["-c", "import hdrh.histogram"]).status().is_ok_and(|s| s.success());
    if !prerequisite(python_ok, "python3 with the PyPI hdrhistogram package (pip install hdrhistogram)") {
        return;
    }
    let script = fixtures().join("../interop/hdr_decode.py");
    let mut decoded = 0;
    for fixture in FIXTURES {
        let reports: Vec<Report> = windows(fixture).into_iter().map(|(r, _)| r).collect();
        let input: String = reports.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        let mut child =
            Command::new("python3").arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "hdr_decode.py failed on {fixture}");
        let python: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut ours = Vec::new();
        for r in &reports {
            for s in &r.subscribers {
                for m in edgeprobe_wire::METRICS {
                    if let Some(h) = s.metrics.get(m) {
                        ours.push(h);
                    }
                }
                for svc in &s.services {
                    for m in edgeprobe_wire::METRICS {
                        if let Some(h) = svc.metrics.get(m) {
                            ours.push(h);
                        }
                    }
                }
                ours.extend(s.resolvers.iter().filter_map(|r| r.latency.as_ref()));
                ours.extend(s.journeys.iter().filter_map(|j| j.latency.as_ref()));
                ours.extend(s.dns_late.as_ref());
            }
        }
        assert_eq!(python.len(), ours.len(), "{fixture}: histogram count");
        for (p, h) in python.iter().zip(ours) {
            let got: Vec<u64> =
                ["count", "min", "max", "p50", "p90", "p99"].iter().map(|k| p[*k].as_u64().unwrap()).collect();
            assert_eq!(got, vec![h.count, h.min, h.max, h.p50, h.p90, h.p99], "{fixture} {}", p["path"]);
            decoded += 1;
        }
    }
    assert!(decoded >= 10, "only {decoded} histograms decoded");
}

/// The packed CBOR, read by a decoder written from the contract alone (Python's cbor2 and
/// hdrhistogram, `tests/interop/packed_decode.py`), says what the named JSON form says: the
/// golden vector and every report of every fixture, journeys and resolvers included.
#[test]
fn an_independent_decoder_reads_the_packed_cbor() {
    let python_ok =
        Command::new("python3").args(["-c", "import cbor2, hdrh.histogram"]).status().is_ok_and(|s| s.success());
    if !prerequisite(
        python_ok,
        "python3 with the PyPI cbor2 and hdrhistogram packages (pip install cbor2 hdrhistogram)",
    ) {
        return;
    }
    let golden = workspace_root().join("agent/wire/tests/golden");
    let mut args = vec![golden.join("report_v2.cbor"), golden.join("report_v2.json")];
    let dir = std::env::temp_dir().join(format!("edgeprobe-packed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut reports, mut journeys, mut resolvers) = (1, 0, 0);
    let journeys_config = fixtures().join("journeys.toml").display().to_string();
    let runs = FIXTURES
        .iter()
        .map(|f| (*f, vec!["--reports"]))
        .chain([("lab_journeys.pcapng", vec!["--reports", "--config", &journeys_config])]);
    for (fixture, extra) in runs {
        let out = replay(&fixtures().join(fixture), &extra);
        assert!(out.success, "{}", out.stderr);
        let reports_of: Vec<Report> = out
            .events
            .into_iter()
            .filter(|l| l.get("v").is_some())
            .map(|l| serde_json::from_value(l).unwrap())
            .collect();
        for (i, r) in reports_of.into_iter().enumerate() {
            let base = dir.join(format!("{}-{i}", fixture.replace('.', "_")));
            let (cbor, json) = (base.with_extension("cbor"), base.with_extension("json"));
            std::fs::write(&cbor, encode(&r, Encoding::Cbor)).unwrap();
            std::fs::write(&json, encode(&r, Encoding::Json)).unwrap();
            args.extend([cbor, json]);
            reports += 1;
            journeys += r.subscribers.iter().map(|s| s.journeys.len()).sum::<usize>();
            resolvers += r.subscribers.iter().map(|s| s.resolvers.len()).sum::<usize>();
        }
    }
    let out = Command::new("python3")
        .arg(workspace_root().join("tests/interop/packed_decode.py"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("0 differences; {reports} reports")), "{stdout}");
    assert!(
        journeys >= 1 && resolvers >= 1,
        "{journeys} journeys, {resolvers} resolvers: the fixtures should have both"
    );
}
