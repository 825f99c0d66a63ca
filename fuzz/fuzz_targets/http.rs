//! HTTP/1.x: the input split into client and server segments; framing must never panic or
//! loop, and every event must name a real method.
#![no_main]

use edgeprobe_core::Timestamp;
use edgeprobe_core::http::HttpSession;
use edgeprobe_core::tcp::Segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = HttpSession::default();
    let mut seq = [1u32, 1];
    let mut done = Vec::new();
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        let dir = i % 2;
        let seg = Segment { seq: seq[dir], ack: 0, flags: 0x18, window: 100, len: chunk.len() as u32 };
        seq[dir] = seq[dir].wrapping_add(chunk.len() as u32);
        if session.feed(Timestamp(i as u64 * 1000), dir, &seg, chunk, &mut done).is_err() {
            break;
        }
    }
    for event in &done {
        assert!(!event.method.is_empty() && event.method.bytes().all(|b| b.is_ascii_uppercase()));
    }
});
