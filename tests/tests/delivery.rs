//! Webhooks end to end: agents replay a failing access node and then its recovery into a real
//! Mosquitto; the real collector correlates and posts incidents (Alertmanager's format) and
//! actions (the action JSON) to a real HTTP receiver. Everything arrives signed; no message
//! arrives under two idempotency keys; customers get nothing they refused; and with the
//! receiver down, what is decided meanwhile waits in the outbox, across a collector restart,
//! and arrives once the receiver is back.

use edgeprobe_tests::broker::Broker;
use edgeprobe_tests::collector::{Collector, CollectorToml, free_port, on_postgres, on_sqlite, replay_agent};
use edgeprobe_tests::receiver::{Received, Receiver};
use edgeprobe_tests::{fixtures, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// OLT-A's lines: A1 takes email or SMS, A2 opted out, A3 takes calls only (no notice goes by
/// phone), A4 is a dependent line. OLT-B is the healthy comparison.
const CUSTOMERS: &str = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out,contact_channels,partner_offers,dependent
A1,sub-a1,residential,fiber-300,north,OLT-A,45.5,false,email;sms,true,false
A2,sub-a2,residential,fiber-300,north,OLT-A,30,true,,false,false
A3,sub-a3,residential,fiber-300,north,OLT-A,40,false,call,false,false
A4,sub-a4,residential,fiber-300,north,OLT-A,20,false,,false,true
B1,sub-b1,residential,fiber-300,north,OLT-B,40,false,,false,false
B2,sub-b2,residential,fiber-300,north,OLT-B,99,false,,false,false
B3,sub-b3,residential,fiber-300,north,OLT-B,35,false,,false,false
";

const A: [&str; 4] = ["sub-a1", "sub-a2", "sub-a3", "sub-a4"];
const B: [&str; 3] = ["sub-b1", "sub-b2", "sub-b3"];
const SECRET: &str = "receiver-secret-0123456789";

fn config(broker: u16, http: u16, storage: &str, receiver: &Receiver) -> String {
    let sections = format!(
        r#"
[correlation]
open_after = 2
resolve_after = 3
grace_secs = 0
settle_secs = 4
tick_secs = 1
[plans.default]
[delivery]
retry_initial_ms = 200
retry_max_ms = 1000
external_url = "https://noc.example"
[[webhooks]]
name = "pager"
url = "{pager}"
events = ["incident_opened", "incident_updated", "incident_resolved"]
secret = "{SECRET}"
[[webhooks]]
name = "crm"
url = "{crm}"
events = ["action_proposed"]
secret = "{SECRET}"
headers = {{ Authorization = "Bearer crm-inbound-token" }}
"#,
        pager = receiver.url("/alerts"),
        crm = receiver.url("/actions"),
    );
    CollectorToml::external(&format!("mqtt://127.0.0.1:{broker}"), storage, http).section(&sections).to_string()
}

/// Replays one scene, a minute of capture from `start`: the lines in `slow` through the slow
/// network, the rest healthy.
fn play(dir: &Path, broker: &str, start: u64, slow: &[&str], scene: usize) -> usize {
    let runs: Vec<_> = A
        .iter()
        .chain(B.iter())
        .map(|sub| {
            let capture = if slow.contains(sub) { "exp_slow_network.pcap" } else { "exp_healthy.pcap" };
            let (dir, broker, sub, capture) =
                (dir.to_path_buf(), broker.to_string(), sub.to_string(), fixtures().join(capture));
            let agent = format!("gw-{sub}-{scene}");
            std::thread::spawn(move || replay_agent(&dir, &capture, &agent, &sub, &broker, start, 10).len())
        })
        .collect();
    runs.into_iter().map(|r| r.join().unwrap()).sum()
}

fn event(r: &Received) -> String {
    r.header("x-edgeprobe-event").to_string()
}

/// The messages received for one event, as (customer or incident, action type).
fn actions(received: &[Received]) -> BTreeSet<(String, String)> {
    received
        .iter()
        .filter(|r| event(r) == "action_proposed")
        .map(|r| {
            let a = &r.body["action"];
            (a["customer_id"].as_str().unwrap().to_string(), a["action"].as_str().unwrap().to_string())
        })
        .collect()
}

fn scenario(storage: &str, tag: &str) {
    let dir = std::env::temp_dir().join(format!("edgeprobe-delivery-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let broker_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let mut receiver = Receiver::start(0, SECRET);
    let http = free_port();
    let mut collector = Collector::start(&dir, "collector", http, &config(broker.port, http, storage, &receiver));
    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    let out = collector.import_customers(&csv);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t0 = (now - 300) / 60 * 60 + 1;
    // Scene 1: OLT-A fails. The incident opens and its actions go out while the receiver is up.
    let reports = play(&dir, &broker_url, t0, &A, 1);
    collector.wait_metric("edgeprobe_collector_reports_stored_total", reports as f64, Duration::from_secs(60));
    wait_for("the incident and its actions at the receiver", Duration::from_secs(60), || {
        let r = receiver.received();
        r.iter().any(|r| event(r) == "incident_opened") && actions(&r).len() >= 6
    });
    let first = receiver.received();
    for r in &first {
        assert!(r.signed, "unsigned or forged: {r:?}");
        assert!(!r.header("idempotency-key").is_empty(), "{r:?}");
    }
    let opened: Vec<&Received> = first.iter().filter(|r| event(r) == "incident_opened").collect();
    assert_eq!(opened.len(), 1, "one incident: {:#?}", opened);
    let alert = &opened[0].body;
    assert_eq!(opened[0].path, "/alerts");
    assert_eq!((alert["version"].as_str(), alert["status"].as_str()), (Some("4"), Some("firing")));
    assert_eq!(alert["alerts"][0]["labels"]["access_node"], "OLT-A");
    assert_eq!(alert["alerts"][0]["labels"]["alertname"], "edgeprobe_access_node");
    assert_eq!(alert["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let incident_id = alert["alerts"][0]["labels"]["incident_id"].as_str().unwrap().to_string();
    assert_eq!(alert["alerts"][0]["generatorURL"], format!("https://noc.example/incidents/{incident_id}"));

    // The notice goes to A1, by the channels A1 takes in the order the action prefers, and to
    // A4 (a dependent line is spared offers, not notices) by any; A2 (opted out) and A3
    // (calls only) get the marketing hold and nothing else; no `none` leaves the collector.
    let expected: BTreeSet<(String, String)> = [
        ("A1", "outage_notice"),
        ("A1", "hold_marketing"),
        ("A2", "hold_marketing"),
        ("A3", "hold_marketing"),
        ("A4", "outage_notice"),
        ("A4", "hold_marketing"),
    ]
    .iter()
    .map(|(c, a)| (c.to_string(), a.to_string()))
    .collect();
    assert_eq!(actions(&first), expected);
    let notice = first
        .iter()
        .find(|r| r.body["action"]["action"] == "outage_notice" && r.body["action"]["customer_id"] == "A1")
        .unwrap();
    assert_eq!(notice.path, "/actions");
    assert_eq!(notice.header("authorization"), "Bearer crm-inbound-token");
    assert_eq!(notice.body["action"]["channels"], serde_json::json!(["sms", "email"]));
    assert_eq!(notice.body["incident"]["id"].to_string(), incident_id);
    assert_eq!(notice.body["customer"]["access_node"], "OLT-A");
    // What was decided for the others, and why, is in the API.
    let a3 = collector.get("/api/v1/actions?customer_id=A3")["actions"].as_array().unwrap().clone();
    let none = a3.iter().find(|a| a["action"] == "none").expect("A3 gets none");
    assert!(none["reason"].as_str().unwrap().contains("accepts contact only by call"), "{none}");

    // Scene 2: the receiver is down while OLT-A recovers. The resolution waits, retried.
    receiver.down();
    let reports2 = play(&dir, &broker_url, t0 + 60, &[], 2);
    collector.wait_metric(
        "edgeprobe_collector_reports_stored_total",
        (reports + reports2) as f64,
        Duration::from_secs(60),
    );
    wait_for("the resolution to be retried", Duration::from_secs(60), || {
        let pending = collector.get("/api/v1/deliveries?state=pending&webhook=pager");
        pending["deliveries"].as_array().unwrap().iter().any(|d| {
            d["event"] == "incident_resolved"
                && d["attempts"].as_i64().unwrap() >= 2
                && !d["reason"].as_str().unwrap().is_empty()
        })
    });
    assert!(collector.metric("edgeprobe_collector_deliveries_total{webhook=\"pager\",outcome=\"retry\"}") >= 2.0);
    assert_eq!(collector.metric("edgeprobe_collector_deliveries_pending{webhook=\"pager\"}"), 1.0);
    // Across a restart, the outbox holds.
    collector.stop();
    collector.restart();
    receiver.up();
    wait_for("the resolution after the receiver is back", Duration::from_secs(60), || {
        receiver.received().iter().any(|r| event(r) == "incident_resolved")
    });
    let all = receiver.received();
    let resolved = all.iter().find(|r| event(r) == "incident_resolved").unwrap();
    assert!(resolved.signed);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["alerts"][0]["labels"]["incident_id"].as_str(), Some(incident_id.as_str()));
    assert_ne!(resolved.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(resolved.header("x-edgeprobe-attempt").parse::<u32>().unwrap() >= 3, "{resolved:?}");

    // At least once, never under two keys: each message (event and subject) has one key, and
    // a key is never reused for another message.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut subjects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &all {
        let subject = match event(r).as_str() {
            "action_proposed" => format!("action:{}", r.body["action"]["id"]),
            e => format!("{e}:{}", r.body["alerts"][0]["labels"]["incident_id"]),
        };
        keys.entry(subject.clone()).or_default().insert(r.header("idempotency-key").to_string());
        subjects.entry(r.header("idempotency-key").to_string()).or_default().insert(subject);
    }
    assert!(keys.values().all(|k| k.len() == 1), "a message under two keys: {keys:#?}");
    assert!(subjects.values().all(|s| s.len() == 1), "a key for two messages: {subjects:#?}");
    // Nothing was refused for good, and the API says every message was sent.
    let counts = collector.get("/api/v1/deliveries")["counts"].clone();
    assert_eq!(counts.get("pending"), None, "{counts}");
    assert_eq!(counts.get("failed"), None, "{counts}");
    assert_eq!(counts["sent"].as_u64().unwrap() as usize, keys.len(), "{counts}");
    // The console shows the same.
    let page = collector.get_text("/deliveries");
    assert!(page.contains(&format!("{} sent", keys.len())), "{page}");
    assert!(page.contains(&format!("<a href=\"/incidents/{incident_id}\">")), "{page}");
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_webhooks_deliver_incidents_and_actions_at_least_once() {
    on_sqlite("delivery", |db| scenario(db, "sqlite"));
}

#[test]
fn postgres_webhooks_deliver_incidents_and_actions_at_least_once() {
    on_postgres("delivery", |db| scenario(db, "postgres"));
}
