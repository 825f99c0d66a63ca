//! The lab fixtures (recorded by `tests/lab/record.sh` from dig, dnsmasq, curl and nginx in
//! network namespaces) replayed and checked field by field against tshark's answers, with no
//! exceptions allowed, and the connect split checked against the delays the lab added.

use edgeprobe_tests::reference::{Report, Table, compare_dns, compare_tcp_flows, compare_tcp_handshakes};
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
    assert!(report.checked >= 8, "only {} transactions checked", report.checked);

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
    assert!(report.checked >= 6, "only {} transactions checked", report.checked);

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
        assert_eq!(e["rtt_us"].as_u64(), Some(net + home));
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
