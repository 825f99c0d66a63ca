//! One window report: the agent, the window, capture health, and per subscriber its latency
//! histograms, counters and a bounded per-service breakdown. Zero counters and empty
//! histograms are left out on the wire to keep reports small.

use crate::WireHistogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub v: u16,
    pub agent_id: String,
    /// New on each agent start; with `seq`, identifies a report for de-duplication.
    pub boot_id: String,
    pub seq: u64,
    /// Unix milliseconds, aligned to the report interval.
    pub window_start: u64,
    pub window_end: u64,
    pub capture: CaptureHealth,
    pub subscribers: Vec<SubscriberReport>,
    /// The publishing agent's own state, set by the shell that sends the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentHealth>,
}

/// The agent's delivery health when the report was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentHealth {
    /// Reports waiting for the broker's acknowledgement, this one included.
    pub spool_depth: u64,
    /// Reports dropped from a full spool since the last report that said so.
    pub spool_dropped: u64,
    /// Connection attempts and publishes that failed since the agent started.
    pub publish_failures: u64,
    /// Spool files that could not be written or removed (a full or read-only disk).
    pub spool_write_errors: u64,
}

/// What the capture saw in the window, and what the bounded tables had to give up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureHealth {
    pub packets: u64,
    pub bytes: u64,
    pub kernel_drops: u64,
    pub unparsed: u64,
    pub evictions: Evictions,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evictions {
    #[serde(skip_serializing_if = "is_zero")]
    pub flows: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub dns: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub streams: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub fragments: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub subscribers: u64,
    /// Latency samples the window's sample store had no room for.
    #[serde(skip_serializing_if = "is_zero")]
    pub samples: u64,
    /// Address-to-line bindings learned from DHCP, forgotten to make room.
    #[serde(skip_serializing_if = "is_zero")]
    pub dhcp_bindings: u64,
    /// Server addresses from DNS answers, forgotten to make room.
    #[serde(skip_serializing_if = "is_zero")]
    pub service_names: u64,
    /// Open journey episodes ended unreported to make room.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub episodes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriberReport {
    pub subscriber: String,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub counters: Counters,
    /// The top services by traffic; the rest are folded into one named `other`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceReport>,
    /// Journey episodes that ended in the window, per journey.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journeys: Vec<JourneyReport>,
    /// The DNS resolvers the line asked, so a failing one can be named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<ResolverReport>,
}

/// One resolver's DNS transactions for a subscriber in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolverReport {
    /// The resolver's IP address.
    pub resolver: String,
    /// Transactions by rcode name, `TIMEOUT` included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<String, u64>,
    /// Latency of its answers. Left out when it is the line's only resolver: the line's `dns`
    /// histogram is then the same, and a report stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<WireHistogram>,
}

/// Resolvers broken down per subscriber and window; DNS to others counts only in the totals.
pub const MAX_RESOLVERS: usize = 4;

impl SubscriberReport {
    /// Each resolver's latency histogram, the line's own where the resolver is its only one.
    pub fn resolver_latency<'a>(&'a self, r: &'a ResolverReport) -> Option<&'a WireHistogram> {
        match (&r.latency, self.resolvers.len()) {
            (Some(h), _) => Some(h),
            (None, 1) => self.metrics.dns.as_ref(),
            (None, _) => None,
        }
    }
}

/// One journey's episodes of a subscriber in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JourneyReport {
    pub journey: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// Latency of the episodes that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<WireHistogram>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ok: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// Of those, the customer gave up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned: u64,
    /// Failed and timed-out episodes by the step that failed or never came.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_steps: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// A TLS SNI, HTTP Host or DNS name, or `other`.
    pub service: String,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub counters: Counters,
}

/// The name of the bucket that holds every service beyond the top N.
pub const OTHER_SERVICE: &str = "other";

/// Latency histograms, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// SYN to SYN/ACK: the network side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_network: Option<WireHistogram>,
    /// SYN/ACK to ACK: the subscriber (home) side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_home: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_ttfb: Option<WireHistogram>,
}

/// Metric names, in the order of the fields above.
pub const METRICS: [&str; 5] = ["connect_network", "connect_home", "dns", "tls_handshake", "http_ttfb"];

impl Metrics {
    pub fn get(&self, name: &str) -> Option<&WireHistogram> {
        match name {
            "connect_network" => self.connect_network.as_ref(),
            "connect_home" => self.connect_home.as_ref(),
            "dns" => self.dns.as_ref(),
            "tls_handshake" => self.tls_handshake.as_ref(),
            "http_ttfb" => self.http_ttfb.as_ref(),
            _ => None,
        }
    }

    pub fn slot(&mut self, name: &str) -> Option<&mut Option<WireHistogram>> {
        match name {
            "connect_network" => Some(&mut self.connect_network),
            "connect_home" => Some(&mut self.connect_home),
            "dns" => Some(&mut self.dns),
            "tls_handshake" => Some(&mut self.tls_handshake),
            "http_ttfb" => Some(&mut self.http_ttfb),
            _ => None,
        }
    }
}

/// Event counts and volumes. Bytes are transport payload bytes; "up" is subscriber to network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    #[serde(skip_serializing_if = "is_zero")]
    pub connects: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub connect_refused: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub connect_timeout: u64,
    /// DNS transactions by rcode name, `TIMEOUT` included.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub tls_ok: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub tls_failed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub http_responses: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub http_4xx: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub http_5xx: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub flows: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_up: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_down: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retrans_up: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retrans_down: u64,
}

impl Counters {
    /// Adds `other` into `self`, for folding services together.
    pub fn add(&mut self, other: &Counters) {
        self.connects += other.connects;
        self.connect_refused += other.connect_refused;
        self.connect_timeout += other.connect_timeout;
        for (k, v) in &other.dns {
            *self.dns.entry(k.clone()).or_default() += v;
        }
        self.tls_ok += other.tls_ok;
        self.tls_failed += other.tls_failed;
        self.http_responses += other.http_responses;
        self.http_4xx += other.http_4xx;
        self.http_5xx += other.http_5xx;
        self.flows += other.flows;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
        self.retrans_up += other.retrans_up;
        self.retrans_down += other.retrans_down;
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
