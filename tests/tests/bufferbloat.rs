//! Latency under load, from the bufferbloat lab (`tests/lab/record_bufferbloat.sh`): a
//! 1 Mbit/s line with a 400 ms queue on the access side, the same queue at home, or a 10 ms
//! queue (the control), each with a bulk download and upload running for 18 s between idle
//! spells while small requests go on. The loaded round trips must show the queue on its side,
//! and the idle ones must not; the collector must open a bufferbloat incident on the right side
//! for the two deep queues and none for the control, and the bloated lines must score lower
//! for conferencing and gaming than for streaming.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{
    Collector, CollectorToml, TempDatabase, free_port, replay_agent_measuring, require_postgres,
};
use edgeprobe_tests::{fixtures, prerequisite, replay};
use edgeprobe_wire::Report;
use serde_json::{Value, json};
use std::time::Duration;

/// The lab line carries 125 kB/s; a sixth of a bulk transfer's rate makes it loaded.
const MEASURE: &str = "loaded_bytes_per_sec = 20000";
const INTERVAL_SECS: u64 = 5;

fn lab_ms() -> (f64, f64) {
    let env = std::fs::read_to_string(fixtures().join("lab.env")).unwrap();
    let get = |k: &str| -> f64 {
        env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().trim().parse().unwrap()
    };
    (get("HOME_MS"), get("NET_MS"))
}

/// Per window: the line's idle and loaded round trips by side as (count, p10, p90) in ms.
struct Side {
    idle_p10: Vec<f64>,
    idle_p90: Vec<f64>,
    loaded_p90: Vec<f64>,
}

fn sides(fixture: &str) -> [Side; 2] {
    let dir = std::env::temp_dir().join(format!("edgeprobe-bloat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, format!("[measure]\nreport_interval_secs = {INTERVAL_SECS}\n{MEASURE}\n")).unwrap();
    let out = replay(&fixtures().join(fixture), &["--reports", "--config", config.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    let mut result = [(); 2].map(|_| Side { idle_p10: vec![], idle_p90: vec![], loaded_p90: vec![] });
    for line in out.events.iter().filter(|e| e.get("v").is_some()) {
        let report: Report = serde_json::from_value(line.clone()).unwrap();
        for sub in &report.subscribers {
            for (i, (all, loaded)) in
                [("rtt_home", "rtt_home_loaded"), ("rtt_network", "rtt_network_loaded")].into_iter().enumerate()
            {
                let Some(all) = sub.metrics.get(all).map(|h| h.histogram().unwrap()) else { continue };
                let loaded = sub.metrics.get(loaded).map(|h| h.histogram().unwrap());
                let mut idle = all.clone();
                if let Some(l) = &loaded {
                    idle.subtract(l).unwrap();
                }
                let ms = |v: u64| v as f64 / 1000.0;
                if idle.len() >= 10 {
                    result[i].idle_p10.push(ms(idle.value_at_quantile(0.1)));
                    result[i].idle_p90.push(ms(idle.value_at_quantile(0.9)));
                }
                if let Some(l) = loaded.filter(|l| l.len() >= 10) {
                    result[i].loaded_p90.push(ms(l.value_at_quantile(0.9)));
                }
            }
        }
    }
    result
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

#[test]
fn loaded_round_trips_show_the_queue_on_its_side_and_idle_ones_do_not() {
    let (home_ms, net_ms) = lab_ms();
    // The round trip each side has with no queue: twice its delay line, a little more.
    let idle = [2.0 * home_ms, 2.0 * net_ms];
    for (fixture, bloated) in
        [("lab_bloat_network.pcapng", Some(1)), ("lab_bloat_home.pcapng", Some(0)), ("lab_bloat_none.pcapng", None)]
    {
        let s = sides(fixture);
        for i in 0..2 {
            let what = format!("{fixture} {}", ["home", "network"][i]);
            assert!(s[i].idle_p10.len() >= 4 && s[i].loaded_p90.len() >= 2, "{what}: too few windows");
            // The idle baseline is the delay line's, whatever queue the line has.
            for p10 in &s[i].idle_p10 {
                // (Round trips are reported to 1/32 of their value.)
                assert!((idle[i] * 0.97..idle[i] * 1.3 + 2.0).contains(p10), "{what}: idle p10 {p10} ms");
            }
            let worst = max(&s[i].loaded_p90);
            if bloated == Some(i) {
                // A 400 ms queue at 1 Mbit/s, filled by the bulk transfers.
                assert!(worst > idle[i] + 150.0, "{what}: loaded p90 at most {worst} ms");
            } else {
                // Below the collector's default bloat rule (+100 ms): a short queue at 1 Mbit/s
                // still holds a few packets of 12 ms each, and receivers delay some ACKs.
                assert!(worst < idle[i] + 100.0, "{what}: loaded p90 reached {worst} ms with no deep queue here");
            }
        }
    }
}

const CUSTOMERS: &str =
    "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out,partner_offers
N1,sub-n1,residential,fiber-300,north,OLT-N,40,false,false
H1,sub-h1,residential,fiber-300,north,OLT-H,40,false,true
Z1,sub-z1,residential,fiber-300,north,OLT-Z,40,false,true
";

/// Offers from the first bloated window, so one is made before the incident opens.
const OFFERS: &str = "[offers]\nenabled = true\nmin_windows = 1\nextender = \"MeshCo X1\"\n\
                      [offers.plan_upgrades]\nfiber-300 = \"fiber-1g\"\n[actions]\nholdout_share = 0.0";

fn scenario(storage: &str, tag: &str) {
    let dir = std::env::temp_dir().join(format!("edgeprobe-bloat-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let http = free_port();
    let storage = if storage.is_empty() { dir.join("db").display().to_string() } else { storage.to_string() };
    let config = CollectorToml::external(&url, storage, http)
        .section("[correlation]\nopen_after = 2\nresolve_after = 2\ngrace_secs = 0\nsettle_secs = 3\ntick_secs = 1")
        .section("[working_latency]\nmin_samples = 10")
        .section(OFFERS)
        .to_string();
    let collector = Collector::start(&dir, "collector", http, &config);
    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    assert!(collector.import_customers(&csv).status.success());

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = (now - 180) / 60 * 60 + 1;
    let runs: Vec<_> =
        [("n1", "lab_bloat_network.pcapng"), ("h1", "lab_bloat_home.pcapng"), ("z1", "lab_bloat_none.pcapng")]
            .into_iter()
            .map(|(who, fixture)| {
                let (dir, url) = (dir.clone(), url.clone());
                std::thread::spawn(move || {
                    let agent = (format!("gw-{who}"), format!("sub-{who}"));
                    replay_agent_measuring(
                        &dir,
                        &fixtures().join(fixture),
                        (&agent.0, &agent.1),
                        &url,
                        (start, INTERVAL_SECS),
                        MEASURE,
                        "",
                    )
                })
            })
            .collect();
    let reports: Vec<Value> = runs.into_iter().flat_map(|r| r.join().unwrap()).collect();
    let windows: std::collections::BTreeSet<u64> =
        reports.iter().map(|r| r["window_start"].as_u64().unwrap()).collect();
    collector.wait_metric("edgeprobe_collector_windows_evaluated_total", windows.len() as f64, Duration::from_secs(90));

    let incidents = collector.get("/api/v1/incidents?state=all")["incidents"].as_array().unwrap().clone();
    let bloat: Vec<&Value> = incidents.iter().filter(|i| i["kind"] == "bufferbloat").collect();
    let summary: Vec<String> =
        incidents.iter().map(|i| format!("{} {} {}", i["kind"], i["scope"], i["state"])).collect();
    let scope_of = |id: &str| bloat.iter().find(|i| i["scope"]["customer_id"] == id).map(|i| i["scope"].clone());
    assert_eq!(scope_of("N1"), Some(json!({"customer_id": "N1", "side": "access"})), "{summary:#?}");
    assert_eq!(scope_of("H1"), Some(json!({"customer_id": "H1", "side": "home"})), "{summary:#?}");
    assert_eq!(bloat.len(), 2, "no bufferbloat on the control line: {summary:#?}");
    for i in &bloat {
        assert!(i["opened_at"].is_i64(), "opened after open_after windows: {i}");
        assert!(i["probable_cause"].as_str().unwrap().contains("idle baseline"), "{i}");
        assert!(i["evidence"]["increase"].as_f64().unwrap() > 100.0, "{i}");
    }
    // The bloat explains the slow connects of the same windows: no other incident for those lines.
    let others: Vec<&String> = summary
        .iter()
        .filter(|s| !s.starts_with("\"bufferbloat\"") && (s.contains("N1") || s.contains("H1")))
        .collect();
    assert!(others.is_empty(), "{others:#?}");

    let actions = collector.get("/api/v1/actions")["actions"].as_array().unwrap().clone();
    let action = |id: &str| {
        let incident = |a: &&Value| !a["incident_id"].is_null() && a["action"] != "hold_marketing";
        actions.iter().filter(incident).find(|a| a["customer_id"] == id).map(|a| a["action"].clone())
    };
    assert_eq!(action("N1"), Some(json!("smart_queue")), "{actions:#?}");
    assert_eq!(action("H1"), Some(json!("wifi_help")), "{actions:#?}");
    assert_eq!(action("Z1"), None, "{actions:#?}");
    // Offers, outside the open incident: an upgrade where the access queue bloats, the
    // partner's extender where the home side does (H1 takes partner offers); none for the
    // control line, and none once the incident is open.
    let offer = |id: &str| actions.iter().find(|a| a["customer_id"] == id && a["intended"] == "offer");
    let n1 = offer("N1").unwrap_or_else(|| panic!("{actions:#?}"));
    assert_eq!((&n1["action"], &n1["rule"]), (&json!("offer"), &json!("offer:plan_upgrade")), "{n1}");
    assert!(n1["reason"].as_str().unwrap().contains("from plan fiber-300 to fiber-1g"), "{n1}");
    let h1 = offer("H1").unwrap_or_else(|| panic!("{actions:#?}"));
    assert_eq!(h1["rule"], "offer:wifi_extender", "{h1}");
    assert!(h1["reason"].as_str().unwrap().contains("MeshCo X1"), "{h1}");
    assert!(offer("Z1").is_none(), "{actions:#?}");
    for (id, o) in [("N1", n1), ("H1", h1)] {
        // open_after = 2: the incident opens in the window after its first.
        let first = bloat.iter().find(|i| i["scope"]["customer_id"] == id).unwrap()["first_window"].as_i64().unwrap();
        let opened = first + INTERVAL_SECS as i64 * 1000;
        assert!(o["window_ms"].as_i64().unwrap() < opened, "{id}: offered inside the open incident: {o}");
        assert_eq!(actions.iter().filter(|a| a["customer_id"] == id && a["intended"] == "offer").count(), 1);
    }

    // The customer view: working latency by side, and QoO by profile, per window.
    for (id, side) in [("N1", "network"), ("H1", "home")] {
        let c = collector.get(&format!("/api/v1/customers/{id}"));
        let history = c["quality_history"].as_array().unwrap();
        assert!(history.len() >= 6, "{id}: {} windows", history.len());
        let worst = history.iter().filter_map(|q| q[side]["increase_us"].as_i64()).max().unwrap();
        assert!(worst > 100_000, "{id}: {side} side rose at most {worst} µs");
        let bloated = history.iter().find(|q| q[side]["bloated"] == true).expect("a bloated window");
        let score = |p: &str| bloated["qoo"][p].as_f64().unwrap();
        assert!(score("video_conferencing") < score("video_streaming"), "{id}: {}", bloated["qoo"]);
        assert!(score("online_gaming") < score("video_streaming"), "{id}: {}", bloated["qoo"]);
        let page = collector.get_text(&format!("/customers/{id}"));
        assert!(page.contains("Quality of Outcome") && page.contains("Round trips under load"), "{id}");
    }
    let z1 = collector.get("/api/v1/customers/Z1");
    let calm = z1["quality"]["qoo"].as_object().unwrap();
    assert!(calm.values().all(|v| v.as_f64().unwrap() > 0.0), "{calm:?}");
}

#[test]
fn sqlite_bufferbloat_opens_on_the_right_side() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    scenario("", "sqlite");
}

#[test]
fn postgres_bufferbloat_opens_on_the_right_side() {
    if !prerequisite(mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let Some(admin) = require_postgres() else { return };
    let db = TempDatabase::create(&admin, "bloat");
    scenario(&db.url, "postgres");
}
