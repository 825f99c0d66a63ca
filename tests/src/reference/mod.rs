//! tshark's answers as TSV tables (one per capture and kind: `dns`, `tcp_hs`, `tcp_anal`), and
//! the field-by-field comparison of edgeprobe's events against them.
//!
//! Matching: a DNS answer by client, server, name, transport and response time; a handshake by
//! client, server and the time of the client's ACK; a TCP connection's counters by its endpoints,
//! in order of appearance. Each comparison yields a `Report` of what matched and what did not.

pub mod quic;
pub mod rtt;

use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// One TSV table: header names and rows.
pub struct Table {
    pub rows: Vec<HashMap<String, String>>,
}

impl Table {
    pub fn load(path: &Path) -> Option<Table> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        let header: Vec<String> = lines.next()?.split('\t').map(str::to_string).collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| header.iter().cloned().zip(l.split('\t').map(str::to_string)).collect())
            .collect();
        Some(Table { rows })
    }
}

/// "1692898402.475801000" (seconds) as nanoseconds.
pub fn secs_to_ns(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<9}");
    Some(int.parse::<u64>().ok()? * 1_000_000_000 + frac.get(..9)?.parse::<u64>().ok()?)
}

/// "9.590" (milliseconds, three decimals) as microseconds.
pub fn ms_to_us(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<3}");
    Some(int.parse::<u64>().ok()? * 1000 + frac.get(..3)?.parse::<u64>().ok()?)
}

/// "192.0.2.1:443" or "2001:db8::1:443" (tshark's unbracketed form) as a socket address.
pub fn endpoint(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse() {
        return Some(sa);
    }
    let (ip, port) = s.rsplit_once(':')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

fn event_ts_us(e: &Value) -> u64 {
    (e["ts"].as_f64().unwrap_or(0.0) * 1e6).round() as u64
}

fn ev_addr(e: &Value, field: &str) -> Option<SocketAddr> {
    e[field].as_str()?.parse().ok()
}

fn ev_u64(e: &Value, field: &str) -> Option<u64> {
    e[field].as_u64()
}

/// How many reference transactions were checked, how many agreed, and what differed.
#[derive(Default, Debug)]
pub struct Report {
    pub checked: usize,
    pub matched: usize,
    pub mismatches: Vec<String>,
}

impl Report {
    fn check(&mut self, what: &str, diffs: Vec<String>) {
        self.checked += 1;
        if diffs.is_empty() {
            self.matched += 1;
        } else {
            self.mismatches.push(format!("{what}: {}", diffs.join(", ")));
        }
    }

    pub fn merge(&mut self, other: Report) {
        self.checked += other.checked;
        self.matched += other.matched;
        self.mismatches.extend(other.mismatches);
    }
}

fn diff<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, field: &str, ours: T, theirs: T) {
    if ours != theirs {
        let mut s = String::new();
        let _ = write!(s, "{field} ours {ours:?} tshark {theirs:?}");
        out.push(s);
    }
}

fn rcode_name(code: &str) -> String {
    match code {
        "0" => "NOERROR".into(),
        "1" => "FORMERR".into(),
        "2" => "SERVFAIL".into(),
        "3" => "NXDOMAIN".into(),
        "4" => "NOTIMP".into(),
        "5" => "REFUSED".into(),
        other => format!("RCODE{other}"),
    }
}

/// DNS: every answered query in tshark's table against our `dns` events; unanswered queries
/// against our `TIMEOUT` events.
pub fn compare_dns(table: &Table, events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "dns").collect();
    let mut used = vec![false; ours.len()];
    // A query retried with the same id answers once: tshark lists each try with the same
    // response frame. Latency runs from the last try; retries counts the earlier ones.
    let mut by_response: Vec<(String, Vec<&HashMap<String, String>>)> = Vec::new();
    for row in &table.rows {
        let r = row.get("r_frame").cloned().unwrap_or_default();
        let q = row.get("q_frame").cloned().unwrap_or_default();
        if q.is_empty() {
            continue; // a response with no query in the capture
        }
        if r.is_empty() {
            // Unanswered tries of one query (same endpoints, id and question) are one
            // transaction: a TIMEOUT whose retries count the earlier tries.
            let same_query = |g: &(String, Vec<&HashMap<String, String>>)| {
                g.0.is_empty()
                    && ["client", "server", "proto", "id", "qname", "qtype"].iter().all(|k| g.1[0][*k] == row[*k])
            };
            match by_response.iter_mut().find(|g| same_query(g)) {
                Some(group) => group.1.push(row),
                None => by_response.push((String::new(), vec![row])),
            }
        } else if let Some(group) = by_response.iter_mut().find(|(f, _)| *f == r) {
            group.1.push(row);
        } else {
            by_response.push((r, vec![row]));
        }
    }
    for (r_frame, group) in by_response {
        let last = group.iter().max_by_key(|r| secs_to_ns(&r["q_time"]).unwrap_or(0)).expect("non-empty group");
        let client: Option<IpAddr> = last["client"].parse().ok();
        let server: Option<IpAddr> = last["server"].parse().ok();
        let qname = last["qname"].to_ascii_lowercase();
        let what = format!("dns q_frame {} {} {}", last["q_frame"], qname, last["qtype"]);
        let matches = |e: &Value| {
            ev_addr(e, "client").map(|a| a.ip()) == client
                && ev_addr(e, "server").map(|a| a.ip()) == server
                && e["query"].as_str() == Some(qname.as_str())
                && e["transport"].as_str() == Some(last["proto"].as_str())
        };
        if r_frame.is_empty() {
            let found = ours.iter().enumerate().position(|(i, e)| !used[i] && matches(e) && e["rcode"] == "TIMEOUT");
            let mut diffs = Vec::new();
            match found {
                Some(i) => {
                    used[i] = true;
                    diff(&mut diffs, "retries", ev_u64(ours[i], "retries"), Some(group.len() as u64 - 1));
                }
                None => diffs.push("no TIMEOUT event for an unanswered query".into()),
            }
            report.check(&what, diffs);
            continue;
        }
        let q_us = secs_to_ns(&last["q_time"]).unwrap_or(0) / 1000;
        let latency = ms_to_us(&last["latency_ms"]);
        let expected_ts = q_us + latency.unwrap_or(0);
        let found = ours
            .iter()
            .enumerate()
            .filter(|(i, e)| !used[*i] && matches(e) && e["rcode"] != "TIMEOUT")
            .min_by_key(|(_, e)| event_ts_us(e).abs_diff(expected_ts))
            .filter(|(_, e)| event_ts_us(e).abs_diff(expected_ts) <= 2)
            .map(|(i, _)| i);
        let mut diffs = Vec::new();
        match found {
            None => diffs.push("no matching dns event".into()),
            Some(i) => {
                used[i] = true;
                let e = ours[i];
                diff(&mut diffs, "latency_us", ev_u64(e, "latency_us"), latency);
                diff(&mut diffs, "rcode", e["rcode"].as_str().unwrap_or(""), rcode_name(&last["rcode"]).as_str());
                diff(&mut diffs, "retries", ev_u64(e, "retries"), Some(group.len() as u64 - 1));
            }
        }
        report.check(&what, diffs);
    }
    report
}

/// TCP handshakes: tshark's SYN, SYN/ACK and ACK times against our `tcp_connect` events.
pub fn compare_tcp_handshakes(table: &Table, events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "tcp_connect").collect();
    for row in &table.rows {
        let (Some(client), Some(server)) = (endpoint(&row["client"]), endpoint(&row["server"])) else { continue };
        let what = format!("tcp stream {} {} -> {}", row["stream"], row["client"], row["server"]);
        let n_syn: u64 = row["n_syn"].parse().unwrap_or(0);
        if n_syn == 0 {
            continue; // the capture started after the SYN: nothing to time
        }
        let same = |e: &&&Value| ev_addr(e, "client") == Some(client) && ev_addr(e, "server") == Some(server);
        let mut diffs = Vec::new();
        if row["t_ack"].is_empty() {
            // Not completed in the capture: we must not claim an established connect.
            if ours.iter().filter(same).any(|e| e["outcome"] == "established") {
                diffs.push("established, but tshark saw no completing ACK".into());
            } else if !ours.iter().any(|e| same(&e)) {
                diffs.push("no tcp_connect event for an unanswered SYN".into());
            }
            report.check(&what, diffs);
            continue;
        }
        let ack_us = secs_to_ns(&row["t_ack"]).unwrap_or(0).div_ceil(1000);
        let found = ours.iter().filter(same).find(|e| event_ts_us(e).abs_diff(ack_us) <= 1);
        match found {
            None => diffs.push("no tcp_connect event at the ACK".into()),
            Some(e) => {
                diff(&mut diffs, "outcome", e["outcome"].as_str(), Some("established"));
                diff(
                    &mut diffs,
                    "connect_us",
                    ev_u64(e, "connect_us"),
                    ms_to_us(&row["handshake_rtt_ms(first SYN->ACK)"]),
                );
                diff(&mut diffs, "synack_to_ack_us", ev_u64(e, "synack_to_ack_us"), ms_to_us(&row["synack_to_ack_ms"]));
                let irtt = ms_to_us(&row["tshark_initial_rtt_ms"]).or_else(|| ms_to_us(&row["rtt_from_last_syn_ms"]));
                diff(&mut diffs, "rtt_us", ev_u64(e, "rtt_us"), irtt);
                diff(&mut diffs, "syn_retries", ev_u64(e, "syn_retries"), Some(n_syn - 1));
                // syn_to_synack runs from the last SYN; tshark's table gives it as the
                // last-SYN RTT less the subscriber side (each rounded, hence the 1 µs slack).
                let net = ms_to_us(&row["rtt_from_last_syn_ms"])
                    .zip(ms_to_us(&row["synack_to_ack_ms"]))
                    .map(|(a, b)| a.saturating_sub(b));
                if let (Some(ours), Some(theirs)) = (ev_u64(e, "syn_to_synack_us"), net) {
                    if ours.abs_diff(theirs) > 1 {
                        diffs.push(format!("syn_to_synack_us ours {ours} tshark {theirs}"));
                    }
                }
            }
        }
        report.check(&what, diffs);
    }
    report
}

/// TCP connections: packets, payload bytes and retransmissions per direction against our
/// `flow_end` events. tshark's retransmission kinds are one count here, a repeated sequence
/// range: its `retransmission` flag (set on fast retransmissions too) plus `spurious_retransmission`.
pub fn compare_tcp_flows(table: &Table, events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "flow_end" && e["proto"] == "tcp").collect();
    let mut used = vec![false; ours.len()];
    for row in &table.rows {
        let (Some(client), Some(server)) = (endpoint(&row["client"]), endpoint(&row["server"])) else { continue };
        let what = format!("tcp stream {} {} -> {}", row["stream"], row["client"], row["server"]);
        let found = ours.iter().enumerate().position(|(i, e)| {
            let (c, s) = (ev_addr(e, "client"), ev_addr(e, "server"));
            !used[i] && ((c, s) == (Some(client), Some(server)) || (c, s) == (Some(server), Some(client)))
        });
        let mut diffs = Vec::new();
        match found {
            None => diffs.push("no flow_end event".into()),
            Some(i) => {
                used[i] = true;
                let e = ours[i];
                let swapped = ev_addr(e, "client") != Some(client);
                let (up, down) = if swapped { ("down", "up") } else { ("up", "down") };
                let n = |f: &str| row.get(f).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                diff(&mut diffs, "packets c2s", ev_u64(e, &format!("packets_{up}")), Some(n("pkts_c2s")));
                diff(&mut diffs, "packets s2c", ev_u64(e, &format!("packets_{down}")), Some(n("pkts_s2c")));
                diff(&mut diffs, "bytes c2s", ev_u64(e, &format!("bytes_{up}")), Some(n("payload_bytes_c2s")));
                diff(&mut diffs, "bytes s2c", ev_u64(e, &format!("bytes_{down}")), Some(n("payload_bytes_s2c")));
                let retrans = n("retransmission") + n("spurious_retransmission");
                let ours_retrans = ev_u64(e, "retrans_up").unwrap_or(0) + ev_u64(e, "retrans_down").unwrap_or(0);
                diff(&mut diffs, "retransmissions", ours_retrans, retrans);
                let zw = ev_u64(e, "zero_window_up").unwrap_or(0) + ev_u64(e, "zero_window_down").unwrap_or(0);
                diff(&mut diffs, "zero windows", zw, n("zero_window"));
            }
        }
        report.check(&what, diffs);
    }
    report
}

/// TLS: SNI, offered ALPN, version, outcome and `hello_us` against tshark's handshake table.
/// `handshake_us` is held to tshark's client-Finished time for TLS 1.3, where the client's first
/// application_data record *is* its Finished. For TLS 1.2 the client's first application data
/// follows the server's Finished, so it can only come later than tshark's client Finished.
pub fn compare_tls(table: &Table, events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "tls").collect();
    let mut used = vec![false; ours.len()];
    for row in &table.rows {
        let Some(client) = endpoint(&row["client"]) else { continue };
        let what = format!("tls stream {} {} {}", row["stream"], row["client"], row["sni"]);
        let found = ours.iter().enumerate().position(|(i, e)| !used[i] && ev_addr(e, "client") == Some(client));
        let mut diffs = Vec::new();
        let Some(i) = found else {
            report.check(&what, vec!["no tls event".into()]);
            continue;
        };
        used[i] = true;
        let e = ours[i];
        let sni = (!row["sni"].is_empty()).then(|| row["sni"].to_ascii_lowercase());
        diff(&mut diffs, "sni", e["sni"].as_str().map(str::to_string), sni);
        let alpn: Vec<String> =
            e["alpn"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(String::from).collect();
        diff(&mut diffs, "alpn", alpn.join(","), row["alpn_offered"].clone());
        let version = row["negotiated_version"].strip_prefix("TLS").map(str::to_string);
        diff(&mut diffs, "version", e["version"].as_str().map(str::to_string), version.clone());
        let outcome = if !row["alerts"].is_empty() {
            "alert"
        } else if row["t_client_finished_approx"].is_empty() {
            "incomplete"
        } else {
            "ok"
        };
        diff(&mut diffs, "outcome", e["outcome"].as_str().unwrap_or(""), outcome);
        diff(&mut diffs, "hello_us", ev_u64(e, "hello_us"), ms_to_us(&row["ch_to_sh_ms"]));
        let finished = ms_to_us(&row["ch_to_client_finished_ms"]);
        match (version.as_deref(), ev_u64(e, "handshake_us"), finished) {
            (Some("1.3"), ours, theirs) => diff(&mut diffs, "handshake_us", ours, theirs),
            (_, Some(ours), Some(theirs)) if ours < theirs => {
                diffs.push(format!("handshake_us ours {ours} before tshark's client Finished {theirs}"))
            }
            _ => {}
        }
        report.check(&what, diffs);
    }
    report
}

/// HTTP: method, Host, status and TTFB against tshark's `http.time` with body reassembly off
/// (request frame to the frame with the response's status line).
pub fn compare_http(table: &Table, events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http").collect();
    let mut used = vec![false; ours.len()];
    for row in &table.rows {
        let frame = row.get("req_frame").or(row.get("stream")).cloned().unwrap_or_default();
        let what = format!("http request {frame} {} {}", row["method"], row["host"]);
        if row["status"] == "NO_RESPONSE" {
            continue;
        }
        let host = (!row["host"].is_empty()).then(|| row["host"].to_ascii_lowercase());
        let ttfb = ms_to_us(&row["http.time_ms(no body reassembly)"]);
        // Parallel connections to one host are told apart by their timing, as the table does
        // not name the client port.
        let candidates: Vec<usize> = (0..ours.len())
            .filter(|&i| {
                !used[i]
                    && ours[i]["method"] == row["method"].as_str()
                    && ours[i]["host"].as_str().map(str::to_string) == host
            })
            .collect();
        let found =
            candidates.iter().copied().find(|&i| ev_u64(ours[i], "ttfb_us") == ttfb).or(candidates.first().copied());
        let mut diffs = Vec::new();
        match found {
            None => diffs.push("no http event".into()),
            Some(i) => {
                used[i] = true;
                let e = ours[i];
                diff(&mut diffs, "status", ev_u64(e, "status"), row["status"].parse().ok());
                diff(&mut diffs, "ttfb_us", ev_u64(e, "ttfb_us"), ms_to_us(&row["http.time_ms(no body reassembly)"]));
            }
        }
        report.check(&what, diffs);
    }
    report
}
