//! The edgeprobe collector: ingests agents' window reports from MQTT, stores them (SQLite or
//! PostgreSQL), joins them with customer records, correlates degradations into incidents,
//! suggests next best actions, and serves the NOC API.
//!
//! `serve` wires the parts together: ingest (MQTT) → writer thread (storage, evaluation) and
//! the HTTP API on its own store connection.

pub mod actions;
pub mod agent_config;
pub mod broker;
pub mod clock;
pub mod config;
pub mod console;
pub mod correlate;
pub mod customers;
pub mod delivery;
pub mod figures;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod outcomes;
pub mod quality;
pub mod store;
#[doc(hidden)]
pub mod testing;

use anyhow::Context;
use http::{api, https, push};
use std::sync::Arc;

/// The JSON API and the console's pages on one router.
pub fn router(state: http::state::Shared) -> axum::Router {
    api::router(state.clone()).merge(console::router(state.clone())).with_state(state)
}

/// Runs the collector until `shutdown` resolves. The HTTP API listens on `listener`, so tests
/// can bind port 0.
pub async fn serve(
    config: config::CollectorConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // With logins on the embedded broker, the collector needs one too; without one given, it
    // makes one up for itself at each start.
    let mut config = config;
    let b = &mut config.broker;
    if b.embedded && !b.embedded_users.is_empty() && b.username.is_none() {
        b.username = Some(format!("{}-self", b.client_id));
        b.password = Some(broker::random_hex()?);
    }
    // A certificate that does not load stops the start, not the first browser.
    let tls = config.http.tls_files().map(|(cert, key)| https::server_config(cert, key)).transpose()?;
    let metrics = Arc::new(metrics::Metrics::default());
    // Stopped after ingest, so its last acknowledgements reach the broker.
    let (broker_stop, broker_stopped) = tokio::sync::watch::channel(false);
    let broker =
        config.broker.embedded.then(|| broker::start(&config.broker, metrics.clone(), broker_stopped)).transpose()?;
    let pushed = config.agent_config.file.as_deref().map(agent_config::load).transpose()?;
    let url = config.storage.url.clone();
    let (writer_store, read_store) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let w = store::Store::open(&url).with_context(|| format!("storage {url}"))?;
        let mut r = store::Store::open(&url).with_context(|| format!("storage {url}"))?;
        if let Some(p) = &pushed {
            if agent_config::install(&mut r, p, clock::now_ms())? {
                eprintln!("edgeprobe-collector: agent config {} installed for pushing", p.version);
            }
        }
        Ok((w, r))
    })
    .await??;
    let (work_tx, work_rx) = tokio::sync::mpsc::channel(config.broker.queue_capacity);
    let (committed_tx, committed_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = ingest::writer::Writer {
        store: writer_store,
        config: config.clone(),
        metrics: metrics.clone(),
        failing: Default::default(),
    };
    let writer_thread =
        std::thread::Builder::new().name("writer".into()).spawn(move || writer.run(work_rx, committed_tx))?;

    // Webhook senders, on their own store connections; they stop when this is dropped.
    let _webhooks = delivery::start(&config, metrics.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (push_tx, push_rx) = tokio::sync::mpsc::channel(256);
    let ingest = tokio::spawn(ingest::run(
        config.clone(),
        work_tx,
        ingest::Budget::new(config.broker.queue_bytes),
        committed_rx,
        push_rx,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let wake = Arc::new(tokio::sync::Notify::new());
    let (incidents_tx, incidents) = tokio::sync::watch::channel(0);
    let state = Arc::new(http::state::ApiState::new(read_store, config, metrics, wake.clone(), incidents));
    tokio::spawn(push::run(state.clone(), push_tx, wake, stop_rx.clone()));
    tokio::spawn(console::watch_incidents(state.clone(), incidents_tx));
    let mut http_stop = stop_rx.clone();
    let stopped = async move {
        let _ = http_stop.changed().await;
    };
    let limits = http::Limits::new(&state.config.http);
    let metrics = state.metrics.clone();
    let router = http::harden(router(state), limits);
    let http = match tls {
        Some(tls) => {
            let listener = https::TlsListener::new(listener, tls, limits.max_connections)?;
            tokio::spawn(http::serve(listener, router, limits, metrics, stopped))
        }
        None => tokio::spawn(http::serve(listener, router, limits, metrics, stopped)),
    };
    shutdown.await;
    let _ = stop_tx.send(true);
    let ingested = ingest.await;
    let _ = broker_stop.send(true);
    if let Some(broker) = broker {
        let _ = broker.await;
    }
    let _ = http.await;
    // The writer drains what ingest handed it, then stops.
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    ingested??;
    Ok(())
}
