//! Agents that vanish: three live agents (capturing on the loopback interface) report to the
//! collector through a real Mosquitto, two behind access node OLT-X and one behind OLT-Y. All
//! three are killed, so the broker publishes their last wills; the OLT-Y gateway comes straight
//! back, as after a reboot. Within `agent_offline_after_secs` nothing opens; after it, exactly one
//! `agents_offline` incident opens, for OLT-X with its two customers, and it resolves when its
//! agents return. Needs root (live capture) and Mosquitto.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{Collector, CollectorToml, free_port};
use edgeprobe_tests::{edgeprobe_bin, prerequisite, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GRACE_SECS: u64 = 12;
const CUSTOMERS: &str = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out\n\
    C1,sub-a,residential,default,North,OLT-X,40,false\n\
    C2,sub-b,residential,default,North,OLT-X,60,false\n\
    C3,sub-c,residential,default,North,OLT-Y,50,false\n";

struct Agent {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn new(dir: &Path, id: &str, subscriber: &str, broker: &str) -> Agent {
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = \"{id}\"\n[measure]\nreport_interval_secs = 1\n[subscribers]\nsubscriber_id = \
                 \"{subscriber}\"\n[mqtt]\nurl = \"{broker}\"\n[capture]\ninterfaces = [\"lo\"]\n"
            ),
        )
        .unwrap();
        let mut agent = Agent { config, log: dir.join(format!("{id}.log")), child: None };
        agent.start();
        agent
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        self.child = Some(
            Command::new(edgeprobe_bin())
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGKILL: no clean goodbye, so the broker publishes the last will.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn offline_incidents(collector: &Collector) -> Vec<Value> {
    let all = collector.get("/api/v1/incidents?state=all");
    all["incidents"].as_array().unwrap().iter().filter(|i| i["kind"] == "agents_offline").cloned().collect()
}

#[test]
fn a_vanished_access_node_is_one_incident_and_a_reboot_is_none() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !prerequisite(root && mosquitto().is_some(), "root (live capture on lo) and Mosquitto") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-offline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broker = Broker::start(&dir.join("broker"), "");
    let http = free_port();
    let collector = Collector::start(
        &dir,
        "collector",
        http,
        &CollectorToml::external(&broker.url(), dir.join("data").display(), http)
            .section(&format!("[correlation]\nagent_offline_after_secs = {GRACE_SECS}"))
            .to_string(),
    );
    let csv = dir.join("customers.csv");
    std::fs::write(&csv, CUSTOMERS).unwrap();
    assert!(collector.import_customers(&csv).status.success());

    let url = broker.url();
    let mut agents: Vec<Agent> = [("gw-a", "sub-a"), ("gw-b", "sub-b"), ("gw-c", "sub-c")]
        .iter()
        .map(|(id, sub)| Agent::new(&dir, id, sub, &url))
        .collect();
    // Each agent reports its line (the loopback traffic, its own MQTT connection included), which
    // ties it to its customer's access node.
    wait_for("three agents on their access nodes", Duration::from_secs(40), || {
        let _ = Command::new("curl").args(["-s", "--max-time", "1", "http://127.0.0.1:9/"]).output();
        let listed = collector.get("/api/v1/agents");
        let on_nodes = listed["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["online"] == true && a["access_nodes"] != Value::Array(vec![]))
            .count();
        on_nodes == 3
    });

    let killed = Instant::now();
    for a in agents.iter_mut() {
        a.kill();
    }
    // The OLT-Y gateway reboots: back at once, with a new birth.
    agents[2].start();
    wait_for("the wills of gw-a and gw-b", Duration::from_secs(10), || {
        let listed = collector.get("/api/v1/agents");
        listed["agents"].as_array().unwrap().iter().filter(|a| a["online"] == false).count() == 2
    });
    // When the collector took the two wills (its clock, as the incident's).
    let listed = collector.get("/api/v1/agents");
    let wills: Vec<i64> = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["online"] == false)
        .map(|a| a["state_ms"].as_i64().unwrap())
        .collect();
    let (first_will_ms, last_will_ms) = (*wills.iter().min().unwrap(), *wills.iter().max().unwrap());
    // Agents are judged every 10 s, so at least one judgement falls inside the grace.
    std::thread::sleep(Duration::from_secs(GRACE_SECS - 1).saturating_sub(killed.elapsed()));
    assert!(offline_incidents(&collector).is_empty(), "opened within the grace: {:?}", offline_incidents(&collector));

    wait_for("an agents_offline incident", Duration::from_secs(30), || !offline_incidents(&collector).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    let incidents = offline_incidents(&collector);
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let i = &incidents[0];
    assert_eq!(i["state"], "open");
    assert_eq!(i["scope"]["access_node"], "OLT-X");
    assert_eq!(i["customers"], serde_json::json!(["C1", "C2"]));
    assert_eq!(i["value_at_risk"], 100.0);
    assert_eq!(i["evidence"]["silent_agents"], serde_json::json!(["gw-a", "gw-b"]));
    assert_eq!(i["evidence"]["last_will_seen"], 2);
    // Opened once the grace had passed since the wills, at the first judgement after it
    // (agents are judged every 10 s), not before and not much later.
    let opened = i["opened_at"].as_i64().unwrap();
    let grace = GRACE_SECS as i64 * 1000;
    assert!(opened >= first_will_ms + grace, "opened {} ms before the grace ended", first_will_ms + grace - opened);
    assert!(
        opened <= last_will_ms + grace + 12_000,
        "opened {} ms after the grace ended",
        opened - last_will_ms - grace
    );

    // The gateways come back: the incident resolves.
    agents[0].start();
    agents[1].start();
    wait_for("the incident to resolve", Duration::from_secs(40), || {
        offline_incidents(&collector).iter().all(|i| i["state"] == "resolved")
    });
    let log: String = agents.iter().map(|a| std::fs::read_to_string(&a.log).unwrap_or_default()).collect();
    drop(agents);
    drop(collector);
    assert!(!log.contains("panicked"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
