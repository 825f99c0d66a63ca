//! Helpers shared by the end-to-end tests: finding the real binaries, skipping (or, in CI,
//! failing) when a prerequisite is missing, and checking events against tshark's answers.

pub mod broker;
pub mod collector;
pub mod lab;
pub mod receiver;
pub mod reference;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// Set by CI: every test that would skip for lack of a prerequisite fails instead.
pub const REQUIRE_ALL: &str = "EDGEPROBE_REQUIRE_ALL";

/// True when `tool` is on the PATH or in /usr/sbin (not on every user's PATH).
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool} || test -x /usr/sbin/{tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `check` every 100 ms until it holds; panics after `timeout`, naming `what`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Returns true when the test may go on. When `available` is false it prints why the test is
/// skipped (uncaptured, so it shows in every run) and returns false, or panics when
/// `EDGEPROBE_REQUIRE_ALL` is set.
pub fn prerequisite(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{REQUIRE_ALL} is set but {what} is missing");
    }
    // Written to the stream itself, not through `eprintln!`, which the test harness captures
    // and shows only for failures: a skip must show in a plain `cargo test`.
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let line = format!("SKIPPED {test}: {what} is missing (set {REQUIRE_ALL}=1 to make this a failure)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    false
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The shared public captures, beside the checkout, when present.
pub fn shared_captures() -> PathBuf {
    std::env::var_os("EDGEPROBE_SHARED_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/captures"))
}

pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// Every capture among the fixtures, in name order.
pub fn fixture_captures() -> Vec<PathBuf> {
    let mut captures: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    captures
}

/// The `edgeprobe` binary of this build, built on first use.
pub fn edgeprobe_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    workspace_bin(&BUILD, "edgeprobe-agent", "edgeprobe")
}

/// The `edgeprobe-collector` binary of this build, built on first use.
pub fn collector_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    workspace_bin(&BUILD, "edgeprobe-collector", "edgeprobe-collector")
}

fn workspace_bin(once: &Once, package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<bin>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let path = profile_dir.join(bin);
    once.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
        // Cargo gives this process the test package's CARGO_MANIFEST_DIR and CARGO_PKG_*; build
        // scripts that read them (ring's) would see a change and rebuild, and so would the next
        // plain `cargo test` or `cargo bench`, every time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_MANIFEST_") || key.starts_with("CARGO_CRATE_") {
                cmd.env_remove(key.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(workspace_root()).status().expect("run cargo build");
        assert!(status.success(), "building {bin} failed");
    });
    path
}

/// Output of one `edgeprobe replay --events` run.
pub struct Replay {
    pub events: Vec<Value>,
    pub success: bool,
    pub stderr: String,
}

pub fn replay(capture: &Path, extra: &[&str]) -> Replay {
    let out = Command::new(edgeprobe_bin())
        .arg("replay")
        .arg(capture)
        .arg("--events")
        .args(extra)
        .output()
        .expect("run edgeprobe replay");
    let stdout = String::from_utf8(out.stdout).expect("events are UTF-8");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect();
    Replay { events, success: out.status.success(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// The first report of a fixture capture that measured a line, as the agent would publish it,
/// moved to the present: the collector refuses windows older than its retention. (Moved to
/// now, the capture may begin just before a window's end, which then measures nothing.)
pub fn current_report(fixture: &str) -> edgeprobe_wire::Report {
    let out = Command::new(edgeprobe_bin())
        .arg("replay")
        .arg(fixtures().join(fixture))
        .args(["--reports", "--start-at", "now"])
        .output()
        .expect("run edgeprobe replay");
    let stdout = String::from_utf8(out.stdout).expect("reports are UTF-8");
    let reports =
        stdout.lines().map(|l| edgeprobe_wire::decode(l.as_bytes()).expect("a report the agent wrote decodes"));
    reports.into_iter().find(|r| !r.subscribers.is_empty()).expect("a report that measured a line")
}
