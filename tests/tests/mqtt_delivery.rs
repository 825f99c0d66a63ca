//! At-least-once delivery through a real Mosquitto: reports produced while the broker is down
//! wait in the spool across agent restarts and arrive, each exactly once, when it is back; a
//! spool too small for the outage drops the oldest and says how many in the next report.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::{edgeprobe_bin, fixtures, prerequisite};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<edgeprobe_wire::Report>>>;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgeprobe-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A subscriber with a persistent session, so the broker keeps its messages while it is away.
fn subscribe(port: u16, client_id: &str) -> Received {
    let received: Received = Arc::default();
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut connection) = Client::new(options, 16);
    let out = received.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("edgeprobe/v1/agents/+/report", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    out.lock().unwrap().push(edgeprobe_wire::decode(&p.payload).expect("a valid report"));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    received
}

/// Runs one agent "boot" (a replay that publishes); returns the (boot, seq) it produced and
/// whether every report was acknowledged.
fn agent_run(config: &Path, capture: &str) -> (Vec<(String, u64)>, bool) {
    let out = Command::new(edgeprobe_bin())
        .args(["replay", "--reports", "--publish", "--publish-wait", "3", "--config"])
        .arg(config)
        .arg(fixtures().join(capture))
        .output()
        .unwrap();
    let produced = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (r["boot_id"].as_str().unwrap().to_string(), r["seq"].as_u64().unwrap())
        })
        .collect();
    (produced, out.status.success())
}

fn wait_for(received: &Received, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A moment more, so a duplicate would show.
    std::thread::sleep(Duration::from_millis(500));
}

fn write_config(dir: &Path, url: &str, spool_max: usize) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"gw-outage\"\n[measure]\nreport_interval_secs = 1\n\
             [mqtt]\nurl = \"{url}\"\nspool_dir = \"{}\"\nspool_max_bytes = {spool_max}\nspool_flush_secs = 0\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn nothing_is_lost_across_an_outage_and_agent_restarts() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let dir = tempdir("outage");
    let mut broker = Broker::start(&dir.join("broker"), "");
    let received = subscribe(broker.port, "outage-subscriber");
    std::thread::sleep(Duration::from_millis(500));
    let config = write_config(&dir, &broker.url(), 1 << 20);

    broker.stop();
    let (first, acked) = agent_run(&config, "lab_http.pcap");
    assert!(!acked && !first.is_empty(), "with the broker down the run must end unacknowledged");
    let (second, acked) = agent_run(&config, "lab_tls.pcapng");
    assert!(!acked && !second.is_empty());
    let spooled = std::fs::read_dir(dir.join("spool")).unwrap().count();
    assert_eq!(spooled, first.len() + second.len(), "both boots wait on disk");

    broker.restart();
    let (third, acked) = agent_run(&config, "lab_dns.pcapng");
    assert!(acked, "with the broker back every report is acknowledged");
    assert_eq!(std::fs::read_dir(dir.join("spool")).unwrap().count(), 0, "the spool is empty");

    let expected: Vec<(String, u64)> = [first, second, third].concat();
    wait_for(&received, expected.len());
    let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for r in received.lock().unwrap().iter() {
        *counts.entry((r.boot_id.clone(), r.seq)).or_default() += 1;
    }
    for id in &expected {
        assert_eq!(counts.get(id), Some(&1), "report {id:?} must arrive exactly once");
    }
    assert_eq!(counts.len(), expected.len(), "nothing else arrived");
    eprintln!("outage: {} reports of 3 boots, each delivered exactly once", expected.len());
}

#[test]
fn an_overflowing_spool_drops_the_oldest_and_says_so() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let dir = tempdir("overflow");
    let mut broker = Broker::start(&dir.join("broker"), "");
    let received = subscribe(broker.port, "overflow-subscriber");
    std::thread::sleep(Duration::from_millis(500));
    // Room for a few reports only.
    let config = write_config(&dir, &broker.url(), 4096);
    broker.stop();
    let mut produced = Vec::new();
    for capture in ["lab_http.pcap", "lab_tls.pcapng", "lab_tcp.pcap"] {
        produced.extend(agent_run(&config, capture).0);
    }
    broker.restart();
    let (last, acked) = agent_run(&config, "lab_dns.pcapng");
    assert!(acked);
    produced.extend(last);
    let tally = || {
        let got = received.lock().unwrap();
        let dropped: u64 = got.iter().filter_map(|r| r.agent.as_ref()).map(|a| a.spool_dropped).sum();
        (got.len() as u64, dropped)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally().0 + tally().1 < produced.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = received.lock().unwrap();
    let dropped: u64 = got.iter().filter_map(|r| r.agent.as_ref()).map(|a| a.spool_dropped).sum();
    assert!(dropped > 0, "the outage overflowed the spool");
    assert_eq!(got.len() as u64 + dropped, produced.len() as u64, "every report arrived or was counted as dropped");
    eprintln!("overflow: {} produced, {} delivered, {dropped} dropped and reported", produced.len(), got.len());
}

/// An edge agent's report of many lines is far larger than an MQTT client's default packet
/// limit (10 KiB in rumqttc); it must still go out, and arrive whole.
#[test]
fn a_report_of_a_hundred_lines_is_delivered_whole() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    use edgeprobe_agent::publish::mqtt::{Identity, MqttConfig, Publisher};
    use edgeprobe_wire::histogram::{new_histogram, record};
    let dir = tempdir("large");
    let broker = Broker::start(&dir.join("broker"), "");
    let received = subscribe(broker.port, "large-sub");
    std::thread::sleep(Duration::from_millis(500));
    let line = |i: u64| {
        let mut h = new_histogram();
        for v in 0..50 {
            record(&mut h, 1_000 + (v * 7919 + i * 104_729) % 900_000);
        }
        let w = || Some(edgeprobe_wire::WireHistogram::from_histogram(&h));
        let metrics = edgeprobe_wire::Metrics {
            dns: w(),
            connect_network: w(),
            connect_home: w(),
            http_ttfb: w(),
            ..Default::default()
        };
        edgeprobe_wire::SubscriberReport {
            subscriber: format!("line-{i:05}"),
            metrics,
            counters: Default::default(),
            services: vec![],
            journeys: vec![],
            resolvers: vec![],
            dns_late: None,
        }
    };
    let report = edgeprobe_wire::Report {
        v: edgeprobe_wire::SCHEMA_VERSION,
        agent_id: "gw-edge".into(),
        boot_id: "b".into(),
        seq: 0,
        window_start: 60_000,
        window_end: 120_000,
        capture: Default::default(),
        subscribers: (0..100).map(line).collect(),
        agent: None,
        part: 0,
        parts: 0,
    };
    let size = edgeprobe_wire::encode(&report, edgeprobe_wire::Encoding::Cbor).len();
    assert!(size > 3 * 10 * 1024, "the report is {size} bytes");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = MqttConfig { url: broker.url(), ..MqttConfig::default() };
    let identity = Identity { agent_id: "gw-edge".into(), boot_id: "b".into(), capabilities: vec![] };
    let left = runtime.block_on(async {
        let publisher = Publisher::start(config, identity, None).await.unwrap();
        publisher.publish(report).await.unwrap();
        publisher.shutdown(Duration::from_secs(10)).await
    });
    assert_eq!(left, 0, "the report was not acknowledged");
    wait_for(&received, 1);
    let got = received.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subscribers.len(), 100);
}

/// An edge agent of 50,000 lines: its window's report, some 16 MB, goes out in parts under a
/// broker that refuses messages over 300 kB, each part a report; the collector stores every
/// part and evaluates the window with every line once all parts are in.
#[test]
fn an_edge_window_of_fifty_thousand_lines_arrives_in_parts() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    use edgeprobe_agent::publish::mqtt::{Identity, MqttConfig, Publisher};
    use edgeprobe_tests::collector::{Collector, CollectorToml, free_port};
    use edgeprobe_wire::histogram::{new_histogram, record};
    const LINES: u64 = 50_000;
    const LIMIT: usize = 300_000;
    let dir = tempdir("edge-parts");
    let broker = Broker::start(&dir.join("broker"), &format!("message_size_limit {LIMIT}"));
    let received = subscribe(broker.port, "parts-sub");
    let http = free_port();
    let config = CollectorToml::external(&broker.url(), dir.join("db").display(), http)
        .section("[correlation]\ngrace_secs = 0\nsettle_secs = 2\ntick_secs = 1\nparts_wait_secs = 30")
        .to_string();
    let collector = Collector::start(&dir, "collector", http, &config);
    collector.wait_metric("edgeprobe_collector_mqtt_connected", 1.0, Duration::from_secs(20));
    let mut h = new_histogram();
    for v in 0..20 {
        record(&mut h, 1_000 + v * 7_919);
    }
    // Encoded once: compressing 150,000 histograms would be most of the test's time.
    let encoded = edgeprobe_wire::WireHistogram::from_histogram(&h);
    let w = || Some(encoded.clone());
    let line = |i: u64| edgeprobe_wire::SubscriberReport {
        subscriber: format!("line-{i:05}"),
        metrics: edgeprobe_wire::Metrics { dns: w(), connect_network: w(), http_ttfb: w(), ..Default::default() },
        counters: edgeprobe_wire::Counters { connects: 3, bytes_down: 40_000 + i, ..Default::default() },
        services: vec![],
        journeys: vec![],
        resolvers: vec![],
        dns_late: None,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let window_start = (now - 120) / 60 * 60 * 1000;
    let mut report = edgeprobe_wire::Report {
        v: edgeprobe_wire::SCHEMA_VERSION,
        agent_id: "gw-edge".into(),
        boot_id: "b".into(),
        seq: 7,
        window_start,
        window_end: window_start + 60_000,
        capture: Default::default(),
        subscribers: (0..LINES).map(line).collect(),
        agent: None,
        part: 0,
        parts: 0,
    };
    report.capture.packets = 123_456;
    let size = edgeprobe_wire::encode(&report, edgeprobe_wire::Encoding::Cbor).len();
    assert!(size > 10 * LIMIT, "the report is {size} bytes");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The spool holds the whole window while the broker acknowledges it.
    let config = MqttConfig { url: broker.url(), spool_max_bytes: 64 << 20, ..MqttConfig::default() };
    let identity = Identity { agent_id: "gw-edge".into(), boot_id: "b".into(), capabilities: vec![] };
    let left = runtime.block_on(async {
        let publisher = Publisher::start(config, identity, None).await.unwrap();
        publisher.publish(report).await.unwrap();
        publisher.shutdown(Duration::from_secs(60)).await
    });
    assert_eq!(left, 0, "every part acknowledged");
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = || received.lock().unwrap().iter().map(|r| r.subscribers.len() as u64).sum::<u64>();
    while lines() < LINES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = received.lock().unwrap().clone();
    let parts = got[0].parts;
    assert!(parts as usize >= size / LIMIT, "{parts} parts for {size} bytes");
    let mut numbers: Vec<u32> = got.iter().map(|r| r.part).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..parts).collect::<Vec<_>>(), "each part once");
    let mut names: Vec<&str> = got.iter().flat_map(|r| r.subscribers.iter().map(|s| s.subscriber.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len() as u64, LINES, "every line once");
    assert!(got.iter().all(|r| r.seq == 7 && r.parts == parts));
    assert_eq!(got.iter().map(|r| r.capture.packets).sum::<u64>(), 123_456, "capture health once");
    // The collector: every part stored, none a duplicate, and the window evaluated with all
    // 50,000 lines (none has a customer record, so each counts as unknown once).
    collector.wait_metric("edgeprobe_collector_reports_stored_total", f64::from(parts), Duration::from_secs(60));
    collector.wait_metric("edgeprobe_collector_windows_evaluated_total", 1.0, Duration::from_secs(120));
    assert_eq!(collector.metric("edgeprobe_collector_reports_duplicate_total"), 0.0);
    assert_eq!(collector.metric("edgeprobe_collector_unknown_subscribers_total"), LINES as f64);
    let agents = collector.get("/api/v1/agents");
    assert_eq!(agents["agents"][0]["capture"]["packets"], 123_456, "{agents}");
}
