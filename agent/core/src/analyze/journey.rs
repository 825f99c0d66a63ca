//! Journeys: what a customer goes through, step by step (look up the portal, connect, shake
//! hands, get the first byte). An episode is one run of a journey. The tracker follows episodes
//! per subscriber from the measurement events the probe already makes, links the steps across
//! flows by the addresses a DNS answer gave and by the connection a step used, and emits one
//! `episode` event when an episode completes, fails or times out.
//!
//! Open episodes live in one table of `episode_capacity` entries; when it is full the oldest is
//! evicted and counted, so memory never depends on the traffic.

use crate::event::{ConnectOutcome, Detail, EpisodeEvent, EpisodeOutcome, EpisodeStep, Event, QuicOutcome, TlsOutcome};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// Steps per journey and journeys per config: enough for any real journey, and a bound.
pub const MAX_STEPS: usize = 16;
pub const MAX_JOURNEYS: usize = 64;

/// One journey, as configured.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JourneyConfig {
    pub name: String,
    /// Customer-lifecycle phase (acquisition, usage, assurance, billing, ...).
    #[serde(default)]
    pub phase: String,
    /// Where the journey happens (web, app, tv, ...).
    #[serde(default)]
    pub channel: String,
    pub steps: Vec<StepConfig>,
    /// Complete once this many bytes came down the last step's connection; absent: at the first
    /// response byte of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_bytes: Option<u64>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// An episode counts once it reached this step (1-based), whether it then completes, fails
    /// or times out. A lookup that no connection followed is not a visit, nor is a lookup that
    /// failed: `web_session` (any name) counts from step 2, so the names browsers and search
    /// domains try in the background, which often fail, are not failed sessions.
    #[serde(default = "one")]
    pub count_from_step: usize,
}

fn default_timeout() -> f64 {
    30.0
}

fn one() -> usize {
    1
}

/// One step: exactly one of `dns` (the name asked), `sni` (of a TLS or QUIC handshake),
/// `http_host` (globs, `*` and `?`, case-insensitive), `port` (the server port of a new TCP
/// connection; 0 is any) or `quic_port` (the server port of a new QUIC connection; 0 is any).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dns,
    Connect,
    /// A TLS handshake, or a QUIC one (named by its SNI).
    Tls,
    Http,
    /// A new QUIC connection, by its server port.
    Quic,
}

impl StepConfig {
    fn kind(&self) -> Option<Kind> {
        match (&self.dns, &self.sni, &self.http_host, &self.port, &self.quic_port) {
            (Some(_), None, None, None, None) => Some(Kind::Dns),
            (None, Some(_), None, None, None) => Some(Kind::Tls),
            (None, None, Some(_), None, None) => Some(Kind::Http),
            (None, None, None, Some(_), None) => Some(Kind::Connect),
            (None, None, None, None, Some(_)) => Some(Kind::Quic),
            _ => None,
        }
    }
}

/// Checks journeys; the error names the journey and what is wrong.
pub fn validate(journeys: &[JourneyConfig]) -> Result<(), String> {
    if journeys.len() > MAX_JOURNEYS {
        return Err(format!("at most {MAX_JOURNEYS} journeys"));
    }
    for (i, j) in journeys.iter().enumerate() {
        let name = &j.name;
        if name.is_empty() || journeys[..i].iter().any(|o| &o.name == name) {
            return Err(format!("journey {}: names must be unique and not empty", i + 1));
        }
        let names = [&j.name, &j.phase, &j.channel].into_iter().chain(j.steps.iter().map(|s| &s.name));
        if let Some(bad) = names.into_iter().find(|n| !edgeprobe_wire::report::acceptable_name(n)) {
            return Err(format!(
                "journey {name}: {bad:?} is longer than {} bytes or holds control characters",
                edgeprobe_wire::report::MAX_NAME_BYTES
            ));
        }
        if j.steps.is_empty() || j.steps.len() > MAX_STEPS {
            return Err(format!("journey {name}: needs 1 to {MAX_STEPS} steps"));
        }
        for s in &j.steps {
            if s.kind().is_none() {
                return Err(format!(
                    "journey {name}, step {:?}: give exactly one of dns, sni, http_host, port or quic_port",
                    s.name
                ));
            }
        }
        if !(j.timeout_secs.is_finite() && j.timeout_secs > 0.0 && j.timeout_secs <= 3600.0) {
            return Err(format!("journey {name}: timeout_secs must be in (0, 3600]"));
        }
        if j.count_from_step == 0 || j.count_from_step > j.steps.len() {
            return Err(format!("journey {name}: count_from_step must name one of its steps"));
        }
        if j.complete_bytes == Some(0) {
            return Err(format!("journey {name}: complete_bytes must be at least 1"));
        }
    }
    Ok(())
}

/// Glob match, `*` any run and `?` one character, ASCII case-insensitive. Linear in practice:
/// only the last `*` is ever backtracked to.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[derive(Clone, Copy, Debug)]
struct StepTimes {
    start: Timestamp,
    end: Timestamp,
}

#[derive(Debug)]
struct Episode {
    journey: u16,
    subscriber: String,
    device: Option<String>,
    /// Steps done so far, with their first and last packet times.
    done: heapless::Vec<StepTimes, MAX_STEPS>,
    /// Servers the DNS step resolved; later steps go to these.
    addresses: heapless::Vec<IpAddr, 8>,
    /// The DNS step's socket, so the A and AAAA answers of one lookup join one episode.
    lookup: Option<SocketAddr>,
    /// The address the episode's first step came from; with `device`, who the steps follow.
    client: IpAddr,
    resolver: Option<SocketAddr>,
    /// The connection the latest step used: (client, server).
    conn: Option<(SocketAddr, SocketAddr)>,
    /// Bytes down the last step's connection, once all steps are done.
    bytes_down: u64,
    service: Option<String>,
    deadline: Timestamp,
}

impl Episode {
    fn start(&self) -> Timestamp {
        self.done.first().map_or(Timestamp::ZERO, |s| s.start)
    }

    /// Whether `event` comes from the device this episode follows: by MAC where both are
    /// known (a device may look up over IPv4 and connect over IPv6), else by address. Several
    /// devices of one line reach the same CDN addresses; only the client tells their steps apart.
    fn same_client(&self, event: &Event) -> bool {
        match (&self.device, &event.device) {
            (Some(a), Some(b)) => a == b,
            _ => self.client == event.client.ip(),
        }
    }

    /// Remembers a lookup's addresses, the first 8: more only add ways to mislink.
    fn add_addresses(&mut self, addresses: &[IpAddr]) {
        for a in addresses {
            if !self.addresses.contains(a) {
                let _ = self.addresses.push(*a);
            }
        }
    }
}

fn kinds_of(journeys: &[JourneyConfig]) -> Vec<Vec<Kind>> {
    journeys.iter().map(|j| j.steps.iter().filter_map(StepConfig::kind).collect()).collect()
}

/// Follows episodes; see the module documentation.
pub struct Tracker {
    journeys: Vec<JourneyConfig>,
    kinds: Vec<Vec<Kind>>,
    open: VecDeque<Episode>,
    capacity: usize,
    evicted: u64,
    out: Vec<Event>,
    /// Episodes with every step done, waiting for their completion bytes.
    completing: usize,
    /// The earliest deadline of an open episode.
    next_deadline: Option<Timestamp>,
    /// Lookups whose failure ended an episode of a journey, so their other answer does not
    /// count again for it.
    recent_failures: heapless::Deque<(u16, SocketAddr, String), 16>,
}

impl Tracker {
    pub fn new(journeys: Vec<JourneyConfig>, capacity: usize) -> Tracker {
        Tracker {
            kinds: kinds_of(&journeys),
            journeys,
            open: VecDeque::new(),
            capacity: capacity.max(1),
            evicted: 0,
            out: Vec::new(),
            recent_failures: heapless::Deque::new(),
            completing: 0,
            next_deadline: None,
        }
    }

    /// New definitions. Open episodes of a journey defined exactly as before go on (a push that
    /// adds or changes one journey must not cut the others short); those of a journey changed
    /// or removed end unreported and count as evicted, since their steps may no longer mean
    /// what they did.
    pub fn replace(&mut self, journeys: Vec<JourneyConfig>) {
        let kept: Vec<Option<u16>> =
            self.journeys.iter().map(|old| journeys.iter().position(|new| new == old).map(|i| i as u16)).collect();
        let before = self.open.len();
        self.open.retain_mut(|e| match kept[usize::from(e.journey)] {
            Some(j) => {
                e.journey = j;
                true
            }
            None => false,
        });
        self.evicted += (before - self.open.len()) as u64;
        self.recent_failures.clear();
        self.kinds = kinds_of(&journeys);
        self.journeys = journeys;
        self.refresh();
    }

    /// Ends the open episodes of subscribers who opted out, unreported: they are not measured.
    pub fn forget(&mut self, subscribers: &[std::sync::Arc<str>]) {
        self.open.retain(|e| !subscribers.iter().any(|s| **s == *e.subscriber));
        self.refresh();
    }

    /// No journeys are configured: the probe need not show it anything.
    pub fn is_empty(&self) -> bool {
        self.journeys.is_empty()
    }

    /// Some episode is open, so a closing connection may end it.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Whether an episode waits for payload, so the probe can skip the lookup on most packets.
    pub fn completing(&self) -> bool {
        self.completing > 0
    }

    /// Whether an open episode's time has run out by `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        self.next_deadline.is_some_and(|d| d <= now)
    }

    /// The earliest deadline of an open episode.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.next_deadline
    }

    /// Recounts what `completing` and `due` answer from; after every change to `open`.
    fn refresh(&mut self) {
        let kinds = &self.kinds;
        self.completing = self.open.iter().filter(|e| e.done.len() == kinds[usize::from(e.journey)].len()).count();
        self.next_deadline = self.open.iter().map(|e| e.deadline).min();
    }

    /// Episodes evicted because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Finished episodes, as events.
    pub fn take_finished(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.out)
    }

    /// One measurement event; `addresses` are the servers a DNS answer named.
    pub fn on_event(&mut self, event: &Event, addresses: &[IpAddr]) {
        if self.journeys.is_empty() {
            return;
        }
        let Some((kind, name, start, failure)) = step_of(event) else { return };
        let end = event.ts;
        // A QUIC handshake is a step of either kind: `sni` names it, `quic_port` finds it.
        let quic = matches!(event.detail, Detail::Quic(_)).then_some(Kind::Quic);
        for kind in std::iter::once(kind).chain(quic) {
            for j in 0..self.journeys.len() {
                // The other answer of an episode's own lookup (A and AAAA) widens its first step.
                if kind == Kind::Dns {
                    if let Some(i) = self.same_lookup(j, event) {
                        let e = &mut self.open[i];
                        e.done[0].end = e.done[0].end.max(end);
                        e.add_addresses(addresses);
                        continue;
                    }
                    let failed_before = |(fj, c, q): &(u16, SocketAddr, String)| {
                        usize::from(*fj) == j && *c == event.client && Some(q) == name.as_ref()
                    };
                    if self.recent_failures.iter().any(failed_before) {
                        continue; // the second failed answer of a lookup already counted
                    }
                }
                // An open episode of this subscriber and journey waiting for this step takes it.
                if let Some(i) = self.waiting(j, kind, name.as_deref(), event) {
                    let e = &mut self.open[i];
                    let _ = e.done.push(StepTimes { start, end });
                    if e.device.is_none() {
                        e.device = event.device.clone();
                    }
                    if kind != Kind::Dns {
                        e.conn = Some((event.client, event.server));
                    }
                    if failure.is_some() {
                        self.finish(i, EpisodeOutcome::Failed, end, failure.clone(), false);
                    } else {
                        self.after_step(i, end);
                    }
                    continue;
                }
                // Else the first step starts an episode.
                if self.kinds[j][0] != kind || !matches(&self.journeys[j].steps[0], name.as_deref(), event) {
                    continue;
                }
                if self.open.len() >= self.capacity {
                    self.open.pop_front();
                    self.evicted += 1;
                }
                let timeout = (self.journeys[j].timeout_secs * 1e9) as u64;
                let mut e = Episode {
                    journey: j as u16,
                    subscriber: event.subscriber.clone(),
                    device: event.device.clone(),
                    done: heapless::Vec::new(),
                    addresses: heapless::Vec::new(),
                    lookup: (kind == Kind::Dns).then_some(event.client),
                    client: event.client.ip(),
                    resolver: (kind == Kind::Dns).then_some(event.server),
                    conn: (kind != Kind::Dns).then_some((event.client, event.server)),
                    bytes_down: 0,
                    service: name.clone(),
                    deadline: start.add_nanos(timeout),
                };
                let _ = e.done.push(StepTimes { start, end });
                e.add_addresses(addresses);
                self.open.push_back(e);
                let i = self.open.len() - 1;
                if failure.is_some() {
                    if let (Kind::Dns, Some(q)) = (kind, &name) {
                        if self.recent_failures.is_full() {
                            self.recent_failures.pop_front();
                        }
                        let _ = self.recent_failures.push_back((j as u16, event.client, q.clone()));
                    }
                    self.finish(i, EpisodeOutcome::Failed, end, failure.clone(), false);
                } else {
                    self.after_step(i, end);
                }
            }
        }
        self.refresh();
    }

    /// The open episode of journey `j` whose lookup this DNS answer belongs to.
    fn same_lookup(&self, j: usize, event: &Event) -> Option<usize> {
        let Detail::Dns(d) = &event.detail else { return None };
        self.open.iter().position(|e| {
            usize::from(e.journey) == j
                && e.done.len() == 1
                && e.lookup == Some(event.client)
                && e.service.as_deref() == Some(d.query.as_str())
                && e.subscriber == event.subscriber
        })
    }

    /// Payload down `(client, server)`; the probe calls this only while `completing`.
    pub fn on_payload(&mut self, client: SocketAddr, server: SocketAddr, bytes: u64, ts: Timestamp) {
        let mut i = 0;
        while i < self.open.len() {
            let e = &mut self.open[i];
            let j = usize::from(e.journey);
            if e.conn == Some((client, server))
                && e.done.len() == self.kinds[j].len()
                && ts >= e.done[e.done.len() - 1].end
            {
                e.bytes_down += bytes;
                let need = self.journeys[j].complete_bytes.unwrap_or(1);
                if e.bytes_down >= need {
                    self.finish(i, EpisodeOutcome::Ok, ts, None, false);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// The connection `(client, server)` is closing (FIN or RST) from the client's side or the
    /// server's. An episode still waiting on it was given up, or cut off.
    pub fn on_close(&mut self, client: SocketAddr, server: SocketAddr, by_client: bool, ts: Timestamp) {
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].conn == Some((client, server)) {
                let step = self.open[i].done.len();
                let j = usize::from(self.open[i].journey);
                let during = self.step_name(j, step);
                if by_client {
                    let why = format!("the client closed the connection during {during}");
                    self.finish(i, EpisodeOutcome::Timeout, ts, Some(why), true);
                } else {
                    let why = format!("the server closed the connection during {during}");
                    self.finish(i, EpisodeOutcome::Failed, ts, Some(why), false);
                }
                continue;
            }
            i += 1;
        }
    }

    /// Ends the episodes whose time ran out by `now`.
    pub fn poll_timeouts(&mut self, now: Timestamp) {
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].deadline <= now {
                let deadline = self.open[i].deadline;
                self.finish(i, EpisodeOutcome::Timeout, deadline, Some("no progress within the timeout".into()), false);
                continue;
            }
            i += 1;
        }
    }

    /// The capture ended: every open episode is over.
    pub fn finish_all(&mut self, now: Timestamp) {
        while !self.open.is_empty() {
            let at = self.open[0].deadline.min(now);
            self.finish(0, EpisodeOutcome::Timeout, at, Some("capture ended".into()), false);
        }
    }

    fn step_name(&self, j: usize, step: usize) -> String {
        self.journeys[j].steps.get(step).map_or_else(|| "completion".to_string(), |s| s.name.clone())
    }

    /// After step `i`'s latest step: done when the last step completes on its own first byte.
    fn after_step(&mut self, i: usize, end: Timestamp) {
        let e = &self.open[i];
        let j = usize::from(e.journey);
        let kinds = &self.kinds[j];
        if e.done.len() == kinds.len()
            && self.journeys[j].complete_bytes.is_none()
            && matches!(kinds[kinds.len() - 1], Kind::Http | Kind::Dns)
        {
            // An HTTP step ends at the response's first byte; a lookup at its answer.
            self.finish(i, EpisodeOutcome::Ok, end, None, false);
        }
    }

    /// The open episode of journey `j` that waits for this step, oldest first.
    fn waiting(&self, j: usize, kind: Kind, name: Option<&str>, event: &Event) -> Option<usize> {
        let kinds = &self.kinds[j];
        self.open.iter().position(|e| {
            if usize::from(e.journey) != j || e.subscriber != event.subscriber || !e.same_client(event) {
                return false;
            }
            let next = e.done.len();
            if next >= kinds.len() || kinds[next] != kind || !matches(&self.journeys[j].steps[next], name, event) {
                return false;
            }
            match kind {
                Kind::Dns => true,
                // A new connection goes to the servers the lookup named, if there was one.
                Kind::Connect | Kind::Quic => e.addresses.is_empty() || e.addresses.contains(&event.server.ip()),
                // TLS and HTTP ride the step's connection, or a new one to the same servers.
                Kind::Tls | Kind::Http => match e.conn {
                    Some(c) if kinds[next - 1] == Kind::Connect => c == (event.client, event.server),
                    _ => e.addresses.is_empty() || e.addresses.contains(&event.server.ip()),
                },
            }
        })
    }

    fn finish(&mut self, i: usize, outcome: EpisodeOutcome, ts: Timestamp, why: Option<String>, abandoned: bool) {
        let e = self.open.remove(i).expect("index in range");
        self.emit(e, outcome, ts, why, abandoned);
        self.refresh();
    }

    fn emit(&mut self, e: Episode, outcome: EpisodeOutcome, ts: Timestamp, why: Option<String>, abandoned: bool) {
        let j = usize::from(e.journey);
        let journey = &self.journeys[j];
        // Not yet a visit: a lookup nothing followed, or one that failed (`done` holds the
        // failed step).
        if outcome != EpisodeOutcome::Ok && e.done.len() < journey.count_from_step {
            return;
        }
        let start = e.start();
        let steps = e
            .done
            .iter()
            .zip(&journey.steps)
            .map(|(t, s)| EpisodeStep {
                name: s.name.clone(),
                offset_us: t.start.micros_since(start),
                duration_us: t.end.micros_since(t.start),
            })
            .collect();
        let failed_step = match outcome {
            EpisodeOutcome::Ok => None,
            EpisodeOutcome::Failed => Some(self.step_name(j, e.done.len().saturating_sub(1))),
            EpisodeOutcome::Timeout => Some(self.step_name(j, e.done.len())),
        };
        let (client, server) = e
            .conn
            .or(e.lookup.zip(e.resolver))
            .unwrap_or((SocketAddr::from(([0, 0, 0, 0], 0)), SocketAddr::from(([0, 0, 0, 0], 0))));
        self.out.push(Event {
            detail: Detail::Episode(EpisodeEvent {
                journey: journey.name.clone(),
                phase: journey.phase.clone(),
                channel: journey.channel.clone(),
                outcome,
                latency_us: (outcome != EpisodeOutcome::Timeout).then(|| ts.micros_since(start)),
                steps,
                failed_step,
                reason: why,
                abandoned,
            }),
            ts,
            subscriber: e.subscriber,
            device: e.device,
            client,
            server,
            service: e.service,
        });
    }
}

fn matches(step: &StepConfig, name: Option<&str>, event: &Event) -> bool {
    let pattern = step.dns.as_ref().or(step.sni.as_ref()).or(step.http_host.as_ref());
    match (pattern, step.port.or(step.quic_port)) {
        (Some(p), _) => name.is_some_and(|n| glob(p, n)),
        (None, Some(port)) => port == 0 || event.server.port() == port,
        (None, None) => false,
    }
}

/// What step an event is: its kind, the name it matches on, its first packet's time, and why it
/// failed, if it did.
fn step_of(event: &Event) -> Option<(Kind, Option<String>, Timestamp, Option<String>)> {
    let back = |us: Option<u64>| Timestamp(event.ts.as_nanos().saturating_sub(us.unwrap_or(0).saturating_mul(1000)));
    Some(match &event.detail {
        Detail::Dns(d) => {
            let failure = (d.rcode != "NOERROR").then(|| format!("DNS {}", d.rcode));
            (Kind::Dns, Some(d.query.clone()), back(d.latency_us), failure)
        }
        Detail::TcpConnect(c) => {
            let failure = match c.outcome {
                ConnectOutcome::Established => None,
                ConnectOutcome::Refused => Some("connection refused".to_string()),
                ConnectOutcome::Timeout => Some("connection timed out".to_string()),
            };
            (Kind::Connect, event.service.clone(), back(c.connect_us), failure)
        }
        Detail::Tls(t) => {
            let failure = match t.outcome {
                TlsOutcome::Ok => None,
                TlsOutcome::Alert => Some("TLS alert".to_string()),
                TlsOutcome::Incomplete => Some("TLS handshake incomplete".to_string()),
            };
            (Kind::Tls, t.sni.clone(), back(t.handshake_us), failure)
        }
        Detail::Quic(q) => {
            let failure = (q.outcome == QuicOutcome::Incomplete).then(|| "QUIC handshake incomplete".to_string());
            (Kind::Tls, q.sni.clone(), back(q.handshake_us), failure)
        }
        Detail::Http(h) => {
            let failure = (h.status >= 400).then(|| format!("HTTP {}", h.status));
            let host = h.host.as_deref().map(|h| crate::analyze::services::host_service(h).to_ascii_lowercase());
            (Kind::Http, host, back(Some(h.ttfb_us)), failure)
        }
        Detail::FlowEnd(_) | Detail::Episode(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.lab.example", "portal.LAB.example"));
        assert!(glob("portal?.example", "portal1.example"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("*.example", "example"));
        assert!(glob("video*", "video.lab.example"));
    }

    #[test]
    fn validation_names_the_problem() {
        let step = |dns: Option<&str>, port: Option<u16>| StepConfig {
            name: "s".into(),
            dns: dns.map(Into::into),
            port,
            ..Default::default()
        };
        let j = |steps: Vec<StepConfig>| JourneyConfig {
            name: "j".into(),
            phase: String::new(),
            channel: String::new(),
            steps,
            complete_bytes: None,
            timeout_secs: 10.0,
            count_from_step: 1,
        };
        assert!(validate(&[j(vec![step(Some("a"), None)])]).is_ok());
        assert!(validate(&[j(vec![step(Some("a"), Some(443))])]).unwrap_err().contains("exactly one"));
        assert!(validate(&[j(vec![])]).unwrap_err().contains("steps"));
        assert!(
            validate(&[j(vec![step(None, Some(1))]), j(vec![step(None, Some(1))])]).unwrap_err().contains("unique")
        );
    }
}
