//! Every example configuration in `config/` passes `edgeprobe check-config`, and a broken one
//! fails with the line and column of each mistake.

use edgeprobe_tests::{collector_bin, edgeprobe_bin, workspace_root};
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

    // Every mistake, across sections and within one.
    std::fs::write(
        &path,
        "[measure]\nflow_capacity = 0\ndns_capacity = 0\n[mqtt]\nencoding = \"xml\"\nspool_max_bytes = 1\n",
    )
    .unwrap();
    let out = Command::new(edgeprobe_bin()).arg("check-config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for at in [
        "broken.toml:2:1: measure.flow_capacity",
        "broken.toml:3:1: measure.dns_capacity",
        "broken.toml:5:1: mqtt.encoding",
        "broken.toml:6:1: mqtt.spool_max_bytes",
    ] {
        assert!(stderr.contains(at), "{at}: {stderr}");
    }
    let missing = dir.join("missing.toml");
    let out = Command::new(edgeprobe_bin()).arg("check-config").arg(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("edgeprobe: {}: cannot read: No such file or directory (os error 2)", missing.display())
    );

    // The same file drives replay: a bad config stops it before any packet is read.
    let capture = workspace_root().join("tests/fixtures/lab_tcp.pcap");
    let out = Command::new(edgeprobe_bin()).arg("replay").arg(&capture).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn collector_example_is_valid_and_errors_say_where() {
    let example = workspace_root().join("config/collector.example.toml");
    let out = Command::new(collector_bin()).arg("check-config").arg(&example).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = std::env::temp_dir().join(format!("edgeprobe-collector-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(&path, "[correlation]\nopen_after = 2\n  colour = \"blue\"\n").unwrap();
    let out = Command::new(collector_bin()).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.toml:3:3: ") && stderr.contains("colour"), "{stderr}");

    // Every mistake, each where it is, not only the first.
    std::fs::write(&path, "[correlation]\ngroup_fraction = 1.5\ntick_secs = 0\n[broker]\nqueue_bytes = 1\n").unwrap();
    let out = Command::new(collector_bin()).arg("check-config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for at in [
        "broken.toml:2:1: correlation.group_fraction",
        "broken.toml:3:1: correlation.tick_secs",
        "broken.toml:5:1: broker.queue_bytes",
    ] {
        assert!(stderr.contains(at), "{at}: {stderr}");
    }
    let missing = dir.join("missing.toml");
    let out = Command::new(collector_bin()).arg("check-config").arg(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("edgeprobe-collector: {}: cannot read: No such file or directory (os error 2)", missing.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sample_customers_import_and_bad_rows_name_their_line() {
    let dir = std::env::temp_dir().join(format!("edgeprobe-customers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("collector.toml");
    std::fs::write(&config, format!("[storage]\nurl = \"{}\"\n", dir.join("data").display())).unwrap();
    let import = |csv: &std::path::Path| {
        Command::new(collector_bin()).arg("--config").arg(&config).arg("import-customers").arg(csv).output().unwrap()
    };
    let sample = workspace_root().join("config/customers.example.csv");
    let out = import(&sample);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("imported 9 customers (9 new, 0 updated), 0 rows rejected"),
        "{stderr}"
    );

    // A re-import updates in place; bad rows are named and skipped, good ones still load.
    let csv = dir.join("update.csv");
    std::fs::write(
        &csv,
        "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out\n\
         C-1001,line-a1,business,fiber-1g,north,OLT-NORTH-1,80,false\n\
         C-2000,line-z,residential,fiber-300,north,OLT-NORTH-9,ten,false\n\
         C-2001,line-y,residential,fiber-300,north,OLT-NORTH-9,10,sometimes\n\
         C-2002,line-x,residential,fiber-300,north,OLT-NORTH-9,10,false\n",
    )
    .unwrap();
    let out = import(&csv);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("update.csv:3: monthly_value \"ten\""), "{stderr}");
    assert!(stderr.contains("update.csv:4: contact_opt_out \"sometimes\""), "{stderr}");
    assert!(stderr.contains("imported 2 customers (1 new, 1 updated), 2 rows rejected"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
