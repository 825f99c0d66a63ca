//! See `targets::quic`: the same function replays this target's corpus on stable Rust.
#![no_main]

#[allow(dead_code)]
#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::quic(data));
