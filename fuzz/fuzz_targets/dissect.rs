//! Whole frames through the probe: link layer to DNS and TCP analysis. The first byte picks the
//! link type, the next eight the timestamp step, so time can also jump backwards. The probe's
//! tables are tiny so evictions and timeouts are exercised too.
#![no_main]

use edgeprobe_core::{CoreConfig, LinkType, Probe, Timestamp};
use libfuzzer_sys::fuzz_target;

const LINKS: [u32; 8] = [1, 101, 113, 276, 228, 229, 0, 147];

fuzz_target!(|data: &[u8]| {
    let config = CoreConfig { flow_capacity: 4, dns_capacity: 4, fragment_slots: 2, ..CoreConfig::default() };
    let mut probe = Probe::new(config);
    let mut now = 1_700_000_000_000_000_000u64;
    // Several frames per input, separated by a two-byte length.
    let mut rest = data;
    while rest.len() > 3 {
        let link = LinkType::from_linktype(LINKS[usize::from(rest[0] % 8)]);
        let step = u64::from(rest[1]) * 7_000_000;
        now = if rest[1] & 0x80 != 0 { now - step } else { now + step };
        let len = usize::from(rest[2]) * 8 + usize::from(rest[3] & 7);
        let frame = &rest[4..(4 + len).min(rest.len())];
        probe.handle_frame(Timestamp(now), link, frame, frame.len() as u32);
        while let Some(event) = probe.poll_event() {
            assert!(event.ts.as_nanos() > 0);
        }
        rest = &rest[(4 + len).min(rest.len())..];
    }
    probe.finish(Timestamp(now));
    while probe.poll_event().is_some() {}
});
