//! Damaged captures end cleanly: a truncated file reports the byte offset of the cut record and
//! still measures every packet before it; corrupted bytes never crash the agent.

use edgeprobe_tests::{edgeprobe_bin, fixtures};
use std::path::Path;
use std::process::{Command, Output};

fn run_replay(path: &Path) -> Output {
    Command::new(edgeprobe_bin()).arg("replay").arg(path).arg("--events").output().expect("run edgeprobe")
}

/// Start offsets of every record in a classic pcap file, read independently of the agent.
fn pcap_record_offsets(bytes: &[u8]) -> Vec<usize> {
    let le = bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1] || bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    };
    let mut offsets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        offsets.push(at);
        at += 16 + u32_at(at + 8) as usize;
    }
    offsets
}

fn packets_in_summary(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("replay:")).expect("summary line");
    line["replay: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

fn assert_clean_exit(out: &Output, what: &str) {
    let code = out.status.code();
    assert!(matches!(code, Some(0) | Some(1)), "{what}: exit {:?}\n{}", code, String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{what}: panic");
}

#[test]
fn truncated_capture_names_the_offset_and_keeps_earlier_packets() {
    let bytes = std::fs::read(fixtures().join("lab_tcp.pcap")).unwrap();
    let offsets = pcap_record_offsets(&bytes);
    assert!(offsets.len() > 10);
    let dir = tempdir();
    for (k, &start) in offsets.iter().enumerate().skip(1).step_by(3) {
        // Cut in the middle of record k's data.
        let cut = (start + 16 + 3).min(bytes.len() - 1);
        let path = dir.join(format!("cut-{k}.pcap"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let out = run_replay(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "cut at {cut}: {stderr}");
        assert!(stderr.contains(&format!("truncated at byte offset {start}")), "cut at {cut}: {stderr}");
        assert_eq!(packets_in_summary(&stderr), k as u64, "packets before record {k} are measured");
        // Exactly what the intact records before the cut yield on their own.
        let intact = dir.join(format!("intact-{k}.pcap"));
        std::fs::write(&intact, &bytes[..start]).unwrap();
        let expected = run_replay(&intact);
        assert!(expected.status.success());
        assert_eq!(out.stdout, expected.stdout, "events before the cut at record {k}");
    }
}

#[test]
fn corrupted_bytes_never_crash() {
    let dir = tempdir();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in ["lab_tcp.pcap", "lab_dns.pcapng"] {
        let clean = std::fs::read(fixtures().join(name)).unwrap();
        for round in 0..40 {
            let mut bytes = clean.clone();
            // Flip a handful of bytes anywhere past the file header: record headers, IP
            // headers, DNS names and TCP flags all get hit over the rounds.
            for _ in 0..1 + round % 8 {
                let at = 24 + (next() as usize) % (bytes.len() - 24);
                bytes[at] ^= (next() as u8) | 1;
            }
            let path = dir.join(format!("corrupt-{round}-{name}"));
            std::fs::write(&path, &bytes).unwrap();
            let out = run_replay(&path);
            assert_clean_exit(&out, &format!("{name} round {round}"));
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                serde_json::from_str::<serde_json::Value>(line).expect("every event is valid JSON");
            }
        }
    }
}

#[test]
fn not_a_capture_is_a_one_line_error() {
    let dir = tempdir();
    let path = dir.join("notes.pcap");
    std::fs::write(&path, b"this is not a capture file at all, just text\n").unwrap();
    let out = run_replay(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap or pcapng file"), "{stderr}");
    let missing = run_replay(&dir.join("absent.pcap"));
    assert_eq!(missing.status.code(), Some(1));
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgeprobe-malformed-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
