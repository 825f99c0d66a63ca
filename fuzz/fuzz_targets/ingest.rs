//! See `targets::ingest`: decode, check, store in a scratch SQLite store and evaluate, as the
//! collector's writer does. The same function replays this target's corpus on stable Rust.
#![no_main]

#[allow(dead_code)]
#[path = "../src/targets.rs"]
mod targets;

use std::sync::{LazyLock, Mutex};

static STORE: LazyLock<Mutex<edgeprobe_collector::store::Store>> =
    LazyLock::new(|| Mutex::new(targets::scratch_store("ingest")));

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::ingest(data, &mut STORE.lock().unwrap()));
