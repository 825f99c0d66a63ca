//! Replay throughput and memory per flow. Prints its figures; asserts nothing about speed.
//!
//! - Whole-process packets per second of `edgeprobe replay` on the shared benchmark capture,
//!   beside `ndpiReader -i FILE -q` (Debian's libndpi-bin) on the same file, and their ratio.
//! - Resident memory per tracked flow: a probe sized for N flows is filled with N distinct
//!   connections from 4,096 client addresses, and the growth of VmRSS is divided by N. (Each
//!   distinct subscriber key costs about 130 bytes more, once, however many flows it has.)
//!
//! - QUIC: the lab's QUIC capture replayed in-process (nanoseconds per packet), and what a
//!   client Initial costs to recognise (keys derived from its DCID, header protection removed,
//!   payload opened).
//!
//! - Round trips: the bufferbloat lab's capture (bulk TCP both ways and small requests, its
//!   line loaded for half of it) replayed in-process with every packet counted toward its
//!   line's load and every ACK matched against the held segment ends.
//!
//! Run: cargo bench -p edgeprobe-agent --bench replay

use edgeprobe_core::{CoreConfig, LinkType, Probe, Timestamp};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn bench_capture() -> Option<PathBuf> {
    let path = std::env::var_os("EDGEPROBE_BENCH_CAPTURE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/bench/ndpi_default_ether_concat.pcap")
    });
    path.exists().then_some(path)
}

/// Best wall time of `RUNS` runs of a command.
fn best_time(mut make: impl FnMut() -> Command) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let status = make().stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
        let elapsed = started.elapsed();
        if !status.success() {
            return None;
        }
        best = Some(best.map_or(elapsed, |b| b.min(elapsed)));
    }
    best
}

fn packets_in(path: &PathBuf) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeprobe")).arg("replay").arg(path).output().expect("edgeprobe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("summary line")
}

fn throughput() {
    let Some(capture) = bench_capture() else {
        println!("throughput: SKIPPED, benchmark capture not found (../shared/captures/bench)");
        return;
    };
    let packets = packets_in(&capture);
    let ours = best_time(|| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgeprobe"));
        c.arg("replay").arg(&capture);
        c
    })
    .expect("edgeprobe replay runs");
    let ours_pps = packets as f64 / ours.as_secs_f64();
    println!("edgeprobe replay: {packets} packets in {:.1} ms (best of {RUNS}), {ours_pps:.0} packets/s", ms(ours));
    let ndpi = best_time(|| {
        let mut c = Command::new("ndpiReader");
        c.arg("-i").arg(&capture).arg("-q");
        c
    });
    match ndpi {
        Some(t) => {
            let pps = packets as f64 / t.as_secs_f64();
            println!("ndpiReader -q:    {packets} packets in {:.1} ms (best of {RUNS}), {pps:.0} packets/s", ms(t));
            println!("ratio: {:.2}x ndpiReader's whole-process packets per second (goal: at least 3x)", ours_pps / pps);
        }
        None => println!("ndpiReader: SKIPPED, not installed (apt-get install libndpi-bin)"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn vm_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Client addresses (so subscribers) behind the synthetic flows: a busy edge node.
const CLIENTS: u32 = 4096;

/// An Ethernet/IPv4/TCP SYN of connection `n`: client address `n % CLIENTS`, a port of its own.
fn syn(n: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let client = n % CLIENTS;
    let src = [10, 0, (client >> 8) as u8, client as u8];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[198, 51, 100, 1]);
    f.extend_from_slice(&(1024 + (n / CLIENTS) as u16).to_be_bytes());
    f.extend_from_slice(&443u16.to_be_bytes());
    f.extend_from_slice(&n.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

fn memory_per_flow() {
    const FLOWS: usize = 1 << 20;
    let before = vm_rss_bytes();
    let mut probe = Probe::new(CoreConfig { flow_capacity: FLOWS, ..CoreConfig::default() });
    let start = Timestamp::from_secs_nanos(1_700_000_000, 0);
    for n in 0..FLOWS as u32 {
        probe.handle_frame(start.add_nanos(u64::from(n) * 1000), LinkType::Ethernet, &syn(n), 54);
        while probe.poll_event().is_some() {}
    }
    let after = vm_rss_bytes();
    assert_eq!(probe.active_flows(), FLOWS, "every synthetic connection is tracked");
    assert_eq!(probe.counters().flow_evictions, 0);
    println!(
        "memory: {} flows from {CLIENTS} clients tracked, resident memory grew {:.1} MiB: {:.0} bytes per flow (goal: at most 256)",
        FLOWS,
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / FLOWS as f64
    );
}

/// Encoded CBOR bytes per subscriber-window on real browsing captures, and on the QUIC fixture.
fn report_size() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/public");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let captures = [
        ("ja4/pcap/tls3.pcapng", root.join("ja4/pcap/tls3.pcapng")),
        ("zeek/testing/btest/Traces/wikipedia.pcap", root.join("zeek/testing/btest/Traces/wikipedia.pcap")),
        ("lab_quic.pcapng", fixtures.join("lab_quic.pcapng")),
        ("lab_bloat_network.pcapng", fixtures.join("lab_bloat_network.pcapng")),
    ];
    for (name, path) in captures {
        if !path.exists() {
            println!("report size: SKIPPED, {name} not found");
            continue;
        }
        let mut file = edgeprobe_agent::capture::file::CaptureFile::open(&path).expect("open");
        // The bufferbloat lab's line is loaded above 20 kB/s, so all four round-trip
        // histograms are filled.
        let loaded = if name.starts_with("lab_bloat") { 20_000 } else { CoreConfig::default().loaded_bytes_per_sec };
        let mut probe = Probe::new(CoreConfig { loaded_bytes_per_sec: loaded, ..CoreConfig::default() });
        let mut last = Timestamp::ZERO;
        file.for_each_frame(|f| {
            last = last.max(f.ts);
            probe.handle_frame(f.ts, f.link, f.data, f.wire_len);
            while probe.poll_event().is_some() {}
        })
        .expect("read");
        probe.finish(last);
        while probe.poll_event().is_some() {}
        let mut codec = edgeprobe_wire::Codec::default();
        while let Some(report) = probe.poll_report() {
            let bytes = edgeprobe_wire::encode(&report, edgeprobe_wire::Encoding::Cbor).len();
            let json = edgeprobe_wire::encode(&report, edgeprobe_wire::Encoding::Json).len();
            for s in &report.subscribers {
                let one = edgeprobe_wire::Report { subscribers: vec![s.clone()], ..report.clone() };
                let cbor = edgeprobe_wire::encode(&one, edgeprobe_wire::Encoding::Cbor).len();
                let named = edgeprobe_wire::to_cbor(&one).len();
                // The standard encodings the packed form carries, to show what part is fixed.
                let mut packed = s.clone();
                codec.leave_out_merges(&mut packed);
                let hdrs = |line: &edgeprobe_wire::SubscriberReport| -> Vec<usize> {
                    std::iter::once(&line.metrics)
                        .chain(line.services.iter().map(|v| &v.metrics))
                        .flat_map(|m| edgeprobe_wire::METRICS.iter().filter_map(|n| m.get(n)))
                        .map(|h| h.hdr.len())
                        .collect()
                };
                let (sent, all) = (hdrs(&packed), hdrs(s));
                println!(
                    "report size: {name}: subscriber {} with {} services: {cbor} bytes CBOR (goal: at most 1024 with 5 \
                     services; named CBOR {named}), carrying {} of its {} histograms, whose V2 encodings take {} bytes",
                    s.subscriber,
                    s.services.len(),
                    sent.len(),
                    all.len(),
                    sent.iter().sum::<usize>()
                );
            }
            println!("report size: {name}: whole report {bytes} bytes CBOR, {json} bytes JSON");
        }
    }
}

type Frames = Vec<(Timestamp, LinkType, Vec<u8>, u32)>;

fn fixture_frames(name: &str) -> Frames {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    let mut frames = Vec::new();
    let mut file = edgeprobe_agent::capture::file::CaptureFile::open(&path).expect("open the fixture");
    file.for_each_frame(|f| frames.push((f.ts, f.link, f.data.to_vec(), f.wire_len))).expect("read");
    frames
}

/// Replays `frames` into `rounds` fresh probes (made beforehand); returns nanoseconds per
/// packet and what `count` found in each round's events.
fn in_process(
    frames: &Frames,
    rounds: usize,
    config: &CoreConfig,
    count: impl Fn(&Probe, &edgeprobe_core::Event) -> usize,
) -> (f64, usize) {
    let mut probes: Vec<Probe> = (0..rounds).map(|_| Probe::new(config.clone())).collect();
    let (mut found, started) = (0, Instant::now());
    for probe in &mut probes {
        for (ts, link, data, wire_len) in frames {
            probe.handle_frame(*ts, *link, data, *wire_len);
            while let Some(e) = probe.poll_event() {
                found += count(probe, &e);
            }
        }
    }
    (started.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64, found / rounds)
}

fn rtt_cost() {
    let frames = fixture_frames("lab_bloat_network.pcapng");
    const ROUNDS: usize = 50;
    // The lab line carries 125 kB/s: loaded above 20 kB/s, as the bufferbloat tests set it.
    let config = CoreConfig { loaded_bytes_per_sec: 20_000, ..CoreConfig::default() };
    let flow_samples = |_: &Probe, e: &edgeprobe_core::Event| match &e.detail {
        edgeprobe_core::event::Detail::FlowEnd(f) => {
            [f.rtt_home, f.rtt_network].iter().flatten().map(|r| usize::from(r.samples)).sum()
        }
        _ => 0,
    };
    let (per_packet, samples) = in_process(&frames, ROUNDS, &config, flow_samples);
    println!(
        "rtt: lab_bloat_network.pcapng, {} packets, {samples} round-trip samples a run: {per_packet:.0} ns per packet \
         (best effort, {ROUNDS} runs)",
        frames.len()
    );
}

fn quic_cost() {
    use edgeprobe_core::analyze::quic::{Sniff, sniff};
    use edgeprobe_core::dissect::{IpProtocol, dissect, udp::UdpPacket};
    let frames = fixture_frames("lab_quic.pcapng");
    const ROUNDS: usize = 200;
    let config = CoreConfig { flow_capacity: 256, sample_capacity: 1024, ..CoreConfig::default() };
    let is_quic =
        |_: &Probe, e: &edgeprobe_core::Event| usize::from(matches!(e.detail, edgeprobe_core::event::Detail::Quic(_)));
    let (per_packet, quic_events) = in_process(&frames, ROUNDS, &config, is_quic);
    println!(
        "quic: lab_quic.pcapng, {} packets, {} quic events a run: {per_packet:.0} ns per packet (best effort, {ROUNDS} runs)",
        frames.len(),
        quic_events
    );
    let mut scratch = Vec::new();
    let initials: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|(_, link, data, _)| {
            let ip = dissect(*link, data).ok().filter(|ip| ip.protocol == IpProtocol::Udp)?;
            let payload = UdpPacket::new_checked(ip.payload).ok()?.payload().to_vec();
            (sniff(&payload, &mut scratch) == Sniff::Opened).then_some(payload)
        })
        .collect();
    const OPENS: usize = 20_000;
    let started = Instant::now();
    for i in 0..OPENS {
        assert_eq!(sniff(&initials[i % initials.len()], &mut scratch), Sniff::Opened);
    }
    let per_initial = started.elapsed().as_nanos() as f64 / OPENS as f64;
    println!(
        "quic: {} client Initials of {} to {} bytes: {per_initial:.0} ns each to derive keys and open",
        initials.len(),
        initials.iter().map(Vec::len).min().unwrap_or(0),
        initials.iter().map(Vec::len).max().unwrap_or(0)
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not and only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    throughput();
    memory_per_flow();
    report_size();
    quic_cost();
    rtt_cost();
}
