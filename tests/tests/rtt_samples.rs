//! Round-trip samples against tshark: every sample the agent takes is tshark's `ack_rtt` for
//! that ACK, on the same side, with the loaded flag the bucket rule gives from tshark's
//! `ip.len`; on flows that never had more than two segment ends waiting in a direction the
//! agent takes at least 99 % of tshark's samples. On every lab fixture and public capture. And
//! the bytes the reports say moved while loaded are those tshark's packet lengths give.

use edgeprobe_tests::reference::rtt::{Comparison, compare, samples};
use edgeprobe_tests::reference::{Report, Table};
use edgeprobe_tests::{fixture_captures, have, prerequisite, replay, shared_captures};
use std::path::{Path, PathBuf};

/// Low enough that the lab's transfers load the line, so both flags are checked.
const LOADED_BYTES_PER_SEC: u64 = 8_000;

fn config() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeprobe-rtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, format!("[measure]\nloaded_bytes_per_sec = {LOADED_BYTES_PER_SEC}\n")).unwrap();
    path
}

fn check(capture: &Path, config: &Path) -> (Comparison, [u64; 2], [u64; 2]) {
    let out = replay(capture, &["--rtt-samples", "--reports", "--config", config.to_str().unwrap()]);
    assert!(out.success || !out.stderr.is_empty(), "replay of {} failed", capture.display());
    let reference = samples(capture, LOADED_BYTES_PER_SEC).expect("tshark reads the capture");
    let mut reported = [0u64; 2];
    for line in out.events.iter().filter(|e| e.get("v").is_some()) {
        for sub in line["subscribers"].as_array().into_iter().flatten() {
            for (d, field) in ["loaded_bytes_up", "loaded_bytes_down"].iter().enumerate() {
                reported[d] += sub["counters"][field].as_u64().unwrap_or(0);
            }
        }
    }
    (compare(&out.events, &reference.samples), reported, reference.loaded_bytes)
}

/// Captures whose TCP travels inside a tunnel the agent does not open yet (GRE, GTP-U, VXLAN,
/// Geneve): tshark times the inner connections, the agent sees only the outer UDP or GRE. They
/// must give no sample at all, so the day they do, this list goes.
const TUNNELLED: [&str; 4] =
    ["gre-sample.pcap", "gtp1_gn_normal_incl_fragmentation.pcap", "vxlan-encapsulated-http.pcap", "geneve-47101.pcap"];

/// Compares every capture, prints the totals under `label` and fails on any problem or on fewer
/// than `at_least` samples checked; `loaded_bytes` also holds the reports' bytes moved while
/// loaded to tshark's packet lengths (captures without IP fragments only).
fn check_all(label: &str, captures: &[PathBuf], loaded_bytes: bool, at_least: usize) {
    let (total, tshark, taken, within, taken_within, problems) = summarise(captures, loaded_bytes);
    eprintln!(
        "{label}: {taken}/{tshark} tshark samples taken, {taken_within}/{within} within the limit, {} checked",
        total.checked
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(total.checked >= at_least, "too few samples to say anything: {}", total.checked);
}

fn summarise(captures: &[PathBuf], loaded_bytes: bool) -> (Report, usize, usize, usize, usize, Vec<String>) {
    let config = config();
    let (mut total, mut tshark, mut taken, mut within, mut taken_within) = (Report::default(), 0, 0, 0, 0);
    let mut problems = Vec::new();
    let (mut loaded_checked, mut loaded_samples) = (0, 0);
    for capture in captures {
        let (c, reported, reference) = check(capture, &config);
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        if loaded_bytes {
            if reported != reference {
                problems.push(format!("{name}: loaded bytes up/down {reported:?}, tshark's {reference:?}"));
            }
            loaded_checked += usize::from(reference.iter().any(|b| *b > 0));
            loaded_samples += c.loaded;
        }
        eprintln!(
            "{name}: {}/{} tshark samples taken ({}/{} within the limit), {} agree, {} differ, {} extra",
            c.taken,
            c.tshark,
            c.taken_within,
            c.within,
            c.report.matched,
            c.report.mismatches.len(),
            c.extra.len()
        );
        problems.extend(c.report.mismatches.iter().map(|m| format!("{name}: {m}")));
        problems.extend(c.extra.iter().map(|m| format!("{name}: {m}")));
        if TUNNELLED.contains(&name.as_str()) {
            if c.taken > 0 {
                problems
                    .push(format!("{name}: samples inside the tunnel now: compare them and drop it from TUNNELLED"));
            }
            continue;
        }
        if c.within > 0 && c.taken_within * 100 < c.within * 99 {
            problems.push(format!("{name}: only {}/{} samples within the limit taken", c.taken_within, c.within));
        }
        (tshark, taken, within, taken_within) =
            (tshark + c.tshark, taken + c.taken, within + c.within, taken_within + c.taken_within);
        total.merge(c.report);
    }
    if loaded_bytes && (loaded_checked < 3 || loaded_samples < 50 || loaded_samples + 50 > total.checked) {
        problems.push(format!("{loaded_checked} captures loaded, {loaded_samples} samples of {}", total.checked));
    }
    (total, tshark, taken, within, taken_within, problems)
}

#[test]
fn lab_fixtures_sample_round_trips_as_tshark() {
    if !prerequisite(have("tshark"), "tshark") {
        return;
    }
    check_all("lab fixtures", &fixture_captures(), true, 1000);
}

#[test]
fn public_captures_sample_round_trips_as_tshark() {
    let root = shared_captures();
    let index = root.join("INDEX.tsv");
    if !prerequisite(index.exists() && have("tshark"), "../shared/captures and tshark") {
        return;
    }
    let index = Table::load(&index).expect("INDEX.tsv");
    let captures: Vec<PathBuf> = index.rows.iter().map(|r| root.join("public").join(&r["path"])).collect();
    check_all("public captures", &captures, false, 100);
}
