//! The shipped Mosquitto example (TLS client certificates as identity, per-agent ACL) on a real
//! broker: an agent's reports reach the collector, and an agent that claims another agent's id
//! is refused by the ACL, so nothing arrives under that id.

use edgeprobe_tests::broker::{Broker, mosquitto};
use edgeprobe_tests::{edgeprobe_bin, fixtures, prerequisite, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and certificates signed by it: the broker's (for 127.0.0.1) and one per client CN.
fn make_pki(dir: &Path, clients: &[&str]) {
    let ossl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(dir);
        run(&mut c);
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edgeprobe-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    let mut names = vec![("broker", "127.0.0.1")];
    names.extend(clients.iter().map(|c| (*c, *c)));
    for (file, cn) in names {
        ossl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{file}.key"),
            "-out",
            &format!("{file}.csr"),
        ]);
        std::fs::write(dir.join(format!("{file}.ext")), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        ossl(&[
            "x509",
            "-req",
            "-in",
            &format!("{file}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{file}.ext"),
            "-out",
            &format!("{file}.crt"),
        ]);
    }
}

fn agent_config(dir: &Path, id: &str, cert: &str, port: u16) -> PathBuf {
    let path = dir.join(format!("agent-{id}-{cert}.toml"));
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"{id}\"\n[measure]\nreport_interval_secs = 1\n[mqtt]\nurl = \"mqtts://127.0.0.1:{port}\"\n\
             ca_file = \"{d}/ca.crt\"\ncert_file = \"{d}/{cert}.crt\"\nkey_file = \"{d}/{cert}.key\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_agent_cannot_publish_under_another_agents_id() {
    let have_tools = mosquitto().is_some()
        && Command::new("openssl").arg("version").output().is_ok()
        && Command::new("mosquitto_sub").arg("--help").output().is_ok();
    if !prerequisite(have_tools, "mosquitto, mosquitto_sub (mosquitto-clients) and openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-acl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir, &["gw-a", "collector-1"]);
    // Started as root, mosquitto reads its key as the mosquitto user.
    for entry in std::fs::read_dir(&dir).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644));
    }
    // The shipped example, pointed at this test's files and port.
    let example = std::fs::read_to_string(workspace_root().join("config/mosquitto.example.conf")).unwrap();
    std::fs::copy(workspace_root().join("config/mosquitto.acl.example"), dir.join("acl")).unwrap();
    let body = example
        .replace("/etc/mosquitto/edgeprobe/", &format!("{}/", dir.display()))
        .replace("persistence_location /var/lib/mosquitto/", &format!("persistence_location {}/", dir.display()));
    let mut broker = Broker::start(&dir.join("broker-data"), "");
    broker.stop();
    let port = broker.port;
    let conf = body.replace("listener 8883", &format!("listener {port} 127.0.0.1"));
    std::fs::write(dir.join("broker-data/mosquitto.conf"), conf + "\nlog_dest none\n").unwrap();
    broker.restart();

    // The collector's persistent session: subscribe once (-E exits when the broker has
    // acknowledged it), then the broker queues what arrives until the collector comes back.
    // The broker opens its port a moment before its TLS context is ready, so retry the first.
    let subscriber = |extra: &[&str]| {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-c", "-i", "acl-collector"])
            .args(["--cafile", &format!("{}/ca.crt", dir.display())])
            .args(["--cert", &format!("{}/collector-1.crt", dir.display())])
            .args(["--key", &format!("{}/collector-1.key", dir.display())])
            .args(["-t", "edgeprobe/v1/agents/+/report", "-F", "%t"])
            .args(extra)
            .output()
            .unwrap()
    };
    let subscribed = (0..20).any(|_| {
        let ok = subscriber(&["-E"]).status.success();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        ok
    });
    assert!(subscribed, "the collector could not subscribe");
    let capture = fixtures().join("lab_http.pcap");
    for (id, cert) in [("gw-a", "gw-a"), ("gw-b", "gw-a")] {
        let out = Command::new(edgeprobe_bin())
            .args(["replay", "--publish", "--publish-wait", "3", "--config"])
            .arg(agent_config(&dir, id, cert, port))
            .arg(&capture)
            .output()
            .unwrap();
        assert!(out.status.success(), "{id}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let topics = String::from_utf8(subscriber(&["-W", "3"]).stdout).unwrap();
    let own = topics.lines().filter(|t| *t == "edgeprobe/v1/agents/gw-a/report").count();
    let forged = topics.lines().filter(|t| t.contains("/gw-b/")).count();
    assert!(own >= 1, "the agent's own reports must arrive: {topics:?}");
    assert_eq!(forged, 0, "the ACL must stop reports under another agent's id");
    eprintln!("acl: {own} reports under the agent's own id delivered, {forged} under a forged id");
}
