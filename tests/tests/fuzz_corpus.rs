//! Every fuzz target's corpus, and every input that ever broke one (`fuzz/regressions/`), run
//! through the targets' own code (`fuzz/src/targets.rs`) on stable Rust, in every `cargo
//! test`. `.ci/run` also fuzzes each target for a while where a nightly toolchain is installed.

#[allow(dead_code)]
#[path = "../../fuzz/src/targets.rs"]
mod targets;

use edgeprobe_tests::workspace_root;
use std::path::PathBuf;

/// The files of `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`, at least one.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(workspace_root().join("fuzz").join(dir).join(target)) else { continue };
        for entry in entries.flatten() {
            out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no corpus for {target}");
    out
}

/// Runs `check` on each input; a panic names the file.
fn replay(target: &str, mut check: impl FnMut(&[u8])) -> usize {
    let inputs = inputs(target);
    for (path, data) in &inputs {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data))) {
            let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{target}: {} fails: {}", path.display(), why.unwrap_or_default());
        }
    }
    inputs.len()
}

#[test]
fn dissect() {
    replay("dissect", targets::dissect);
}

#[test]
fn dns() {
    replay("dns", targets::dns);
}

#[test]
fn tls() {
    replay("tls", targets::tls);
}

#[test]
fn quic() {
    replay("quic", targets::quic);
}

#[test]
fn http() {
    replay("http", targets::http);
}

#[test]
fn report() {
    replay("report", targets::report);
}

/// The ingest path: among its inputs the report that once killed the collector at every
/// start (one journey twice, 2^62 samples each), which must now be refused before the store.
#[test]
fn ingest() {
    let mut store = targets::scratch_store("corpus-ingest");
    let n = replay("ingest", |data| targets::ingest(data, &mut store));
    assert!(n >= 3, "{n} inputs");
    assert!(store_rows(&mut store) >= 1, "the golden seed is stored");
}

fn store_rows(store: &mut edgeprobe_collector::store::Store) -> usize {
    store.agents().map(|a| a.len()).unwrap_or(0) + usize::from(store.customer_count().unwrap_or(0) > 0)
}
