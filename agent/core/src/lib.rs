//! edgeprobe's measurement core. It turns captured frames into measurement events: DNS
//! transactions, TCP connects, TLS handshakes, HTTP exchanges and flow ends, with durations from packet timestamps only.
//!
//! The core is sans-IO: no clock, socket, file or thread. The capture source and the publisher
//! are shells around [`Probe`], so the same code runs live, on capture files, under a fuzzer and
//! in deterministic tests. Every table has a fixed capacity from [`CoreConfig`]; bad input costs
//! a counter in [`Counters`], never a panic.

// The data path, in the order a frame takes: dissect -> pipeline (flows, subscribers) ->
// analyze -> event -> window -> report.
pub mod analyze;
pub mod config;
pub mod counters;
pub mod dissect;
pub mod event;
pub mod flow;
pub mod pipeline;
pub mod subscriber;
pub mod tables;
#[cfg(test)]
mod testing;
pub mod time;
pub mod window;

pub use config::CoreConfig;
pub use counters::Counters;
pub use dissect::LinkType;
pub use event::Event;
pub use pipeline::{Probe, RttTrace};
pub use time::Timestamp;
