//! Analysis: the stateful readers that turn a flow's packets into measurements. TCP handshakes
//! and sequence analysis, in-order stream delivery and IP reassembly, then one protocol per file
//! or folder (DNS, TLS, HTTP) and the journeys built from their events; and each line's load,
//! which tells a round trip loaded or idle.

pub mod dns;
pub mod frag;
pub mod http;
pub mod journey;
pub mod load;
pub mod quic;
pub mod services;
pub mod stream;
pub mod tcp;
pub mod tls;
