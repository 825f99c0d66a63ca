//! Collector ingest throughput beside `mosquitto_sub`: one publisher sends N reports at QoS 1
//! into a private Mosquitto as fast as the broker acknowledges them; the collector (shared
//! subscription, storing every report in SQLite or PostgreSQL) and `mosquitto_sub` (its own
//! subscription, writing to /dev/null) drain the same stream. If the collector finishes with
//! mosquitto_sub, it is not the bottleneck.
//!
//! Run: `cargo bench -p edgeprobe-tests --bench ingest [-- CASE...]`, cases `sqlite-1`, `sqlite-50`,
//! `postgres-1` and `postgres-50`.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{Collector, CollectorToml, TempDatabase, free_port, postgres_admin_url};
use edgeprobe_wire::{Encoding, encode};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `n` reports from `agents` agents; each carries `subscribers` subscribers.
fn payloads(n: usize, agents: usize, subscribers: usize) -> Vec<(String, Vec<u8>)> {
    let mut base = edgeprobe_collector::testing::golden_report("report_v2.json");
    // A current window: the collector refuses windows older than its retention.
    let span = base.window_end - base.window_start;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    base.window_start = (now - span) / span * span;
    base.window_end = base.window_start + span;
    (0..n)
        .map(|i| {
            let mut r = base.clone();
            r.agent_id = format!("bench-{}", i % agents);
            r.seq = (i / agents) as u64;
            let one = r.subscribers[0].clone();
            r.subscribers = (0..subscribers)
                .map(|s| {
                    let mut sub = one.clone();
                    sub.subscriber = format!("line-{}-{s}", i % agents);
                    sub
                })
                .collect();
            (format!("edgeprobe/v1/agents/{}/report", r.agent_id), encode(&r, Encoding::Cbor))
        })
        .collect()
}

fn run(label: &str, storage: &str, n: usize, agents: usize, subscribers: usize) {
    // `cargo bench --bench ingest -- sqlite-50` runs only the matching cases.
    let case = format!("{label}-{subscribers}");
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| case.contains(f.as_str())) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "max_queued_messages 0\nmax_inflight_messages 0");
    let http = free_port();
    let config = CollectorToml::external(&broker.url(), storage, http).broker("client_id = \"bench\"").to_string();
    let collector = Collector::start(&dir, "collector", http, &config);
    let messages = payloads(n, agents, subscribers);
    let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum();

    let mut sub = Command::new("mosquitto_sub")
        .args(["-p", &broker.port.to_string(), "-q", "1", "-t", "edgeprobe/v1/agents/+/report", "-C", &n.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));

    let mut options = MqttOptions::new("bench-publisher", "127.0.0.1", broker.port);
    options.set_inflight(200);
    options.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut connection) = Client::new(options, 1000);
    let idle_cpu = collector.cpu_time().unwrap_or_default();
    let started = Instant::now();
    let acks = std::thread::spawn(move || {
        let mut acked = 0;
        for event in connection.iter() {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = event {
                acked += 1;
                if acked == n {
                    return Instant::now();
                }
            }
        }
        unreachable!("the connection ended early")
    });
    for (topic, payload) in messages {
        client.publish(topic, QoS::AtLeastOnce, false, payload).unwrap();
    }
    let published = acks.join().unwrap();
    let subscribed = loop {
        if sub.try_wait().unwrap().is_some() {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    collector.wait_metric("edgeprobe_collector_reports_stored_total", n as f64, Duration::from_secs(600));
    let stored = Instant::now();
    let cpu = collector.cpu_time().unwrap_or_default().saturating_sub(idle_cpu);
    let rate = |t: Instant| n as f64 / (t - started).as_secs_f64();
    println!(
        "{label}: {n} reports of {subscribers} subscriber(s), {:.0} bytes each: broker acked {:.0}/s, mosquitto_sub {:.0}/s, \
         collector stored {:.0}/s using {:.0} µs of CPU per report",
        bytes as f64 / n as f64,
        rate(published),
        rate(subscribed),
        rate(stored),
        cpu.as_secs_f64() * 1e6 / n as f64
    );
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if mosquitto().is_none() {
        println!("ingest: skipped, mosquitto is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-bench-ingest-db-{}", std::process::id()));
    run("sqlite", dir.to_str().unwrap(), 100_000, 500, 1);
    let _ = std::fs::remove_dir_all(&dir);
    run("sqlite", dir.to_str().unwrap(), 5_000, 50, 50);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(admin) = postgres_admin_url() {
        let db = TempDatabase::create(&admin, "bench");
        run("postgres", &db.url, 100_000, 500, 1);
        let db2 = TempDatabase::create(&admin, "bench2");
        run("postgres", &db2.url, 5_000, 50, 50);
    } else {
        println!("postgres: skipped, no server at EDGEPROBE_POSTGRES_URL");
    }
}
