//! The lab fixtures (recorded by `tests/lab/record.sh` from dig, dnsmasq, curl and nginx in
//! network namespaces; nginx with TLS and Python's http.server for TLS and HTTP) replayed and checked field by field against tshark's answers, with no
//! exceptions allowed, and the connect split checked against the delays the lab added.

use edgeprobe_tests::reference::{
    Report, Table, compare_dns, compare_http, compare_tcp_flows, compare_tcp_handshakes, compare_tls,
};
use edgeprobe_tests::{fixtures, replay};
use serde_json::Value;

fn lab_delays_ms() -> (u64, u64) {
    let env = std::fs::read_to_string(fixtures().join("lab.env")).expect("tests/fixtures/lab.env");
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{k} missing from lab.env"))
    };
    (get("HOME_MS"), get("NET_MS"))
}

fn replay_fixture(name: &str) -> Vec<Value> {
    let out = replay(&fixtures().join(name), &[]);
    assert!(out.success, "replay of {name} failed: {}", out.stderr);
    out.events
}

fn check_against_tshark(name: &str, events: &[Value]) -> Report {
    let mut total = Report::default();
    for (kind, compare) in [
        ("dns", compare_dns as fn(&Table, &[Value]) -> Report),
        ("tcp_hs", compare_tcp_handshakes),
        ("tcp_anal", compare_tcp_flows),
        ("tls", compare_tls),
        ("http", compare_http),
    ] {
        if let Some(table) = Table::load(&fixtures().join("answers").join(format!("{name}.{kind}.tsv"))) {
            total.merge(compare(&table, events));
        }
    }
    assert!(total.mismatches.is_empty(), "{name} differs from tshark:\n{}", total.mismatches.join("\n"));
    total
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn lab_dns_matches_tshark_and_covers_every_outcome() {
    let events = replay_fixture("lab_dns.pcapng");
    let report = check_against_tshark("lab_dns.pcapng", &events);
    // Every transaction of its tshark tables, as recorded.
    assert_eq!(report.checked, 10, "transactions checked");

    let dns = of_kind(&events, "dns");
    let find = |query: &str, qtype: &str| {
        dns.iter()
            .find(|e| e["query"] == query && e["qtype"] == qtype)
            .unwrap_or_else(|| panic!("no dns event for {query} {qtype}"))
    };
    assert_eq!(find("ok.lab.example", "A")["rcode"], "NOERROR");
    assert_eq!(find("ok.lab.example", "AAAA")["client"].as_str().map(|c| c.starts_with('[')), Some(true));
    assert_eq!(find("missing.lab.example", "A")["rcode"], "NXDOMAIN");
    assert_eq!(find("www.fail.example", "A")["rcode"], "SERVFAIL");
    assert_eq!(find("other.test", "A")["rcode"], "REFUSED");
    // The TXT answer is larger than one frame: measured only if reassembly worked.
    assert_eq!(find("big.lab.example", "TXT")["rcode"], "NOERROR");
    let over_tcp = dns.iter().find(|e| e["transport"] == "tcp").expect("a DNS-over-TCP event");
    assert_eq!(over_tcp["rcode"], "NOERROR");
    let unanswered = dns.iter().find(|e| e["rcode"] == "TIMEOUT").expect("a TIMEOUT event");
    assert_eq!(unanswered["latency_us"], Value::Null);
    assert_eq!(unanswered["retries"], 2, "dig tried three times with one id");

    // Every answered query crossed the network-side delay line twice.
    let (_, net_ms) = lab_delays_ms();
    for e in dns.iter().filter(|e| e["rcode"] != "TIMEOUT") {
        let latency = e["latency_us"].as_u64().expect("latency");
        assert!(latency >= 2 * net_ms * 1000, "{e}: faster than the lab's delay");
    }
}

#[test]
fn lab_tcp_matches_tshark_and_splits_the_delay_correctly() {
    let events = replay_fixture("lab_tcp.pcap");
    let report = check_against_tshark("lab_tcp.pcap", &events);
    // Every transaction of its tshark tables, as recorded.
    assert_eq!(report.checked, 10, "transactions checked");

    let (home_ms, net_ms) = lab_delays_ms();
    let connects = of_kind(&events, "tcp_connect");
    let established: Vec<_> = connects.iter().filter(|e| e["outcome"] == "established").collect();
    assert_eq!(established.len(), 2, "one IPv4 and one IPv6 connect");
    assert!(established.iter().any(|e| e["server"].as_str().is_some_and(|s| s.starts_with('['))));
    for e in &established {
        let net = e["syn_to_synack_us"].as_u64().unwrap();
        let home = e["synack_to_ack_us"].as_u64().unwrap();
        // Each side's delay line is crossed twice; the rest is scheduling, a few ms at most.
        assert!((2 * net_ms * 1000..(2 * net_ms + 10) * 1000).contains(&net), "network side {net} µs: {e}");
        assert!((2 * home_ms * 1000..(2 * home_ms + 10) * 1000).contains(&home), "home side {home} µs: {e}");
        // Each figure is rounded from nanoseconds on its own, so the sum may be 1 µs off.
        assert!(e["rtt_us"].as_u64().unwrap().abs_diff(net + home) <= 1, "{e}");
    }
    let refused = connects.iter().find(|e| e["outcome"] == "refused").expect("the closed port refused");
    assert_eq!(refused["server"], "198.51.100.10:81");
    assert!(refused["connect_us"].as_u64().unwrap() >= 2 * net_ms * 1000);
    let timeout = connects.iter().find(|e| e["outcome"] == "timeout").expect("the absent host timed out");
    assert!(timeout["syn_retries"].as_u64().unwrap() >= 1);

    let flows = of_kind(&events, "flow_end");
    let reasons: Vec<&str> = flows.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"fin") && reasons.contains(&"rst"), "{reasons:?}");
}

#[test]
fn a_full_flow_table_evicts_and_counts() {
    let dir = std::env::temp_dir().join(format!("edgeprobe-evict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tiny.toml");
    std::fs::write(&config, "[measure]\nflow_capacity = 1\n").unwrap();
    let out = replay(&fixtures().join("lab_tcp.pcap"), &["--config", config.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    let evicted = of_kind(&out.events, "flow_end").iter().filter(|e| e["reason"] == "evicted").count();
    assert!(evicted >= 1, "no eviction with room for one flow");
    let summary = out.stderr.lines().find(|l| l.starts_with("replay:")).unwrap();
    assert!(summary.contains(&format!("{evicted} flow evictions")), "{summary}");
    // Losing track of a connect is not a timeout: every timeout here is one without the limit.
    let timeouts = |events: &[Value]| -> Vec<String> {
        of_kind(events, "tcp_connect")
            .iter()
            .filter(|e| e["outcome"] == "timeout")
            .map(|e| e["client"].to_string())
            .collect()
    };
    let unconstrained = replay_fixture("lab_tcp.pcap");
    for t in timeouts(&out.events) {
        assert!(timeouts(&unconstrained).contains(&t), "eviction reported as a connect timeout: {t}");
    }
}

#[test]
fn lab_tls_matches_tshark_across_versions_retries_and_failures() {
    let events = replay_fixture("lab_tls.pcapng");
    let report = check_against_tshark("lab_tls.pcapng", &events);
    // Every transaction of its tshark tables, as recorded.
    assert_eq!(report.checked, 18, "transactions checked");

    let (_, net_ms) = lab_delays_ms();
    let tls = of_kind(&events, "tls");
    let by_sni = |sni: &str| *tls.iter().find(|e| e["sni"] == sni).unwrap_or_else(|| panic!("no tls event for {sni}"));
    for (sni, version) in [("tls13.lab.example", "1.3"), ("tls12.lab.example", "1.2"), ("v6.lab.example", "1.3")] {
        let e = by_sni(sni);
        assert_eq!((e["outcome"].as_str(), e["version"].as_str()), (Some("ok"), Some(version)), "{e}");
        assert_eq!(e["alpn"], serde_json::json!(["h2", "http/1.1"]));
    }
    // One network round trip to the ServerHello; a HelloRetryRequest costs a second one.
    let rtt = 2 * net_ms * 1000;
    let plain = by_sni("tls13.lab.example")["hello_us"].as_u64().unwrap();
    assert!((rtt..rtt + 15_000).contains(&plain), "hello_us {plain}");
    let retried = by_sni("hrr.lab.example")["hello_us"].as_u64().unwrap();
    assert!(retried >= 2 * rtt, "HelloRetryRequest taken for the ServerHello: hello_us {retried}");
    // TLS 1.2 needs a second round trip before the client may send data.
    let t12 = by_sni("tls12.lab.example")["handshake_us"].as_u64().unwrap();
    assert!(t12 >= 2 * rtt, "TLS 1.2 handshake_us {t12}");
    // The ClientHello from 192.0.2.11 crossed the wire in several segments.
    assert_eq!(by_sni("split.lab.example")["outcome"], "ok");
    let refused = by_sni("refused.lab.example");
    assert_eq!((refused["outcome"].as_str(), refused["version"].as_str()), (Some("alert"), None));
}

#[test]
fn lab_http_matches_tshark_with_keep_alive_pipelining_and_continue() {
    let events = replay_fixture("lab_http.pcap");
    let report = check_against_tshark("lab_http.pcap", &events);
    // Every transaction of its tshark tables, as recorded.
    assert_eq!(report.checked, 13, "transactions checked");

    let (_, net_ms) = lab_delays_ms();
    let http = of_kind(&events, "http");
    // Keep-alive: two requests on one connection, the origin waiting 100 and 50 ms.
    let kept: Vec<_> = http.iter().filter(|e| e["host"] == "198.51.100.10:8080" && e["method"] == "GET").collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["client"], kept[1]["client"], "one connection");
    for (e, wait_ms) in kept.iter().zip([100, 50]) {
        let ttfb = e["ttfb_us"].as_u64().unwrap();
        assert!(ttfb >= (wait_ms + 2 * net_ms) * 1000, "ttfb {ttfb} for a {wait_ms} ms wait");
    }
    // Pipelining: four requests in one segment, answered in order; HEAD has no body and the
    // chunked body is framed, or the statuses after them would be lost.
    let piped: Vec<_> = http.iter().filter(|e| e["host"] == "pipeline.lab.example").collect();
    let got: Vec<_> = piped.iter().map(|e| (e["method"].as_str().unwrap(), e["status"].as_u64().unwrap())).collect();
    assert_eq!(got, [("GET", 200), ("HEAD", 200), ("GET", 200), ("GET", 404)]);
    // Expect: 100-continue is timed to the final response, not the interim one.
    let post = http.iter().find(|e| e["method"] == "POST").expect("the upload");
    assert_eq!(post["status"], 201);
    assert!(http.iter().any(|e| e["host"] == "www.lab.example"), "Host header kept");
    // Privacy: no path, query or body leaves the agent.
    for e in &http {
        let text = e.to_string();
        assert!(!text.contains("/delay") && !text.contains("upload") && !text.contains("chunked"), "{text}");
    }
}

/// Recorded by `tests/lab/record_hard.sh`: a DNS answer 7.5 s after its query (past the 5 s
/// timeout), and a request whose 2,000-byte URL spans two segments followed by a second
/// request on the same connection.
#[test]
fn late_dns_answers_and_long_requests_match_tshark() {
    let out = replay(&fixtures().join("lab_hard.pcapng"), &["--reports"]);
    assert!(out.success, "{}", out.stderr);
    let (reports, events): (Vec<Value>, Vec<Value>) = out.events.into_iter().partition(|l| l.get("v").is_some());
    let report = check_against_tshark("lab_hard.pcapng", &events);
    // Every transaction of its tshark tables, as recorded.
    assert_eq!(report.checked, 5, "transactions checked");

    // The query stays the TIMEOUT the client's stub saw; the answer is its own late event,
    // timed as tshark times it (checked above).
    let dns = of_kind(&events, "dns");
    assert_eq!(dns.len(), 2, "{dns:#?}");
    assert_eq!((dns[0]["rcode"].as_str(), dns[0].get("late")), (Some("TIMEOUT"), None));
    assert_eq!((dns[1]["rcode"].as_str(), dns[1]["late"].as_bool()), (Some("NOERROR"), Some(true)));
    let late_us = dns[1]["latency_us"].as_u64().unwrap();
    assert!(late_us > 5_000_000, "{late_us}");
    // The report counts the TIMEOUT as the transaction and the late answer apart.
    let line = reports
        .iter()
        .flat_map(|r| r["subscribers"].as_array().unwrap())
        .find(|l| l["counters"]["dns_late"] == 1)
        .expect("a line with the late answer");
    assert_eq!(line["counters"]["dns"], serde_json::json!({"TIMEOUT": 1}));
    assert_eq!(line["dns_late"]["count"], 1);
    assert!(line["dns_late"]["max"].as_u64().unwrap() >= late_us, "{}", line["dns_late"]);

    // The long request's head came in two segments; both exchanges are timed as tshark does.
    let flows = Table::load(&fixtures().join("answers/lab_hard.pcapng.tcp_anal.tsv")).unwrap();
    assert!(flows.rows[0]["payload_bytes_c2s"].parse::<u64>().unwrap() > 2000);
    assert_eq!(of_kind(&events, "http").len(), 2);
}

/// `editcap -s 128` of the HTTP and TLS fixtures, a snap length busy probes use: HTTP keeps
/// every exchange whose request and status lines were captured, exactly as tshark reads them;
/// TLS handshakes keep the times that could be read, equal to the whole capture's, and the
/// rest end `incomplete`, none silently.
#[test]
fn a_short_snap_length_keeps_what_it_can() {
    let events = replay_fixture("lab_http_snap128.pcap");
    let report = check_against_tshark("lab_http_snap128.pcap", &events);
    let http = of_kind(&events, "http");
    let whole = Table::load(&fixtures().join("answers/lab_http.pcap.http.tsv")).unwrap();
    assert_eq!(http.len(), whole.rows.len(), "every exchange of the whole capture");
    assert!(report.checked >= whole.rows.len(), "{} checked", report.checked);

    let out = replay(&fixtures().join("lab_tls_snap128.pcapng"), &[]);
    assert!(out.stderr.contains("TLS/HTTP segments cut by the snap length"), "{}", out.stderr);
    // Connections as tshark sees them; handshakes against the whole capture's answers, since
    // tshark, reading no ServerHello from the cut frames, lists only the ClientHellos.
    for (kind, compare) in
        [("tcp_hs", compare_tcp_handshakes as fn(&Table, &[Value]) -> Report), ("tcp_anal", compare_tcp_flows)]
    {
        let table = Table::load(&fixtures().join(format!("answers/lab_tls_snap128.pcapng.{kind}.tsv"))).unwrap();
        let report = compare(&table, &out.events);
        assert!(report.mismatches.is_empty(), "{kind}: {:?}", report.mismatches);
    }
    let hellos = Table::load(&fixtures().join("answers/lab_tls_snap128.pcapng.tls.tsv")).unwrap();
    let tls = of_kind(&out.events, "tls");
    assert!(tls.len() >= hellos.rows.len(), "every ClientHello tshark read is a handshake");
    let whole = Table::load(&fixtures().join("answers/lab_tls.pcapng.tls.tsv")).unwrap();
    let mut timed = 0;
    for row in &whole.rows {
        let client = row["client"].rsplit_once(':').map(|(ip, port)| (ip.trim_matches(['[', ']']), port)).unwrap();
        let e = tls
            .iter()
            .find(|e| {
                let ours = e["client"].as_str().unwrap();
                let (ip, port) = ours.rsplit_once(':').unwrap();
                (ip.trim_matches(['[', ']']), port) == client
            })
            .unwrap_or_else(|| panic!("no tls event for {}", row["client"]));
        let ms = |k: &str| row[k].parse::<f64>().ok().map(|v| (v * 1000.0).round() as u64);
        if e["outcome"] == "ok" {
            assert_eq!(e["hello_us"].as_u64(), ms("ch_to_sh_ms"), "{}", row["client"]);
            assert_eq!(e["handshake_us"].as_u64(), ms("ch_to_client_finished_ms"), "{}", row["client"]);
            timed += 1;
        } else {
            assert!(["incomplete", "alert"].contains(&e["outcome"].as_str().unwrap()), "{e}");
        }
        assert!(e["sni"].is_null(), "no SNI fits in 128 bytes: {e}");
    }
    assert!(timed >= 3, "only {timed} handshakes timed at 128 bytes");
}

/// `lab_tls.pcapng` from just after its first ClientHello, as a capture started
/// mid-handshake: that connection is an `incomplete` handshake with the version its
/// ServerHello names and no times; the others are as in the whole capture.
#[test]
fn a_handshake_seen_from_the_middle_is_incomplete() {
    let events = replay_fixture("lab_tls_midway.pcapng");
    check_against_tshark("lab_tls_midway.pcapng", &events);
    let tls = of_kind(&events, "tls");
    let first = tls.iter().find(|e| e["client"] == "192.0.2.10:37170").expect("the cut handshake");
    assert_eq!(first["outcome"], "incomplete");
    assert_eq!(first["version"], "1.3");
    assert!(first["hello_us"].is_null() && first["handshake_us"].is_null() && first["sni"].is_null());
    assert_eq!(tls.len(), 6);
}

/// The QUIC fixtures (recorded by `tests/lab/record_quic.sh` from aioquic clients and servers)
/// against tshark's own decryption of their Initials, every connection, and the handshake split
/// against the lab's delays: the server's answer waits for the network side, the client's
/// Handshake for the home side.
#[test]
fn lab_quic_matches_tshark_and_splits_the_delay_correctly() {
    if !edgeprobe_tests::prerequisite(edgeprobe_tests::have("tshark"), "tshark") {
        return;
    }
    let (home_ms, net_ms) = lab_delays_ms();
    for name in ["lab_quic.pcapng", "lab_quic_lossy.pcapng"] {
        let events = replay_fixture(name);
        let conns = edgeprobe_tests::reference::quic::connections(&fixtures().join(name)).expect("tshark reads it");
        let report = edgeprobe_tests::reference::quic::compare(&conns, &events);
        assert!(report.mismatches.is_empty(), "{name} differs from tshark:\n{}", report.mismatches.join("\n"));
        assert_eq!(report.checked, 9, "{name}: connections checked, as recorded");

        let quic = of_kind(&events, "quic");
        let by_sni = |sni: &str| *quic.iter().find(|e| e["sni"] == sni).unwrap_or_else(|| panic!("{name}: no {sni}"));
        for (sni, version, retry) in [
            ("v1.lab.example", "v1", false),
            ("v2.lab.example", "v2", false),
            ("v6.lab.example", "v1", false),
            ("compatible.lab.example", "v2", false), // offered v1 first, moved to v2 by the server
            ("negotiated.lab.example", "v1", true),  // v2 refused by Version Negotiation
            ("retry.lab.example", "v1", true),
        ] {
            let e = by_sni(sni);
            assert_eq!(
                (e["version"].as_str(), e["retry"].as_bool(), e["outcome"].as_str()),
                (Some(version), Some(retry), Some("ok")),
                "{e}"
            );
            assert_eq!(e["alpn"], serde_json::json!(["h3", "hq-interop"]), "{e}");
            assert_eq!(e["service"].as_str(), Some(sni), "the SNI names the service");
        }
        if name == "lab_quic.pcapng" {
            for e in &quic {
                let (hello, home) = (e["hello_us"].as_u64().unwrap(), e["home_us"].as_u64().unwrap());
                // Above the delay by what the Python endpoints take to answer.
                assert!((2 * net_ms * 1000..(2 * net_ms + 20) * 1000).contains(&hello), "network side {hello} µs: {e}");
                assert!((2 * home_ms * 1000..(2 * home_ms + 10) * 1000).contains(&home), "home side {home} µs: {e}");
                // Each figure is rounded from nanoseconds on its own: the sum may be 1 µs over.
                assert!(e["handshake_us"].as_u64().unwrap() + 1 >= hello + home, "{e}");
            }
        }
    }
}
