//! Closing the loop end to end: two access nodes fail; OLT-A recovers a minute later and
//! OLT-C does not. The collector proposes outage notices, holds a random share of the
//! customers out, measures each action's recovery from the reports, and takes outcomes (the
//! customers who called) from the operator's systems. Its recovery figures and its
//! effectiveness table must be what the scenario built, computed here from the reports the
//! agents published and the outcomes posted; bad outcomes are refused with their reasons.

use edgeprobe_tests::broker::Broker;
use edgeprobe_tests::collector::{Collector, CollectorToml, free_port, on_postgres, on_sqlite, replay_agent};
use edgeprobe_tests::fixtures;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const A: usize = 12;
const C: usize = 6;
const THRESHOLD_MS: f64 = 50.0;

fn customers() -> String {
    let mut csv =
        "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out\n".to_string();
    for i in 1..=A {
        // The last of OLT-A's customers opted out: refused, not a control.
        let segment = if i % 2 == 0 { "business" } else { "residential" };
        csv += &format!("A{i:02},sub-a{i:02},{segment},basic,north,OLT-A,10,{}\n", i == A);
    }
    for i in 1..=3 {
        csv += &format!("B{i:02},sub-b{i:02},residential,basic,north,OLT-B,10,false\n");
    }
    for i in 1..=C {
        csv += &format!("C{i:02},sub-c{i:02},residential,basic,south,OLT-C,10,false\n");
    }
    csv
}

fn config(broker: u16, http: u16, storage: &str) -> String {
    let sections = format!(
        r#"
[correlation]
open_after = 2
resolve_after = 3
grace_secs = 0
settle_secs = 4
tick_secs = 1
[plans.default]
connect_network_p90_ms = {THRESHOLD_MS}
[actions]
max_contacts = 5
holdout_share = 0.3
[outcomes]
before_minutes = 1
after_minutes = 1
contact_days = 1
[[http.auth.tokens]]
name = "crm"
token = "crm-token-0123456789"
role = "operator"
"#
    );
    CollectorToml::external(&format!("mqtt://127.0.0.1:{broker}"), storage, http).section(&sections).to_string()
}

/// Every line's subscriber key and the capture it replays in scene `scene` (0 or 1).
fn lines(scene: usize) -> Vec<(String, &'static str)> {
    let slow = "exp_slow_network.pcap";
    let healthy = "exp_healthy.pcap";
    let mut out = Vec::new();
    for i in 1..=A {
        out.push((format!("sub-a{i:02}"), if scene == 0 { slow } else { healthy }));
    }
    for i in 1..=3 {
        out.push((format!("sub-b{i:02}"), healthy));
    }
    for i in 1..=C {
        out.push((format!("sub-c{i:02}"), slow));
    }
    out
}

fn play(dir: &Path, broker: &str, start: u64, scene: usize) -> Vec<Value> {
    let runs: Vec<_> = lines(scene)
        .into_iter()
        .map(|(sub, capture)| {
            let (dir, broker, capture) = (dir.to_path_buf(), broker.to_string(), fixtures().join(capture));
            std::thread::spawn(move || {
                replay_agent(&dir, &capture, &format!("gw-{sub}-{scene}"), &sub, &broker, start, 10)
            })
        })
        .collect();
    runs.into_iter().flat_map(|r| r.join().unwrap()).collect()
}

/// Wilson's 95% interval, computed here from its formula, to check the collector's.
fn wilson(x: f64, n: f64) -> (f64, f64, f64) {
    let z: f64 = 1.959_963_984_540_054;
    let p = x / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (p, (centre - half).max(0.0), (centre + half).min(1.0))
}

fn scenario(storage: &str, tag: &str) {
    let dir = std::env::temp_dir().join(format!("edgeprobe-outcomes-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let broker_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let http = free_port();
    let mut collector = Collector::start_with_auth(
        &dir,
        "collector",
        http,
        &config(broker.port, http, storage),
        Some("Bearer crm-token-0123456789".into()),
    );
    let csv = dir.join("customers.csv");
    std::fs::write(&csv, customers()).unwrap();
    assert!(collector.import_customers(&csv).status.success());

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t0 = (now - 300) / 60 * 60 + 1;
    let mut reports = play(&dir, &broker_url, t0, 0);
    reports.extend(play(&dir, &broker_url, t0 + 60, 1));
    collector.wait_metric("edgeprobe_collector_reports_stored_total", reports.len() as f64, Duration::from_secs(90));

    // The connect p90 per line and window, as the agents reported it.
    let mut p90: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for r in &reports {
        for s in r["subscribers"].as_array().unwrap() {
            let m = &s["metrics"]["connect_network"];
            if m["count"].as_u64().unwrap_or(0) > 0 {
                let key = (s["subscriber"].as_str().unwrap().to_string(), r["window_start"].as_i64().unwrap());
                p90.insert(key, m["p90"].as_f64().unwrap());
            }
        }
    }

    // Every notice, hold-out and refusal is measured once the minute after it is in.
    let measured = |c: &Collector| {
        let actions = c.get("/api/v1/actions")["actions"].as_array().unwrap().clone();
        let arms: Vec<Value> = actions.into_iter().filter(|a| a["intended"] == "outage_notice").collect();
        let done = arms.iter().all(|a| {
            let customer = c.get(&format!("/api/v1/customers/{}", a["customer_id"].as_str().unwrap()));
            customer["actions"].as_array().unwrap().iter().any(|x| x["id"] == a["id"] && !x["result"].is_null())
        });
        (arms.len() == A + C && done, arms)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !measured(&collector).0 {
        let incidents = collector.get("/api/v1/incidents?state=all");
        assert!(std::time::Instant::now() < deadline, "not measured: {:#?}\n{incidents:#}", measured(&collector).1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, arms) = measured(&collector);
    assert_eq!(arms.len(), A + C, "one per customer of the two nodes: {arms:#?}");
    let by_arm = |kind: &str, node: char| -> Vec<&Value> {
        arms.iter().filter(|a| a["action"] == kind && a["customer_id"].as_str().unwrap().starts_with(node)).collect()
    };
    let (treated_a, holdout_a, refused_a) = (by_arm("outage_notice", 'A'), by_arm("holdout", 'A'), by_arm("none", 'A'));
    assert!(!treated_a.is_empty() && !holdout_a.is_empty(), "both arms on OLT-A: {arms:#?}");
    assert_eq!(refused_a.len(), 1, "the opted-out customer");
    assert_eq!(treated_a.len() + holdout_a.len() + 1, A);

    // Recovery, from the reports: the first window after the deciding one, within a minute,
    // whose p90 is within the plan.
    let mut expected: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for a in &arms {
        let id = a["customer_id"].as_str().unwrap();
        let sub = format!("sub-{}", id.to_lowercase());
        let from = a["window_ms"].as_i64().unwrap();
        let first = p90
            .range((sub.clone(), from + 1)..=(sub.clone(), from + 60_000))
            .find(|(_, v)| **v <= THRESHOLD_MS * 1000.0)
            .map(|((_, ws), _)| ws - from);
        let customer = collector.get(&format!("/api/v1/customers/{id}"));
        let result =
            customer["actions"].as_array().unwrap().iter().find(|x| x["id"] == a["id"]).unwrap()["result"].clone();
        assert_eq!(result["recovered"], json!(first.is_some()), "{id}: {result}");
        assert_eq!(result["recovery_ms"].as_i64(), first, "{id}: {result}");
        assert_eq!(result["metric"], "connect_network");
        assert!(result["before_value"].as_f64().unwrap() > THRESHOLD_MS * 1000.0, "{id} was degraded: {result}");
        expected.insert(id.to_string(), first);
    }
    assert!(expected.iter().filter(|(c, _)| c.starts_with('A')).all(|(_, r)| r.is_some()), "OLT-A recovers");
    assert!(expected.iter().filter(|(c, _)| c.starts_with('C')).all(|(_, r)| r.is_none()), "OLT-C does not");

    // Outcomes: every hold-out customer of OLT-A calls, one notified customer calls.
    let window_of = |a: &Value| a["window_ms"].as_i64().unwrap();
    let mut callers: BTreeSet<String> = BTreeSet::new();
    let mut items = Vec::new();
    for a in holdout_a.iter().chain(treated_a.iter().take(1)) {
        let id = a["customer_id"].as_str().unwrap();
        callers.insert(id.to_string());
        items.push(json!({"customer_id": id, "kind": "contact", "at_ms": window_of(a) + 30_000, "channel": "call",
            "reason": "no internet", "external_id": format!("call-{id}")}));
    }
    let (status, body) = collector.post("/api/v1/outcomes", json!(items));
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(items.len() as u64)), "{body}");
    // Sent again: known by external_id, nothing added.
    let (_, again) = collector.post("/api/v1/outcomes", json!(items));
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(items.len() as u64)));

    // The effectiveness table, from what this test built.
    let effects = collector.get("/api/v1/effectiveness?days=1")["effects"].as_array().unwrap().clone();
    let row = effects.iter().find(|e| e["action"] == "outage_notice" && e["segment"] == "all").unwrap();
    let treated: Vec<&Value> = arms.iter().filter(|a| a["action"] == "outage_notice").collect();
    let holdout: Vec<&Value> = arms.iter().filter(|a| a["action"] == "holdout").collect();
    let recovered =
        |set: &[&Value]| set.iter().filter(|a| expected[a["customer_id"].as_str().unwrap()].is_some()).count() as f64;
    let called =
        |set: &[&Value]| set.iter().filter(|a| callers.contains(a["customer_id"].as_str().unwrap())).count() as f64;
    for (arm, set) in [("treated", &treated), ("holdout", &holdout)] {
        let got = &row[arm];
        let n = set.len() as f64;
        assert_eq!(got["actions"].as_f64(), Some(n), "{arm}: {got}");
        assert_eq!(got["recovered"].as_f64(), Some(recovered(set)), "{arm}: {got}");
        let (p, low, high) = wilson(recovered(set), n);
        let rate = &got["recovery_rate"];
        assert!((rate["value"].as_f64().unwrap() - p).abs() < 1e-9, "{arm}: {rate}");
        assert!(
            (rate["low"].as_f64().unwrap() - low).abs() < 1e-9 && (rate["high"].as_f64().unwrap() - high).abs() < 1e-9
        );
        let contact = got["contact_rate"]["value"].as_f64().unwrap();
        assert!((contact - called(set) / n).abs() < 1e-9, "{arm}: {got}");
    }
    assert_eq!(row["refused"]["actions"], 1, "the opt-out, apart: {row}");
    let uplift = row["uplift"]["contact_rate"]["value"].as_f64().unwrap();
    let want = called(&treated) / treated.len() as f64 - called(&holdout) / holdout.len() as f64;
    assert!((uplift - want).abs() < 1e-9, "{uplift} against {want}: {row}");
    assert!(row["uplift"]["contact_rate"]["high"].as_f64().unwrap() < 0.0, "notices cut calls: {row}");
    // Per segment, too: the business and residential rows add up to all.
    let segments: f64 = effects
        .iter()
        .filter(|e| e["action"] == "outage_notice" && e["segment"] != "all")
        .map(|e| e["treated"]["actions"].as_f64().unwrap())
        .sum();
    assert_eq!(segments, treated.len() as f64);
    assert!(collector.get_text("/effectiveness").contains("outage notice"));
    let page = collector.get_text(&format!("/customers/{}", holdout_a[0]["customer_id"].as_str().unwrap()));
    assert!(page.contains("recovered after") && page.contains("no internet"), "the results and the call: {page}");

    // Bad outcomes are refused, each with its reason; the good one among them is kept.
    let a1 = treated_a[0]["id"].as_i64().unwrap();
    let c1 = arms.iter().find(|a| a["customer_id"] == "C01").unwrap()["id"].as_i64().unwrap();
    let now_ms = now as i64 * 1000;
    let bad = json!([
        {"customer_id": "nobody", "kind": "contact", "at_ms": now_ms},
        {"customer_id": "A01", "kind": "complaint", "at_ms": now_ms},
        {"customer_id": "A01", "kind": "contact", "at_ms": now_ms + 86_400_000},
        {"customer_id": "A01", "kind": "satisfaction", "at_ms": now_ms},
        {"customer_id": "A01", "kind": "churn", "at_ms": now_ms, "action_id": c1},
        {"customer_id": "A01", "kind": "contact", "at_ms": now_ms, "colour": "blue"},
        {"customer_id": treated_a[0]["customer_id"], "kind": "satisfaction", "at_ms": now_ms, "score": 9, "action_id": a1},
    ]);
    let (status, body) = collector.post("/api/v1/outcomes", bad);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    let reasons: Vec<String> =
        body["rejected"].as_array().unwrap().iter().map(|r| format!("{}: {}", r["item"], r["reason"])).collect();
    for (i, why) in
        ["no customer", "kind \\\"complaint\\\"", "in the future", "needs a score", "was for customer", "unknown field"]
            .iter()
            .enumerate()
    {
        assert!(reasons[i].starts_with(&format!("{i}: ")) && reasons[i].contains(why), "{i} {why}: {reasons:#?}");
    }
    let (status, _) =
        collector.post("/api/v1/outcomes", json!([{"customer_id": "nobody", "kind": "contact", "at_ms": now_ms}]));
    assert_eq!(status, 422, "nothing accepted");
    assert_eq!(collector.post("/api/v1/outcomes", json!("contact")).0, 400);

    // The same checks on a file, by line; the exit status says rows were refused.
    let file = dir.join("outcomes.csv");
    std::fs::write(&file, format!("customer_id,kind,at_ms,score,external_id\nA02,satisfaction,{now_ms},8,s-1\nA02,contact,soon,,\nnobody,churn,{now_ms},,\n")).unwrap();
    let out = std::process::Command::new(edgeprobe_tests::collector_bin())
        .arg("--config")
        .arg(&collector.config)
        .arg("import-outcomes")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("outcomes.csv:3: at_ms \"soon\"") && stderr.contains("outcomes.csv:4: no customer"),
        "{stderr}"
    );
    assert!(stderr.contains("recorded 1 outcomes"), "{stderr}");
    let a02 = collector.get("/api/v1/outcomes?customer_id=A02")["outcomes"].as_array().unwrap().clone();
    assert!(
        a02.iter().any(|o| o["kind"] == "satisfaction" && o["score"] == 8.0 && o["source"] == "import:outcomes.csv"),
        "{a02:#?}"
    );
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_actions_are_measured_against_the_holdout() {
    on_sqlite("outcomes", |db| scenario(db, "sqlite"));
}

#[test]
fn postgres_actions_are_measured_against_the_holdout() {
    on_postgres("outcomes", |db| scenario(db, "postgres"));
}
