//! The agent live on a gateway: the namespace lab (client, delay lines, router, server), the
//! agent capturing on the router's LAN leg with tcpdump beside it, real dig and curl against
//! dnsmasq and Python's http.server. The agent's DNS and connect latencies must match what tshark
//! computes from tcpdump's capture of the same interface. Needs root and the lab's tools.

use edgeprobe_tests::lab::{inner_pid, interrupt, is_root, netns, status_kib};
use edgeprobe_tests::reference::{Table, ms_to_us, secs_to_ns};
use edgeprobe_tests::{edgeprobe_bin, have, prerequisite, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOOLS: [&str; 10] =
    ["ip", "dnsmasq", "dig", "curl", "tcpdump", "tshark", "python3", "ping", "mosquitto", "setpriv"];

/// The agent as a field engineer installs it: not root, only CAP_NET_RAW and CAP_NET_ADMIN.
const UNPRIVILEGED: [&str; 6] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw,+net_admin",
    "--ambient-caps=-all,+net_raw,+net_admin",
];

/// The lab's namespaces have fixed names: one lab test at a time.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Lab(PathBuf);

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(self.0.join("lab.sh")).arg("down").status();
    }
}

/// What a lab test holds while it runs: the one-lab lock, the lab (torn down on drop) and a
/// fresh work directory.
struct Setup {
    // Fields drop in order: the lab comes down before the lock lets the next test in.
    _lab: Option<Lab>,
    _lock: std::sync::MutexGuard<'static, ()>,
    dir: PathBuf,
    work: PathBuf,
}

/// Checks root and `tools` (skipping, or failing in CI, without them), takes the lab lock, makes
/// a work directory, and brings the lab up with `delays` (home, network ms) when given.
fn setup(name: &str, tools: &[&str], delays: Option<(&str, &str)>) -> Option<Setup> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if !prerequisite(is_root() && missing.is_empty(), &format!("root and the lab tools (missing: {missing:?})")) {
        return None;
    }
    let lock = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace_root().join("tests/lab");
    let work = std::env::temp_dir().join(format!("edgeprobe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let lab = delays.map(|(home, net)| {
        assert!(Command::new(dir.join("lab.sh")).args(["up", home, net]).status().unwrap().success());
        Lab(dir.clone())
    });
    Some(Setup { _lab: lab, _lock: lock, dir, work })
}

/// `edgeprobe run` on the lab gateway as a field engineer installs it (see `UNPRIVILEGED`);
/// with `events`, its events go to that file.
fn gateway_agent(config: &Path, events: Option<&Path>) -> Child {
    background(gateway_command(config, events.is_some()), events)
}

fn gateway_command(config: &Path, events: bool) -> Command {
    let bin = edgeprobe_bin();
    let mut args: Vec<&str> = UNPRIVILEGED.to_vec();
    args.extend([bin.to_str().unwrap(), "run", "--config", config.to_str().unwrap()]);
    if events {
        args.push("--events");
    }
    netns("ep-gw", &args)
}

/// The lab's servers: dnsmasq and an HTTP server on the server side, and an open Mosquitto on
/// the gateway for the agent to publish to.
fn lab_servers(lab_dir: &Path, work: &Path) -> Vec<Child> {
    let http_server = lab_dir.join("http_server.py");
    let broker_conf = work.join("mosquitto.conf");
    std::fs::write(&broker_conf, "listener 1883 127.0.0.1\nallow_anonymous true\n").unwrap();
    vec![
        lab_dnsmasq(),
        background(netns("ep-srv", &["python3", http_server.to_str().unwrap(), "198.51.100.10", "80"]), None),
        background(netns("ep-gw", &["mosquitto", "-c", broker_conf.to_str().unwrap()]), None),
    ]
}

/// dnsmasq on the lab server, answering ok.lab.example.
fn lab_dnsmasq() -> Child {
    let args = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-hosts",
        "--no-resolv",
        "--bind-interfaces",
        "--except-interface=lo",
        "--listen-address=198.51.100.10",
        "--local=/lab.example/",
        "--address=/ok.lab.example/198.51.100.10",
    ];
    background(netns("ep-srv", &args), None)
}

fn background(mut cmd: Command, stdout: Option<&Path>) -> Child {
    match stdout {
        Some(path) => cmd.stdout(std::fs::File::create(path).unwrap()),
        None => cmd.stdout(Stdio::null()),
    };
    cmd.stderr(Stdio::null()).spawn().expect("start")
}

#[test]
fn live_latencies_match_tshark_on_the_same_interface() {
    let Some(setup) = setup("live", &TOOLS, Some(("5", "20"))) else { return };
    let (lab_dir, work) = (&setup.dir, &setup.work);

    let mut servers = lab_servers(lab_dir, work);

    let pcap = work.join("gw.pcap");
    let mut tcpdump = background(
        netns(
            "ep-gw",
            &["tcpdump", "-q", "-i", "g0", "-U", "--time-stamp-precision=nano", "-w", pcap.to_str().unwrap()],
        ),
        None,
    );
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"gw-live\"\n[capture]\ninterfaces = [\"g0\"]\n[measure]\nreport_interval_secs = 5\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n",
    )
    .unwrap();
    let events_path = work.join("events.jsonl");
    let mut agent = gateway_agent(&config, Some(&events_path));
    std::thread::sleep(Duration::from_millis(1500));

    for i in 0..30 {
        let name = if i % 3 == 0 { "missing.lab.example" } else { "ok.lab.example" };
        let _ = netns("ep-cli", &["dig", "+tries=1", "+timeout=2", "@198.51.100.10", name]).output();
    }
    for _ in 0..20 {
        let _ =
            netns("ep-cli", &["curl", "-s", "-o", "/dev/null", "--max-time", "3", "http://198.51.100.10/"]).output();
    }
    std::thread::sleep(Duration::from_millis(1000));
    interrupt(&mut agent);
    interrupt(&mut tcpdump);
    for s in servers.iter_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }

    assert!(Command::new("python3").arg(lab_dir.join("answers.py")).arg(&pcap).arg(work).status().unwrap().success());
    let events: Vec<Value> =
        std::fs::read_to_string(&events_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ts_us = |e: &Value| (e["ts"].as_f64().unwrap() * 1e6).round() as u64;

    // The agent's ring and tcpdump's socket stamp each frame themselves; on a veth the two
    // stamps of one frame can be a few µs apart.
    const TOLERANCE_US: u64 = 20;
    // DNS: each answered query in tshark's table against the agent's event at the same answer.
    let dns = Table::load(&work.join("gw.pcap.dns.tsv")).expect("tshark found DNS");
    let (mut dns_checked, mut dns_close, mut dns_exact) = (0, 0, 0);
    for row in dns.rows.iter().filter(|r| !r["r_frame"].is_empty()) {
        dns_checked += 1;
        let expected = ms_to_us(&row["latency_ms"]).unwrap();
        let answer_at = secs_to_ns(&row["q_time"]).unwrap() / 1000 + expected;
        let found = events
            .iter()
            .filter(|e| e["kind"] == "dns" && e["query"] == row["qname"].as_str())
            .min_by_key(|e| ts_us(e).abs_diff(answer_at));
        if let Some(e) = found.filter(|e| ts_us(e).abs_diff(answer_at) <= 100) {
            let diff = e["latency_us"].as_u64().unwrap().abs_diff(expected);
            dns_close += usize::from(diff <= TOLERANCE_US);
            dns_exact += usize::from(diff == 0);
        }
    }
    // TCP: each completed handshake against the agent's connect event.
    let hs = Table::load(&work.join("gw.pcap.tcp_hs.tsv")).expect("tshark found TCP");
    let (mut tcp_checked, mut tcp_close, mut tcp_exact) = (0, 0, 0);
    for row in hs.rows.iter().filter(|r| !r["t_ack"].is_empty()) {
        tcp_checked += 1;
        let ack = secs_to_ns(&row["t_ack"]).unwrap().div_ceil(1000);
        let found = events
            .iter()
            .filter(|e| e["kind"] == "tcp_connect" && e["client"].as_str().is_some_and(|c| c == row["client"]))
            .find(|e| ts_us(e).abs_diff(ack) <= 100);
        if let Some(e) = found {
            let pairs = [
                ("connect_us", "handshake_rtt_ms(first SYN->ACK)"),
                ("synack_to_ack_us", "synack_to_ack_ms"),
                ("rtt_us", "rtt_from_last_syn_ms"),
            ];
            let diffs: Vec<u64> = pairs
                .iter()
                .map(|(ours, theirs)| e[*ours].as_u64().unwrap().abs_diff(ms_to_us(&row[*theirs]).unwrap()))
                .collect();
            tcp_close += usize::from(diffs.iter().all(|d| *d <= TOLERANCE_US));
            tcp_exact += usize::from(diffs.iter().all(|d| *d == 0));
        }
    }
    eprintln!(
        "live: DNS {dns_close}/{dns_checked} within {TOLERANCE_US} µs of tshark ({dns_exact} exact); \
         TCP connect {tcp_close}/{tcp_checked} within {TOLERANCE_US} µs ({tcp_exact} exact)"
    );
    assert!(dns_checked >= 25 && tcp_checked >= 15, "too little traffic seen: {dns_checked} DNS, {tcp_checked} TCP");
    assert_eq!(dns_close, dns_checked, "every DNS transaction within {TOLERANCE_US} µs");
    assert_eq!(tcp_close, tcp_checked, "every TCP connect within {TOLERANCE_US} µs");
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// The agent's own process inside `ip netns exec`.
fn agent_pid(wrapper: &Child) -> u32 {
    inner_pid(wrapper, "edgeprobe")
}

#[test]
fn floods_cost_counters_not_memory() {
    let Some(setup) = setup("flood", &TOOLS, Some(("0", "0"))) else { return };
    let (lab_dir, work) = (&setup.dir, &setup.work);

    // Small tables, so the floods overrun them many times over.
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"gw-flood\"\n[capture]\ninterfaces = [\"g0\"]\n\
         [measure]\nflow_capacity = 2048\ndns_capacity = 512\nsample_capacity = 8192\nreport_interval_secs = 5\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut agent = background(
        netns("ep-gw", &[edgeprobe_bin().to_str().unwrap(), "run", "--config", config.to_str().unwrap()]),
        None,
    );
    let pid = agent_pid(&agent);
    std::thread::sleep(Duration::from_millis(1500));
    let (idle, _) = memory_kib(pid);
    let flood = |mode: &str, count: &str| {
        let out =
            netns("ep-cli", &["python3", lab_dir.join("flood.py").to_str().unwrap(), mode, "198.51.100.10", count])
                .output()
                .unwrap();
        assert!(out.status.success(), "flood.py {mode}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Each flood three times: the first fills the tables and the kernel's ring pages; after that
    // memory must not follow the traffic.
    let mut peaks = Vec::new();
    for mode in ["syn", "syn", "syn", "dns", "dns", "dns"] {
        flood(mode, "50000");
        std::thread::sleep(Duration::from_millis(500));
        peaks.push(memory_kib(pid).1);
    }
    let (rss, peak) = memory_kib(pid);
    interrupt(&mut agent);

    // The bound the configuration sets: the packet ring (8 MiB), the spool (4 MiB by default,
    // filling since this broker does not exist), the flow, DNS and sample tables at their
    // budgets, and 2 MiB of fixed working memory (histogram encoding, allocator).
    let bound_kib = 8 * 1024 + 4 * 1024 + (2048 * 256 + 512 * 512 + 8192 * 12) / 1024 + 2 * 1024;
    eprintln!(
        "flood: idle {idle} KiB; peak after each 50k-SYN flood {:?} KiB, after each 50k-query DNS flood {:?} KiB; \
         end {rss} KiB; growth {} KiB against a configured bound of {bound_kib} KiB",
        &peaks[..3],
        &peaks[3..],
        peak.saturating_sub(idle)
    );
    assert!(peaks[2].saturating_sub(peaks[1]) < 1024, "another SYN flood grew memory");
    assert!(peaks[5].saturating_sub(peaks[4]) < 1024, "another DNS flood grew memory");
    assert!(idle > 0, "could not read the agent's memory");
    assert!(peak.saturating_sub(idle) <= bound_kib, "memory grew past the configured bound");
}

#[test]
fn a_vanishing_interface_is_waited_for_not_fatal() {
    let Some(setup) = setup("vanish", &["ip", "dnsmasq", "dig", "setpriv"], None) else { return };
    let work = &setup.work;
    let sh = |cmd: &str| Command::new("sh").args(["-c", cmd]).status().unwrap().success();
    let down = || sh("ip netns del epv-a 2>/dev/null; ip netns del epv-b 2>/dev/null; true");
    down();
    assert!(sh("ip netns add epv-a && ip netns add epv-b && ip -n epv-a link set lo up && ip -n epv-b link set lo up"));
    struct Down<F: Fn() -> bool>(F);
    impl<F: Fn() -> bool> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _down = Down(down);
    let link_up = || {
        sh("ip link add va netns epv-a type veth peer name vb netns epv-b && \
            ip -n epv-a addr add 192.0.2.1/24 dev va && ip -n epv-b addr add 192.0.2.2/24 dev vb && \
            ip -n epv-a link set va up && ip -n epv-b link set vb up")
    };
    let dnsmasq = || {
        Command::new("ip")
            .args(["netns", "exec", "epv-b", "dnsmasq", "--keep-in-foreground", "--no-hosts", "--no-resolv"])
            .args(["--listen-address=192.0.2.2", "--bind-dynamic", "--address=/ok.lab.example/192.0.2.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let query = || {
        for _ in 0..3 {
            let _ = netns("epv-a", &["dig", "+tries=1", "+timeout=1", "@192.0.2.2", "ok.lab.example"]).output();
        }
    };
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"gw-vanish\"\n[capture]\ninterfaces = [\"va\"]\n[mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n",
    )
    .unwrap();
    // The agent starts before its interface exists.
    let mut agent =
        netns("epv-a", &[edgeprobe_bin().to_str().unwrap(), "run", "--config", config.to_str().unwrap(), "--events"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(link_up());
    let mut server = dnsmasq();
    std::thread::sleep(Duration::from_millis(3000));
    query();
    // The interface goes away and comes back.
    assert!(sh("ip -n epv-a link del va"));
    let _ = server.kill();
    let _ = server.wait();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.try_wait().unwrap().is_none(), "the agent must not exit when its interface goes");
    assert!(link_up());
    let mut server = dnsmasq();
    std::thread::sleep(Duration::from_millis(3000));
    query();
    std::thread::sleep(Duration::from_millis(500));
    let _ = server.kill();
    let _ = server.wait();
    let _ = Command::new("kill").args(["-INT", &agent.id().to_string()]).status();
    let out = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answered = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"dns\"") && l.contains("NOERROR"))
        .count();
    eprintln!("vanish: {answered} DNS answers measured across the outage\n{stderr}");
    assert!(stderr.contains("cannot capture on va"), "the missing interface is reported: {stderr}");
    assert!(stderr.contains("went away") && stderr.contains("is back"), "{stderr}");
    // Three queries per phase; more than three answers means both phases were measured.
    assert!(answered >= 4, "queries before and after the interface came back are measured");
}

#[test]
fn a_running_agent_loses_no_report_to_a_broker_outage_or_a_crash() {
    let tools = ["ip", "dnsmasq", "dig", "mosquitto", "mosquitto_sub", "python3", "ping", "setpriv"];
    let Some(setup) = setup("outage", &tools, Some(("0", "0"))) else { return };
    let work = &setup.work;
    std::fs::create_dir_all(work.join("broker")).unwrap();
    std::fs::create_dir_all(work.join("spool")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in ["broker", "spool"] {
        std::fs::set_permissions(work.join(d), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut dns = lab_dnsmasq();
    let broker_conf = work.join("broker/mosquitto.conf");
    std::fs::write(
        &broker_conf,
        format!(
            "listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            work.join("broker").display()
        ),
    )
    .unwrap();
    let start_broker = || background(netns("ep-gw", &["mosquitto", "-c", broker_conf.to_str().unwrap()]), None);
    let mut broker = start_broker();
    std::thread::sleep(Duration::from_millis(500));
    let subscriber = |extra: &[&str]| {
        netns(
            "ep-gw",
            &[
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-q",
                "1",
                "-c",
                "-i",
                "outage-collector",
                "-t",
                "edgeprobe/v1/agents/+/report",
            ],
        )
        .args(extra)
        .output()
        .unwrap()
    };
    let subscribed = (0..25).any(|_| {
        let ok = subscriber(&["-E"]).status.success();
        if !ok {
            std::thread::sleep(Duration::from_millis(200)); // the broker is still starting
        }
        ok
    });
    assert!(subscribed, "the collector subscribes");

    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-outage\"\n[capture]\ninterfaces = [\"g0\"]\n[measure]\nreport_interval_secs = 1\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nencoding = \"json\"\nspool_dir = \"{}\"\nspool_flush_secs = 0\n",
            work.join("spool").display()
        ),
    )
    .unwrap();
    let agent = || gateway_agent(&config, None);
    // Traffic in every window, from a thread, for the whole test.
    let traffic_on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let on = traffic_on.clone();
    let traffic = std::thread::spawn(move || {
        while on.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = netns("ep-cli", &["dig", "+tries=1", "+timeout=1", "@198.51.100.10", "ok.lab.example"]).output();
            std::thread::sleep(Duration::from_millis(150));
        }
    });

    let mut first = agent();
    std::thread::sleep(Duration::from_secs(3));
    interrupt(&mut broker); // the broker goes away for several report intervals
    std::thread::sleep(Duration::from_secs(4));
    // A crash while reports are unsent: kill -9 the agent (the process behind `ip netns exec`).
    // What it had produced and not delivered is in its spool, one file per report, named
    // `{window}-{boot}-{seq}-{carried}.report`: the highest seq there is its last report.
    let pid = agent_pid(&first);
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    let _ = first.wait();
    let spooled: Vec<(String, u64)> = std::fs::read_dir(work.join("spool"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let parts: Vec<&str> = name.strip_suffix(".report")?.split('-').collect();
            Some((parts.get(1)?.to_string(), parts.get(2)?.parse().ok()?))
        })
        .collect();
    assert!(!spooled.is_empty(), "the crash left no report unsent");
    let crashed_boot = spooled[0].0.clone();
    let produced = spooled.iter().map(|(_, seq)| seq + 1).max().unwrap();
    let mut second = agent();
    std::thread::sleep(Duration::from_secs(2));
    broker = start_broker();
    std::thread::sleep(Duration::from_secs(4));
    traffic_on.store(false, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    interrupt(&mut second);
    std::thread::sleep(Duration::from_millis(500));

    let received = String::from_utf8(subscriber(&["-W", "3"]).stdout).unwrap();
    interrupt(&mut broker);
    let _ = dns.kill();
    let _ = dns.wait();
    let mut by_boot: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for line in received.lines() {
        let r: Value = serde_json::from_str(line).expect("a JSON report");
        by_boot.entry(r["boot_id"].as_str().unwrap().to_string()).or_default().push(r["seq"].as_u64().unwrap());
    }
    eprintln!(
        "outage: {}",
        by_boot
            .iter()
            .map(|(b, s)| format!("boot {}: {} reports, seq {:?}", &b[..8], s.len(), s))
            .collect::<Vec<_>>()
            .join("; ")
    );
    eprintln!("outage: the crashed boot had produced {produced} reports, {} of them unsent at the kill", spooled.len());
    assert_eq!(by_boot.len(), 2, "both boots reported");
    // The crashed boot: every report it produced, the unsent ones included, exactly once.
    let mut crashed = by_boot.remove(&crashed_boot).expect("the crashed boot's reports");
    crashed.sort_unstable();
    assert_eq!(crashed, (0..produced).collect::<Vec<u64>>(), "crashed boot: received = produced");
    // The second boot stopped cleanly: its spool is empty, and it sent every seq from 0.
    let left = std::fs::read_dir(work.join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".report"))
        .count();
    assert_eq!(left, 0, "a clean stop after the broker is back leaves nothing unsent");
    for (boot, mut seqs) in by_boot {
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "boot {boot}: every seq from 0, each exactly once");
        assert!(seqs.len() >= 3, "boot {boot} reported across the test");
    }
}

#[test]
fn a_bpf_filter_keeps_unwanted_packets_in_the_kernel() {
    let tools = ["ip", "dnsmasq", "dig", "curl", "tcpdump", "python3", "ping", "setpriv"];
    let Some(setup) = setup("bpf", &tools, Some(("0", "0"))) else { return };
    let work = &setup.work;
    let mut dns = lab_dnsmasq();
    // The filter as tcpdump compiles it: DNS only.
    let bpf = netns("ep-gw", &["tcpdump", "-ddd", "-i", "g0", "udp port 53"]).output().unwrap();
    assert!(bpf.status.success());
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-bpf\"\n[capture]\ninterfaces = [\"g0\"]\nbpf = \"\"\"\n{}\"\"\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n",
            String::from_utf8(bpf.stdout).unwrap()
        ),
    )
    .unwrap();
    let events_path = work.join("events.jsonl");
    let mut agent = gateway_agent(&config, Some(&events_path));
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..3 {
        let _ = netns("ep-cli", &["dig", "+tries=1", "+timeout=1", "@198.51.100.10", "ok.lab.example"]).output();
        let _ =
            netns("ep-cli", &["curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://198.51.100.10:81/"]).output();
    }
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&mut agent);
    let _ = dns.kill();
    let _ = dns.wait();
    let events = std::fs::read_to_string(&events_path).unwrap();
    let count = |kind: &str| events.lines().filter(|l| l.contains(&format!("\"kind\":\"{kind}\""))).count();
    eprintln!("bpf: {} dns events, {} tcp_connect events", count("dns"), count("tcp_connect"));
    assert_eq!(count("dns"), 3, "DNS passes the filter");
    assert_eq!(count("tcp_connect"), 0, "TCP never reaches the agent");
}

/// Steps this machine's wall clock by `secs` (root), as NTP or `date -s` would.
fn step_wall_clock(secs: i64) {
    let script = format!(
        "import time; time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + ({secs}))"
    );
    assert!(Command::new("python3").args(["-c", &script]).status().unwrap().success(), "step the clock by {secs} s");
}

/// Undoes a forward step if the test ends before it does.
struct Stepped(i64);

impl Drop for Stepped {
    fn drop(&mut self) {
        if self.0 != 0 {
            step_wall_clock(-self.0);
        }
    }
}

/// Steps the real clock, so it runs only by hand, on a machine of one's own:
/// `EDGEPROBE_STEP_CLOCK=1 cargo test --test live_lab -- --ignored wall_clock`. The same path is
/// tested on synthetic clock readings in `capture/clock.rs`, which every run covers.
#[test]
#[ignore = "steps this machine's wall clock; run by hand with EDGEPROBE_STEP_CLOCK=1"]
fn a_wall_clock_step_moves_no_latency_and_relabels_windows() {
    if std::env::var_os("EDGEPROBE_STEP_CLOCK").is_none_or(|v| v != "1") {
        eprintln!("skipped: EDGEPROBE_STEP_CLOCK=1 is the consent to step this machine's wall clock");
        return;
    }
    let tools = ["ip", "dnsmasq", "dig", "curl", "mosquitto", "mosquitto_sub", "python3", "ping", "setpriv"];
    // The network side takes 2 x 150 ms, so a step almost always falls inside a transaction.
    let Some(setup) = setup("clockstep", &tools, Some(("2", "150"))) else { return };
    let (lab_dir, work) = (&setup.dir, &setup.work);
    let mut servers = lab_servers(lab_dir, work);
    std::thread::sleep(Duration::from_millis(500));
    let reports_path = work.join("reports.jsonl");
    servers.push(background(
        netns("ep-gw", &["mosquitto_sub", "-h", "127.0.0.1", "-q", "1", "-t", "edgeprobe/v1/agents/+/report"]),
        Some(&reports_path),
    ));
    let config = work.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"gw-clock\"\n[capture]\ninterfaces = [\"g0\"]\n[measure]\nreport_interval_secs = 1\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nencoding = \"json\"\n",
    )
    .unwrap();
    let events_path = work.join("events.jsonl");
    let stderr_path = work.join("agent.err");
    let mut agent = gateway_command(&config, true)
        .stdout(std::fs::File::create(&events_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    // Queries and connects back to back, from two threads, for the whole test.
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let loops: Vec<_> = [
        vec!["dig", "+tries=1", "+timeout=2", "@198.51.100.10", "ok.lab.example"],
        vec!["curl", "-s", "-o", "/dev/null", "--max-time", "3", "http://198.51.100.10/"],
    ]
    .into_iter()
    .map(|cmd| {
        let on = on.clone();
        std::thread::spawn(move || {
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = netns("ep-cli", &cmd).output();
            }
        })
    })
    .collect();
    let hour: i32 = 3600;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    std::thread::sleep(Duration::from_millis(2200));
    let mut stepped = Stepped(hour.into());
    step_wall_clock(hour.into());
    std::thread::sleep(Duration::from_millis(3100));
    step_wall_clock((-hour).into());
    stepped.0 = 0;
    std::thread::sleep(Duration::from_millis(2200));
    on.store(false, std::sync::atomic::Ordering::Relaxed);
    loops.into_iter().for_each(|t| t.join().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&mut agent);
    std::thread::sleep(Duration::from_millis(500));
    for s in servers.iter_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(stderr.matches("wall clock stepped").count(), 2, "the agent reports both steps:\n{stderr}");
    let events: Vec<Value> =
        std::fs::read_to_string(&events_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let latencies = |kind: &str, field: &str| -> Vec<u64> {
        events.iter().filter(|e| e["kind"] == kind).filter_map(|e| e[field].as_u64()).collect()
    };
    let dns = latencies("dns", "latency_us");
    let connects = latencies("tcp_connect", "syn_to_synack_us");
    eprintln!(
        "clock step: {} DNS and {} connect latencies, all in ms: {dns:?} {connects:?}",
        dns.len(),
        connects.len()
    );
    assert!(dns.len() >= 12 && connects.len() >= 8, "too little traffic seen");
    // 2 x 150 ms, the delay lines' own scheduling on top; never 0 or an hour.
    for (what, values) in [("DNS", &dns), ("connect", &connects)] {
        let wrong: Vec<_> = values.iter().filter(|&&us| !(299_000..=340_000).contains(&us)).collect();
        assert!(wrong.is_empty(), "{what} latencies off 300 ms across the steps: {wrong:?}");
    }
    // Events and report windows carry the wall time of their moment, stepped or not.
    let ts: Vec<f64> = events.iter().filter_map(|e| e["ts"].as_f64()).collect();
    let in_step = |t: f64| t > before + f64::from(hour) - 60.0 && t < before + f64::from(hour) + 60.0;
    let near_now = |t: f64| t > before - 60.0 && t < before + 60.0;
    assert!(ts.iter().any(|&t| in_step(t)) && ts.iter().all(|&t| in_step(t) || near_now(t)), "event times: {ts:?}");
    let windows: Vec<f64> = std::fs::read_to_string(&reports_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["window_start"].as_f64().unwrap() / 1000.0)
        .collect();
    assert!(windows.iter().any(|&t| in_step(t)), "a report window in the stepped hour: {windows:?}");
    assert!(windows.last().is_some_and(|&t| near_now(t)), "the last window back in the present: {windows:?}");
    assert!(windows.iter().all(|&t| in_step(t) || near_now(t)), "windows: {windows:?}");
}
