//! TLS: hello parsers on raw bodies, then a session fed the input as alternating client and
//! server segments, which must never panic whatever the records claim.
#![no_main]

use edgeprobe_core::Timestamp;
use edgeprobe_core::tcp::Segment;
use edgeprobe_core::tls::TlsSession;
use edgeprobe_core::wire::tls::{parse_client_hello, parse_server_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_hello(data);
    let _ = parse_server_hello(data);
    let mut session = TlsSession::new(4096);
    let mut seq = [1u32, 1];
    for (i, chunk) in data.chunks(97).enumerate() {
        let dir = usize::from(chunk[0] & 1 == 1 && i > 0);
        let seg = Segment { seq: seq[dir], ack: 0, flags: 0x18, window: 100, len: chunk.len() as u32 };
        seq[dir] = seq[dir].wrapping_add(chunk.len() as u32);
        match session.feed(Timestamp(i as u64 * 1000), dir, &seg, chunk) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
    }
    let _ = session.finish();
});
