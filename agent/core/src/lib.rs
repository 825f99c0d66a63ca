//! edgeprobe's measurement core. It turns captured frames into measurement events: DNS
//! transactions, TCP connects, TLS handshakes, HTTP exchanges and flow ends, with durations from packet timestamps only.
//!
//! The core is sans-IO: no clock, socket, file or thread. The capture source and the publisher
//! are shells around [`Probe`], so the same code runs live, on capture files, under a fuzzer and
//! in deterministic tests. Every table has a fixed capacity from [`CoreConfig`]; bad input costs
//! a counter in [`Counters`], never a panic.

pub mod bounded;
pub mod config;
pub mod counters;
pub mod dissect;
pub mod dns;
pub mod dns_stream;
pub mod event;
pub mod flow;
pub mod frag;
pub mod http;
pub mod interner;
pub mod journey;
pub mod probe;
pub mod services;
pub mod stream;
pub mod subscriber;
pub mod tcp;
pub mod time;
pub mod tls;
pub mod window;
pub mod wire;

pub use config::CoreConfig;
pub use counters::Counters;
pub use dissect::LinkType;
pub use event::Event;
pub use probe::Probe;
pub use time::Timestamp;
