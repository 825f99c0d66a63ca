//! Subscriber keys end to end: edge rules, opt-out and pseudonymization applied by the real
//! binary to the lab captures, in events and in reports alike.

use edgeprobe_tests::{fixtures, replay};
use serde_json::Value;
use std::path::PathBuf;

fn with_config(name: &str, toml: &str) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("edgeprobe-subscribers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    let out = replay(&fixtures().join("lab_tls.pcapng"), &["--reports", "--config", path.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    out.events
}

fn events(all: &[Value]) -> Vec<&Value> {
    all.iter().filter(|e| e.get("kind").is_some()).collect()
}

fn report_subscribers(all: &[Value]) -> Vec<String> {
    all.iter()
        .filter(|e| e.get("v").is_some())
        .flat_map(|r| {
            r["subscribers"].as_array().unwrap().iter().map(|s| s["subscriber"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn edge_rule_names_the_line() {
    let all = with_config(
        "edge",
        "[subscribers]\nmode = \"edge\"\nrules = [{ cidr = \"192.0.2.11/32\", subscriber = \"line-split\" }]\n",
    );
    let tls = events(&all).into_iter().filter(|e| e["kind"] == "tls").collect::<Vec<_>>();
    for e in &tls {
        let expected = if e["client"].as_str().unwrap().starts_with("192.0.2.11:") {
            "line-split"
        } else {
            e["client"].as_str().unwrap().rsplit_once(':').unwrap().0.trim_matches(['[', ']'])
        };
        assert_eq!(e["subscriber"], expected, "{e}");
    }
    assert!(report_subscribers(&all).contains(&"line-split".to_string()));
}

#[test]
fn opted_out_subscriber_is_neither_measured_nor_reported() {
    let all = with_config("optout", "[subscribers]\nmode = \"edge\"\nopt_out = [\"192.0.2.11\"]\n");
    assert!(!events(&all).is_empty());
    for e in events(&all) {
        assert!(!e["client"].as_str().unwrap().starts_with("192.0.2.11:"), "measured an opted-out line: {e}");
    }
    assert!(!report_subscribers(&all).iter().any(|s| s == "192.0.2.11"));
}

#[test]
fn pseudonyms_are_stable_and_hide_the_key() {
    let toml = "[subscribers]\nsubscriber_id = \"line-000123\"\npseudonymize_secret = \"0123456789abcdef-lab\"\n";
    let first = with_config("pseudo1", toml);
    let second = with_config("pseudo2", toml);
    let keys: Vec<&str> = events(&first).iter().map(|e| e["subscriber"].as_str().unwrap()).collect();
    assert!(keys.iter().all(|k| *k == keys[0] && k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_eq!(events(&second)[0]["subscriber"], keys[0]);
    let text: String = first.iter().map(|v| v.to_string()).collect();
    assert!(!text.contains("line-000123"), "the real key leaked");
    // CPE mode tells devices apart by MAC.
    assert!(events(&first).iter().all(|e| e["device"].as_str().is_some_and(|d| d.len() == 17)));
    assert_eq!(report_subscribers(&first), vec![keys[0].to_string()]);
}
