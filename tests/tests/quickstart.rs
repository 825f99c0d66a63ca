//! The README's quick start works: one command brings up the collector with its embedded
//! broker and SQLite, loads the sample customers, replays the agents, and the API shows the
//! access-node incident the degraded lines must produce.

use edgeprobe_tests::collector::free_port;
use edgeprobe_tests::{prerequisite, workspace_root};
use std::process::Command;

#[test]
fn quickstart_shows_the_access_node_incident() {
    let curl = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    if !prerequisite(curl, "curl") {
        return;
    }
    let out = Command::new(workspace_root().join("config/quickstart.sh"))
        .arg("--once")
        .env("EDGEPROBE_HTTP", format!("127.0.0.1:{}", free_port()))
        .env("EDGEPROBE_MQTT_PORT", free_port().to_string())
        .output()
        .expect("run config/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let json_start = stdout.find('{').unwrap_or_else(|| panic!("no incidents shown:\n{stdout}\n{stderr}"));
    let json_end = stdout.rfind('}').unwrap();
    let body: serde_json::Value = serde_json::from_str(&stdout[json_start..=json_end]).unwrap();
    let incidents = body["incidents"].as_array().unwrap();
    let node = incidents
        .iter()
        .find(|i| i["kind"] == "access_node")
        .unwrap_or_else(|| panic!("no access-node incident: {body:#}"));
    assert_eq!(node["scope"]["access_node"], "OLT-NORTH-1");
    assert_eq!(node["affected_customers"], 3);
    assert!(incidents.iter().all(|i| i["kind"] != "customer"), "{body:#}");
}
