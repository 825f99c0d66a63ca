//! Capacities and timeouts of the core. Every table is sized from here at start-up and never
//! grows; the defaults suit a home gateway serving one line with a few dozen devices.

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Who flows belong to; set from the agent config's `[subscribers]` section.
    #[serde(skip)]
    pub subscribers: SubscriberConfig,
    /// Journeys to follow; set from the agent config's `[[journeys]]`.
    #[serde(skip)]
    pub journeys: Vec<crate::analyze::journey::JourneyConfig>,
    /// Journey episodes open at once; when full, the oldest is evicted and counted.
    pub episode_capacity: usize,
    /// Flows tracked at once. When full, the least recently active flow is ended ("evicted").
    pub flow_capacity: usize,
    /// DNS queries awaiting an answer at once. When full, the oldest is dropped and counted.
    pub dns_capacity: usize,
    /// TCP connections whose application protocol (DNS, TLS, HTTP) is followed at once, and
    /// established connects waiting for their connection's first bytes to name them.
    pub stream_capacity: usize,
    /// The largest ClientHello reassembled; hellos with post-quantum key shares pass 1500 bytes.
    pub tls_hello_max_bytes: usize,
    /// UDP ports where a flow whose first Initial cannot be opened is still followed as QUIC.
    /// On any port, an Initial that opens with its version's public keys is QUIC for certain.
    pub quic_ports: Vec<u16>,
    /// A line is loaded while its packets in one direction carried at least this many bytes
    /// (IP length) in the last second; round trips taken then are `loaded`. 500 kB/s (4 Mbit/s)
    /// is above an HD video call or an idle line's background, and below what one bulk transfer
    /// reaches on any access link of 10 Mbit/s or more: the load that fills a queue.
    pub loaded_bytes_per_sec: u64,
    /// Report windows: their length, aligned to the clock.
    pub report_interval_secs: u64,
    /// Subscribers in one window; measurements of further subscribers are refused and counted.
    pub max_subscribers: usize,
    /// Services reported per subscriber, by traffic; the rest fold into `other`.
    pub services_per_subscriber: usize,
    /// Services told apart per subscriber within a window before new names go to `other`.
    pub services_tracked_per_subscriber: usize,
    /// Latency samples held per window (12 bytes each); beyond it they are dropped and counted.
    pub sample_capacity: usize,
    /// Server addresses remembered from DNS answers, to name the flows that follow.
    pub service_cache_capacity: usize,
    /// Datagrams being reassembled at once, and the largest accepted.
    pub fragment_slots: usize,
    pub fragment_max_bytes: usize,
    pub fragment_timeout_secs: f64,
    /// A query with no answer after this long is a `TIMEOUT`.
    pub dns_timeout_secs: f64,
    /// An answer that comes after the timeout but within this long of its query is still
    /// reported, as a `late` DNS event (the query stays a `TIMEOUT`); 0 turns that off.
    pub dns_late_answer_secs: f64,
    /// A SYN with no answer after this long is a connect `timeout`.
    pub tcp_connect_timeout_secs: f64,
    /// A flow with no packet for this long ends as `idle` (Zeek's defaults).
    pub tcp_idle_timeout_secs: f64,
    pub udp_idle_timeout_secs: f64,
    /// After FIN in both directions or a RST, stray packets still count for this long.
    pub tcp_close_linger_secs: f64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            subscribers: Default::default(),
            journeys: Vec::new(),
            episode_capacity: 256,
            flow_capacity: 65_536,
            dns_capacity: 4096,
            stream_capacity: 1024,
            tls_hello_max_bytes: 16_384,
            quic_ports: vec![443],
            loaded_bytes_per_sec: 500_000,
            report_interval_secs: 60,
            max_subscribers: 1024,
            services_per_subscriber: 5,
            services_tracked_per_subscriber: 32,
            sample_capacity: 65_536,
            service_cache_capacity: 4096,
            fragment_slots: 64,
            fragment_max_bytes: 65_535,
            fragment_timeout_secs: 30.0,
            dns_timeout_secs: 5.0,
            dns_late_answer_secs: 30.0,
            tcp_connect_timeout_secs: 30.0,
            tcp_idle_timeout_secs: 300.0,
            udp_idle_timeout_secs: 60.0,
            tcp_close_linger_secs: 2.0,
        }
    }
}

/// A configuration value outside what the core accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

/// A line's round-trip histograms in a window: four of 384 `u32` buckets (`window::rtt`
/// checks it is so).
pub const RTT_HISTOGRAMS_BYTES: usize = 4 * 384 * 4;

impl CoreConfig {
    /// The most the core's tables can take when every one is full, in bytes: the flow table
    /// and its timers, pending DNS queries, TCP streams and QUIC handshakes each holding a whole
    /// ClientHello (and a QUIC one its Initial keys),
    /// fragment buffers and the window's latency samples. The rest (services, episodes,
    /// names) is small beside them. A bound to compare with the machine, not a measurement.
    pub fn table_bytes(&self) -> u128 {
        let n = |v: usize| v as u128;
        n(self.flow_capacity) * n(crate::flow::FlowTable::bytes_per_flow() + 2 * 16)
            + n(self.dns_capacity) * n(crate::analyze::dns::DnsTracker::bytes_per_query())
            + n(self.stream_capacity)
                * n(self.tls_hello_max_bytes + 256 + std::mem::size_of::<crate::dissect::quic::InitialKeys>())
            + n(self.fragment_slots) * n(self.fragment_max_bytes)
            + n(self.sample_capacity) * 12
            + n(self.max_subscribers) * n(crate::analyze::load::LoadMeter::bytes_per_line() + RTT_HISTOGRAMS_BYTES)
            + n(self.episode_capacity) * 256
            + n(self.service_cache_capacity) * 128
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem found, in field order.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for (field, n) in [
            ("flow_capacity", self.flow_capacity),
            ("dns_capacity", self.dns_capacity),
            ("stream_capacity", self.stream_capacity),
            ("max_subscribers", self.max_subscribers),
            ("services_tracked_per_subscriber", self.services_tracked_per_subscriber),
            ("sample_capacity", self.sample_capacity),
            ("service_cache_capacity", self.service_cache_capacity),
            ("episode_capacity", self.episode_capacity),
        ] {
            if n == 0 {
                out.push(ConfigError { field, reason: "must be at least 1".into() });
            }
        }
        if let Err(reason) = crate::analyze::journey::validate(&self.journeys) {
            out.push(ConfigError { field: "journeys", reason });
        }
        if self.max_subscribers > usize::from(u16::MAX) || self.services_tracked_per_subscriber > 1024 {
            out.push(ConfigError {
                field: "max_subscribers",
                reason: "at most 65535 subscribers, 1024 services".into(),
            });
        }
        if !(1..=86_400).contains(&self.report_interval_secs) || 86_400 % self.report_interval_secs != 0 {
            out.push(ConfigError {
                field: "report_interval_secs",
                reason: "must divide a day (60, 300, 900, ...) so windows align to the clock".into(),
            });
        }
        if !(512..=65_536).contains(&self.tls_hello_max_bytes) {
            out.push(ConfigError { field: "tls_hello_max_bytes", reason: "must be between 512 and 65536".into() });
        }
        if self.quic_ports.len() > 64 || self.quic_ports.contains(&0) {
            out.push(ConfigError { field: "quic_ports", reason: "at most 64 ports, none of them 0".into() });
        }
        if self.loaded_bytes_per_sec == 0 {
            out.push(ConfigError { field: "loaded_bytes_per_sec", reason: "must be at least 1".into() });
        }
        if self.flow_capacity > u32::MAX as usize / 2 {
            out.push(ConfigError { field: "flow_capacity", reason: "must be below 2^31".into() });
        }
        if !(self.dns_late_answer_secs.is_finite() && (0.0..=3600.0).contains(&self.dns_late_answer_secs)) {
            out.push(ConfigError {
                field: "dns_late_answer_secs",
                reason: "must be from 0 (off) to 3600 seconds".into(),
            });
        }
        for (field, secs) in [
            ("fragment_timeout_secs", self.fragment_timeout_secs),
            ("dns_timeout_secs", self.dns_timeout_secs),
            ("tcp_connect_timeout_secs", self.tcp_connect_timeout_secs),
            ("tcp_idle_timeout_secs", self.tcp_idle_timeout_secs),
            ("udp_idle_timeout_secs", self.udp_idle_timeout_secs),
            ("tcp_close_linger_secs", self.tcp_close_linger_secs),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs < 86_400.0 * 365.0) {
                out.push(ConfigError { field, reason: format!("must be a positive number of seconds, got {secs}") });
            }
        }
        out
    }
}

/// What a collector pushes to an agent on its retained `config` topic (JSON): journey
/// definitions that replace the agent's own, and subscriber keys to leave unmeasured on top of
/// the agent's own opt-outs (a push can add privacy, never take it away).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushedConfig {
    /// Names this configuration; the agent reports the version it runs.
    pub version: String,
    #[serde(default)]
    pub journeys: Vec<crate::analyze::journey::JourneyConfig>,
    #[serde(default)]
    pub opt_out: Vec<String>,
}

/// Opt-outs a push may carry: a bound on what one message can make the agent hold.
pub const MAX_PUSHED_OPT_OUTS: usize = 100_000;
/// The largest pushed config, encoded; MQTT clients size their packet limit from it.
pub const MAX_PUSHED_CONFIG_BYTES: usize = 4 << 20;

impl PushedConfig {
    /// Decodes and checks a pushed configuration; the error says what is wrong.
    pub fn parse(payload: &[u8]) -> Result<PushedConfig, String> {
        let config: PushedConfig = serde_json::from_slice(payload).map_err(|e| format!("not a valid config: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let v = &self.version;
        if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control()) {
            return Err("version must be 1 to 64 printable characters".into());
        }
        if self.opt_out.len() > MAX_PUSHED_OPT_OUTS {
            return Err(format!("at most {MAX_PUSHED_OPT_OUTS} opt-outs"));
        }
        crate::analyze::journey::validate(&self.journeys).map_err(|e| format!("journeys: {e}"))
    }
}

pub(crate) fn secs_to_nanos(secs: f64) -> u64 {
    (secs * 1e9) as u64
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One line behind this agent.
    #[default]
    Cpe,
    /// Many lines: keys from rules and DHCP.
    Edge,
}

/// Which DHCP field names the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DhcpKey {
    #[default]
    RemoteId,
    CircuitId,
    Mac,
}

/// One edge rule. Every given condition must hold; the first matching rule wins.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub subscriber: String,
    pub cidr: Option<IpNet>,
    pub vlan: Option<u16>,
    pub pppoe_session: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    pub mode: Mode,
    /// CPE mode: the line this agent serves. Without it, the client address is the key.
    pub subscriber_id: Option<String>,
    pub rules: Vec<Rule>,
    /// Edge mode: learn address-to-line bindings from DHCP acknowledgements.
    pub learn_dhcp: bool,
    pub dhcp_key: DhcpKey,
    /// Bindings learned from DHCP kept at once; the oldest goes first.
    pub dhcp_capacity: usize,
    /// Secret for keyed pseudonymization of subscriber keys; none reports keys as they are.
    pub pseudonymize_secret: Option<String>,
    /// Real subscriber keys that are not measured.
    pub opt_out: Vec<String>,
}

impl SubscriberConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem found.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut err = |field, reason: &str| out.push(ConfigError { field, reason: reason.into() });
        if self.mode == Mode::Cpe && (!self.rules.is_empty() || self.learn_dhcp) {
            err("rules", "rules and learn_dhcp apply in edge mode; set mode = \"edge\"");
        }
        if self.mode == Mode::Edge && self.subscriber_id.is_some() {
            err("subscriber_id", "subscriber_id applies in cpe mode");
        }
        if self.rules.iter().any(|r| r.cidr.is_none() && r.vlan.is_none() && r.pppoe_session.is_none()) {
            err("rules", "every rule needs a cidr, vlan or pppoe_session");
        }
        let keys = self.subscriber_id.iter().chain(self.rules.iter().map(|r| &r.subscriber));
        if keys.chain(&self.opt_out).any(|k| k.is_empty() || !edgeprobe_wire::report::acceptable_name(k)) {
            err("subscriber_id", "subscriber keys must be 1 to 1024 bytes without control characters");
        }
        if self.pseudonymize_secret.as_deref().is_some_and(|s| s.len() < 16) {
            err("pseudonymize_secret", "must be at least 16 characters");
        }
        out
    }
}
