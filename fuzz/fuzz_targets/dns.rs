//! DNS messages: header, question and name decoding (compression pointers included), then the
//! transaction tracker, which must never match a response whose question it cannot read.
#![no_main]

use edgeprobe_core::Timestamp;
use edgeprobe_core::counters::Counters;
use edgeprobe_core::dns::DnsTracker;
use edgeprobe_core::event::Transport;
use edgeprobe_core::wire::dns::{DnsMessage, read_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut name = String::new();
    if let Ok(msg) = DnsMessage::new_checked(data) {
        let _ = msg.rcode().name();
        if let Ok(q) = msg.first_question(&mut name) {
            assert!(q.end <= data.len());
            assert!(name.len() <= 255 * 4);
        }
    }
    for at in 0..data.len().min(64) {
        if let Ok(end) = read_name(data, at, &mut name) {
            assert!(end <= data.len());
        }
    }
    let mut tracker = DnsTracker::new(2, 5_000_000_000);
    let mut counters = Counters::default();
    let client = "192.0.2.1:40000".parse().unwrap();
    let server = "192.0.2.53:53".parse().unwrap();
    // The same bytes as a query, then as a response: a match needs a readable question.
    let t = Timestamp(1_000_000_000);
    tracker.on_message(t, client, server, Transport::Udp, data, &mut counters);
    if let Some(out) = tracker.on_message(t, server, client, Transport::Udp, data, &mut counters) {
        assert!(DnsMessage::new_checked(data).unwrap().first_question(&mut name).is_ok());
        assert_eq!(out.event.latency_us, Some(0));
    }
    let _ = tracker.drain(t);
});
