//! One window report: the agent, the window, capture health, and per subscriber its latency
//! histograms, counters and a bounded per-service breakdown. Zero counters and empty
//! histograms are left out on the wire to keep reports small.

use crate::{MAX_BYTES, MAX_COUNT, WireHistogram};
use minicbor::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map, context_bound = "crate::packed::LineSpans")]
pub struct Report {
    #[n(0)]
    pub v: u16,
    #[n(1)]
    pub agent_id: String,
    /// New on each agent start; with `seq`, identifies a report for de-duplication.
    #[n(2)]
    pub boot_id: String,
    #[n(3)]
    pub seq: u64,
    /// Unix milliseconds, aligned to the report interval.
    #[n(4)]
    pub window_start: u64,
    #[n(5)]
    pub window_end: u64,
    #[cbor(n(6), with = "crate::packed::or_default", has_nil)]
    pub capture: CaptureHealth,
    #[cbor(n(7), decode_with = "crate::packed::lines::decode")]
    pub subscribers: Vec<SubscriberReport>,
    /// The publishing agent's own state, set by the shell that sends the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[n(8)]
    pub agent: Option<AgentHealth>,
    /// A window's report too large for one message goes out in `parts` parts, each with some
    /// of the lines, numbered from 0 by `part`, all under the same `seq`; the first carries the
    /// capture health. Both 0 (absent) for a report in one piece.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    #[cbor(n(9), with = "crate::packed::or_default", has_nil)]
    pub part: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    #[cbor(n(10), with = "crate::packed::or_default", has_nil)]
    pub parts: u32,
}

/// The most parts one window's report may be split into: 4,096 parts of the 4 MiB limit.
pub const MAX_PARTS: u32 = 4096;

/// The agent's delivery health when the report was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
#[serde(default)]
pub struct AgentHealth {
    /// Reports waiting for the broker's acknowledgement, this one included.
    #[cbor(n(0), with = "crate::packed::or_default", has_nil)]
    pub spool_depth: u64,
    /// Reports dropped from a full spool since the last report that said so.
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub spool_dropped: u64,
    /// Connection attempts and publishes that failed since the agent started.
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub publish_failures: u64,
    /// Spool files that could not be written or removed (a full or read-only disk).
    #[cbor(n(3), with = "crate::packed::or_default", has_nil)]
    pub spool_write_errors: u64,
}

/// What the capture saw in the window, and what the bounded tables had to give up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
#[serde(default)]
pub struct CaptureHealth {
    #[cbor(n(0), with = "crate::packed::or_default", has_nil)]
    pub packets: u64,
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub bytes: u64,
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub kernel_drops: u64,
    #[cbor(n(3), with = "crate::packed::or_default", has_nil)]
    pub unparsed: u64,
    #[cbor(n(4), with = "crate::packed::or_default", has_nil)]
    pub evictions: Evictions,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
#[serde(default)]
pub struct Evictions {
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(0), with = "crate::packed::or_default", has_nil)]
    pub flows: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub dns: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub streams: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(3), with = "crate::packed::or_default", has_nil)]
    pub fragments: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(4), with = "crate::packed::or_default", has_nil)]
    pub subscribers: u64,
    /// Latency samples the window's sample store had no room for.
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(5), with = "crate::packed::or_default", has_nil)]
    pub samples: u64,
    /// Address-to-line bindings learned from DHCP, forgotten to make room.
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(6), with = "crate::packed::or_default", has_nil)]
    pub dhcp_bindings: u64,
    /// Server addresses from DNS answers, forgotten to make room.
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(7), with = "crate::packed::or_default", has_nil)]
    pub service_names: u64,
    /// Open journey episodes ended unreported to make room.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(8), with = "crate::packed::or_default", has_nil)]
    pub episodes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
pub struct SubscriberReport {
    #[n(0)]
    pub subscriber: String,
    #[serde(default)]
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub metrics: Metrics,
    #[serde(default)]
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub counters: Counters,
    /// The top services by traffic; the rest are folded into one named `other`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cbor(n(3), with = "crate::packed::or_default", has_nil)]
    pub services: Vec<ServiceReport>,
    /// Journey episodes that ended in the window, per journey.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cbor(n(4), with = "crate::packed::or_default", has_nil)]
    pub journeys: Vec<JourneyReport>,
    /// The DNS resolvers the line asked, so a failing one can be named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cbor(n(5), with = "crate::packed::or_default", has_nil)]
    pub resolvers: Vec<ResolverReport>,
    /// Latency of DNS answers that came after their query had timed out: the query counts as
    /// `TIMEOUT` everywhere else, this says when the server did answer (`counters.dns_late`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[n(6)]
    pub dns_late: Option<WireHistogram>,
}

/// One resolver's DNS transactions for a subscriber in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
pub struct ResolverReport {
    /// The resolver's IP address.
    #[n(0)]
    pub resolver: String,
    /// Transactions by rcode name, `TIMEOUT` included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cbor(n(1), with = "crate::packed::rcodes", has_nil)]
    pub dns: BTreeMap<String, u64>,
    /// Latency of its answers. Left out when it is the line's only resolver: the line's `dns`
    /// histogram is then the same, and a report stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[n(2)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
pub struct JourneyReport {
    #[n(0)]
    pub journey: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub channel: String,
    /// Latency of the episodes that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[n(3)]
    pub latency: Option<WireHistogram>,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(4), with = "crate::packed::or_default", has_nil)]
    pub ok: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(5), with = "crate::packed::or_default", has_nil)]
    pub failed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(6), with = "crate::packed::or_default", has_nil)]
    pub timeout: u64,
    /// Of those, the customer gave up.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(7), with = "crate::packed::or_default", has_nil)]
    pub abandoned: u64,
    /// Failed and timed-out episodes by the step that failed or never came.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cbor(n(8), with = "crate::packed::or_default", has_nil)]
    pub failed_steps: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
pub struct ServiceReport {
    /// A TLS SNI, HTTP Host or DNS name, or `other`.
    #[n(0)]
    pub service: String,
    #[serde(default)]
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub metrics: Metrics,
    #[serde(default)]
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub counters: Counters,
}

/// The name of the bucket that holds every service beyond the top N.
pub const OTHER_SERVICE: &str = "other";

/// Latency histograms, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
#[serde(default)]
pub struct Metrics {
    /// SYN to SYN/ACK: the network side.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(0)]
    pub connect_network: Option<WireHistogram>,
    /// SYN/ACK to ACK: the subscriber (home) side.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(1)]
    pub connect_home: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(2)]
    pub dns: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(3)]
    pub tls_handshake: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(4)]
    pub http_ttfb: Option<WireHistogram>,
    /// QUIC: the client's first Initial to the server's first (network side).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(5)]
    pub quic_hello: Option<WireHistogram>,
    /// QUIC: the server's first Handshake packet to the client's first (home side).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(6)]
    pub quic_home: Option<WireHistogram>,
    /// QUIC: the client's first Initial to its first 1-RTT packet, of handshakes that got there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(7)]
    pub quic_handshake: Option<WireHistogram>,
    /// Round trips on established TCP connections, as tshark's `ack_rtt`: an ACK from the
    /// subscriber's side times the home side, one from the server the network side. Every
    /// sample is in these two; the `_loaded` ones hold again those taken while the line was
    /// loaded. Per line only, and recorded at about 3 % precision (16 buckets an octave).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(8)]
    pub rtt_home: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(9)]
    pub rtt_network: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(10)]
    pub rtt_home_loaded: Option<WireHistogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[n(11)]
    pub rtt_network_loaded: Option<WireHistogram>,
}

/// Metric names, in the order of the fields above.
pub const METRICS: [&str; 12] = [
    "connect_network",
    "connect_home",
    "dns",
    "tls_handshake",
    "http_ttfb",
    "quic_hello",
    "quic_home",
    "quic_handshake",
    "rtt_home",
    "rtt_network",
    "rtt_home_loaded",
    "rtt_network_loaded",
];

/// The round-trip histograms of [`METRICS`]: idle and loaded, home and network side.
pub const RTT_METRICS: [&str; 4] = ["rtt_home", "rtt_network", "rtt_home_loaded", "rtt_network_loaded"];

impl Metrics {
    pub fn get(&self, name: &str) -> Option<&WireHistogram> {
        match name {
            "connect_network" => self.connect_network.as_ref(),
            "connect_home" => self.connect_home.as_ref(),
            "dns" => self.dns.as_ref(),
            "tls_handshake" => self.tls_handshake.as_ref(),
            "http_ttfb" => self.http_ttfb.as_ref(),
            "quic_hello" => self.quic_hello.as_ref(),
            "quic_home" => self.quic_home.as_ref(),
            "quic_handshake" => self.quic_handshake.as_ref(),
            "rtt_home" => self.rtt_home.as_ref(),
            "rtt_network" => self.rtt_network.as_ref(),
            "rtt_home_loaded" => self.rtt_home_loaded.as_ref(),
            "rtt_network_loaded" => self.rtt_network_loaded.as_ref(),
            _ => None,
        }
    }

    /// The histograms present, in the order of [`METRICS`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut WireHistogram> {
        [
            &mut self.connect_network,
            &mut self.connect_home,
            &mut self.dns,
            &mut self.tls_handshake,
            &mut self.http_ttfb,
            &mut self.quic_hello,
            &mut self.quic_home,
            &mut self.quic_handshake,
            &mut self.rtt_home,
            &mut self.rtt_network,
            &mut self.rtt_home_loaded,
            &mut self.rtt_network_loaded,
        ]
        .into_iter()
        .flatten()
    }

    pub fn slot(&mut self, name: &str) -> Option<&mut Option<WireHistogram>> {
        match name {
            "connect_network" => Some(&mut self.connect_network),
            "connect_home" => Some(&mut self.connect_home),
            "dns" => Some(&mut self.dns),
            "tls_handshake" => Some(&mut self.tls_handshake),
            "http_ttfb" => Some(&mut self.http_ttfb),
            "quic_hello" => Some(&mut self.quic_hello),
            "quic_home" => Some(&mut self.quic_home),
            "quic_handshake" => Some(&mut self.quic_handshake),
            "rtt_home" => Some(&mut self.rtt_home),
            "rtt_network" => Some(&mut self.rtt_network),
            "rtt_home_loaded" => Some(&mut self.rtt_home_loaded),
            "rtt_network_loaded" => Some(&mut self.rtt_network_loaded),
            _ => None,
        }
    }
}

/// Event counts and volumes. Bytes are transport payload bytes; "up" is subscriber to network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cbor(map)]
#[serde(default)]
pub struct Counters {
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(0), with = "crate::packed::or_default", has_nil)]
    pub connects: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(1), with = "crate::packed::or_default", has_nil)]
    pub connect_refused: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(2), with = "crate::packed::or_default", has_nil)]
    pub connect_timeout: u64,
    /// DNS transactions by rcode name, `TIMEOUT` included.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cbor(n(3), with = "crate::packed::rcodes", has_nil)]
    pub dns: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(4), with = "crate::packed::or_default", has_nil)]
    pub tls_ok: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(5), with = "crate::packed::or_default", has_nil)]
    pub tls_failed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(6), with = "crate::packed::or_default", has_nil)]
    pub http_responses: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(7), with = "crate::packed::or_default", has_nil)]
    pub http_4xx: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(8), with = "crate::packed::or_default", has_nil)]
    pub http_5xx: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(9), with = "crate::packed::or_default", has_nil)]
    pub flows: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(10), with = "crate::packed::or_default", has_nil)]
    pub bytes_up: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(11), with = "crate::packed::or_default", has_nil)]
    pub bytes_down: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(12), with = "crate::packed::or_default", has_nil)]
    pub retrans_up: u64,
    #[serde(skip_serializing_if = "is_zero")]
    #[cbor(n(13), with = "crate::packed::or_default", has_nil)]
    pub retrans_down: u64,
    /// DNS answers that came after their query had timed out (within `dns_late_answer_secs`);
    /// the queries are counted under `TIMEOUT` in `dns`.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(14), with = "crate::packed::or_default", has_nil)]
    pub dns_late: u64,
    /// QUIC handshakes that reached the client's first 1-RTT packet, and those that did not.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(15), with = "crate::packed::or_default", has_nil)]
    pub quic_ok: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(16), with = "crate::packed::or_default", has_nil)]
    pub quic_incomplete: u64,
    /// Of `bytes_up` and `bytes_down`, what QUIC connections carried.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(17), with = "crate::packed::or_default", has_nil)]
    pub quic_bytes_up: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(18), with = "crate::packed::or_default", has_nil)]
    pub quic_bytes_down: u64,
    /// Bytes (IP length) the line's packets carried while it was loaded
    /// (`loaded_bytes_per_sec`), per direction. Per line only.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(19), with = "crate::packed::or_default", has_nil)]
    pub loaded_bytes_up: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(20), with = "crate::packed::or_default", has_nil)]
    pub loaded_bytes_down: u64,
    /// Packets of the line's measured flows, per direction: what retransmissions are a share
    /// of (the passive stand-in for loss). Per line only.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(21), with = "crate::packed::or_default", has_nil)]
    pub packets_up: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cbor(n(22), with = "crate::packed::or_default", has_nil)]
    pub packets_down: u64,
}

impl Counters {
    /// Adds `other` into `self`, for folding services together.
    pub fn add(&mut self, other: &Counters) {
        // Saturating: a report's counts are bounded (`Report::check`), their sums over lines
        // and windows are not.
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut self.connects, other.connects);
        add(&mut self.connect_refused, other.connect_refused);
        add(&mut self.connect_timeout, other.connect_timeout);
        for (k, v) in &other.dns {
            add(self.dns.entry(k.clone()).or_default(), *v);
        }
        add(&mut self.tls_ok, other.tls_ok);
        add(&mut self.tls_failed, other.tls_failed);
        add(&mut self.http_responses, other.http_responses);
        add(&mut self.http_4xx, other.http_4xx);
        add(&mut self.http_5xx, other.http_5xx);
        add(&mut self.flows, other.flows);
        add(&mut self.dns_late, other.dns_late);
        add(&mut self.quic_ok, other.quic_ok);
        add(&mut self.quic_incomplete, other.quic_incomplete);
        add(&mut self.quic_bytes_up, other.quic_bytes_up);
        add(&mut self.quic_bytes_down, other.quic_bytes_down);
        add(&mut self.loaded_bytes_up, other.loaded_bytes_up);
        add(&mut self.loaded_bytes_down, other.loaded_bytes_down);
        add(&mut self.packets_up, other.packets_up);
        add(&mut self.packets_down, other.packets_down);
        add(&mut self.bytes_up, other.bytes_up);
        add(&mut self.bytes_down, other.bytes_down);
        add(&mut self.retrans_up, other.retrans_up);
        add(&mut self.retrans_down, other.retrans_down);
    }
}

/// The longest window an agent reports (`report_interval_secs` divides a day).
pub const MAX_WINDOW_MS: u64 = 86_400_000;

impl Report {
    /// Refuses what no agent sends: a window that is empty, longer than a day, of a span that
    /// does not divide a day or not aligned to its span, and counts past [`MAX_COUNT`] (bytes
    /// past [`MAX_BYTES`]). Histograms' counts are checked as they are read.
    pub fn check(&self) -> Result<(), crate::DecodeError> {
        if self.parts > MAX_PARTS || self.part >= self.parts.max(1) {
            return Err(crate::DecodeError::Field(format!(
                "part {} of {} parts: parts must be at most {MAX_PARTS} and part below them",
                self.part, self.parts
            )));
        }
        let span = self.window_end.checked_sub(self.window_start).filter(|s| *s > 0);
        let span = span.filter(|s| s % 1000 == 0 && MAX_WINDOW_MS % s == 0);
        if span.is_none_or(|s| self.window_start % s != 0) {
            let (start, end) = (self.window_start, self.window_end);
            return Err(crate::DecodeError::Window(format!(
                "{start}..{end} ms is not a window of whole seconds dividing a day, aligned to its span"
            )));
        }
        self.check_names()?;
        let err = |what: String, v: u64, max: u64| crate::DecodeError::Count(format!("{what} = {v} (at most {max})"));
        let count =
            |what: &dyn Fn() -> String, v: u64| if v > MAX_COUNT { Err(err(what(), v, MAX_COUNT)) } else { Ok(()) };
        let c = &self.capture;
        if c.bytes > MAX_BYTES {
            return Err(err("capture.bytes".into(), c.bytes, MAX_BYTES));
        }
        let e = &c.evictions;
        for (name, v) in [
            ("packets", c.packets),
            ("kernel_drops", c.kernel_drops),
            ("unparsed", c.unparsed),
            ("evictions.flows", e.flows),
            ("evictions.dns", e.dns),
            ("evictions.streams", e.streams),
            ("evictions.fragments", e.fragments),
            ("evictions.subscribers", e.subscribers),
            ("evictions.samples", e.samples),
            ("evictions.dhcp_bindings", e.dhcp_bindings),
            ("evictions.service_names", e.service_names),
            ("evictions.episodes", e.episodes),
        ] {
            count(&|| format!("capture.{name}"), v)?;
        }
        for line in &self.subscribers {
            let sub = &line.subscriber;
            let services = line.services.iter().map(|s| (s.service.as_str(), &s.counters));
            for (service, counters) in std::iter::once(("", &line.counters)).chain(services) {
                let at = |name: &str| format!("subscriber {sub} service {service:?} {name}");
                for (name, v) in [
                    ("bytes_up", counters.bytes_up),
                    ("bytes_down", counters.bytes_down),
                    ("quic_bytes_up", counters.quic_bytes_up),
                    ("quic_bytes_down", counters.quic_bytes_down),
                    ("loaded_bytes_up", counters.loaded_bytes_up),
                    ("loaded_bytes_down", counters.loaded_bytes_down),
                ] {
                    if v > MAX_BYTES {
                        return Err(err(at(name), v, MAX_BYTES));
                    }
                }
                let Counters { connects, connect_refused, connect_timeout, tls_ok, tls_failed, http_responses, .. } =
                    *counters;
                let Counters { http_4xx, http_5xx, flows, retrans_up, retrans_down, dns_late, .. } = *counters;
                let Counters { quic_ok, quic_incomplete, packets_up, packets_down, .. } = *counters;
                for (name, v) in [
                    ("connects", connects),
                    ("connect_refused", connect_refused),
                    ("connect_timeout", connect_timeout),
                    ("tls_ok", tls_ok),
                    ("tls_failed", tls_failed),
                    ("http_responses", http_responses),
                    ("http_4xx", http_4xx),
                    ("http_5xx", http_5xx),
                    ("flows", flows),
                    ("retrans_up", retrans_up),
                    ("retrans_down", retrans_down),
                    ("dns_late", dns_late),
                    ("quic_ok", quic_ok),
                    ("quic_incomplete", quic_incomplete),
                    ("packets_up", packets_up),
                    ("packets_down", packets_down),
                ] {
                    count(&|| at(name), v)?;
                }
                for (rcode, v) in &counters.dns {
                    count(&|| at(&format!("dns.{rcode}")), *v)?;
                }
            }
            for j in &line.journeys {
                let at = |name: &str| format!("subscriber {sub} journey {:?} {name}", j.journey);
                for (name, v) in
                    [("ok", j.ok), ("failed", j.failed), ("timeout", j.timeout), ("abandoned", j.abandoned)]
                {
                    count(&|| at(name), v)?;
                }
                for (step, v) in &j.failed_steps {
                    count(&|| at(&format!("failed_steps.{step}")), *v)?;
                }
            }
            for r in &line.resolvers {
                for (rcode, v) in &r.dns {
                    count(&|| format!("subscriber {sub} resolver {} dns.{rcode}", r.resolver), *v)?;
                }
            }
        }
        Ok(())
    }
}

impl Report {
    /// Ids and names within what agents write: the agent id one topic level, the rest short
    /// and printable, so that stored keys and the console's pages stay bounded.
    fn check_names(&self) -> Result<(), crate::DecodeError> {
        let bad = |what: &str, why: String| Err(crate::DecodeError::Field(format!("{what}: {why}")));
        if let Err(why) = crate::mqtt::check_agent_id(&self.agent_id) {
            return bad("agent_id", why);
        }
        let name = |what: &str, value: &str, max: usize| {
            if !(value.len() <= max && acceptable_name(value)) {
                return bad(what, format!("{:?} is not at most {max} bytes of printable characters", truncate(value)));
            }
            Ok(())
        };
        name("boot_id", &self.boot_id, 64)?;
        for line in &self.subscribers {
            name("subscriber", &line.subscriber, MAX_NAME_BYTES)?;
            for s in &line.services {
                name("service", &s.service, MAX_NAME_BYTES)?;
            }
            for j in &line.journeys {
                for (what, v) in [("journey", &j.journey), ("phase", &j.phase), ("channel", &j.channel)] {
                    name(what, v, MAX_NAME_BYTES)?;
                }
                for step in j.failed_steps.keys() {
                    name("failed step", step, MAX_NAME_BYTES)?;
                }
            }
            for r in &line.resolvers {
                name("resolver", &r.resolver, 64)?;
            }
            let rcodes = line.resolvers.iter().flat_map(|r| r.dns.keys());
            let rcodes = rcodes.chain(line.services.iter().flat_map(|s| s.counters.dns.keys()));
            for rcode in rcodes.chain(line.counters.dns.keys()) {
                name("rcode", rcode, 32)?;
            }
        }
        Ok(())
    }
}

/// The longest subscriber key, service, journey or step name a report may carry: room for
/// any DNS name, and for a DHCP option 82 value of 255 bytes written in hex.
pub const MAX_NAME_BYTES: usize = 1024;

/// Whether a report may carry `name`: at most [`MAX_NAME_BYTES`], no control characters.
pub fn acceptable_name(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control)
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(40).map_or(s, |(i, _)| &s[..i])
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
