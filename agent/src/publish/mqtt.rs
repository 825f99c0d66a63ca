//! The MQTT publisher. Reports are QoS 1 on `edgeprobe/v1/agents/{agent_id}/report`; a retained
//! birth message on `.../state` says the agent is online (its boot, version and capabilities),
//! and the last will says it is offline.
//!
//! Two rumqttc pitfalls shape this module. The event loop runs in its own task, so publishing
//! never waits on the loop that must drain the request channel. And a clean-session reconnect
//! clears rumqttc's in-flight queue, so the spool, not rumqttc, holds every report until its
//! PUBACK: after each CONNACK the publisher sends again, in order, all that the spool holds.
//! Publishes are handed over only while connected and at most `MAX_IN_FLIGHT` at a time, so
//! nothing waits in rumqttc's channel across a reconnect.
//!
//! The publisher also listens on the agent's retained `.../config` topic. A pushed config is
//! checked here; a good one goes to the capture thread, a bad one is refused with its reason,
//! and either way the state topic says which version runs and why the last push was refused.

use super::spool::{ReportId, Spool};
use anyhow::Context;
use edgeprobe_core::config::PushedConfig;
use edgeprobe_wire::mqtt::{config_topic, parse_url, report_topic, state_topic};
use edgeprobe_wire::{AgentHealth, Encoding, MAX_REPORT_BYTES, Report};
use rumqttc::{
    AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const MAX_IN_FLIGHT: usize = 16;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Defaults to the agent id.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// The password itself, or where to read it: `password_file`, `password_env`.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// PEM files: the CA that signed the broker's certificate; the agent's own certificate and
    /// key for mutual TLS.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive_secs: u64,
    /// Where unacknowledged reports wait; without it they wait in memory only.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: usize,
    /// How long a report may wait in memory before it is written to the spool directory.
    pub spool_flush_secs: u64,
    /// `cbor` (default) or `json`.
    pub encoding: String,
    /// A window's report larger than this goes out in parts of at most this size, each a
    /// report of some of the lines: brokers cap messages (Mosquitto's `message_size_limit`,
    /// managed brokers often at 256 KiB), and one message of an edge node's thousands of lines
    /// would pass the cap. From 16 KiB to the 4 MiB report limit.
    pub max_message_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            password_env: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive_secs: 30,
            spool_dir: None,
            spool_max_bytes: 4 << 20,
            spool_flush_secs: 30,
            encoding: "cbor".into(),
            max_message_bytes: 256 << 10,
        }
    }
}

impl MqttConfig {
    /// Checks what can be checked without connecting; `(field, reason)` on error.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem found, as (field, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = parse_url(&self.url) {
            out.push(("url", e.to_string()));
        }
        if !["cbor", "json"].contains(&self.encoding.as_str()) {
            out.push(("encoding", "must be \"cbor\" or \"json\"".into()));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            out.push(("cert_file", "cert_file and key_file go together".into()));
        }
        let sources = [self.password.is_some(), self.password_file.is_some(), self.password_env.is_some()];
        if sources.iter().filter(|s| **s).count() > 1 {
            out.push(("password", "give one of password, password_file, password_env".into()));
        }
        if !(16 << 10..=MAX_REPORT_BYTES).contains(&self.max_message_bytes) {
            out.push(("max_message_bytes", format!("must be from 16384 to {MAX_REPORT_BYTES}")));
        }
        if self.spool_max_bytes < 4096 {
            out.push(("spool_max_bytes", "must be at least 4096".into()));
        }
        if self.username.is_none() && sources.iter().any(|s| *s) {
            out.push(("username", "a password is sent only with a username; set username".into()));
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 65_535 || id.chars().any(|c| c.is_control()) {
                out.push(("client_id", "must be 1 to 65535 bytes of printable characters".into()));
            }
        }
        let mut files_ok = true;
        for (field, path) in [
            ("password_file", &self.password_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(Err(e)) = path.as_deref().map(readable_file) {
                out.push((field, e));
                files_ok = false;
            }
        }
        if self.ca_file.is_some() {
            // What start would do with the files: a certificate that does not parse, or a key
            // that is not the certificate's, fails here.
            if let (true, Err(e)) = (files_ok && self.cert_file.is_some() == self.key_file.is_some(), tls_config(self))
            {
                out.push(("ca_file", format!("{e:#}")));
            }
        } else if parse_url(&self.url).is_ok_and(|(tls, _, _)| tls) {
            out.push(("ca_file", "mqtts:// needs ca_file (the system roots are not read)".into()));
        }
        if let Some(dir) = &self.spool_dir {
            match std::fs::metadata(dir) {
                Ok(m) if !m.is_dir() => out.push(("spool_dir", format!("{} is not a directory", dir.display()))),
                Ok(_) => {}
                // Created at start, so its nearest existing ancestor must be a directory.
                Err(_) => {
                    let parent = dir.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.exists());
                    if let Some(p) = parent.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
                        out.push(("spool_dir", format!("{} is not a directory", p.display())));
                    }
                }
            }
        }
        out
    }

    fn password(&self) -> anyhow::Result<Option<String>> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        if let Some(path) = &self.password_file {
            let p = std::fs::read_to_string(path).with_context(|| format!("password_file {}", path.display()))?;
            return Ok(Some(p.trim_end_matches(['\r', '\n']).to_string()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Some).with_context(|| format!("password_env {var} is not set"));
        }
        Ok(None)
    }
}

/// A file that exists, is a regular file (not a directory) and can be read.
fn readable_file(path: &std::path::Path) -> Result<(), String> {
    let what = path.display();
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(format!("{what} is not a regular file")),
        Ok(_) => std::fs::File::open(path).map(drop).map_err(|e| format!("{what}: {e}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// What the agent says about itself in its birth message.
pub struct Identity {
    pub agent_id: String,
    pub boot_id: String,
    pub capabilities: Vec<String>,
}

/// Pushed configs that passed the checks go here, `None` when the push was withdrawn (the
/// retained message emptied): the agent's own file applies again.
pub type ConfigSink = std::sync::mpsc::Sender<Option<PushedConfig>>;

/// Which pushed config runs (empty: the agent's own file), and why the latest was refused.
#[derive(Clone, Debug, Default)]
struct ConfigStatus {
    version: String,
    error: String,
}

enum Command {
    Report(Box<Report>),
    /// Wait until the spool is empty or the deadline passes, then write the spool and go.
    Shutdown(Duration, oneshot::Sender<usize>),
}

/// A running publisher. Dropping it without `shutdown` loses nothing already spooled to disk.
pub struct Publisher {
    commands: mpsc::Sender<Command>,
}

impl Publisher {
    /// Starts publishing; with `pushed`, the agent also takes configs from its config topic.
    pub async fn start(
        config: MqttConfig,
        identity: Identity,
        pushed: Option<ConfigSink>,
    ) -> anyhow::Result<Publisher> {
        config.validate().map_err(|(field, reason)| anyhow::anyhow!("mqtt.{field}: {reason}"))?;
        let options = mqtt_options(&config, &identity)?;
        let spool = Spool::open(
            config.spool_dir.as_deref(),
            config.spool_max_bytes,
            Duration::from_secs(config.spool_flush_secs),
        )
        .with_context(|| format!("spool directory {:?}", config.spool_dir))?;
        let (commands, rx) = mpsc::channel(64);
        let encoding = if config.encoding == "json" { Encoding::Json } else { Encoding::Cbor };
        tokio::spawn(run(options, identity, spool, (encoding, config.max_message_bytes), rx, pushed));
        Ok(Publisher { commands })
    }

    /// Queues a report for delivery.
    pub async fn publish(&self, report: Report) -> anyhow::Result<()> {
        self.commands.send(Command::Report(Box::new(report))).await.context("publisher stopped")
    }

    /// Waits up to `grace` for the spool to empty, writes what is left to disk, and disconnects.
    /// Returns how many reports are still unacknowledged.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(grace, tx)).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

/// What the retained state topic says: online, offline by the last will (the agent vanished),
/// or offline and `stopped` (a clean shutdown, which is no outage).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AgentStatus {
    Online,
    Vanished,
    Stopped,
}

/// The retained state message. `waiting` is how many reports the spool holds unacknowledged
/// now (a report's own `spool_depth` is as of when it was queued, so it goes stale); a last
/// will cannot know it.
fn state_payload(identity: &Identity, status: AgentStatus, config: &ConfigStatus, waiting: Option<usize>) -> Vec<u8> {
    let mut state = serde_json::json!({
        "online": status == AgentStatus::Online,
        "stopped": status == AgentStatus::Stopped,
        "agent_id": identity.agent_id,
        "boot_id": identity.boot_id,
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": identity.capabilities,
        "config_version": config.version,
        "config_error": config.error,
    });
    if let Some(n) = waiting {
        state["spool_depth"] = n.into();
    }
    serde_json::to_vec(&state).expect("state serializes")
}

fn mqtt_options(config: &MqttConfig, identity: &Identity) -> anyhow::Result<MqttOptions> {
    let (tls, host, port) = parse_url(&config.url)?;
    let client_id = config.client_id.clone().unwrap_or_else(|| identity.agent_id.clone());
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)));
    // rumqttc's default limit is 10 KiB each way: an edge agent's report of many lines, or a
    // pushed config, is larger. Out goes a report up to the size the collector accepts (plus
    // the topic and header); in, a config up to its limit.
    options.set_max_packet_size(edgeprobe_core::config::MAX_PUSHED_CONFIG_BYTES + 4096, MAX_REPORT_BYTES + 4096);
    options.set_clean_session(true);
    options.set_last_will(LastWill::new(
        state_topic(&identity.agent_id),
        state_payload(identity, AgentStatus::Vanished, &ConfigStatus::default(), None),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password()?.unwrap_or_default());
    }
    if tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(config)?))));
    }
    Ok(options)
}

fn tls_config(config: &MqttConfig) -> anyhow::Result<rustls::ClientConfig> {
    let ca = config.ca_file.as_ref().context("mqtts:// needs ca_file")?;
    let client = config.cert_file.as_deref().zip(config.key_file.as_deref());
    edgeprobe_wire::mqtt::tls_config(ca, client)
}

struct State {
    client: AsyncClient,
    identity: Identity,
    spool: Spool,
    encoding: Encoding,
    /// Reports larger than this go out in parts.
    max_message: usize,
    codec: edgeprobe_wire::Codec,
    connected: bool,
    /// Publishes handed to rumqttc in this connection, in order, until their packet id is known.
    sent: VecDeque<Option<ReportId>>,
    /// Packet id to report, until the PUBACK.
    in_flight: Vec<(u16, Option<ReportId>)>,
    handed: HashSet<ReportId>,
    failures: u64,
    pushed: Option<ConfigSink>,
    config: ConfigStatus,
    /// A report went out saying others waited with it: when the spool empties, the state
    /// says so, or the last report's depth would be the last word.
    backlog_told: bool,
}

async fn run(
    options: MqttOptions,
    identity: Identity,
    spool: Spool,
    (encoding, max_message): (Encoding, usize),
    mut commands: mpsc::Receiver<Command>,
    pushed: Option<ConfigSink>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, 2 * MAX_IN_FLIGHT);
    let (events_tx, mut events) = mpsc::channel::<Result<Event, ConnectionError>>(64);
    // The event loop in a task of its own, backing off between failed connection attempts.
    let event_loop = tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let event = eventloop.poll().await;
            let failed = event.is_err();
            if matches!(event, Ok(Event::Incoming(Packet::ConnAck(_)))) {
                backoff = BACKOFF_MIN;
            }
            if events_tx.send(event).await.is_err() {
                return;
            }
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    });
    let mut s = State {
        client,
        identity,
        spool,
        encoding,
        max_message,
        codec: Default::default(),
        connected: false,
        sent: VecDeque::new(),
        in_flight: Vec::new(),
        handed: HashSet::new(),
        failures: 0,
        pushed,
        config: ConfigStatus::default(),
        backlog_told: false,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut shutdown: Option<(tokio::time::Instant, oneshot::Sender<usize>)> = None;
    loop {
        tokio::select! {
            command = commands.recv(), if shutdown.is_none() => match command {
                Some(Command::Report(report)) => s.queue(*report),
                Some(Command::Shutdown(grace, done)) => shutdown = Some((tokio::time::Instant::now() + grace, done)),
                None => shutdown = Some((tokio::time::Instant::now(), oneshot::channel().0)),
            },
            Some(event) = events.recv() => s.on_event(event),
            _ = tick.tick() => {
                s.spool.flush(false);
                s.hand_over();
            }
        }
        if let Some((deadline, _)) = &shutdown {
            if s.spool.is_empty() || tokio::time::Instant::now() >= *deadline {
                let (_, done) = shutdown.take().expect("checked above");
                s.spool.flush(true);
                if s.connected {
                    // A clean stop is not a crash: say offline ourselves, the will is not sent.
                    let topic = state_topic(&s.identity.agent_id);
                    let _ = s
                        .client
                        .publish(
                            topic,
                            QoS::AtLeastOnce,
                            true,
                            state_payload(&s.identity, AgentStatus::Stopped, &s.config, Some(s.spool.len())),
                        )
                        .await;
                    let _ = s.client.disconnect().await;
                    // Let the event loop send them, and read until the broker closes: a socket
                    // closed with the broker's last acknowledgement unread is reset, and a
                    // reset can lose the DISCONNECT before the broker reads it (then it sends
                    // the will after all).
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(e) = events.recv().await {
                            if e.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                }
                // Stopped here: polled on, the loop would connect again (with the will) after
                // the broker closed this connection, and the exit would then fire the will.
                event_loop.abort();
                let _ = done.send(s.spool.len());
                return;
            }
        }
    }
}

impl State {
    /// Queues a window's report: in parts of at most `max_message` bytes when it is larger.
    fn queue(&mut self, report: Report) {
        for part in self.codec.split(report, self.max_message, self.encoding) {
            self.queue_part(part);
        }
    }

    fn queue_part(&mut self, mut report: Report) {
        // Room first, so this report can count the drops it causes. The counters below change
        // the size by a few bytes at most.
        let estimate = self.codec.encode(&report, self.encoding).len() + 96;
        if estimate > MAX_REPORT_BYTES {
            // The collector refuses it, and the broker link would fail on it forever: one
            // line alone this large is past any split.
            eprintln!(
                "edgeprobe: a report of {estimate} bytes ({} lines) exceeds the {MAX_REPORT_BYTES}-byte limit and is \
                 dropped; lower measure.services_per_subscriber",
                report.subscribers.len()
            );
            self.failures += 1;
            return;
        }
        self.spool.make_room(estimate);
        let carried = self.spool.take_dropped();
        self.backlog_told |= !self.spool.is_empty();
        report.agent = Some(AgentHealth {
            spool_depth: self.spool.len() as u64 + 1,
            spool_dropped: carried,
            publish_failures: self.failures,
            spool_write_errors: self.spool.write_errors,
        });
        let id = ReportId {
            window_start: report.window_start,
            boot_id: report.boot_id.clone(),
            seq: report.seq,
            part: report.part,
        };
        let payload = self.codec.encode(&report, self.encoding);
        self.spool.push(id, payload, carried);
        self.hand_over();
    }

    fn on_event(&mut self, event: Result<Event, ConnectionError>) {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected = true;
                self.sent.clear();
                self.in_flight.clear();
                self.handed.clear();
                self.publish_state();
                if self.pushed.is_some() {
                    let _ = self.client.try_subscribe(config_topic(&self.identity.agent_id), QoS::AtLeastOnce);
                }
                self.hand_over();
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == config_topic(&self.identity.agent_id) => {
                self.on_config(&p.payload);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(id) = self.sent.pop_front() {
                    self.in_flight.push((pkid, id));
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(i) = self.in_flight.iter().position(|(p, _)| *p == ack.pkid) {
                    let (_, id) = self.in_flight.swap_remove(i);
                    if let Some(id) = id {
                        self.handed.remove(&id);
                        self.spool.ack(&id);
                    }
                }
                if self.backlog_told && self.spool.is_empty() {
                    self.backlog_told = false;
                    self.publish_state();
                }
                self.hand_over();
            }
            Ok(_) => {}
            Err(_) => {
                // Whatever was in flight is gone with the session; the spool still has it.
                self.failures += 1;
                self.connected = false;
                self.sent.clear();
                self.in_flight.clear();
                self.handed.clear();
            }
        }
    }

    /// The retained state: online, with the config status.
    fn publish_state(&mut self) {
        let topic = state_topic(&self.identity.agent_id);
        let birth = state_payload(&self.identity, AgentStatus::Online, &self.config, Some(self.spool.len()));
        if self.client.try_publish(topic, QoS::AtLeastOnce, true, birth).is_ok() {
            self.sent.push_back(None);
        }
    }

    /// A message on the config topic: applied if it passes the checks, refused with its reason
    /// otherwise, the last good config staying in force.
    fn on_config(&mut self, payload: &[u8]) {
        let Some(sink) = &self.pushed else { return };
        let update = if payload.is_empty() { Ok(None) } else { PushedConfig::parse(payload).map(Some) };
        match update {
            Ok(config) => {
                let version = config.as_ref().map(|c| c.version.clone()).unwrap_or_default();
                if version == self.config.version && self.config.error.is_empty() {
                    return; // the retained copy again, after a reconnect
                }
                match &config {
                    Some(c) => eprintln!(
                        "edgeprobe: applying pushed config {version}: {} journeys, {} opt-outs",
                        c.journeys.len(),
                        c.opt_out.len()
                    ),
                    None => eprintln!("edgeprobe: pushed config withdrawn; the config file applies again"),
                }
                if sink.send(config).is_err() {
                    return; // the capture thread has stopped
                }
                self.config = ConfigStatus { version, error: String::new() };
            }
            Err(reason) => {
                let named = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_string));
                let running = if self.config.version.is_empty() { "the config file" } else { &self.config.version };
                let error = match named {
                    Some(v) => format!("version {v:?} refused: {reason}"),
                    None => format!("refused: {reason}"),
                };
                eprintln!("edgeprobe: pushed config {error}; keeping {running}");
                self.config.error = error;
            }
        }
        self.publish_state();
    }

    /// Hands spooled reports to rumqttc, oldest first, up to the in-flight limit.
    fn hand_over(&mut self) {
        if !self.connected {
            return;
        }
        let topic = report_topic(&self.identity.agent_id);
        let mut budget = MAX_IN_FLIGHT.saturating_sub(self.handed.len());
        let mut ready: Vec<(ReportId, Vec<u8>)> = Vec::new();
        for (id, payload) in self.spool.pending() {
            if budget == 0 {
                break;
            }
            if !self.handed.contains(id) {
                ready.push((id.clone(), payload.to_vec()));
                budget -= 1;
            }
        }
        for (id, payload) in ready {
            if self.client.try_publish(topic.clone(), QoS::AtLeastOnce, false, payload).is_err() {
                self.failures += 1;
                return;
            }
            self.sent.push_back(Some(id.clone()));
            self.handed.insert(id);
        }
    }
}
