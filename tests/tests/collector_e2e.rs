//! The whole system end to end: agents replay lab captures of healthy and degraded experience
//! into a real Mosquitto, the real collector ingests them into SQLite or PostgreSQL, joins the
//! customer records and correlates. The data must produce exactly one access-node incident
//! (with exactly its customers and their value), one home-network incident and one service
//! incident, nothing else, and actions that respect opt-outs. Two collectors sharing the
//! subscription and one PostgreSQL must reach the same result.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{
    Collector, CollectorToml, TempDatabase, free_port, on_postgres, on_sqlite, replay_agent, replay_agent_with,
    require_postgres,
};
use edgeprobe_tests::{fixtures, prerequisite};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const CUSTOMERS: &str = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out,tier
A1,sub-a1,residential,fiber-300,north,OLT-A,45.5,false,silver
A2,sub-a2,business,fiber-1g,north,OLT-A,120,false,gold
A3,sub-a3,residential,fiber-300,north,OLT-A,30,true,bronze
B1,sub-b1,residential,fiber-300,north,OLT-B,40,false,silver
B2,sub-b2,premium,fiber-1g,north,OLT-B,99,false,gold
B3,sub-b3,residential,fiber-300,north,OLT-B,35,false,silver
C1,sub-c1,residential,fiber-300,south,OLT-C,50,false,silver
C2,sub-c2,residential,fiber-300,south,OLT-C,42,false,silver
C3,sub-c3,business,fiber-1g,south,OLT-C,150,false,gold
";

/// Who replays what. Two scenes a minute apart: first a failing access node (A), a slow home
/// network (C1) and healthy lines; then a slow service used across access nodes B and C.
const SCENES: [&[(&str, &str)]; 2] = [
    &[
        ("sub-a1", "exp_slow_network.pcap"),
        ("sub-a2", "exp_slow_network.pcap"),
        ("sub-a3", "exp_slow_network.pcap"),
        ("sub-b1", "exp_healthy.pcap"),
        ("sub-b2", "exp_healthy.pcap"),
        ("sub-b3", "exp_healthy.pcap"),
        ("sub-c1", "exp_slow_home.pcap"),
        ("sub-c2", "exp_healthy.pcap"),
        ("sub-c3", "exp_healthy.pcap"),
    ],
    &[
        ("sub-b1", "exp_slow_service.pcap"),
        ("sub-b2", "exp_slow_service.pcap"),
        ("sub-b3", "exp_healthy.pcap"),
        ("sub-c2", "exp_slow_service.pcap"),
        ("sub-c3", "exp_slow_service.pcap"),
    ],
];

fn config(broker_port: u16, http_port: u16, storage: &str, client_id: &str) -> String {
    let url = format!("mqtt://127.0.0.1:{broker_port}");
    let correlation = r#"
[correlation]
open_after = 2
resolve_after = 3
grace_secs = 0
settle_secs = 4
tick_secs = 1
[plans.default]
[plans.fiber-1g]
connect_network_p90_ms = 80
"#;
    CollectorToml::external(&url, storage, http_port)
        .broker(&format!("client_id = \"{client_id}\""))
        .section(correlation)
        .to_string()
}

/// Replays every scene's agents in parallel; returns the reports they published.
fn play(dir: &Path, broker: &str) -> Vec<Value> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Whole minutes in the past, so every window is complete when the collector sees it.
    let t0 = (now - 300) / 60 * 60 + 1;
    let mut reports = Vec::new();
    for (i, scene) in SCENES.iter().enumerate() {
        let start = t0 + 60 * i as u64;
        let runs: Vec<_> = scene
            .iter()
            .map(|(sub, capture)| {
                let (dir, broker) = (dir.to_path_buf(), broker.to_string());
                let (sub, capture) = (sub.to_string(), fixtures().join(capture));
                let agent = format!("gw-{sub}-{i}");
                std::thread::spawn(move || replay_agent(&dir, &capture, &agent, &sub, &broker, start, 10))
            })
            .collect();
        for r in runs {
            reports.extend(r.join().unwrap());
        }
    }
    reports
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Polls until `series` summed over the collectors reaches `target`.
fn wait_sum(collectors: &[Collector], series: &str, target: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sum: f64 = collectors.iter().map(|c| c.metric(series)).sum();
        if sum >= target {
            assert_eq!(sum, target, "{series} went past its target");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {sum}, expected {target}; log:\n{}",
            collectors[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scenario(storage: &str, tag: &str, collectors: usize) {
    let dir = std::env::temp_dir().join(format!("edgeprobe-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let broker_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let all: Vec<Collector> = (1..=collectors)
        .map(|n| {
            let http = free_port();
            let name = format!("collector-{n}");
            Collector::start(&dir, &name, http, &config(broker.port, http, storage, &name))
        })
        .collect();
    let collector = &all[0];

    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    let out = collector.import_customers(&csv);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(collector.get("/api/v1/health")["customers"], 9);

    let reports = play(&dir, &broker_url);
    let windows: BTreeSet<u64> = reports.iter().map(|r| r["window_start"].as_u64().unwrap()).collect();
    wait_sum(&all, "edgeprobe_collector_reports_stored_total", reports.len() as f64);
    // Every window evaluated exactly once, by one collector or another.
    wait_sum(&all, "edgeprobe_collector_windows_evaluated_total", windows.len() as f64);
    for c in &all {
        assert_eq!(c.metric("edgeprobe_collector_reports_duplicate_total"), 0.0);
        assert_eq!(c.metric("edgeprobe_collector_unknown_subscribers_total"), 0.0);
        // The shared subscription splits the load.
        assert!(c.metric("edgeprobe_collector_reports_stored_total") > 0.0, "{} stored nothing", c.base);
    }

    let incidents = collector.get("/api/v1/incidents?state=all")["incidents"].as_array().unwrap().clone();
    let by_kind: BTreeMap<String, &Value> =
        incidents.iter().map(|i| (i["kind"].as_str().unwrap().to_string(), i)).collect();
    let summary: Vec<String> =
        incidents.iter().map(|i| format!("{} {} {}", i["kind"], i["scope"], i["customers"])).collect();
    assert_eq!(incidents.len(), 3, "exactly three incidents, got {summary:#?}\n{}", collector.log());

    let node = by_kind.get("access_node").unwrap_or_else(|| panic!("no access-node incident: {summary:?}"));
    assert_eq!(node["scope"], json!({"access_node": "OLT-A"}));
    assert_eq!(node["state"], "open");
    assert_eq!(ids(&node["customers"]), set(&["A1", "A2", "A3"]));
    assert_eq!(node["affected_customers"], 3);
    assert_eq!(node["value_at_risk"].as_f64().unwrap(), 195.5);
    assert!(["connect_network", "dns"].contains(&node["metric"].as_str().unwrap()), "{node}");
    assert!(node["probable_cause"].as_str().unwrap().contains("OLT-A"), "{node}");

    let home = by_kind.get("home_network").unwrap_or_else(|| panic!("no home-network incident: {summary:?}"));
    assert_eq!(home["scope"], json!({"customer_id": "C1"}));
    assert_eq!(ids(&home["customers"]), set(&["C1"]));
    assert_eq!(home["metric"], "connect_home");

    let service = by_kind.get("service").unwrap_or_else(|| panic!("no service incident: {summary:?}"));
    assert_eq!(service["scope"], json!({"service": "video.lab.example"}));
    assert_eq!(ids(&service["customers"]), set(&["B1", "B2", "C2", "C3"]));
    assert_eq!(service["value_at_risk"].as_f64().unwrap(), 331.0);
    assert_eq!(service["metric"], "http_ttfb");

    // Actions: by kind and segment, never a contact for the customer who opted out.
    let actions = collector.get("/api/v1/actions")["actions"].as_array().unwrap().clone();
    let action = |customer: &str| -> (String, bool, String) {
        let a = actions
            .iter()
            .find(|a| a["customer_id"] == customer && a["action"] != "hold_marketing")
            .unwrap_or_else(|| panic!("no action for {customer}: {actions:#?}"));
        (a["action"].as_str().unwrap().into(), a["contact"].as_bool().unwrap(), a["reason"].as_str().unwrap().into())
    };
    assert_eq!(action("A1").0, "outage_notice");
    assert!(action("A1").1);
    assert_eq!(action("A2").0, "outage_notice");
    let (a3, contact, why) = action("A3");
    assert_eq!((a3.as_str(), contact), ("none", false));
    assert!(why.contains("opted out"), "{why}");
    assert_eq!(action("C1").0, "wifi_help");
    assert_eq!(action("B2").0, "service_ticket");
    assert_eq!(action("C3").0, "service_ticket");
    assert_eq!(action("B1").0, "none");
    for a in &actions {
        assert!(!a["reason"].as_str().unwrap().is_empty(), "{a}");
    }
    let holds: BTreeSet<String> = actions
        .iter()
        .filter(|a| a["action"] == "hold_marketing")
        .map(|a| a["customer_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(holds, set(&["A1", "A2", "A3", "B1", "B2", "C1", "C2", "C3"]));
    assert!(actions.iter().all(|a| a["customer_id"] != "B3"), "B3 was never affected");

    // The customer view: latest figures per metric, and a score that tells A1 from B3.
    let a1 = collector.get("/api/v1/customers/A1");
    let b3 = collector.get("/api/v1/customers/B3");
    assert_eq!(a1["customer"]["attributes"]["tier"], "silver");
    assert!(a1["qoe"]["connect_network"]["p90_us"].as_u64().unwrap() > 200_000, "{a1}");
    assert!(b3["qoe"]["connect_network"]["p90_us"].as_u64().unwrap() < 40_000, "{b3}");
    assert!(a1["score"].as_f64().unwrap() < b3["score"].as_f64().unwrap(), "{a1}\n{b3}");
    assert_eq!(a1["incidents"].as_array().unwrap().len(), 1);

    // Acknowledging is recorded; an unknown incident is a 404.
    let id = node["id"].as_i64().unwrap();
    let (status, acked) = collector.post(&format!("/api/v1/incidents/{id}/ack"), json!({"by": "noc-alice"}));
    assert_eq!(status, 200);
    assert_eq!(acked["acked_by"], "noc-alice");
    assert_eq!(collector.post("/api/v1/incidents/999999/ack", json!({})).0, 404);

    let agents = collector.get("/api/v1/agents")["agents"].as_array().unwrap().clone();
    assert_eq!(agents.len(), 14);
    assert!(agents.iter().all(|a| a["stopped"] == true && a["reports"].as_i64().unwrap() > 0), "{agents:#?}");
    // A clean stop drains and exits 0, on either store.
    for mut c in all {
        c.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_one_incident_per_cause() {
    on_sqlite("e2e", |db| scenario(db, "sqlite", 1));
}

#[test]
fn postgres_one_incident_per_cause() {
    on_postgres("e2e", |db| scenario(db, "postgres", 1));
}

/// Two collectors on one PostgreSQL, sharing the subscription: the same incidents as one,
/// none of them twice.
#[test]
fn postgres_two_collectors_share_the_work() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let Some(admin) = require_postgres() else { return };
    let db = TempDatabase::create(&admin, "scaleout");
    scenario(&db.url, "scaleout", 2);
}

/// The journey the agents follow: look up the portal, connect to it, get its first byte.
const PORTAL_JOURNEY: &str = r#"
[[journeys]]
name = "portal"
phase = "assurance"
channel = "web"
timeout_secs = 5
steps = [
    { name = "dns", dns = "portal.lab.example" },
    { name = "connect", port = 80 },
    { name = "page", http_host = "portal.lab.example" },
]
"#;

/// A journey failing behind one access node: the portal's web server refuses the connections
/// of OLT-A's customers while everyone else's portal visits work. One incident must name the
/// node, the journey and the failing step; the journey figures per group must show it; and a
/// journey rule gives the business customer a ticket of its own.
fn journey_scenario(storage: &str, tag: &str) {
    let dir = std::env::temp_dir().join(format!("edgeprobe-e2e-journey-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let broker_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let http = free_port();
    let rule = "[[actions.journey_rules]]\njourney = \"portal\"\nfailures = 3\nsegments = [\"business\"]\n\
                action = \"service_ticket\"\n";
    let config = format!("{}{rule}", config(broker.port, http, storage, "collector-journeys"));
    let collector = Collector::start(&dir, "collector", http, &config);
    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    assert!(collector.import_customers(&csv).status.success());

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = (now - 300) / 60 * 60 + 1;
    let runs: Vec<_> = ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "c3"]
        .iter()
        .map(|id| {
            let capture =
                fixtures().join(if id.starts_with('a') { "exp_portal_down.pcap" } else { "exp_healthy.pcap" });
            let (dir, broker, sub) = (dir.clone(), broker_url.clone(), format!("sub-{id}"));
            std::thread::spawn(move || {
                let agent = format!("gw-{sub}");
                replay_agent_with(&dir, &capture, &agent, &sub, &broker, (start, 10), PORTAL_JOURNEY)
            })
        })
        .collect();
    let reports: Vec<Value> = runs.into_iter().flat_map(|r| r.join().unwrap()).collect();
    let windows: BTreeSet<u64> = reports.iter().map(|r| r["window_start"].as_u64().unwrap()).collect();
    wait_sum(std::slice::from_ref(&collector), "edgeprobe_collector_reports_stored_total", reports.len() as f64);
    wait_sum(std::slice::from_ref(&collector), "edgeprobe_collector_windows_evaluated_total", windows.len() as f64);

    // What the agents reported, summed per access node, is what the collector must show.
    let mut sent: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for r in &reports {
        for line in r["subscribers"].as_array().unwrap() {
            let node = if line["subscriber"].as_str().unwrap().starts_with("sub-a") { "OLT-A" } else { "other" };
            for j in line["journeys"].as_array().into_iter().flatten() {
                let e = sent.entry(node).or_default();
                let n = |k: &str| j[k].as_u64().unwrap_or(0);
                *e = (
                    e.0 + n("ok"),
                    e.1 + n("failed") + n("timeout"),
                    e.2 + j["failed_steps"]["connect"].as_u64().unwrap_or(0),
                );
            }
        }
    }
    let (ok_a, failed_a, at_connect) = sent["OLT-A"];
    assert_eq!((ok_a, failed_a), (0, at_connect), "OLT-A's portal visits all fail at connect: {sent:?}");
    assert!(failed_a >= 20, "{sent:?}");
    assert!(sent["other"].0 >= 60 && sent["other"].1 == 0, "{sent:?}");

    let incidents = collector.get("/api/v1/incidents?state=all")["incidents"].as_array().unwrap().clone();
    let summary: Vec<String> =
        incidents.iter().map(|i| format!("{} {} {} {}", i["kind"], i["scope"], i["metric"], i["customers"])).collect();
    assert_eq!(incidents.len(), 1, "exactly one incident, got {summary:#?}\n{}", collector.log());
    let node = &incidents[0];
    assert_eq!((node["kind"].as_str(), &node["scope"]), (Some("access_node"), &json!({"access_node": "OLT-A"})));
    assert_eq!(node["state"], "open");
    assert_eq!(ids(&node["customers"]), set(&["A1", "A2", "A3"]));
    assert_eq!(node["value_at_risk"].as_f64().unwrap(), 195.5);
    assert_eq!(node["metric"], "journey:portal");
    assert_eq!((&node["evidence"]["journey"], &node["evidence"]["step"]), (&json!("portal"), &json!("connect")));
    assert_eq!(node["evidence"]["median_value"], json!(1.0));
    let cause = node["probable_cause"].as_str().unwrap();
    assert!(cause.contains("\"portal\" journey (most at step \"connect\")") && cause.contains("OLT-A"), "{cause}");

    // Journey figures per access node and per customer, from the same reports.
    let by_node = collector.get("/api/v1/journeys?by=access_node&hours=1")["journeys"].as_array().unwrap().clone();
    let of = |g: &str| by_node.iter().find(|j| j["group"] == g).unwrap_or_else(|| panic!("{g}: {by_node:#?}")).clone();
    let a = of("OLT-A");
    assert_eq!((a["ok"].as_u64(), a["failed"].as_u64(), a["customers"].as_u64()), (Some(0), Some(failed_a), Some(3)));
    assert_eq!(a["success_rate"], json!(0.0));
    assert_eq!(a["failed_steps"]["connect"].as_u64(), Some(at_connect));
    let (b, c) = (of("OLT-B"), of("OLT-C"));
    assert_eq!(b["ok"].as_u64().unwrap() + c["ok"].as_u64().unwrap(), sent["other"].0);
    assert_eq!(b["success_rate"], json!(1.0));
    assert!(b["latency_us"]["p90"].as_u64().unwrap() > 0, "{b}");
    let a1 = collector.get("/api/v1/customers/A1");
    assert_eq!(a1["journeys"][0]["journey"], "portal");
    assert_eq!(a1["journeys"][0]["ok"], 0);
    assert!(a1["journeys"][0]["failed"].as_u64().unwrap() > 0, "{a1}");

    // The journey rule: a ticket for the business customer on OLT-A, beside the outage notice.
    let actions = collector.get("/api/v1/actions")["actions"].as_array().unwrap().clone();
    let ruled: Vec<&Value> = actions.iter().filter(|a| a["rule"] == "journey:portal").collect();
    assert_eq!(ruled.len(), 1, "{actions:#?}");
    assert_eq!((&ruled[0]["customer_id"], &ruled[0]["action"]), (&json!("A2"), &json!("service_ticket")));
    assert_eq!(ruled[0]["incident_id"], Value::Null);
    assert!(actions.iter().any(|a| a["customer_id"] == "A1" && a["action"] == "outage_notice"), "{actions:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_a_journey_failing_behind_one_node_is_one_incident() {
    on_sqlite("e2e-journey", |db| journey_scenario(db, "sqlite"));
}

#[test]
fn postgres_a_journey_failing_behind_one_node_is_one_incident() {
    on_postgres("journeys", |db| journey_scenario(db, "postgres"));
}
