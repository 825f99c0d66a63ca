//! Every public capture in `../shared/captures` replayed, with its DNS and TCP events checked
//! against tshark's answers. Differences are allowed only where `EXPLAINED` gives the reason.

use edgeprobe_tests::reference::{Report, Table, compare_dns, compare_tcp_flows, compare_tcp_handshakes};
use edgeprobe_tests::{prerequisite, replay, shared_captures};

/// (capture key, kind, what differs, why). Keys are paths under `public/` with `/` as `__`.
const EXPLAINED: &[(&str, &str, &str, &str)] = &[];

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
