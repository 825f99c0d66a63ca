//! The collector's TOML configuration: broker, storage, HTTP, correlation, plans and actions.
//! Every field has a default, so an empty file runs a single box: the embedded broker on
//! port 1883 and SQLite under `./edgeprobe-data`. `validate` reports the first field that
//! cannot work, by its dotted name.

mod actions;

pub use actions::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    pub broker: BrokerConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub correlation: CorrelationConfig,
    /// SLA thresholds by plan name; customers on a plan not listed use `default`.
    pub plans: BTreeMap<String, PlanThresholds>,
    pub actions: ActionsConfig,
    /// Journey definitions and opt-outs pushed to every agent.
    pub agent_config: AgentConfigPush,
    /// Idle baselines, working latency, bufferbloat and Quality of Outcome.
    pub working_latency: crate::quality::WorkingLatencyConfig,
    /// Receivers of incidents and actions as they happen (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// The outbox and retries behind the webhooks.
    pub delivery: DeliveryConfig,
    /// How actions' results are measured.
    pub outcomes: OutcomesConfig,
    /// Offers where the line's experience says they help.
    pub offers: OffersConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfigPush {
    /// A TOML file of `[[journeys]]` (as in the agent's config), `opt_out = [...]` and an
    /// optional `version`. Installed at start; `PUT /api/v1/agent-config` replaces it.
    pub file: Option<PathBuf>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        let mut plans = BTreeMap::new();
        plans.insert("default".to_string(), PlanThresholds::default());
        CollectorConfig {
            broker: BrokerConfig::default(),
            storage: StorageConfig::default(),
            http: HttpConfig::default(),
            correlation: CorrelationConfig::default(),
            plans,
            actions: ActionsConfig::default(),
            agent_config: AgentConfigPush::default(),
            working_latency: Default::default(),
            webhooks: Vec::new(),
            delivery: DeliveryConfig::default(),
            outcomes: OutcomesConfig::default(),
            offers: OffersConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `mqtt://host:port` or `mqtts://host:port`. Ignored when `embedded` is set: the
    /// collector then connects to its own broker.
    pub url: String,
    /// Run an embedded broker (rumqttd) on `embedded_listen`, for single-box use.
    pub embedded: bool,
    pub embedded_listen: SocketAddr,
    /// The MQTT client id. It must differ between collectors sharing a subscription, and stay
    /// the same across restarts so the broker keeps the session (and what it queued) for it.
    pub client_id: String,
    /// The shared-subscription group; collectors in one group split the agents' reports.
    pub share_group: String,
    /// Keep the broker session across restarts (`clean_session = false`).
    pub persistent_session: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA certificate (PEM) for `mqtts://`; the system roots are not read.
    pub ca_file: Option<PathBuf>,
    pub keep_alive_secs: u64,
    /// Reports decoded but not yet stored. When full, reading from the broker pauses.
    pub queue_capacity: usize,
    /// The same queue's limit in bytes of the reports it holds, so a burst of large reports
    /// (up to 4 MiB each) cannot take `queue_capacity` times that.
    pub queue_bytes: usize,
    /// Logins the embedded broker takes (username to password); empty lets anyone in, as on a
    /// box whose broker listens on loopback only. With any, the collector's own `username`
    /// and `password` are added.
    pub embedded_users: BTreeMap<String, String>,
    /// The embedded broker is restarted when its resident memory passes this.
    pub embedded_max_memory_mb: u64,
    /// Reports whose window ends more than this past the collector's clock are refused: an
    /// agent's clock that far ahead (or a forged report) would otherwise hold a window open.
    pub max_clock_skew_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            embedded: true,
            embedded_listen: "127.0.0.1:1883".parse().expect("valid address"),
            client_id: "edgeprobe-collector-1".into(),
            share_group: "edgeprobe-collectors".into(),
            persistent_session: true,
            username: None,
            password: None,
            ca_file: None,
            keep_alive_secs: 30,
            queue_capacity: 4096,
            queue_bytes: 64 << 20,
            max_clock_skew_secs: 300,
            embedded_users: BTreeMap::new(),
            embedded_max_memory_mb: 256,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// A directory or `sqlite:PATH` for SQLite, or a `postgres://` URL.
    pub url: String,
    /// Measurements older than this are deleted; 0 keeps everything.
    pub retention_days: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { url: "edgeprobe-data".into(), retention_days: 30 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Certificate chain and private key (PEM). With both, the console and API are served over
    /// HTTPS only; logins and tokens should not cross a network in the clear.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// With users or tokens here, the console, the API and /metrics answer only to them.
    pub auth: AuthConfig,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections from one client address at once; more are closed.
    pub max_connections_per_address: usize,
    /// A request's headers, and an idle connection's next request, must arrive within this.
    pub header_read_timeout_secs: u64,
    /// A request (its body included) must be answered within this.
    pub request_timeout_secs: u64,
    /// The currency of the customer file's `monthly_value`, as the console writes amounts
    /// (`EUR`, `€`); empty writes the bare number.
    pub currency: String,
}

impl HttpConfig {
    /// The certificate and key files, when HTTPS is on (validation makes them a pair).
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert_file.as_deref()?, self.tls_key_file.as_deref()?))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            tls_cert_file: None,
            tls_key_file: None,
            auth: AuthConfig::default(),
            max_connections: 512,
            max_connections_per_address: 64,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            currency: String::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Basic-auth logins (the console in a browser).
    pub users: Vec<Login>,
    /// Bearer tokens (scripts, Prometheus).
    pub tokens: Vec<Token>,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }
}

/// `read` sees everything; `operator` also acknowledges incidents and changes what is pushed
/// to agents.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Operator,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    /// In plain text; `password_hash` keeps it out of the file.
    #[serde(default)]
    pub password: Option<String>,
    /// bcrypt, as `edgeprobe-collector hash-password` or `htpasswd -nbBC 10` print it.
    #[serde(default)]
    pub password_hash: Option<String>,
    pub role: Role,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who the token is, in acknowledgements and logs.
    pub name: String,
    /// In plain text; `token_sha256` keeps it out of the file.
    #[serde(default)]
    pub token: Option<String>,
    /// The token's SHA-256 in hex, as `printf %s TOKEN | sha256sum` prints it. A token is long
    /// and random, so a fast hash is enough to keep it out of the file (unlike a password).
    #[serde(default)]
    pub token_sha256: Option<String>,
    pub role: Role,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelationConfig {
    /// Consecutive bad windows before an incident opens.
    pub open_after: u32,
    /// Consecutive good windows before an open incident resolves.
    pub resolve_after: u32,
    /// A window is evaluated this long after it ends, so that agents have published it.
    pub grace_secs: u64,
    /// ... and once no report for it has arrived for this long (late or replayed data).
    pub settle_secs: u64,
    /// A window where an agent's report sent in parts lacks some waits up to this long after
    /// its last arrival for the rest, then is evaluated with what came.
    pub parts_wait_secs: u64,
    /// How often the collector looks for windows to evaluate.
    pub tick_secs: u64,
    /// A group (access node, region, service, resolver) fails when at least this share of its
    /// measured customers is degraded in a window ...
    pub group_fraction: f64,
    /// ... and at least this many of them.
    pub group_min_customers: usize,
    /// A region fails when at least this many of its access nodes fail in the same window.
    pub region_min_nodes: usize,
    /// A per-customer baseline (exponentially weighted p90) flags a metric as degraded when the
    /// window's p90 exceeds it by this factor ...
    pub baseline_factor: f64,
    /// ... and by at least this many milliseconds, so tiny latencies do not flap.
    pub baseline_min_ms: f64,
    /// Windows of history before a customer's baseline is trusted.
    pub baseline_min_windows: u32,
    /// An agent that has sent nothing for this long is silent ...
    pub agent_silence_secs: u64,
    /// ... and so is one whose last will arrived this long ago without a new birth since: a
    /// gateway that reboots or reconnects within it opens no incident and contacts no one.
    pub agent_offline_after_secs: u64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            open_after: 3,
            resolve_after: 3,
            grace_secs: 20,
            settle_secs: 5,
            parts_wait_secs: 60,
            tick_secs: 2,
            group_fraction: 0.5,
            group_min_customers: 2,
            region_min_nodes: 2,
            baseline_factor: 3.0,
            baseline_min_ms: 50.0,
            baseline_min_windows: 10,
            agent_silence_secs: 300,
            agent_offline_after_secs: 90,
        }
    }
}

/// What a plan promises. Latency thresholds apply to the window's p90; ratios to failures
/// over attempts. A metric with fewer than `min_samples` samples in a window is not judged.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanThresholds {
    pub dns_p90_ms: f64,
    pub connect_network_p90_ms: f64,
    pub connect_home_p90_ms: f64,
    pub tls_handshake_p90_ms: f64,
    pub http_ttfb_p90_ms: f64,
    /// QUIC: the client's first Initial to the server's (network side), the server's first
    /// Handshake packet to the client's (home side), and the whole handshake.
    pub quic_hello_p90_ms: f64,
    pub quic_home_p90_ms: f64,
    pub quic_handshake_p90_ms: f64,
    /// SERVFAIL, REFUSED and timeouts over all DNS transactions.
    pub dns_failure_ratio: f64,
    /// Refused and timed-out connects over all attempts.
    pub connect_failure_ratio: f64,
    /// Journey episodes that failed or timed out over all episodes of the journey.
    pub journey_failure_ratio: f64,
    /// p90 limits on completed episodes, by journey name; journeys not listed are judged on
    /// failures only.
    pub journey_p90_ms: BTreeMap<String, f64>,
    pub min_samples: u64,
}

impl Default for PlanThresholds {
    fn default() -> Self {
        PlanThresholds {
            dns_p90_ms: 150.0,
            connect_network_p90_ms: 100.0,
            connect_home_p90_ms: 50.0,
            tls_handshake_p90_ms: 500.0,
            http_ttfb_p90_ms: 1000.0,
            // As the TCP connect's sides and the TLS handshake, which QUIC's hold together.
            quic_hello_p90_ms: 100.0,
            quic_home_p90_ms: 50.0,
            quic_handshake_p90_ms: 500.0,
            dns_failure_ratio: 0.25,
            connect_failure_ratio: 0.25,
            journey_failure_ratio: 0.2,
            journey_p90_ms: BTreeMap::new(),
            min_samples: 3,
        }
    }
}

impl PlanThresholds {
    /// The p90 threshold for a latency metric, in microseconds.
    pub fn latency_us(&self, metric: &str) -> Option<f64> {
        let ms = match metric {
            "dns" => self.dns_p90_ms,
            "connect_network" => self.connect_network_p90_ms,
            "connect_home" => self.connect_home_p90_ms,
            "tls_handshake" => self.tls_handshake_p90_ms,
            "http_ttfb" => self.http_ttfb_p90_ms,
            "quic_hello" => self.quic_hello_p90_ms,
            "quic_home" => self.quic_home_p90_ms,
            "quic_handshake" => self.quic_handshake_p90_ms,
            _ => return None,
        };
        Some(ms * 1000.0)
    }
}

impl CollectorConfig {
    /// Reads and checks a config file; the error lists every problem found, one per line, as
    /// `FILE:LINE:COLUMN: field: reason`.
    pub fn load(path: &Path) -> anyhow::Result<CollectorConfig> {
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| format!("{}:{e}", path.display())).collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })
    }

    /// Parses and validates; each error starts with its `LINE:COLUMN:`.
    pub fn parse(text: &str) -> Result<CollectorConfig, Vec<String>> {
        let config: CollectorConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
            vec![format!("{line}:{column}: {}", e.message().trim())]
        })?;
        let errors = config.validate();
        if errors.is_empty() {
            return Ok(config);
        }
        Err(errors
            .into_iter()
            .map(|(field, reason)| {
                let (line, column) = place(text, &field);
                format!("{line}:{column}: {field}: {reason}")
            })
            .collect())
    }

    /// Every problem found, as (field, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut fail = |f: &str, r: &str| errors.push((f.to_string(), r.to_string()));
        let c = &self.correlation;
        if c.open_after == 0 || c.resolve_after == 0 {
            fail("correlation.open_after", "open_after and resolve_after must be at least 1");
        }
        if !(0.0..=1.0).contains(&c.group_fraction) || c.group_fraction == 0.0 {
            fail("correlation.group_fraction", "must be above 0 and at most 1");
        }
        if c.group_min_customers == 0 {
            fail("correlation.group_min_customers", "must be at least 1");
        }
        if c.tick_secs == 0 {
            fail("correlation.tick_secs", "must be at least 1");
        }
        let b = &self.broker;
        if b.embedded_max_memory_mb < 32 {
            fail("broker.embedded_max_memory_mb", "must be at least 32");
        }
        if b.embedded_users.keys().any(|u| u.is_empty()) || b.embedded_users.values().any(|p| p.len() < 8) {
            fail("broker.embedded_users", "user names must not be empty, passwords at least 8 characters");
        }
        // An agent's login name is its id: the ACL gives it the topics of that id.
        let collector = b.username.as_deref();
        if let Some((user, e)) = b
            .embedded_users
            .keys()
            .filter(|u| Some(u.as_str()) != collector)
            .find_map(|u| edgeprobe_wire::mqtt::check_agent_id(u).err().map(|e| (u, e)))
        {
            fail("broker.embedded_users", &format!("{user:?} is not an agent id: it {e}"));
        }
        if b.embedded && b.embedded_users.is_empty() && !b.embedded_listen.ip().is_loopback() {
            fail(
                "broker.embedded_listen",
                "an embedded broker reachable from other hosts needs [broker.embedded_users]: without logins anyone could publish as any agent",
            );
        }
        let h = &self.http;
        for (field, n) in [
            ("http.max_connections", h.max_connections as u64),
            ("http.max_connections_per_address", h.max_connections_per_address as u64),
            ("http.header_read_timeout_secs", h.header_read_timeout_secs),
            ("http.request_timeout_secs", h.request_timeout_secs),
        ] {
            if n == 0 {
                fail(field, "must be at least 1");
            }
        }
        if h.max_connections > 1 << 20 || h.header_read_timeout_secs > 3600 || h.request_timeout_secs > 86_400 {
            fail("http.max_connections", "at most 2^20 connections, a 3600 s header and a 86400 s request timeout");
        }
        if !self.plans.contains_key("default") {
            fail("plans", "a [plans.default] table is required for customers on unlisted plans");
        }
        for (name, plan) in &self.plans {
            let values = [
                plan.dns_p90_ms,
                plan.connect_network_p90_ms,
                plan.connect_home_p90_ms,
                plan.tls_handshake_p90_ms,
                plan.http_ttfb_p90_ms,
                plan.quic_hello_p90_ms,
                plan.quic_home_p90_ms,
                plan.quic_handshake_p90_ms,
            ];
            if values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                fail(&format!("plans.{name}"), "latency thresholds must be positive");
            }
            let ratios = [plan.dns_failure_ratio, plan.connect_failure_ratio, plan.journey_failure_ratio];
            if ratios.iter().any(|r| !(0.0..=1.0).contains(r)) {
                fail(&format!("plans.{name}"), "failure ratios must lie between 0 and 1");
            }
            if plan.journey_p90_ms.values().any(|v| !v.is_finite() || *v <= 0.0) {
                fail(&format!("plans.{name}.journey_p90_ms"), "latency thresholds must be positive");
            }
        }
        for (field, reason) in self.working_latency.problems() {
            fail(&field, &reason);
        }
        for (field, reason) in actions::problems(self) {
            fail(&field, &reason);
        }
        let auth = &self.http.auth;
        if auth.users.iter().any(|u| u.name.is_empty() || u.name.contains(':')) {
            fail("http.auth.users", "names must be set and free of ':'");
        }
        for u in &auth.users {
            let field = format!("http.auth.users.{}", u.name);
            match (&u.password, &u.password_hash) {
                (Some(p), None) if p.len() >= 8 => {}
                (Some(_), None) => fail(&field, "passwords must be at least 8 characters"),
                (None, Some(h)) if h.parse::<bcrypt::HashParts>().is_ok() => {}
                (None, Some(_)) => fail(&field, "password_hash must be a bcrypt hash ($2b$...)"),
                _ => fail(&field, "needs exactly one of password and password_hash"),
            }
        }
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            fail("http.tls_cert_file", "tls_cert_file and tls_key_file go together");
        }
        for t in &auth.tokens {
            let field = format!("http.auth.tokens.{}", t.name);
            match (&t.token, &t.token_sha256) {
                _ if t.name.is_empty() => fail("http.auth.tokens", "tokens must be named"),
                (Some(plain), None) if plain.len() >= 16 => {}
                (Some(_), None) => fail(&field, "tokens must be at least 16 characters"),
                (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                (None, Some(_)) => fail(&field, "token_sha256 must be 64 hex digits"),
                _ => fail(&field, "needs exactly one of token and token_sha256"),
            }
        }
        if self.broker.queue_capacity == 0 {
            fail("broker.queue_capacity", "must be at least 1");
        }
        if self.broker.queue_bytes < 1024 {
            fail("broker.queue_bytes", "must be at least 1024");
        }
        if self.broker.client_id.is_empty() || self.broker.share_group.is_empty() {
            fail("broker.client_id", "client_id and share_group must not be empty");
        }
        if !self.broker.embedded && !self.broker.url.starts_with("mqtt://") && !self.broker.url.starts_with("mqtts://")
        {
            fail("broker.url", "must start with mqtt:// or mqtts://");
        }
        errors
    }

    pub fn plan(&self, name: &str) -> &PlanThresholds {
        self.plans.get(name).unwrap_or_else(|| &self.plans["default"])
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    (line, before.len() - before.rfind('\n').map_or(0, |nl| nl + 1) + 1)
}

/// Where `field` (dotted, `name[i]` for the i-th of an array of tables) is set in `text`: its
/// key, else the nearest enclosing table that is written, else the top of the file.
fn place(text: &str, field: &str) -> (usize, usize) {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else { return (1, 1) };
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut at = None;
    for part in field.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, i)) => (name, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((key, item)) = table.get_key_value(name) else { break };
        at = key.span().or(at);
        let next = match (item, index) {
            (toml_edit::Item::ArrayOfTables(array), Some(i)) => {
                let t = array.get(i);
                at = t.and_then(|t| t.span()).or(at);
                t.map(|t| t as &dyn toml_edit::TableLike)
            }
            (item, _) => item.as_table_like(),
        };
        match next {
            Some(t) => table = t,
            None => break,
        }
    }
    at.map_or((1, 1), |span| line_col(text, span.start))
}

#[cfg(test)]
mod tests {
    use super::CollectorConfig;

    /// Why an embedded broker config is refused (`LINE:COLUMN: field: reason`), if it is.
    fn refused(broker: &str) -> Option<String> {
        CollectorConfig::parse(&format!("[broker]\n{broker}")).err().map(|e| e.join("\n"))
    }

    #[test]
    fn an_embedded_broker_open_to_other_hosts_needs_logins() {
        let open = "embedded_listen = \"0.0.0.0:1883\"\n";
        assert!(refused(open).is_some_and(|e| e.starts_with("2:1: broker.embedded_listen:")));
        assert_eq!(refused(&format!("{open}[broker.embedded_users]\n\"gw-1\" = \"password-1\"\n")), None);
        assert_eq!(refused("embedded_listen = \"[::1]:1883\"\n"), None);
        assert_eq!(refused(&format!("{open}embedded = false\n")), None);
    }

    #[test]
    fn embedded_user_names_are_agent_ids_but_the_collectors() {
        let users = "[broker.embedded_users]\n\"gw/1\" = \"password-1\"\n";
        let e = refused(users).unwrap_or_default();
        assert!(e.starts_with("2:9: broker.embedded_users:") && e.contains("gw/1"), "{e}");
        let own = "username = \"collector/main\"\npassword = \"password-2\"\n[broker.embedded_users]\n\"collector/main\" = \"password-2\"\n";
        assert_eq!(refused(own), None);
    }

    #[test]
    fn every_problem_is_listed_where_it_is() {
        let text = "[correlation]\nopen_after = 0\ngroup_fraction = 2.0\n\n[broker]\nqueue_bytes = 10\n\n\
                    [plans.gold]\ndns_p90_ms = -1.0\n\n[[actions.journey_rules]]\njourney = \"portal\"\n\
                    failures = 1\nwithin_hours = 1\naction = \"call\"\n";
        let errors = CollectorConfig::parse(text).unwrap_err();
        let at: Vec<&str> = errors.iter().map(|e| e.split(": ").next().unwrap()).collect();
        // A [plans.gold] alone replaces the built-in plans, so `default` is missing too.
        assert_eq!(at, ["2:1", "3:1", "8:2", "8:8", "11:1", "6:1"], "{errors:#?}");
        let broken = CollectorConfig::parse("[broker]\nqueue_bytes = \"x\"\n").unwrap_err();
        assert!(broken[0].starts_with("2:15: "), "{broken:?}");
    }

    #[test]
    fn webhooks_and_channels_are_checked() {
        let good = "[[webhooks]]\nname = \"pager\"\nurl = \"https://h.example/x\"\nevents = [\"incident_opened\"]\n";
        assert!(CollectorConfig::parse(good).is_ok());
        let bad = "[[webhooks]]\nname = \"pager\"\nurl = \"ftp://h\"\nevents = [\"incident_opend\"]\nsecret = \"short\"\n\
                   headers = { \"Bad Name\" = \"x\" }\n\
                   [[webhooks]]\nname = \"pager\"\nurl = \"http://h\"\nevents = [\"action_proposed\"]\ntimeout_secs = 0\n\
                   [actions.channels]\noutage_notice = [\"fax\"]\nhold_marketing = [\"sms\"]\n\
                   [delivery]\nretry_initial_ms = 10\nretry_max_ms = 5\n";
        let errors = CollectorConfig::parse(bad).unwrap_err().join("\n");
        for why in [
            "webhooks[0]: url must start with http:// or https://",
            "webhooks[0]: events must name",
            "webhooks[0]: a secret must be at least 16 characters",
            "webhooks[0]: header names",
            "webhooks[1]: each webhook needs a name of its own",
            "webhooks[1]: timeout_secs",
            "actions.channels.outage_notice: \"fax\" is not one of",
            "actions.channels.hold_marketing: channels are for",
            "delivery: ",
        ] {
            assert!(errors.contains(why), "{why}: {errors}");
        }
    }
}
