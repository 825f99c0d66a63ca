//! Pushed configuration on a running agent: the collector publishes journey definitions on the
//! agent's retained config topic (through a real Mosquitto), and the agent, capturing live on a
//! veth pair while curl talks to a server in a namespace, measures the new journeys without a
//! restart, reports the version it runs, and refuses a bad config with a reason while it keeps
//! the last good one. Needs root (a namespace), mosquitto, mosquitto_pub, curl and python3.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::collector::{Collector, CollectorToml, free_port};
use edgeprobe_tests::{edgeprobe_bin, have, prerequisite, wait_for, workspace_root};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "ep-push";
const HOST_IF: &str = "eppush0";
const SERVER: &str = "192.0.2.66";

fn sh(cmd: &str) -> bool {
    Command::new("sh").args(["-c", cmd]).status().is_ok_and(|s| s.success())
}

/// A server namespace behind a veth pair; the host side is what the agent captures on.
struct Net;

impl Net {
    fn up() -> Net {
        Net::down();
        assert!(sh(&format!(
            "ip netns add {NS} && ip link add {HOST_IF} type veth peer name eth0 netns {NS} && \
             ip addr add 192.0.2.65/30 dev {HOST_IF} && ip link set {HOST_IF} up && \
             ip -n {NS} addr add {SERVER}/30 dev eth0 && ip -n {NS} link set eth0 up && ip -n {NS} link set lo up"
        )));
        Net
    }

    fn down() {
        let _ = sh(&format!("ip link del {HOST_IF} 2>/dev/null; ip netns del {NS} 2>/dev/null; true"));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Net::down();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.0.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A page load: connect to the server and fetch with the given Host.
fn visit(host: &str) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5", "-H", &format!("Host: {host}")])
        .arg(format!("http://{SERVER}:8080/bytes/2000"))
        .status()
        .unwrap();
    assert!(out.success(), "curl to {SERVER} failed");
}

/// The agent's episode events so far, as (journey, outcome).
fn episodes(events: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "episode")
        .map(|e| (e["journey"].as_str().unwrap_or("").to_string(), e["outcome"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// The agent's row in the collector's view of the pushed config.
fn agent_config(collector: &Collector, agent: &str) -> Value {
    let all = collector.get("/api/v1/agent-config");
    all["agents"].as_array().unwrap().iter().find(|a| a["agent_id"] == agent).cloned().unwrap_or(Value::Null)
}

fn journey(name: &str, host: &str) -> Value {
    json!({"name": name, "phase": "usage", "channel": "web", "timeout_secs": 5,
        "steps": [{"name": "connect", "port": 8080}, {"name": "page", "http_host": host}]})
}

#[test]
fn a_pushed_journey_takes_effect_on_a_running_agent_and_a_bad_one_is_refused() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tools = ["ip", "curl", "python3", "mosquitto_pub"].iter().all(|t| have(t));
    if !prerequisite(root && tools && mosquitto().is_some(), "root, ip, curl, python3 and Mosquitto") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-push-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _net = Net::up();
    let server = workspace_root().join("tests/lab/http_server.py");
    let _server = Kill(
        Command::new("ip")
            .args(["netns", "exec", NS, "python3"])
            .arg(&server)
            .args([SERVER, "8080"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let broker = Broker::start(&dir.join("broker"), "");

    // The collector starts with a file: journey "shop" on shop.lab.example.
    let push_file = dir.join("push.toml");
    std::fs::write(
        &push_file,
        "version = \"v1\"\n[[journeys]]\nname = \"shop\"\nsteps = [{ name = \"connect\", port = 8080 }, \
         { name = \"page\", http_host = \"shop.lab.example\" }]\n",
    )
    .unwrap();
    let http = free_port();
    let collector = Collector::start(
        &dir,
        "collector",
        http,
        &CollectorToml::external(&broker.url(), dir.join("data").display(), http)
            .section(&format!("[agent_config]\nfile = \"{}\"", push_file.display()))
            .to_string(),
    );
    assert_eq!(collector.get("/api/v1/agent-config")["version"], "v1");

    // The agent's own file has no journeys.
    let agent_config_file = dir.join("agent.toml");
    std::fs::write(
        &agent_config_file,
        format!(
            "[agent]\nid = \"gw-push\"\n[measure]\nreport_interval_secs = 1\n[subscribers]\nsubscriber_id = \"sub-push\"\n\
             [mqtt]\nurl = \"{}\"\n[capture]\ninterfaces = [\"{HOST_IF}\"]\n",
            broker.url()
        ),
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let agent_log = dir.join("agent.log");
    let mut agent = Kill(
        Command::new(edgeprobe_bin())
            .args(["run", "--events", "--config"])
            .arg(&agent_config_file)
            .stdout(std::fs::File::create(&events).unwrap())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    wait_for("the agent to run v1", Duration::from_secs(30), || {
        agent_config(&collector, "gw-push")["config_version"] == "v1"
    });
    let boot = collector.get("/api/v1/agents")["agents"][0]["boot_id"].clone();

    for _ in 0..3 {
        visit("shop.lab.example");
    }
    wait_for("three shop episodes", Duration::from_secs(15), || {
        episodes(&events).iter().filter(|e| *e == &("shop".to_string(), "ok".to_string())).count() == 3
    });

    // An operator pushes a new definition through the API: "portal" replaces "shop".
    let (status, body) = collector
        .put("/api/v1/agent-config", json!({"version": "v2", "journeys": [journey("portal", "portal.lab.example")]}));
    assert_eq!((status, &body["version"]), (200, &json!("v2")), "{body}");
    wait_for("the agent to run v2", Duration::from_secs(20), || {
        agent_config(&collector, "gw-push")["config_version"] == "v2"
    });
    let before = episodes(&events).len();
    for host in ["portal.lab.example", "portal.lab.example", "shop.lab.example"] {
        visit(host);
    }
    // Every connection to :8080 starts a portal episode; the one that asked for the shop is
    // given up at the page step. "shop" is no longer a journey.
    wait_for("three portal episodes", Duration::from_secs(15), || episodes(&events).len() == before + 3);
    let after: Vec<_> = episodes(&events)[before..].to_vec();
    let outcomes: Vec<&str> = after.iter().map(|(j, o)| if j == "portal" { o.as_str() } else { "other" }).collect();
    assert_eq!(outcomes, ["ok", "ok", "timeout"], "{after:?}");

    // The collector refuses a bad definition and keeps v2.
    let bad = json!({"version": "v3", "journeys": [{"name": "broken", "steps": []}]});
    let (status, body) = collector.put("/api/v1/agent-config", bad.clone());
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("broken"), "{body}");
    assert_eq!(collector.get("/api/v1/agent-config")["version"], "v2");

    // A bad config that reaches the agent anyway (another tool, an older collector) is refused
    // with its reason, and v2 stays in force.
    let topic = "edgeprobe/v1/agents/gw-push/config";
    assert!(
        Command::new("mosquitto_pub")
            .args(["-p", &broker.port.to_string(), "-q", "1", "-r", "-t", topic, "-m", &bad.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the agent to refuse v3", Duration::from_secs(20), || {
        agent_config(&collector, "gw-push")["config_error"].as_str().is_some_and(|e| e.contains("v3"))
    });
    let state = agent_config(&collector, "gw-push");
    assert_eq!(state["config_version"], "v2", "{state}");
    assert!(state["config_error"].as_str().unwrap().contains("steps"), "{state}");
    let before = episodes(&events).len();
    visit("portal.lab.example");
    wait_for("a portal episode under v2", Duration::from_secs(15), || episodes(&events).len() == before + 1);
    assert_eq!(episodes(&events)[before].0, "portal");

    // The next good push replaces the refused one and clears the error.
    let (status, _) = collector.put(
        "/api/v1/agent-config",
        json!({"version": "v4", "journeys": [journey("shop", "shop.lab.example")], "opt_out": ["sub-push"]}),
    );
    assert_eq!(status, 200);
    wait_for("the agent to run v4", Duration::from_secs(20), || {
        let s = agent_config(&collector, "gw-push");
        s["config_version"] == "v4" && s["config_error"] == ""
    });
    // v4 opts the line out: nothing more is measured.
    let before = episodes(&events).len();
    visit("shop.lab.example");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(episodes(&events).len(), before, "an opted-out line is not measured");

    // All of it without a restart.
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited: {}", log());
    assert_eq!(collector.get("/api/v1/agents")["agents"][0]["boot_id"], boot);
    assert!(log().contains("applying pushed config v2"), "{}", log());
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
