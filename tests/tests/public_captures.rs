//! Every public capture in `../shared/captures` replayed, with its DNS and TCP events checked
//! against tshark's answers. Differences are allowed only where `EXPLAINED` gives the reason.

use edgeprobe_tests::reference::{
    Report, Table, compare_dns, compare_http, compare_tcp_flows, compare_tcp_handshakes, compare_tls,
};
use edgeprobe_tests::{prerequisite, replay, shared_captures};

/// A difference from tshark allowed, with its reason: in capture `key` (the path under
/// `public/` with `/` as `__`), table `kind`, the rows `rows` (as the comparison names them,
/// before the colon) may differ in exactly `fields` (or lack an event: "no ... event").
struct Explained {
    key: &'static str,
    kind: &'static str,
    rows: Vec<String>,
    fields: &'static [&'static str],
    why: &'static str,
}

fn explained() -> Vec<Explained> {
    let sip = "sipnab__tests__pcap-samples__SIP_CALL_RTP_G711";
    let post = |frame: &str| format!("http request {frame} POST 200.57.7.194");
    vec![
        Explained {
            key: sip,
            kind: "http",
            rows: ["45", "162", "186", "247", "265", "414", "976", "1826", "2747", "3241", "4048"].map(post).to_vec(),
            fields: &["status", "ttfb_us"],
            why: "Expect: 100-continue. tshark pairs the request with the interim 100 response; edgeprobe \
                  times the final response, as the TTFB definition says.",
        },
        Explained {
            key: sip,
            kind: "http",
            rows: vec![post("4264")],
            fields: &["no http event"],
            why: "The capture ends after the 100 Continue: there is no final response to time.",
        },
    ]
}

/// The row a mismatch is about, and the fields that differ in it.
fn parse_mismatch(m: &str) -> (&str, Vec<&str>) {
    let (row, diffs) = m.split_once(": ").unwrap_or((m, ""));
    let fields =
        diffs.split(", ").map(|d| if d.starts_with("no ") { d } else { d.split(' ').next().unwrap_or(d) }).collect();
    (row, fields)
}

#[test]
fn public_captures_match_tshark() {
    let root = shared_captures();
    let index = root.join("INDEX.tsv");
    if !prerequisite(index.exists(), "../shared/captures (public captures with tshark answers)") {
        return;
    }
    let index = Table::load(&index).expect("INDEX.tsv");
    let explanations = explained();
    let mut used: Vec<Vec<bool>> = explanations.iter().map(|e| vec![false; e.rows.len()]).collect();
    let mut total = Report::default();
    let mut unexplained = Vec::new();
    let mut missing = Vec::new();
    for row in &index.rows {
        let path = &row["path"];
        let key = path.replace('/', "__");
        let out = replay(&root.join("public").join(path), &[]);
        let mut per_capture = Report::default();
        // Every table the index names must be there (the column also holds notes, such as the
        // QUIC and tunnel captures' "make your own").
        let refs = row.get("tshark_refs").map_or("", String::as_str);
        for kind in refs.split_whitespace().filter(|t| t.ends_with(".tsv")) {
            if !root.join("reference").join(format!("{key}.{kind}")).exists() {
                missing.push(format!("{key}.{kind}"));
            }
        }
        for (kind, compare) in [
            ("dns", compare_dns as fn(&Table, &[serde_json::Value]) -> Report),
            ("tcp_hs", compare_tcp_handshakes),
            ("tcp_anal", compare_tcp_flows),
            ("tls", compare_tls),
            ("http", compare_http),
        ] {
            let Some(table) = Table::load(&root.join("reference").join(format!("{key}.{kind}.tsv"))) else { continue };
            let report = compare(&table, &out.events);
            for m in &report.mismatches {
                let (row, fields) = parse_mismatch(m);
                let hit = explanations.iter().enumerate().find_map(|(i, e)| {
                    let at = e.rows.iter().position(|r| r == row)?;
                    (e.key == key && e.kind == kind && fields.iter().all(|f| e.fields.contains(f))).then_some((i, at))
                });
                match hit {
                    Some((i, at)) => used[i][at] = true,
                    None => unexplained.push(format!("{key} [{kind}] {m}")),
                }
            }
            per_capture.merge(report);
        }
        eprintln!(
            "{path}: {}/{} matched{}",
            per_capture.matched,
            per_capture.checked,
            if out.success { String::new() } else { format!(" (replay: {})", out.stderr.trim()) }
        );
        total.merge(per_capture);
    }
    eprintln!("public captures: {}/{} transactions matched tshark", total.matched, total.checked);
    assert!(missing.is_empty(), "tables INDEX.tsv names are missing: {missing:?}");
    assert!(unexplained.is_empty(), "unexplained differences:\n{}", unexplained.join("\n"));
    // An explanation that explains nothing is stale: the difference went away, or moved.
    for (e, used) in explanations.iter().zip(&used) {
        for (row, used) in e.rows.iter().zip(used) {
            assert!(used, "{} [{}] {row}: explained ({}) but no longer differs", e.key, e.kind, e.why);
        }
    }
    // What the README says: 419 of 431, the other 12 the explained ones.
    let explained_rows: usize = explanations.iter().map(|e| e.rows.len()).sum();
    assert_eq!((total.matched, total.checked), (419, 431), "update the README's figures if this changes");
    assert_eq!(total.checked - total.matched, explained_rows);
}

/// The QUIC captures (v1, v2, draft-29 with a Retry, draft-28 with 0-RTT, a ClientHello over
/// several Initials, and Google QUIC, which is not QUIC) against tshark's own decryption.
#[test]
fn public_quic_captures_match_tshark() {
    let root = shared_captures().join("public/nDPI/tests/cfgs/default/pcap");
    let captures =
        ["quic-v2.pcapng", "quic-29.pcap", "quic_0RTT.pcap", "quic_frags_ch_in_multiple_packets.pcapng", "quic.pcap"];
    if !prerequisite(root.join(captures[0]).exists(), "../shared/captures (nDPI's QUIC captures)")
        || !prerequisite(edgeprobe_tests::have("tshark"), "tshark")
    {
        return;
    }
    let mut total = Report::default();
    for name in captures {
        let capture = root.join(name);
        let conns = edgeprobe_tests::reference::quic::connections(&capture).expect("tshark reads the capture");
        let out = replay(&capture, &[]);
        assert!(out.success, "{name}: {}", out.stderr);
        let report = edgeprobe_tests::reference::quic::compare(&conns, &out.events);
        eprintln!("{name}: {} QUIC connections, {} agree", report.checked, report.matched);
        if name == "quic.pcap" {
            assert!(out.events.iter().all(|e| e["kind"] != "quic"), "Google QUIC gives no quic event");
        }
        total.merge(report);
    }
    assert!(total.mismatches.is_empty(), "differences from tshark:\n{}", total.mismatches.join("\n"));
    // v2, draft-29, draft-28 and v1 twice: every connection of the IETF captures.
    assert_eq!(total.checked, 5, "connections checked");
}
