//! QUIC's reference, computed here from tshark's dissection (tshark opens Initial packets
//! itself): per connection, the frame times of the first packet of each long-header type in each
//! direction and of the client's first short-header packet, with a Retry or Version Negotiation
//! starting the times again, as DESIGN.md section 4 defines `hello_us`, `home_us` and
//! `handshake_us`.

use super::{Report, diff, ev_addr, ev_u64, secs_to_ns};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

const V2: &str = "0x6b3343cf";

/// One QUIC connection as tshark's packets tell it.
#[derive(Debug, Default)]
pub struct Connection {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub version: Option<String>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub retry: bool,
    client_initial: Option<u64>,
    server_initial: Option<u64>,
    server_handshake: Option<u64>,
    client_handshake: Option<u64>,
    client_short: Option<u64>,
}

impl Connection {
    /// Whole microseconds, rounded to the nearest, as every duration of the agent is.
    fn since(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        Some((b?.checked_sub(a?)? + 500) / 1000)
    }

    pub fn hello_us(&self) -> Option<u64> {
        Self::since(self.client_initial, self.server_initial)
    }

    pub fn home_us(&self) -> Option<u64> {
        Self::since(self.server_handshake, self.client_handshake)
    }

    pub fn handshake_us(&self) -> Option<u64> {
        Self::since(self.client_initial, self.client_short)
    }

    pub fn outcome(&self) -> &'static str {
        if self.client_short.is_some() { "ok" } else { "incomplete" }
    }
}

/// "0x00000001" as the agent names versions.
fn version_name(hex: &str) -> String {
    match hex {
        "0x00000001" => "v1".into(),
        V2 => "v2".into(),
        h if h.starts_with("0xff0000") => {
            format!("draft-{}", u32::from_str_radix(&h[8..], 16).unwrap_or(0))
        }
        h => h.to_string(),
    }
}

/// The QUIC connections of `capture`, in order of their first packet; `None` if tshark fails.
pub fn connections(capture: &Path) -> Option<Vec<Connection>> {
    let fields = [
        "frame.time_epoch",
        "ip.src",
        "ipv6.src",
        "udp.srcport",
        "ip.dst",
        "ipv6.dst",
        "udp.dstport",
        "quic.header_form",
        "quic.version",
        "quic.long.packet_type",
        "quic.long.packet_type_v2",
        "tls.handshake.extensions_server_name",
        "tls.handshake.extensions_alpn_str",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(capture).args([
        "-Y",
        "quic",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut conns: Vec<Connection> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let col: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| col.get(i).copied().unwrap_or("");
        let list = |i: usize| get(i).split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let Some(ts) = secs_to_ns(get(0)) else { continue };
        let addr = |ip4: usize, ip6: usize, port: usize| -> Option<SocketAddr> {
            let ip: IpAddr = if get(ip4).is_empty() { get(ip6) } else { get(ip4) }.parse().ok()?;
            Some(SocketAddr::new(ip, get(port).parse().ok()?))
        };
        let (Some(src), Some(dst)) = (addr(1, 2, 3), addr(4, 5, 6)) else { continue };
        let i = match conns.iter().position(|c| {
            (c.client, c.server) == (Some(src), Some(dst)) || (c.client, c.server) == (Some(dst), Some(src))
        }) {
            Some(i) => i,
            None => {
                conns.push(Connection { client: Some(src), server: Some(dst), ..Connection::default() });
                conns.len() - 1
            }
        };
        let c = &mut conns[i];
        let (versions, types, types_v2) = (list(8), list(9), list(10));
        let (mut long, mut t1, mut t2) = (0, 0, 0);
        let mut kinds = Vec::new();
        for form in list(7) {
            if form != "1" {
                kinds.push(("short", String::new()));
                continue;
            }
            let version = versions.get(long).copied().unwrap_or("");
            long += 1;
            if version == "0x00000000" {
                kinds.push(("vn", String::new()));
                continue;
            }
            let kind = if version == V2 {
                t2 += 1;
                match types_v2.get(t2 - 1).copied() {
                    Some("1") => "initial",
                    Some("2") => "0rtt",
                    Some("3") => "handshake",
                    Some("0") => "retry",
                    _ => "?",
                }
            } else {
                t1 += 1;
                match types.get(t1 - 1).copied() {
                    Some("0") => "initial",
                    Some("1") => "0rtt",
                    Some("2") => "handshake",
                    Some("3") => "retry",
                    _ => "?",
                }
            };
            kinds.push((kind, version_name(version)));
        }
        // The client sends the first Initial.
        if c.client_initial.is_none() && !c.retry && kinds.first().is_some_and(|k| k.0 == "initial") {
            c.client = Some(src);
            c.server = Some(dst);
        }
        let from_client = c.client == Some(src);
        for (kind, version) in kinds {
            match (kind, from_client) {
                ("initial", true) => {
                    c.client_initial.get_or_insert(ts);
                    if c.version.is_none() || c.server_initial.is_none() {
                        c.version = Some(version);
                    }
                }
                ("handshake", true) => {
                    c.client_handshake.get_or_insert(ts);
                }
                ("short", true) if c.client_initial.is_some() => {
                    c.client_short.get_or_insert(ts);
                }
                ("initial", false) | ("handshake", false) => {
                    c.version = Some(version);
                    if kind == "initial" {
                        c.server_initial.get_or_insert(ts);
                    } else {
                        c.server_handshake.get_or_insert(ts);
                    }
                }
                ("retry", false) | ("vn", false) => {
                    c.retry = true;
                    c.client_initial = None;
                    c.server_initial = None;
                    c.server_handshake = None;
                    c.client_handshake = None;
                }
                _ => {}
            }
            if c.client_short.is_some() {
                break;
            }
        }
        if from_client && c.sni.is_none() && !get(11).is_empty() {
            c.sni = Some(get(11).split(',').next().unwrap_or("").to_ascii_lowercase());
        }
        if from_client && c.alpn.is_empty() {
            c.alpn = list(12).into_iter().map(String::from).collect();
        }
    }
    conns.retain(|c| c.client_initial.is_some());
    Some(conns)
}

/// Every connection against the `quic` event with its client, and every `quic` event against
/// a connection. ALPN is compared as far as the agent keeps it (its first 8 protocols).
pub fn compare(conns: &[Connection], events: &[Value]) -> Report {
    let mut report = Report::default();
    let ours: Vec<&Value> = events.iter().filter(|e| e["kind"] == "quic").collect();
    let mut used = vec![false; ours.len()];
    for c in conns {
        let what = format!("quic {:?} {:?}", c.client, c.sni);
        let found = ours.iter().enumerate().position(|(i, e)| !used[i] && ev_addr(e, "client") == c.client);
        let Some(i) = found else {
            report.check(&what, vec!["no quic event".into()]);
            continue;
        };
        used[i] = true;
        let e = ours[i];
        let mut diffs = Vec::new();
        diff(&mut diffs, "server", ev_addr(e, "server"), c.server);
        diff(&mut diffs, "version", e["version"].as_str().map(String::from), c.version.clone());
        diff(&mut diffs, "sni", e["sni"].as_str().map(String::from), c.sni.clone());
        let alpn: Vec<String> =
            e["alpn"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(String::from).collect();
        diff(&mut diffs, "alpn", alpn, c.alpn.iter().take(8).cloned().collect());
        diff(&mut diffs, "outcome", e["outcome"].as_str().unwrap_or(""), c.outcome());
        diff(&mut diffs, "retry", e["retry"].as_bool(), Some(c.retry));
        diff(&mut diffs, "hello_us", ev_u64(e, "hello_us"), c.hello_us());
        diff(&mut diffs, "home_us", ev_u64(e, "home_us"), c.home_us());
        diff(&mut diffs, "handshake_us", ev_u64(e, "handshake_us"), c.handshake_us());
        report.check(&what, diffs);
    }
    for (e, _) in ours.iter().zip(&used).filter(|(_, u)| !**u) {
        report.check(&format!("quic event {}", e["client"]), vec!["no connection in tshark".into()]);
    }
    report
}
