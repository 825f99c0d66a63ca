//! Measurement events, one per transaction or flow end, in the JSON shape of the event contract:
//! `kind`, `ts` (Unix seconds, microsecond precision, packet time), `subscriber`, `client`,
//! `server`, then the kind's fields. Durations are integer microseconds from packet timestamps.

use crate::time::Timestamp;
use serde::{Serialize, Serializer};
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    #[serde(flatten)]
    pub detail: Detail,
    #[serde(serialize_with = "unix_secs")]
    pub ts: Timestamp,
    pub subscriber: String,
    /// CPE mode: the client device's MAC address, which tells a line's devices apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The side that opened the transaction. `SocketAddr` prints IPv6 as `[v6]:port`.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// What the user was reaching: the TLS SNI, the HTTP Host, or the DNS name whose answer held
    /// the server's address (for DNS events, the name asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Dns(DnsEvent),
    TcpConnect(TcpConnectEvent),
    Tls(TlsEvent),
    Http(HttpEvent),
    FlowEnd(FlowEndEvent),
    Episode(EpisodeEvent),
    Quic(QuicEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EpisodeOutcome {
    Ok,
    Failed,
    Timeout,
}

/// A step of an episode: its first packet's offset from the episode's first packet, and how
/// long it took to its last packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeStep {
    pub name: String,
    pub offset_us: u64,
    pub duration_us: u64,
}

/// One run of a journey. `latency_us` runs from the first step's first packet to completion (or
/// to the failure); it is `None` on timeout. `client` and `server` are the last step's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeEvent {
    pub journey: String,
    pub phase: String,
    pub channel: String,
    pub outcome: EpisodeOutcome,
    pub latency_us: Option<u64>,
    pub steps: Vec<EpisodeStep>,
    /// The step that failed, or that never came (timeout).
    pub failed_step: Option<String>,
    pub reason: Option<String>,
    /// The customer gave up: the connection closed before the journey completed.
    pub abandoned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsOutcome {
    Ok,
    Alert,
    Incomplete,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsEvent {
    pub outcome: TlsOutcome,
    pub sni: Option<String>,
    /// Protocols the client offered (ALPN), in its order.
    pub alpn: Vec<String>,
    /// The negotiated version ("1.2", "1.3"), when a ServerHello was seen.
    pub version: Option<String>,
    /// ClientHello to ServerHello (a HelloRetryRequest is not the ServerHello).
    pub hello_us: Option<u64>,
    /// ClientHello to the client's first application_data record: when it can send data.
    pub handshake_us: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuicOutcome {
    Ok,
    Incomplete,
}

/// One QUIC connection's handshake, timed from the first packet of each long-header type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuicEvent {
    /// `ok` once the client sent a 1-RTT packet.
    pub outcome: QuicOutcome,
    /// The server's version after any compatible negotiation (the client's if the server
    /// never answered): "v1", "v2", "draft-29" or hex.
    pub version: Option<String>,
    pub sni: Option<String>,
    /// Protocols the client offered (ALPN), in its order.
    pub alpn: Vec<String>,
    /// A Retry or Version Negotiation came first; the times start from the Initial after it.
    pub retry: bool,
    /// The client's first Initial to the server's first Initial: the network side.
    pub hello_us: Option<u64>,
    /// The server's first Handshake packet to the client's first: the home side.
    pub home_us: Option<u64>,
    /// The client's first Initial to its first 1-RTT packet: when it can send data.
    pub handshake_us: Option<u64>,
}

/// One plaintext HTTP/1.x request and its final response. No path, query or body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpEvent {
    pub method: String,
    pub host: Option<String>,
    pub status: u16,
    /// First byte of the request to the first byte of its final (non-1xx) response.
    pub ttfb_us: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsEvent {
    pub query: String,
    pub qtype: String,
    pub rcode: String,
    /// From the last query with this id to the response; `None` on timeout.
    pub latency_us: Option<u64>,
    /// Earlier queries with the same id and question.
    pub retries: u32,
    pub transport: Transport,
    /// An answer that came after the query had already been reported as `TIMEOUT`: the
    /// server's real latency, not a second transaction.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectOutcome {
    Established,
    Refused,
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TcpConnectEvent {
    pub outcome: ConnectOutcome,
    /// Last SYN to the SYN/ACK: the network side as seen from the probe.
    pub syn_to_synack_us: Option<u64>,
    /// SYN/ACK to the client's ACK: the subscriber side.
    pub synack_to_ack_us: Option<u64>,
    /// From the last SYN to the ACK, as tshark's `tcp.analysis.initial_rtt`.
    pub rtt_us: Option<u64>,
    /// First SYN to the ACK (or the RST): what the user waited, SYN retries included.
    pub connect_us: Option<u64>,
    pub syn_retries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEndReason {
    Fin,
    Rst,
    Idle,
    Evicted,
    EndOfCapture,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowProto {
    Tcp,
    Udp,
}

/// Byte counters are transport payload bytes (TCP segment data, UDP payload), retransmitted
/// bytes included: the same figure as the sum of tshark's `tcp.len`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowEndEvent {
    pub proto: FlowProto,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    pub retrans_up: u64,
    pub retrans_down: u64,
    pub zero_window_up: u64,
    pub zero_window_down: u64,
    pub rst_up: u64,
    pub rst_down: u64,
    pub duration_us: u64,
    pub reason: FlowEndReason,
    /// Round trips of an established TCP connection by side; left out when none was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_home: Option<RttSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_network: Option<RttSummary>,
}

/// A flow's round trips on one side: counters only, the distributions are the subscriber's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RttSummary {
    pub min_us: u32,
    pub max_us: u32,
    pub samples: u16,
    pub loaded: u16,
}

impl RttSummary {
    pub fn add(&mut self, us: u32, loaded: bool) {
        if self.samples == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.samples = self.samples.saturating_add(1);
        self.loaded = self.loaded.saturating_add(u16::from(loaded));
    }
}

pub(crate) fn unix_secs<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(ts.as_unix_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_event_json_shape() {
        let e = Event {
            detail: Detail::Dns(DnsEvent {
                query: "example.com".into(),
                qtype: "AAAA".into(),
                rcode: "TIMEOUT".into(),
                latency_us: None,
                retries: 2,
                transport: Transport::Udp,
                late: false,
            }),
            ts: Timestamp::from_secs_nanos(1_700_000_000, 123_456_000),
            subscriber: "sub-1".into(),
            device: None,
            client: "[2001:db8::1]:5353".parse().unwrap(),
            server: "192.0.2.53:53".parse().unwrap(),
            service: Some("example.com".into()),
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "dns");
        assert_eq!(v["ts"].as_f64(), Some(1_700_000_000.123456));
        assert_eq!(v["client"], "[2001:db8::1]:5353");
        assert_eq!(v["latency_us"], serde_json::Value::Null);
        assert_eq!(v["transport"], "udp");
        assert!(v.get("late").is_none(), "late only when it is");
    }
}
