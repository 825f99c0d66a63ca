//! Every example configuration in `config/` passes `edgeprobe check-config`, and a broken one
//! fails with the line and column of each mistake.

use edgeprobe_tests::{edgeprobe_bin, workspace_root};
use std::process::Command;

#[test]
fn every_agent_example_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace_root().join("config")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("agent") && name.ends_with(".toml")) {
            continue;
        }
        let out = Command::new(edgeprobe_bin()).arg("check-config").arg(&path).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 1, "no agent example found in config/");
}

#[test]
fn broken_config_reports_line_and_column() {
    let dir = std::env::temp_dir().join(format!("edgeprobe-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(&path, "[measure]\nflow_capacity = 0\n").unwrap();
    let out = Command::new(edgeprobe_bin()).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.toml:2:1: measure.flow_capacity"), "{stderr}");

    std::fs::write(&path, "[measure]\ndns_timeout_secs = 5.0\n  colour = \"blue\"\n").unwrap();
    let out = Command::new(edgeprobe_bin()).arg("check-config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.toml:3:3") && stderr.contains("colour"), "{stderr}");

    // The same file drives replay: a bad config stops it before any packet is read.
    let capture = workspace_root().join("tests/fixtures/lab_tcp.pcap");
    let out = Command::new(edgeprobe_bin()).arg("replay").arg(&capture).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
