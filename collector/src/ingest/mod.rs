//! Ingest: a shared subscription to every agent's reports, and every agent's state. Each message is
//! decoded and checked here; what is good goes to the writer, and the broker gets its PUBACK
//! only once the writer has committed it. So a collector that stops, crashes or loses its
//! database mid-stream loses nothing the broker delivered: the broker sends the unacknowledged
//! messages again, and the store's key drops the ones that did land.
//!
//! Rejected messages (garbage, truncated, a wrong version, too large, an `agent_id` that is not
//! the topic's) are counted by reason and acknowledged at once, so they are not redelivered.

pub mod writer;

use crate::config::BrokerConfig;
use crate::metrics::{Metrics, Reject};
use crate::model::AgentState;
use crate::store::Incoming;
use edgeprobe_wire::mqtt::{TOPIC_PREFIX, Topic, parse_topic, parse_url, tls_config};
use edgeprobe_wire::{Codec, DecodeError};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What the writer stores; `ack` goes back to the broker once it is committed.
pub enum Work {
    Report { report: Box<Incoming>, received_ms: i64, ack: Publish },
    State { agent_id: String, state: Box<AgentState>, received_ms: i64, ack: Publish },
}

impl Work {
    /// What it holds in memory, near enough: a report's encoded lines, a state's payload.
    fn bytes(&self) -> usize {
        match self {
            Work::Report { report, .. } => report.weight(),
            Work::State { ack, .. } => ack.payload.len(),
        }
    }
}

/// Work with its share of the queue's byte budget, given back when the writer drops it.
pub struct Queued {
    pub work: Work,
    /// As counted against the budget and in the `queue_bytes` gauge.
    pub bytes: usize,
    _room: OwnedSemaphorePermit,
}

impl Queued {
    /// The acknowledgement to send once stored; the budget's room is given back.
    pub fn into_ack(self) -> Publish {
        match self.work {
            Work::Report { ack, .. } | Work::State { ack, .. } => ack,
        }
    }
}

/// Bounds the queue by the bytes its messages hold, in KiB-sized permits.
pub struct Budget {
    room: Arc<Semaphore>,
    kib: u32,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        let kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX).clamp(1, Semaphore::MAX_PERMITS as u32);
        Budget { room: Arc::new(Semaphore::new(kib as usize)), kib }
    }

    /// Waits for room for `work`; a message larger than the whole budget waits for all of it.
    async fn reserve(&self, work: Work, metrics: &Metrics) -> Queued {
        let bytes = work.bytes();
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.kib);
        let room = match self.room.clone().try_acquire_many_owned(kib) {
            Ok(room) => room,
            Err(_) => {
                metrics.queue_full.fetch_add(1, Relaxed);
                self.room.clone().acquire_many_owned(kib).await.expect("the budget is never closed")
            }
        };
        Queued { work, bytes, _room: room }
    }
}

/// Payloads up to this size reach the decoder, which refuses what exceeds the report limit;
/// larger packets would make the client drop the connection.
const MAX_PACKET: usize = 16 << 20;

pub fn mqtt_options(config: &BrokerConfig) -> anyhow::Result<MqttOptions> {
    let url = if config.embedded { format!("mqtt://{}", config.embedded_listen) } else { config.url.clone() };
    let (tls, host, port) = parse_url(&url)?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options.set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)));
    // The embedded broker's sessions end with the process anyway (and rumqttd mishandles
    // persistent sessions that hold shared subscriptions).
    options.set_clean_session(config.embedded || !config.persistent_session);
    options.set_manual_acks(true);
    // Out go the pushed agent configs.
    options.set_max_packet_size(MAX_PACKET, edgeprobe_core::config::MAX_PUSHED_CONFIG_BYTES + 4096);
    options.set_inflight(100);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if tls {
        let ca = config.ca_file.as_deref().ok_or_else(|| anyhow::anyhow!("mqtts:// needs broker.ca_file"))?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(ca, None)?))));
    }
    Ok(options)
}

/// Reports come through a shared subscription, so collectors in a group split them. Agent
/// states do not: a shared subscription gets no retained messages (so a starting collector
/// would not learn who is online), and splitting one agent's birth and will between two
/// collectors could store them in the wrong order. Every collector sees every state, in order.
pub fn subscriptions(config: &BrokerConfig) -> [String; 2] {
    [format!("$share/{}/{TOPIC_PREFIX}+/report", config.share_group), format!("{TOPIC_PREFIX}+/state")]
}

/// The windows ingest admits, besides the schema's own rules (`Report::check`): none ending
/// further ahead of the collector's clock than the agents' clocks may be off, none older
/// than retention keeps.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub max_ahead_ms: i64,
    /// `None` keeps everything.
    pub max_age_ms: Option<i64>,
}

impl Windows {
    pub fn new(config: &crate::config::CollectorConfig) -> Windows {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let days = config.storage.retention_days;
        Windows {
            max_ahead_ms: ms(config.broker.max_clock_skew_secs),
            max_age_ms: (days > 0).then(|| ms(days.saturating_mul(86_400))),
        }
    }

    fn admits(&self, start: u64, end: u64, received_ms: i64) -> bool {
        let (start, end) = (i64::try_from(start).unwrap_or(i64::MAX), i64::try_from(end).unwrap_or(i64::MAX));
        end <= received_ms.saturating_add(self.max_ahead_ms)
            && self.max_age_ms.is_none_or(|age| start >= received_ms.saturating_sub(age))
    }
}

/// Classifies one message: work for the writer, nothing to do (an emptied retained state), or
/// a rejection to count. Only work waits for the writer before it is acknowledged.
pub fn classify(
    publish: &Publish,
    received_ms: i64,
    codec: &mut Codec,
    windows: &Windows,
) -> Result<Option<Work>, Reject> {
    match parse_topic(&publish.topic) {
        Some(Topic::Report(agent)) => {
            let (report, spans) = codec.decode_with_lines(&publish.payload).map_err(|e| match e {
                DecodeError::Empty | DecodeError::UnknownEncoding(_) => Reject::Garbage,
                DecodeError::TooLarge(_) => Reject::Oversized,
                DecodeError::Version(_) => Reject::Version,
                DecodeError::Histogram(_) => Reject::Histogram,
                DecodeError::Count(_) => Reject::Count,
                DecodeError::Window(_) => Reject::Window,
                // Names past what agents write, ids that are no topic level.
                DecodeError::Field(_) => Reject::Malformed,
                _ => Reject::Malformed,
            })?;
            if report.agent_id != agent {
                return Err(Reject::AgentMismatch);
            }
            if !windows.admits(report.window_start, report.window_end, received_ms) {
                return Err(Reject::Window);
            }
            // The acknowledgement needs only the packet id. Of the payload, only a packed
            // report's lines are kept (see `Incoming::new`).
            let mut ack = publish.clone();
            ack.payload = Default::default();
            let incoming = Incoming::new(report, codec, Some((&publish.payload, &spans)));
            Ok(Some(Work::Report { report: Box::new(incoming), received_ms, ack }))
        }
        Some(Topic::State(_)) if publish.payload.is_empty() => Ok(None),
        Some(Topic::State(agent)) => {
            let state: Box<AgentState> = serde_json::from_slice(&publish.payload).map_err(|_| Reject::Topic)?;
            Ok(Some(Work::State { agent_id: agent.to_string(), state, received_ms, ack: publish.clone() }))
        }
        None => Err(Reject::Topic),
    }
}

/// Runs the MQTT side until `shutdown` resolves: reads, classifies and queues messages, and
/// acknowledges what the writer committed (arriving on `committed`).
pub async fn run(
    config: crate::config::CollectorConfig,
    work: mpsc::Sender<Queued>,
    budget: Budget,
    mut committed: mpsc::UnboundedReceiver<Publish>,
    mut outgoing: mpsc::Receiver<crate::http::push::Outgoing>,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let windows = Windows::new(&config);
    let config = config.broker;
    let options = mqtt_options(&config)?;
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let acker = client.clone();
    let ack_task = tokio::spawn(async move {
        while let Some(p) = committed.recv().await {
            if acker.ack(&p).await.is_err() {
                return;
            }
        }
    });
    let topics = subscriptions(&config);
    let mut codec = Codec::default();
    let mut backoff = Duration::from_millis(250);
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            Some((topic, payload)) = outgoing.recv() => {
                // Retained, so an agent that connects later still gets it; a publish lost
                // here is sent again by the push loop.
                let _ = client.try_publish(topic, QoS::AtLeastOnce, true, payload);
                continue;
            }
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(250);
                for topic in &topics {
                    client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Ready only once subscribed: with a clean session, reports published before
                // the subscription are not kept for this collector.
                metrics.mqtt_connected.store(1, Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = crate::clock::now_ms();
                let is_report = matches!(parse_topic(&p.topic), Some(Topic::Report(_)));
                if is_report {
                    metrics.received.fetch_add(1, Relaxed);
                }
                match classify(&p, now, &mut codec, &windows) {
                    Ok(Some(w)) => {
                        // Waiting here when the writer is behind stops reading from the broker,
                        // which holds the rest: memory stays bounded by `queue_capacity` and
                        // `queue_bytes`.
                        let queued = budget.reserve(w, &metrics).await;
                        metrics.queue_depth.fetch_add(1, Relaxed);
                        metrics.queue_bytes.fetch_add(queued.bytes as i64, Relaxed);
                        let queued = match work.try_send(queued) {
                            Ok(()) => None,
                            Err(mpsc::error::TrySendError::Full(q)) => {
                                metrics.queue_full.fetch_add(1, Relaxed);
                                Some(q)
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        };
                        if let Some(q) = queued {
                            if work.send(q).await.is_err() {
                                break;
                            }
                        }
                    }
                    Ok(None) => {
                        let _ = client.ack(&p).await;
                    }
                    Err(why) => {
                        metrics.reject(why);
                        let _ = client.ack(&p).await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if metrics.mqtt_connected.swap(0, Relaxed) == 1 {
                    metrics.mqtt_reconnects.fetch_add(1, Relaxed);
                    eprintln!("edgeprobe-collector: broker connection lost: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                // The embedded broker is restarted within a second or so; messages agents
                // publish before this collector has subscribed again have no one to go to.
                let most = if config.embedded { Duration::from_secs(1) } else { Duration::from_secs(10) };
                backoff = (backoff * 2).min(most);
            }
        }
    }
    // Give the last acknowledgements a moment to go out before disconnecting.
    drop(work);
    let _ = tokio::time::timeout(Duration::from_secs(2), ack_task).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async { while eventloop.poll().await.is_ok() {} }).await;
    Ok(())
}
