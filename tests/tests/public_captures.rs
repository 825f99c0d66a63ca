//! Every public capture in `../shared/captures` replayed, with its DNS and TCP events checked
//! against tshark's answers. Differences are allowed only where `EXPLAINED` gives the reason.

use edgeprobe_tests::reference::{
    Report, Table, compare_dns, compare_http, compare_tcp_flows, compare_tcp_handshakes, compare_tls,
};
use edgeprobe_tests::{prerequisite, replay, shared_captures};

/// (capture key, kind, what differs, why). Keys are paths under `public/` with `/` as `__`.
const EXPLAINED: &[(&str, &str, &str, &str)] = &[
    (
        "sipnab__tests__pcap-samples__SIP_CALL_RTP_G711",
        "http",
        "tshark Some(100)",
        "Expect: 100-continue. tshark pairs the request with the interim 100 response; edgeprobe \
         times the final response, as the TTFB definition says.",
    ),
    (
        "sipnab__tests__pcap-samples__SIP_CALL_RTP_G711",
        "http",
        "request 4264 POST 200.57.7.194: no http event",
        "The capture ends after the 100 Continue: there is no final response to time.",
    ),
];

fn explained(key: &str, kind: &str, mismatch: &str) -> bool {
    EXPLAINED.iter().any(|(k, kd, what, _)| *k == key && *kd == kind && mismatch.contains(what))
}

#[test]
fn public_captures_match_tshark() {
    let root = shared_captures();
    let index = root.join("INDEX.tsv");
    if !prerequisite(index.exists(), "../shared/captures (public captures with tshark answers)") {
        return;
    }
    let index = Table::load(&index).expect("INDEX.tsv");
    let mut total = Report::default();
    let mut unexplained = Vec::new();
    for row in &index.rows {
        let path = &row["path"];
        let key = path.replace('/', "__");
        let out = replay(&root.join("public").join(path), &[]);
        let mut per_capture = Report::default();
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
                if !explained(&key, kind, m) {
                    unexplained.push(format!("{key} [{kind}] {m}"));
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
    assert!(total.checked > 100, "too few transactions checked: {}", total.checked);
    assert!(unexplained.is_empty(), "unexplained differences:\n{}", unexplained.join("\n"));
}
