//! Round trips as tshark times them: each frame with `tcp.analysis.ack_rtt` is a sample, timed
//! from the frame `tcp.analysis.acks_frame` names. The agent's samples (its `rtt_sample` lines)
//! are differences of packet times truncated to whole microseconds; so is the reference here,
//! from the two frames' times. Its loaded flag is computed from tshark's `ip.len` (IPv6:
//! `ipv6.plen` + 40) by DESIGN.md's bucket rule, with each flow's client (and so subscriber,
//! the client's address without a subscriber config) chosen as the agent chooses it: the
//! sender of a lone SYN, the receiver of a SYN/ACK, else the side on the higher port.

use super::{Report, secs_to_ns};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

/// One TCP or UDP frame as tshark reads it.
#[derive(Clone, Debug)]
struct Frame {
    number: u64,
    ts_ns: u64,
    src: SocketAddr,
    dst: SocketAddr,
    tcp: bool,
    syn: bool,
    ack: bool,
    ip_len: u64,
    ack_rtt: bool,
    acks_frame: Option<u64>,
    ack_no: u32,
    end: u32,
    has_segment: bool,
}

/// One sample as the reference gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub frame: u64,
    pub ts_us: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub side: &'static str,
    pub ack: u32,
    pub rtt_us: u64,
    pub loaded: bool,
    /// The acknowledged direction never had more than two segment ends waiting at once.
    pub within_limit: bool,
}

fn frames(capture: &Path) -> Option<Vec<Frame>> {
    let fields = [
        "frame.number",
        "frame.time_epoch",
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "tcp.flags.syn",
        "tcp.flags.ack",
        "ip.len",
        "ipv6.plen",
        "tcp.analysis.ack_rtt",
        "tcp.analysis.acks_frame",
        "tcp.seq_raw",
        "tcp.ack_raw",
        "tcp.len",
        "tcp.flags.fin",
        "ip.flags.mf",
        "ip.frag_offset",
    ];
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(capture).args(["-Y", "tcp or udp", "-T", "fields", "-E", "separator=/t"]);
    cmd.args(["-E", "aggregator=,", "-o", "tcp.analyze_sequence_numbers:TRUE"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let col: Vec<&str> = line.split('\t').collect();
        // Encapsulated packets list every layer's value: the innermost is the last.
        let get = |i: usize| col.get(i).copied().unwrap_or("").rsplit(',').next().unwrap_or("");
        let num = |i: usize| get(i).parse::<u64>().ok();
        // Fragments other than the first carry no transport header; the agent reassembles.
        if get(20) == "1" || num(21).is_some_and(|o| o > 0) {
            continue;
        }
        let (Some(number), Some(ts_ns)) = (num(0), secs_to_ns(get(1))) else { continue };
        let ip =
            |a: usize, b: usize| -> Option<IpAddr> { if get(a).is_empty() { get(b) } else { get(a) }.parse().ok() };
        let tcp = !get(6).is_empty();
        let (sp, dp) = if tcp { (num(6), num(7)) } else { (num(8), num(9)) };
        let (Some(s), Some(d), Some(sp), Some(dp)) = (ip(2, 3), ip(4, 5), sp, dp) else { continue };
        let ip_len = num(12).or_else(|| num(13).map(|p| p + 40)).unwrap_or(0);
        let (seq, ack_no, len) =
            (num(16).unwrap_or(0) as u32, num(17).unwrap_or(0) as u32, num(18).unwrap_or(0) as u32);
        let (syn, fin) = (get(10) == "1", get(19) == "1");
        let end = seq.wrapping_add(len).wrapping_add(u32::from(syn) + u32::from(fin));
        v.push(Frame {
            number,
            ts_ns,
            src: SocketAddr::new(s, sp as u16),
            dst: SocketAddr::new(d, dp as u16),
            tcp,
            syn,
            ack: get(11) == "1",
            ip_len,
            // tshark leaves `ack_rtt` out when it is zero; `acks_frame` is always there.
            ack_rtt: !get(14).is_empty() || !get(15).is_empty(),
            acks_frame: num(15),
            ack_no,
            end,
            has_segment: tcp && (len > 0 || syn || fin),
        });
    }
    Some(v)
}

type Key = (SocketAddr, SocketAddr, bool);

fn key(f: &Frame) -> Key {
    if f.src <= f.dst { (f.src, f.dst, f.tcp) } else { (f.dst, f.src, f.tcp) }
}

fn client_of(f: &Frame) -> SocketAddr {
    let by_port = !(f.src.port() < 1024 && f.dst.port() >= 1024);
    let src_is_client = match (f.syn, f.ack) {
        (true, false) => true,
        (true, true) => false,
        _ => by_port,
    };
    if src_is_client { f.src } else { f.dst }
}

/// What tshark's packets say: the samples and the bytes (IP length) moved while loaded.
pub struct Reference {
    pub samples: Vec<Sample>,
    /// Up (from the subscriber) and down.
    pub loaded_bytes: [u64; 2],
}

/// tshark's samples in `capture`, with their side, the loaded flag at `loaded_bytes_per_sec`,
/// and whether their flow direction stayed within the agent's two outstanding ends; and the
/// bytes of packets sent while their line was loaded. Fragments other than a datagram's first
/// are not counted (the agent counts a reassembled datagram once, whole).
pub fn samples(capture: &Path, loaded_bytes_per_sec: u64) -> Option<Reference> {
    let frames = frames(capture)?;
    let ts_of: HashMap<u64, u64> = frames.iter().map(|f| (f.number, f.ts_ns)).collect();
    let mut clients: HashMap<Key, SocketAddr> = HashMap::new();
    // Per line: (bucket, direction, bytes) of the packets so far, within ten buckets.
    let mut lines: HashMap<IpAddr, VecDeque<(u64, usize, u64)>> = HashMap::new();
    // Per flow and direction (0: from the client): the segment ends not yet acknowledged.
    let mut outstanding: HashMap<(Key, usize), Vec<u32>> = HashMap::new();
    let mut over_limit: HashMap<(Key, usize), bool> = HashMap::new();
    let mut pending = Vec::new();
    let mut loaded_bytes = [0u64; 2];
    for f in &frames {
        let k = key(f);
        let client = *clients.entry(k).or_insert_with(|| client_of(f));
        let dir = usize::from(f.src != client);
        let line = lines.entry(client.ip()).or_default();
        let bucket = f.ts_ns / 100_000_000;
        line.push_back((bucket, dir, f.ip_len));
        while line.front().is_some_and(|p| p.0 + 10 <= bucket) {
            line.pop_front();
        }
        let mut sums = [0u64; 2];
        for &(b, d, n) in line.iter() {
            if b <= bucket {
                sums[d] += n;
            }
        }
        let loaded = sums[0] >= loaded_bytes_per_sec || sums[1] >= loaded_bytes_per_sec;
        if loaded {
            loaded_bytes[dir] += f.ip_len;
        }
        if !f.tcp {
            continue;
        }
        // The ends this frame acknowledges leave the other direction's list.
        if f.ack {
            let other = outstanding.entry((k, 1 - dir)).or_default();
            other.retain(|&end| (f.ack_no.wrapping_sub(end) as i32) < 0);
        }
        if f.has_segment {
            let mine = outstanding.entry((k, dir)).or_default();
            if !mine.contains(&f.end) {
                mine.push(f.end);
            }
            if mine.len() > 2 {
                over_limit.insert((k, dir), true);
            }
        }
        if f.ack_rtt {
            let Some(acked) = f.acks_frame.and_then(|n| ts_of.get(&n)) else { continue };
            let rtt_us = (f.ts_ns / 1000).saturating_sub(acked / 1000);
            let side = if dir == 0 { "home" } else { "network" };
            pending.push((
                k,
                1 - dir,
                Sample {
                    frame: f.number,
                    ts_us: f.ts_ns / 1000,
                    src: f.src,
                    dst: f.dst,
                    side,
                    ack: f.ack_no,
                    rtt_us,
                    loaded,
                    within_limit: true,
                },
            ));
        }
    }
    let samples = pending
        .into_iter()
        .map(|(k, acked_dir, mut s)| {
            s.within_limit = !over_limit.get(&(k, acked_dir)).copied().unwrap_or(false);
            s
        })
        .collect();
    Some(Reference { samples, loaded_bytes })
}

/// How the agent's samples compare with tshark's.
#[derive(Debug, Default)]
pub struct Comparison {
    pub report: Report,
    /// tshark's samples, those on flows within the limit, and how many of each the agent took.
    pub tshark: usize,
    pub taken: usize,
    pub within: usize,
    pub taken_within: usize,
    /// Samples the agent took with no tshark sample at that ACK.
    pub extra: Vec<String>,
    /// Of the samples taken, those tshark's packets say were loaded.
    pub loaded: usize,
}

/// Matches the agent's `rtt_sample` lines to tshark's samples by the ACK's time (µs) and
/// endpoints; every agent sample must be one of tshark's with the same length, side and flag.
pub fn compare(agent: &[Value], reference: &[Sample]) -> Comparison {
    // Several ACKs may share a microsecond: the acknowledgement number tells them apart.
    let mut by_ack: HashMap<(u64, SocketAddr, SocketAddr, u32), &Sample> = HashMap::new();
    for s in reference {
        by_ack.entry((s.ts_us, s.src, s.dst, s.ack)).or_insert(s);
    }
    let mut c = Comparison {
        tshark: reference.len(),
        within: reference.iter().filter(|s| s.within_limit).count(),
        ..Default::default()
    };
    for e in agent.iter().filter(|e| e["kind"] == "rtt_sample") {
        let addr = |f: &str| e[f].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
        let (Some(client), Some(server)) = (addr("client"), addr("server")) else { continue };
        let side = e["side"].as_str().unwrap_or("");
        let (src, dst) = if side == "home" { (client, server) } else { (server, client) };
        // Event times are rounded to the microsecond, the reference's truncated.
        let ts_us = (e["ts"].as_f64().unwrap_or(0.0) * 1e6).round() as u64;
        let ack = e["ack"].as_u64().unwrap_or(0) as u32;
        let found = [ts_us, ts_us.wrapping_sub(1), ts_us + 1].into_iter().find_map(|t| by_ack.get(&(t, src, dst, ack)));
        let Some(s) = found else {
            c.extra.push(format!("agent sample at {ts_us} {src} -> {dst} ack {ack} has no tshark sample"));
            continue;
        };
        c.taken += 1;
        c.taken_within += usize::from(s.within_limit);
        c.loaded += usize::from(s.loaded);
        let mut diffs = Vec::new();
        let rtt = e["rtt_us"].as_u64().unwrap_or(u64::MAX);
        if rtt != s.rtt_us {
            diffs.push(format!("rtt_us {rtt} != {}", s.rtt_us));
        }
        if side != s.side {
            diffs.push(format!("side {side} != {}", s.side));
        }
        let loaded = e["loaded"].as_bool().unwrap_or(false);
        if loaded != s.loaded {
            diffs.push(format!("loaded {loaded} != {}", s.loaded));
        }
        c.report.check(&format!("ack frame {}", s.frame), diffs);
    }
    c
}
