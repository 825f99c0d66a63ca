//! Live capture footprint and rate. Needs root, `ip`, `tcpreplay` and `tcpdump`; prints its
//! figures and asserts nothing about speed.
//!
//! A veth pair in a namespace of its own; the agent captures on one end while `tcpreplay` sends
//! the shared benchmark capture into the other at rising rates. For each rate: packets the
//! agent saw and the kernel dropped, the same for `tcpdump -w /dev/null` on the same replay, the
//! agent's CPU per 10k packets per second, and its resident memory idle and under load.
//!
//! Run: cargo bench -p edgeprobe-agent --bench live

#[allow(dead_code)]
#[path = "../../tests/src/lab.rs"]
mod lab;

use lab::{cpu_ticks, inner_pid, is_root, status_kib};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NS: &str = "epbench";
const RATES: [u32; 6] = [25_000, 50_000, 100_000, 200_000, 400_000, 800_000];

fn sh(cmd: &str) -> bool {
    Command::new("sh").args(["-c", cmd]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn stop(child: Child) -> String {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn number_before(text: &str, marker: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.find(marker).map(|i| &l[..i]))
        .filter_map(|head| {
            head.split(|c: char| !c.is_ascii_digit()).rfind(|w| !w.is_empty()).and_then(|n| n.parse().ok())
        })
        .next()
        .unwrap_or(0)
}

/// Replays `capture` at `rate`; returns the packets tcpreplay says it sent (those over the
/// veth's MTU never leave it).
fn replay(capture: &std::path::Path, rate: u32) -> u64 {
    let out = lab::netns(NS, &["tcpreplay", "-q", "-i", "epa", &format!("--pps={rate}"), capture.to_str().unwrap()])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "Successful packets:        99996"
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Successful packets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let capture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/bench/ndpi_default_ether_concat.pcap");
    if !is_root() || !capture.exists() || !sh("command -v tcpreplay && command -v tcpdump") {
        println!("live: SKIPPED, needs root, tcpreplay, tcpdump and ../shared/captures/bench");
        return;
    }
    sh(&format!("ip netns del {NS}"));
    assert!(sh(&format!(
        "ip netns add {NS} && ip -n {NS} link add epa type veth peer name epb && ip -n {NS} link set epa up && \
         ip -n {NS} link set epb up && ip netns exec {NS} ethtool -K epa tso off gso off gro off; \
         ip netns exec {NS} ethtool -K epb tso off gso off gro off; true"
    )));
    let dir = std::env::temp_dir().join(format!("edgeprobe-live-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"bench\"\n[capture]\ninterfaces = [\"epb\"]\n[mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n",
    )
    .unwrap();
    println!("live: the benchmark capture replayed onto a veth at each rate; sent pps counts what tcpreplay sent:");
    println!(
        "{:>9} | {:>9} | {:>22} | {:>22} | {:>16} | {:>17}",
        "asked pps", "sent pps", "edgeprobe seen/dropped", "tcpdump seen/dropped", "CPU per 10k pps", "RSS idle/loaded"
    );
    for rate in RATES {
        let agent = lab::netns(NS, &[env!("CARGO_BIN_EXE_edgeprobe"), "run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = inner_pid(&agent, "edgeprobe");
        std::thread::sleep(Duration::from_millis(800));
        let idle = status_kib(pid, "VmRSS:");
        let before = cpu_ticks(pid);
        let started = std::time::Instant::now();
        let sent = replay(&capture, rate);
        let elapsed = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let cpu_secs = (cpu_ticks(pid) - before) as f64 / 100.0;
        let loaded = status_kib(pid, "VmHWM:");
        let log = stop(agent);
        let seen = number_before(&log, " packets,");
        let drops = number_before(&log, " kernel drops");

        let tcpdump = lab::netns(NS, &["tcpdump", "-i", "epb", "-w", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        replay(&capture, rate);
        std::thread::sleep(Duration::from_millis(300));
        let log = stop(tcpdump);
        let td_seen = number_before(&log, " packets captured");
        let td_drops = number_before(&log, " packets dropped by kernel");
        let achieved = sent as f64 / elapsed;
        let per_10k = cpu_secs / elapsed / (achieved / 10_000.0) * 100.0;
        println!(
            "{rate:>9} | {:>9.0} | {:>22} | {:>22} | {:>14.1} % | {:>8}/{:<8}",
            achieved,
            format!("{seen}/{drops}"),
            format!("{td_seen}/{td_drops}"),
            per_10k,
            format!("{} MB", idle / 1024),
            format!("{} MB", loaded / 1024)
        );
    }
    sh(&format!("ip netns del {NS}"));
}
