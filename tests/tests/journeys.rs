//! Journey episodes over a capture recorded in the lab (`tests/lab/record_journeys.sh`: curl
//! resolving through dnsmasq, nginx with TLS, Python's http.server), checked against the packet
//! times tshark gives for each step's first and last packets: the lookup's query and answer, the
//! first SYN and the client's ACK, the ClientHello and the client's first application_data.
//! The capture holds a complete journey, a failing lookup (NXDOMAIN), a video start completed
//! after 1 MB, one given up mid-way, and two interleaved episodes of one journey.

use edgeprobe_tests::reference::{Table, secs_to_ns};
use edgeprobe_tests::{fixtures, replay};
use serde_json::Value;
use std::collections::HashMap;

const CAPTURE: &str = "lab_journeys.pcapng";

fn table(kind: &str) -> Table {
    Table::load(&fixtures().join("answers").join(format!("{CAPTURE}.{kind}.tsv"))).expect("answers recorded")
}

fn ns(row: &HashMap<String, String>, column: &str) -> u64 {
    secs_to_ns(&row[column]).unwrap_or_else(|| panic!("{column} in {row:?}"))
}

fn event_ns(e: &Value) -> u64 {
    // `ts` is printed to the microsecond.
    (e["ts"].as_f64().unwrap() * 1e6).round() as u64 * 1000
}

fn step<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("step {name} in {e}"))
}

/// Microseconds agree to the one the agent's flooring may lose.
fn close(got: &Value, want_ns: u64, what: &str) {
    let got = got.as_u64().unwrap_or_else(|| panic!("{what}: {got}"));
    let want = want_ns / 1000;
    assert!(got.abs_diff(want) <= 1, "{what}: agent {got} us, tshark {want} us");
}

#[test]
fn episodes_match_tshark_step_by_step() {
    let out = replay(&fixtures().join(CAPTURE), &["--config", fixtures().join("journeys.toml").to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    let episodes: Vec<&Value> = out.events.iter().filter(|e| e["kind"] == "episode").collect();
    assert_eq!(episodes.len(), 6, "{episodes:#?}");
    let (dns, hs, tls) = (table("dns"), table("tcp_hs"), table("tls"));

    let lookup_before = |name: &str, t: u64| {
        dns.rows
            .iter()
            .filter(|r| r["qname"] == name && ns(r, "q_time") < t)
            .max_by_key(|r| ns(r, "q_time"))
            .unwrap_or_else(|| panic!("lookup of {name}"))
    };
    let mut complete_selfcare = 0;
    let mut starts = std::collections::HashSet::new();
    for e in &episodes {
        let client = e["client"].as_str().unwrap();
        match (e["journey"].as_str().unwrap(), e["outcome"].as_str().unwrap()) {
            ("selfcare", "ok") => {
                complete_selfcare += 1;
                let h = hs.rows.iter().find(|r| r["client"] == client).expect("handshake of the episode's connection");
                let t = tls.rows.iter().find(|r| r["client"] == client).expect("TLS of the episode's connection");
                // Interleaved lookups of one name pair with connections in order, so the lookup is
                // the one that starts where the episode says; each must be a different one.
                let begin = event_ns(e) - e["latency_us"].as_u64().unwrap() * 1000;
                let q = dns
                    .rows
                    .iter()
                    .find(|r| r["qname"] == "selfcare.lab.example" && ns(r, "q_time").abs_diff(begin) < 2000)
                    .unwrap_or_else(|| panic!("no lookup starts episode {e}"));
                assert!(starts.insert(q["q_frame"].clone()), "two episodes from one lookup");
                assert!(ns(q, "q_time") < ns(h, "t_syn_first"));
                let start = ns(q, "q_time");
                close(&step(e, "dns")["offset_us"], 0, "dns offset");
                close(&step(e, "dns")["duration_us"], (q["latency_ms"].parse::<f64>().unwrap() * 1e6) as u64, "dns");
                close(&step(e, "connect")["offset_us"], ns(h, "t_syn_first") - start, "connect offset");
                close(&step(e, "connect")["duration_us"], ns(h, "t_ack") - ns(h, "t_syn_first"), "connect");
                close(&step(e, "tls")["offset_us"], ns(t, "t_client_hello") - start, "tls offset");
                close(
                    &step(e, "tls")["duration_us"],
                    ns(t, "t_client_finished_approx") - ns(t, "t_client_hello"),
                    "tls",
                );
                // Complete at the first response byte after the handshake, one round trip on.
                let done = event_ns(e);
                let tls_end = ns(t, "t_client_finished_approx");
                assert!(done > tls_end && done - tls_end < 200_000_000, "completion {done} after {tls_end}");
                close(&e["latency_us"], done - start, "latency");
            }
            ("selfcare", "failed") => {
                assert_eq!(e["failed_step"], "dns");
                assert_eq!(e["reason"], "DNS NXDOMAIN");
                let q = dns.rows.iter().find(|r| r["qname"] == "selfcare-old.lab.example").expect("the failed lookup");
                assert_eq!(q["rcode"], "3");
                close(&e["latency_us"], (q["latency_ms"].parse::<f64>().unwrap() * 1e6) as u64, "failed lookup");
            }
            ("video_start", "ok") => {
                let h = hs.rows.iter().find(|r| r["client"] == client).expect("handshake");
                let q = lookup_before("video.lab.example", ns(h, "t_syn_first"));
                close(&step(e, "connect")["offset_us"], ns(h, "t_syn_first") - ns(q, "q_time"), "video connect offset");
                close(&step(e, "connect")["duration_us"], ns(h, "t_ack") - ns(h, "t_syn_first"), "video connect");
                // 1 MB at the lab's speed takes longer than the connect, and well under the timeout.
                let latency = e["latency_us"].as_u64().unwrap();
                assert!(latency > (ns(h, "t_ack") - ns(q, "q_time")) / 1000 && latency < 10_000_000, "{latency}");
            }
            ("video_start", "timeout") => {
                assert_eq!(e["abandoned"], true, "{e}");
                assert_eq!(e["failed_step"], "completion");
                assert!(e["latency_us"].is_null());
            }
            other => panic!("unexpected episode {other:?}: {e}"),
        }
    }
    // One alone, two interleaved: each interleaved episode kept its own connection.
    assert_eq!(complete_selfcare, 3);
    let clients: std::collections::HashSet<&str> = episodes
        .iter()
        .filter(|e| e["journey"] == "selfcare" && e["outcome"] == "ok")
        .map(|e| e["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients.len(), 3);
}

#[test]
fn window_reports_count_journeys() {
    let config = fixtures().join("journeys.toml");
    let out = replay(&fixtures().join(CAPTURE), &["--config", config.to_str().unwrap(), "--reports"]);
    assert!(out.success, "{}", out.stderr);
    let mut totals: HashMap<String, (u64, u64, u64, u64, u64)> = HashMap::new();
    let episodes: Vec<&Value> = out.events.iter().filter(|e| e["kind"] == "episode").collect();
    for r in out.events.iter().filter(|e| e.get("window_start").is_some()) {
        for s in r["subscribers"].as_array().unwrap() {
            for j in s.get("journeys").and_then(Value::as_array).into_iter().flatten() {
                let t = totals.entry(j["journey"].as_str().unwrap().to_string()).or_default();
                let n = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
                *t = (t.0 + n("ok"), t.1 + n("failed"), t.2 + n("timeout"), t.3 + n("abandoned"), t.4);
                if let Some(h) = j.get("latency") {
                    t.4 += h["count"].as_u64().unwrap();
                }
            }
        }
    }
    for (journey, t) in &totals {
        let of =
            |o: &str| episodes.iter().filter(|e| e["journey"] == journey.as_str() && e["outcome"] == o).count() as u64;
        assert_eq!((t.0, t.1, t.2, t.4), (of("ok"), of("failed"), of("timeout"), of("ok")), "{journey}");
    }
    assert_eq!(totals["selfcare"], (3, 1, 0, 0, 3));
    assert_eq!(totals["video_start"], (1, 0, 1, 1, 1));
}

/// Two devices of one line, both served by one address (`tests/lab/record_busy_home.sh`): the
/// TV looks up the video, the laptop then looks up the portal and logs in, and only then does
/// the TV connect. Each episode must follow its own device: the login's connection is the
/// laptop's, the video's the TV's, each step timed as tshark times its packets.
#[test]
fn steps_follow_the_device_that_made_them() {
    let capture = fixtures().join("lab_busy_home.pcapng");
    let config = fixtures().join("journeys_home.toml");
    let out = replay(&capture, &["--config", config.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    let load = |kind: &str| {
        Table::load(&fixtures().join("answers").join(format!("lab_busy_home.pcapng.{kind}.tsv"))).expect("answers")
    };
    let (dns, hs, http) = (load("dns"), load("tcp_hs"), load("http"));
    let episodes: Vec<&Value> = out.events.iter().filter(|e| e["kind"] == "episode").collect();
    assert_eq!(episodes.len(), 2, "{episodes:#?}");
    for e in &episodes {
        assert_eq!(e["outcome"], "ok", "{e}");
        let (device_ip, name) = match e["journey"].as_str().unwrap() {
            "portal_login" => ("192.0.2.10", "portal.lab.example"),
            "video_start" => ("192.0.2.12", "video.lab.example"),
            other => panic!("journey {other}"),
        };
        let client = e["client"].as_str().unwrap();
        assert!(client.starts_with(&format!("{device_ip}:")), "{} rode {client}", e["journey"]);
        let q = dns.rows.iter().find(|r| r["qname"] == name && r["client"] == device_ip).expect("the device's lookup");
        let h = hs.rows.iter().find(|r| r["client"] == client).expect("the device's connection");
        let start = ns(q, "q_time");
        close(&step(e, "dns")["offset_us"], 0, "dns offset");
        close(&step(e, "dns")["duration_us"], (q["latency_ms"].parse::<f64>().unwrap() * 1e6) as u64, "dns");
        close(&step(e, "connect")["offset_us"], ns(h, "t_syn_first") - start, "connect offset");
        close(&step(e, "connect")["duration_us"], ns(h, "t_ack") - ns(h, "t_syn_first"), "connect");
        if e["journey"] == "portal_login" {
            let r = &http.rows[0];
            assert_eq!(r["host"], "portal.lab.example:8080");
            let ttfb_ns = (r["http.time_ms(no body reassembly)"].parse::<f64>().unwrap() * 1e6) as u64;
            assert!(step(e, "login")["duration_us"].as_u64().unwrap().abs_diff(ttfb_ns / 1000) <= 1, "{e}");
        }
    }
}

/// QUIC handshakes as steps (`tests/lab/record_quic.sh`): `sni` names one as it names a TLS
/// handshake, `quic_port` finds new QUIC connections by server port. Each step runs from the
/// client's first Initial to its first 1-RTT packet, as the `quic` event times it, and the
/// episode completes on the data that comes down after it.
#[test]
fn quic_handshakes_are_journey_steps() {
    let config = fixtures().join("journeys_quic.toml");
    let out = replay(&fixtures().join("lab_quic.pcapng"), &["--config", config.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    let quic: Vec<&Value> = out.events.iter().filter(|e| e["kind"] == "quic" && e["outcome"] == "ok").collect();
    let episodes: Vec<&Value> = out.events.iter().filter(|e| e["kind"] == "episode").collect();
    for (journey, step_name, wanted) in [
        ("video_v2", "handshake", quic.iter().filter(|e| e["sni"] == "v2.lab.example").count()),
        ("any_quic", "connect", quic.iter().filter(|e| e["server"].as_str().unwrap().ends_with(":443")).count()),
    ] {
        let mine: Vec<&&Value> = episodes.iter().filter(|e| e["journey"] == journey).collect();
        assert!(wanted > 0);
        assert_eq!(mine.len(), wanted, "{journey}: one episode per handshake: {mine:?}");
        for e in mine {
            assert_eq!(e["outcome"], "ok", "{e}");
            let q = quic.iter().find(|q| q["client"] == e["client"]).unwrap_or_else(|| panic!("no quic event for {e}"));
            let handshake = q["handshake_us"].as_u64().unwrap();
            let s = step(e, step_name);
            assert_eq!(s["offset_us"], 0, "{e}");
            assert!(s["duration_us"].as_u64().unwrap().abs_diff(handshake) <= 1, "{e} against {q}");
            assert!(e["latency_us"].as_u64().unwrap() > handshake, "completes on data after the handshake: {e}");
        }
    }
}
