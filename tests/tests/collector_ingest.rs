//! Ingest against a real Mosquitto: bad input is refused and counted by reason while valid
//! reports are stored exactly once; and a collector killed mid-stream loses nothing the
//! broker delivered and stores nothing twice; and a burst of large reports waits within the
//! queue's byte budget.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{Collector, CollectorToml, TempDatabase, free_port, require_postgres};
use edgeprobe_tests::{have, prerequisite};
use edgeprobe_wire::{Encoding, Report, encode};
use rumqttc::{Client, MqttOptions, QoS};
use std::path::PathBuf;
use std::time::Duration;

fn config(broker_port: u16, http_port: u16, storage: &str, broker: &str) -> String {
    CollectorToml::external(&format!("mqtt://127.0.0.1:{broker_port}"), storage, http_port)
        .broker("client_id = \"ingest-test\"")
        .broker(broker)
        .to_string()
}

/// A real report from a fixture, as the agent would publish it.
fn sample_report() -> Report {
    edgeprobe_tests::current_report("lab_http.pcap")
}

/// A publisher that waits for each PUBACK, so the broker holds every message it was given.
struct Publisher {
    client: Client,
    acks: std::sync::mpsc::Receiver<()>,
}

impl Publisher {
    fn connect(port: u16) -> Publisher {
        let mut options = MqttOptions::new(format!("test-pub-{}", std::process::id()), "127.0.0.1", port);
        options.set_max_packet_size(8 << 20, 8 << 20);
        let (client, mut connection) = Client::new(options, 100);
        let (tx, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        let _ = tx.send(());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    _ => {}
                }
            }
        });
        Publisher { client, acks }
    }

    fn send(&self, topic: &str, payload: Vec<u8>) {
        self.publish(topic, payload, false);
    }

    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload).unwrap();
        self.acks.recv_timeout(Duration::from_secs(10)).expect("PUBACK from the broker");
    }
}

fn setup(tag: &str, storage: Option<&str>) -> Option<(PathBuf, Broker, Collector)> {
    setup_with(tag, storage, "")
}

/// As `setup`, with more `[broker]` settings for the collector.
fn setup_with(tag: &str, storage: Option<&str>, broker_extra: &str) -> Option<(PathBuf, Broker, Collector)> {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-ingest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The broker's own limit sits above the collector's, so the collector is what refuses.
    let broker = Broker::start(&dir.join("broker"), "message_size_limit 0\nmax_queued_messages 100000");
    let http = free_port();
    let sqlite = dir.join("data").display().to_string();
    let collector =
        Collector::start(&dir, "collector", http, &config(broker.port, http, storage.unwrap_or(&sqlite), broker_extra));
    Some((dir, broker, collector))
}

#[test]
fn bad_input_is_counted_and_valid_reports_are_stored_once() {
    let Some((dir, broker, collector)) = setup("bad", None) else { return };
    let report = sample_report();
    let agent = report.agent_id.clone();
    let topic = format!("edgeprobe/v1/agents/{agent}/report");
    let publisher = Publisher::connect(broker.port);

    let valid = encode(&report, Encoding::Cbor);
    publisher.send(&topic, valid.clone());
    publisher.send(&topic, b"hello, not a report".to_vec());
    publisher.send(&topic, valid[..valid.len() / 2].to_vec());
    let mut future = report.clone();
    future.v = 99;
    future.seq += 100;
    publisher.send(&topic, encode(&future, Encoding::Cbor));
    let mut huge = b"{\"v\":1,\"pad\":\"".to_vec();
    huge.resize(5 << 20, b'x');
    publisher.send(&topic, huge);
    publisher.send("edgeprobe/v1/agents/someone-else/report", valid.clone());
    publisher.send(&topic, valid.clone());
    let mut second = report.clone();
    second.seq += 1;
    publisher.send(&topic, encode(&second, Encoding::Json));
    publisher.send(&format!("edgeprobe/v1/agents/{agent}/state"), b"{not json".to_vec());
    // Clearing a retained state is nothing wrong.
    publisher.send(&format!("edgeprobe/v1/agents/{agent}/state"), Vec::new());
    // What no agent sends: one journey listed twice with 2^62 samples each (their merge once
    // killed the writer, and again at every start), a count past any window's, and windows
    // ending at 0, a day ahead and a year back.
    let mut hostile = report.clone();
    hostile.seq += 10;
    let mut h = edgeprobe_wire::histogram::new_histogram();
    h.record_n(40_000, 1 << 62).unwrap();
    let journey = edgeprobe_wire::JourneyReport {
        journey: "selfcare".into(),
        phase: "care".into(),
        channel: "app".into(),
        latency: Some(edgeprobe_wire::WireHistogram::from_histogram(&h)),
        ok: 1,
        failed: 0,
        timeout: 0,
        abandoned: 0,
        failed_steps: Default::default(),
    };
    hostile.subscribers[0].journeys = vec![journey.clone(), journey];
    publisher.send(&topic, encode(&hostile, Encoding::Cbor));
    let mut hostile = report.clone();
    hostile.seq += 11;
    hostile.subscribers[0].counters.connects = 1 << 62;
    publisher.send(&topic, encode(&hostile, Encoding::Cbor));
    let day = 86_400_000;
    for (i, (start, end)) in [(report.window_start, 0), (report.window_start + day, report.window_end + day)]
        .into_iter()
        .chain([(report.window_start - 365 * day, report.window_end - 365 * day)])
        .enumerate()
    {
        let mut hostile = report.clone();
        hostile.seq += 20 + i as u64;
        (hostile.window_start, hostile.window_end) = (start, end);
        publisher.send(&topic, encode(&hostile, Encoding::Cbor));
    }

    collector.wait_metric("edgeprobe_collector_reports_received_total", 13.0, Duration::from_secs(20));
    collector.wait_metric("edgeprobe_collector_reports_stored_total", 2.0, Duration::from_secs(20));
    collector.wait_metric("edgeprobe_collector_reports_duplicate_total", 1.0, Duration::from_secs(20));
    let rejected =
        |why: &str| collector.metric(&format!("edgeprobe_collector_reports_rejected_total{{reason=\"{why}\"}}"));
    assert_eq!(rejected("garbage"), 1.0);
    assert_eq!(rejected("malformed"), 1.0);
    assert_eq!(rejected("version"), 1.0);
    assert_eq!(rejected("oversized"), 1.0);
    assert_eq!(rejected("agent_mismatch"), 1.0);
    assert_eq!(rejected("topic"), 1.0);
    assert_eq!(rejected("histogram"), 1.0);
    assert_eq!(rejected("count"), 1.0);
    assert_eq!(rejected("window"), 3.0);
    assert_eq!(collector.metric("edgeprobe_collector_reports_stored_total"), 2.0);
    assert_eq!(collector.metric("edgeprobe_collector_storage_errors_total"), 0.0);
    assert_eq!(collector.get("/api/v1/health")["status"], "ok");
    let agents = collector.get("/api/v1/agents")["agents"].as_array().unwrap().clone();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["reports"], 2);
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent's state is kept retained by the broker, which sends it again to a collector that
/// restarts. The agents_offline grace runs from when the will first arrived, so the state's time
/// must survive the restart; a state that changed while the collector was away takes the time
/// it is delivered.
#[test]
fn a_retained_state_sent_again_keeps_its_time() {
    let Some((dir, broker, mut collector)) = setup("wills", None) else { return };
    let publisher = Publisher::connect(broker.port);
    let topic = "edgeprobe/v1/agents/gw-r/state";
    let state = |online: bool, boot: &str| {
        serde_json::to_vec(&serde_json::json!({"online": online, "stopped": false, "boot_id": boot})).unwrap()
    };
    let since = |collector: &Collector| {
        let agents = collector.get("/api/v1/agents")["agents"].as_array().unwrap().clone();
        let a = agents.iter().find(|a| a["agent_id"] == "gw-r").expect("gw-r listed");
        (a["online"].as_bool().unwrap(), a["state_ms"].as_i64().unwrap())
    };
    let states = "edgeprobe_collector_states_received_total";

    publisher.publish(topic, state(true, "b1"), true);
    publisher.publish(topic, state(false, "b1"), true);
    collector.wait_metric(states, 2.0, Duration::from_secs(20));
    let (online, will_at) = since(&collector);
    assert!(!online);

    std::thread::sleep(Duration::from_millis(300));
    collector.stop();
    collector.restart();
    collector.wait_metric(states, 1.0, Duration::from_secs(20));
    assert_eq!(since(&collector), (false, will_at), "the will sent again kept its first arrival");

    // The agent comes back while the collector is away: that is a new state.
    collector.stop();
    publisher.publish(topic, state(true, "b2"), true);
    std::thread::sleep(Duration::from_millis(300));
    collector.restart();
    collector.wait_metric(states, 1.0, Duration::from_secs(20));
    let (online, back_at) = since(&collector);
    assert!(online && back_at > will_at, "back online at {back_at}, will at {will_at}");
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_collector_loses_nothing_and_stores_nothing_twice() {
    let Some((dir, broker, mut collector)) = setup("restart", None) else { return };
    let report = sample_report();
    let topic = format!("edgeprobe/v1/agents/{}/report", report.agent_id);
    let publisher = Publisher::connect(broker.port);
    const TOTAL: u64 = 600;
    for seq in 0..TOTAL {
        if seq == TOTAL / 3 {
            collector.kill();
        }
        if seq == 2 * TOTAL / 3 {
            collector.restart();
        }
        let mut r = report.clone();
        r.seq = seq;
        publisher.send(&topic, encode(&r, Encoding::Cbor));
    }
    // Counters restart with the process; the store is what must hold every report once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = collector.get("/api/v1/agents")["agents"][0]["reports"].as_u64().unwrap_or(0);
        if stored >= TOTAL {
            assert_eq!(stored, TOTAL, "stored more than once");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {stored} of {TOTAL} stored:\n{}", collector.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A clean stop and start: nothing new, nothing twice.
    collector.stop();
    collector.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(collector.get("/api/v1/agents")["agents"][0]["reports"], TOTAL);
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stores reports, by agent, as the API counts them; None while the store is reconnecting.
fn stored(collector: &Collector) -> Option<u64> {
    collector.try_get("/api/v1/agents")?["agents"][0]["reports"].as_u64()
}

#[test]
fn postgres_connections_cut_mid_stream_lose_nothing() {
    let Some(admin) = require_postgres() else { return };
    let db = TempDatabase::create(&admin, "cut");
    let Some((dir, broker, collector)) = setup("cut", Some(&db.url)) else { return };
    let report = sample_report();
    let topic = format!("edgeprobe/v1/agents/{}/report", report.agent_id);
    let publisher = Publisher::connect(broker.port);
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut admin_client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    const TOTAL: u64 = 300;
    for seq in 0..TOTAL {
        if seq == TOTAL / 2 {
            // What a database restart or failover does to the collector's connections.
            let cut = admin_client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .unwrap();
            assert!(cut >= 2, "the writer's and the API's connections");
        }
        let mut r = report.clone();
        r.seq = seq;
        publisher.send(&topic, encode(&r, Encoding::Cbor));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = stored(&collector) {
            if n >= TOTAL {
                assert_eq!(n, TOTAL, "stored more than once");
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not all stored:\n{}", collector.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(collector.metric("edgeprobe_collector_storage_errors_total") >= 1.0, "the cut was noticed and counted");
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_burst_of_large_reports_waits_within_the_queue_byte_budget() {
    const BUDGET: f64 = 256.0 * 1024.0;
    if !prerequisite(have("python3"), "python3") {
        return;
    }
    let Some((dir, broker, collector)) = setup_with("budget", None, "queue_bytes = 262144") else { return };
    let mut report = sample_report();
    let one = report.subscribers[0].clone();
    report.subscribers =
        (0..50).map(|i| edgeprobe_wire::SubscriberReport { subscriber: format!("line-{i}"), ..one.clone() }).collect();
    let topic = format!("edgeprobe/v1/agents/{}/report", report.agent_id);
    let size = encode(&report, Encoding::Cbor).len();
    assert!(size > 16 * 1024, "reports of {size} bytes would not test the budget");
    // Another connection holds the database's write lock while the burst arrives, so the writer
    // waits (within its busy timeout) and ingest must stop at the budget.
    let db = dir.join("data/edgeprobe.db");
    let mut lock = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                      c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(3)\nc.execute('COMMIT')",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(lock.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let publisher = Publisher::connect(broker.port);
    const TOTAL: u64 = 200;
    for seq in 0..TOTAL {
        let mut r = report.clone();
        r.seq = seq;
        publisher.send(&topic, encode(&r, Encoding::Cbor));
    }
    let mut peak: f64 = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while collector.metric("edgeprobe_collector_reports_stored_total") < TOTAL as f64 {
        peak = peak.max(collector.metric("edgeprobe_collector_queue_bytes"));
        assert!(std::time::Instant::now() < deadline, "not all stored:\n{}", collector.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(peak <= BUDGET, "{peak} bytes queued, over the {BUDGET}-byte budget");
    assert!(collector.metric("edgeprobe_collector_queue_full_total") >= 1.0, "the budget never held ingest back");
    assert_eq!(collector.metric("edgeprobe_collector_queue_bytes"), 0.0);
    assert_eq!(collector.metric("edgeprobe_collector_queue_depth"), 0.0);
    assert_eq!(collector.metric("edgeprobe_collector_reports_duplicate_total"), 0.0);
    assert_eq!(collector.get("/api/v1/agents")["agents"][0]["reports"], TOTAL);
    assert!(lock.wait().unwrap().success());
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lag is live ingest's: a report whose window ended two hours before it arrived (spooled
/// through an outage, or replayed) is counted as backfill and leaves `ingest_lag_seconds`
/// alone; one whose window ended two minutes ago sets it to about that.
#[test]
fn backfilled_reports_are_counted_apart_from_the_lag() {
    let Some((dir, broker, collector)) = setup("lag", None) else { return };
    let publisher = Publisher::connect(broker.port);
    let report = sample_report();
    let span = report.window_end - report.window_start;
    let moved = |report: &Report, back_ms: u64, seq: u64| {
        let now = edgeprobe_collector::clock::now_ms() as u64;
        // Aligned as the agent aligns windows: the window that ended at least `back_ms` ago.
        let end = (now - back_ms) / span * span;
        Report { window_start: end - span, window_end: end, seq, ..report.clone() }
    };
    let topic = format!("edgeprobe/v1/agents/{}/report", report.agent_id);
    let (lag, backfill) = ("edgeprobe_collector_ingest_lag_seconds", "edgeprobe_collector_reports_backfill_total");

    publisher.send(&topic, encode(&moved(&report, 2 * 3_600_000, 1), Encoding::Cbor));
    collector.wait_metric("edgeprobe_collector_reports_stored_total", 1.0, Duration::from_secs(20));
    assert_eq!(collector.metric(backfill), 1.0);
    assert_eq!(collector.metric(lag), 0.0, "backfill alone sets no lag");

    let live = moved(&report, 120_000, 2);
    publisher.send(&topic, encode(&live, Encoding::Cbor));
    collector.wait_metric("edgeprobe_collector_reports_stored_total", 2.0, Duration::from_secs(20));
    let behind = (edgeprobe_collector::clock::now_ms() as u64 - live.window_end) as f64 / 1000.0;
    let measured = collector.metric(lag);
    assert!(measured >= 120.0 && measured <= behind, "lag {measured} s, the window ended {behind} s ago");
    assert_eq!(collector.metric(backfill), 1.0);
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A replay publishes its reports faster than the broker acknowledges them, so its last
/// report says several waited with it. Once they are all delivered, the agent's state says
/// its spool is empty, and that is what the collector shows as waiting, not the stale depth.
#[test]
fn what_waits_at_an_agent_is_what_it_says_now() {
    let Some((dir, broker, collector)) = setup("waiting", None) else { return };
    // Subscribed first: reports published before would not be kept for this new session.
    collector.wait_metric("edgeprobe_collector_mqtt_connected", 1.0, Duration::from_secs(20));
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-replay\"\n[measure]\nreport_interval_secs = 1\n[mqtt]\nurl = \"{}\"\nspool_dir = \"{}\"\n",
            broker.url(),
            dir.join("spool").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(edgeprobe_tests::edgeprobe_bin())
        .arg("replay")
        .arg(edgeprobe_tests::fixtures().join("lab_journeys.pcapng"))
        .args(["--publish", "--start-at", "now", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agent = || {
        let listed = collector.get("/api/v1/agents");
        listed["agents"].as_array().unwrap().iter().find(|a| a["agent_id"] == "gw-replay").cloned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent().is_some_and(|a| a["stopped"] == true && a["reports"].as_i64() > Some(1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no stopped state with the reports: {:?}\n{}\n{}",
            agent(),
            String::from_utf8_lossy(&out.stderr),
            collector.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let a = agent().unwrap();
    let depth = a["health"]["spool_depth"].as_i64().unwrap();
    assert!(depth > 1, "the last report should have been queued behind others: {a}");
    assert_eq!(a["spool_waiting"], 0, "nothing waits once all are delivered: {a}");
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}
