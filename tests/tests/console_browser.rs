//! The NOC console in a real browser: agents replay lab captures into a real Mosquitto, the
//! collector (with a login) correlates them, and `tests/browser/console.mjs` drives Debian's
//! Chromium through playwright-core: the incident the data must produce, its customers, an
//! operator's acknowledgement seen live by a read-only user, and a customer view whose plots
//! hold one point per window the agent reported. Screenshots go to target/console-screenshots.
//! Also checked here, without a browser: nothing answers without credentials, and a read-only
//! login cannot change anything.

use base64::Engine;
use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{Collector, CollectorToml, free_port, replay_agent_with};
use edgeprobe_tests::{fixtures, prerequisite, workspace_root};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

const CUSTOMERS: &str = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out
A1,sub-a1,residential,fiber-300,north,OLT-A,45.5,false
A2,sub-a2,business,fiber-1g,north,OLT-A,120,false
A3,sub-a3,residential,fiber-300,north,OLT-A,30,true
B1,sub-b1,residential,fiber-300,north,OLT-B,40,false
B2,sub-b2,premium,fiber-1g,north,OLT-B,99,false
B3,sub-b3,residential,fiber-300,north,OLT-B,35,false
";

/// Agents follow one journey: the portal lookup, the connect, the first byte.
const JOURNEY: &str = "[[journeys]]\nname = \"portal\"\ntimeout_secs = 5\nsteps = [{ name = \"dns\", dns = \"portal.*\" }, \
    { name = \"connect\", port = 80 }, { name = \"page\", http_host = \"portal.*\" }]\n";

const OPERATOR: (&str, &str) = ("alice", "alice-operator-pw");
const READER: (&str, &str) = ("bob", "bob-read-only-pw");
const TOKEN: &str = "script-token-0123456789";

fn basic((user, password): (&str, &str)) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Status of a request with the given Authorization header, if any.
fn status(method: &str, url: &str, auth: Option<&str>) -> u16 {
    let mut r = ureq::request(method, url);
    if let Some(a) = auth {
        r = r.set("Authorization", a);
    }
    let r = if method == "GET" { r.call() } else { r.send_json(json!({})) };
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

#[test]
fn the_console_shows_the_incident_its_customers_and_their_experience() {
    let browser_dir = workspace_root().join("tests/browser");
    let ready = mosquitto().is_some()
        && std::path::Path::new("/usr/bin/chromium").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && browser_dir.join("node_modules/playwright-core").exists();
    if !prerequisite(ready, "Mosquitto, node, /usr/bin/chromium and `npm ci` in tests/browser") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::start(&dir.join("broker"), "");
    let http = free_port();
    let sections = format!(
        r#"
[http.auth]
users = [{{ name = "{}", password = "{}", role = "operator" }}, {{ name = "{}", password = "{}", role = "read" }}]
tokens = [{{ name = "script", token = "{TOKEN}", role = "read" }}]
[correlation]
open_after = 2
grace_secs = 0
settle_secs = 4
tick_secs = 1
"#,
        OPERATOR.0, OPERATOR.1, READER.0, READER.1
    );
    let config = CollectorToml::external(&broker.url(), dir.join("data").display(), http)
        .broker("client_id = \"collector-console\"")
        .section(&sections)
        .to_string();
    let bearer = format!("Bearer {TOKEN}");
    let collector = Collector::start_with_auth(&dir, "collector", http, &config, Some(bearer.clone()));
    let base = collector.base.clone();

    // No page and no API call answers without valid credentials; read-only changes nothing.
    for path in ["/", "/agents", "/history", "/static/console.js", "/api/v1/incidents", "/api/v1/health", "/metrics"] {
        assert_eq!(status("GET", &format!("{base}{path}"), None), 401, "{path} without credentials");
        assert_eq!(status("GET", &format!("{base}{path}"), Some("Basic Ym9iOndyb25n")), 401, "{path}, wrong password");
        assert_eq!(status("GET", &format!("{base}{path}"), Some(&basic(READER))), 200, "{path} for a reader");
    }
    assert_eq!(status("POST", &format!("{base}/api/v1/incidents/1/ack"), Some(&bearer)), 403);
    assert_eq!(status("PUT", &format!("{base}/api/v1/agent-config"), Some(&basic(READER))), 403);

    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    assert!(collector.import_customers(&csv).status.success());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = (now - 300) / 60 * 60 + 1;
    let runs: Vec<_> = ["a1", "a2", "a3", "b1", "b2", "b3"]
        .iter()
        .map(|id| {
            let capture =
                fixtures().join(if id.starts_with('a') { "exp_slow_network.pcap" } else { "exp_healthy.pcap" });
            let (dir, broker, sub) = (dir.clone(), broker.url(), format!("sub-{id}"));
            std::thread::spawn(move || {
                replay_agent_with(&dir, &capture, &format!("gw-{sub}"), &sub, &broker, (start, 10), JOURNEY)
            })
        })
        .collect();
    let reports: Vec<Value> = runs.into_iter().flat_map(|r| r.join().unwrap()).collect();
    let windows: BTreeSet<u64> = reports.iter().map(|r| r["window_start"].as_u64().unwrap()).collect();
    collector.wait_metric("edgeprobe_collector_reports_stored_total", reports.len() as f64, Duration::from_secs(60));
    collector.wait_metric("edgeprobe_collector_windows_evaluated_total", windows.len() as f64, Duration::from_secs(60));
    let open = collector.get("/api/v1/incidents")["incidents"].as_array().unwrap().clone();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["scope"], json!({"access_node": "OLT-A"}));

    // What A1's plots must hold: one point per window in which its agent measured the metric.
    let mut points: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports.iter().filter(|r| r["agent_id"] == "gw-sub-a1") {
        for m in ["dns", "connect_network", "connect_home", "http_ttfb"] {
            if r["subscribers"][0]["metrics"][m]["count"].as_u64().unwrap_or(0) > 0 {
                *points.entry(m).or_default() += 1;
            }
        }
        let journey = &r["subscribers"][0]["journeys"][0];
        let episodes: u64 = ["ok", "failed", "timeout"].iter().map(|k| journey[k].as_u64().unwrap_or(0)).sum();
        if episodes > 0 {
            *points.entry("journey:portal").or_default() += 1;
        }
        if journey["latency"]["count"].as_u64().unwrap_or(0) > 0 {
            *points.entry("journey_latency:portal").or_default() += 1;
        }
    }
    assert_eq!(points.len(), 6, "{points:?}");
    assert!(points.values().all(|n| *n >= 2), "{points:?}");

    // Cleared first, so the screenshots checked below are this run's.
    let shots = workspace_root().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .env("BASE", &base)
        .env("OPERATOR", format!("{}:{}", OPERATOR.0, OPERATOR.1))
        .env("READER", format!("{}:{}", READER.0, READER.1))
        .env("SCOPE", "access node OLT-A")
        .env("CUSTOMERS", "A1,A2,A3")
        .env("CUSTOMER", "A1")
        .env("POINTS", serde_json::to_string(&points).unwrap())
        .env("AGENTS", "6")
        .env("SHOTS", &shots)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}\n{}", collector.log());
    assert!(stdout.contains("ok   the open list updated live"), "{stdout}");
    for shot in ["incidents", "incidents-read-only", "incident", "customer", "agents", "history"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "no screenshot {shot}.png");
    }
    assert!(collector.metric("edgeprobe_collector_http_auth_failures_total") >= 15.0);
    let _ = std::fs::remove_dir_all(&dir);
}
