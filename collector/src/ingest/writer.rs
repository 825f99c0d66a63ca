//! The writer: the one thread that writes measurements. It takes what ingest decoded in
//! batches, stores each batch in one transaction, and only then releases the batch's
//! acknowledgements to the broker. Between batches it evaluates the windows that are ready,
//! watches for silent agents and applies retention.
//!
//! A failed transaction (database gone, disk full) is counted and retried with backoff; nothing
//! is acknowledged meanwhile, so nothing is lost, and ingest stops reading from the broker once
//! the queue is full.

use crate::config::CollectorConfig;
use crate::correlate;
use crate::ingest::{Queued, Work};
use crate::metrics::Metrics;
use crate::store::{Store, Stored};
use rumqttc::Publish;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Reports whose window ended longer ago than this on arrival are backfill, not live.
const LIVE_WITHIN_MS: i64 = 3_600_000;

const BATCH: usize = 256;
const UPKEEP_EVERY: Duration = Duration::from_millis(200);

pub struct Writer {
    pub store: Store,
    pub config: CollectorConfig,
    pub metrics: Arc<Metrics>,
    /// Windows whose evaluation failed while the database answered, and how often in a row.
    pub failing: std::collections::HashMap<i64, u32>,
}

/// Evaluations of one window that may fail in a row before it is set aside: enough to ride out
/// a lock or a dropped connection, few enough that stored data cannot hold up the windows after
/// it (or stop a start) for more than a few ticks.
const TRIES: u32 = 3;

impl Writer {
    /// Runs until `work` is closed and drained.
    pub fn run(mut self, mut work: mpsc::Receiver<Queued>, committed: mpsc::UnboundedSender<Publish>) {
        let tick = Duration::from_secs(self.config.correlation.tick_secs);
        let mut next_tick = Instant::now();
        let mut next_prune = Instant::now();
        let mut next_agents = Instant::now();
        let mut batch: Vec<Queued> = Vec::with_capacity(BATCH);
        let mut failures = 0u32;
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a timer runtime");
        let upkeep = self.start_upkeep();
        loop {
            if batch.is_empty() {
                let wait = next_tick.saturating_duration_since(Instant::now());
                match recv_timeout(&rt, &mut work, wait) {
                    Recv::Item(w) => batch.push(w),
                    Recv::Timeout => {}
                    Recv::Closed => break,
                }
                while batch.len() < BATCH {
                    match work.try_recv() {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                match self.store_batch(&batch) {
                    Ok(()) => {
                        failures = 0;
                        self.metrics.queue_depth.fetch_sub(batch.len() as i64, Relaxed);
                        for q in batch.drain(..) {
                            // Counted out before its room is given back, so the gauge never
                            // shows more than the budget.
                            self.metrics.queue_bytes.fetch_sub(q.bytes as i64, Relaxed);
                            let _ = committed.send(q.into_ack());
                        }
                    }
                    Err(e) => {
                        self.metrics.storage_errors.fetch_add(1, Relaxed);
                        failures += 1;
                        eprintln!("edgeprobe-collector: storing {} messages failed, will retry: {e}", batch.len());
                        std::thread::sleep(Duration::from_millis(200 << failures.min(5)));
                        continue;
                    }
                }
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + tick;
                // Silent agents matter on the scale of minutes; reading every agent is not free.
                let agents = Instant::now() >= next_agents;
                if agents {
                    next_agents = Instant::now() + tick.max(Duration::from_secs(10));
                }
                if let Err(e) = self.evaluate(crate::clock::now_ms(), agents) {
                    self.metrics.storage_errors.fetch_add(1, Relaxed);
                    eprintln!("edgeprobe-collector: evaluation failed, will retry: {e}");
                }
                if Instant::now() >= next_prune {
                    next_prune = Instant::now() + Duration::from_secs(3600);
                    self.prune();
                }
            }
        }
        // Drained: one last evaluation, so a clean stop leaves nothing ready unevaluated.
        let _ = self.evaluate(crate::clock::now_ms(), true);
        if let Some((stop, thread)) = upkeep {
            drop(stop);
            let _ = thread.join();
        }
    }

    /// Runs the store's upkeep (SQLite's checkpoints) on a thread of its own until the returned
    /// sender is dropped.
    fn start_upkeep(&mut self) -> Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
        let mut task = match self.store.upkeep() {
            Ok(Some(task)) => task,
            Ok(None) => return None,
            Err(e) => {
                // The writer checkpoints for itself then, as SQLite does by default.
                eprintln!("edgeprobe-collector: background checkpoints unavailable: {e}");
                return None;
            }
        };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let metrics = self.metrics.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(UPKEEP_EVERY) {
                    if let Err(e) = task() {
                        metrics.storage_errors.fetch_add(1, Relaxed);
                        eprintln!("edgeprobe-collector: checkpoint failed: {e}");
                    }
                }
            })
            .ok()?;
        Some((stop, thread))
    }

    fn store_batch(&mut self, batch: &[Queued]) -> crate::store::Result<()> {
        // Lag is how far behind live ingest runs: over reports whose window ended within the
        // hour before they arrived. Older ones were spooled through an outage or replayed;
        // they are counted apart rather than read as a collector falling behind.
        let mut lag = None;
        let mut backfill = 0;
        let mut batch_reports: Vec<(&crate::store::Incoming, i64)> = Vec::new();
        for w in batch {
            if let Work::Report { report, received_ms, .. } = &w.work {
                let behind = received_ms.saturating_sub(i64::try_from(report.report.window_end).unwrap_or(i64::MAX));
                if behind < LIVE_WITHIN_MS {
                    lag = lag.max(Some(behind.max(0)));
                } else {
                    backfill += 1;
                }
                batch_reports.push((report, *received_ms));
            }
        }
        let reports = self.store.transaction(false, |store| {
            let reports = store.store_reports_in_tx(&batch_reports)?;
            for w in batch {
                if let Work::State { agent_id, state, received_ms, ack } = &w.work {
                    // MQTT sets the flag only on retained messages sent for a new subscription.
                    store.record_state(agent_id, state, *received_ms, ack.retain)?;
                }
            }
            Ok(reports)
        })?;
        // A late report's journeys still count in its window's group figures.
        let late: std::collections::BTreeSet<i64> = batch_reports
            .iter()
            .zip(&reports)
            .filter(|((r, _), s)| **s == Stored::AfterEvaluation && r.lines.iter().any(|l| l.journeys))
            .map(|((r, _), _)| r.report.window_start as i64)
            .collect();
        for window in late {
            if let Err(e) = correlate::refresh_journey_stats(&mut self.store, window) {
                eprintln!("edgeprobe-collector: journey figures of window {window}: {e}");
                self.metrics.storage_errors.fetch_add(1, Relaxed);
            }
        }
        let metrics = &self.metrics;
        for r in &reports {
            match r {
                Stored::New => metrics.stored.fetch_add(1, Relaxed),
                Stored::Duplicate => metrics.duplicates.fetch_add(1, Relaxed),
                Stored::AfterEvaluation => {
                    metrics.stored.fetch_add(1, Relaxed);
                    metrics.late_after_evaluation.fetch_add(1, Relaxed)
                }
            };
        }
        let states = batch.iter().filter(|w| matches!(w.work, Work::State { .. })).count();
        metrics.states.fetch_add(states as u64, Relaxed);
        if let Some(lag) = lag {
            metrics.ingest_lag_ms.store(lag, Relaxed);
        }
        metrics.backfill.fetch_add(backfill, Relaxed);
        Ok(())
    }

    /// Evaluates every ready window, oldest first, then (if `agents`) the agents. A window
    /// whose evaluation fails is retried at the next ticks; after `TRIES` failures in a row
    /// it is quarantined (left unevaluated, its reports kept for inspection) and the windows
    /// after it go on.
    pub fn evaluate(&mut self, now_ms: i64, agents: bool) -> crate::store::Result<()> {
        let c = &self.config.correlation;
        let (grace, settle, parts) = (c.grace_secs as i64, c.settle_secs as i64, c.parts_wait_secs as i64);
        let ready = self.store.ready_windows(now_ms, grace * 1000, settle * 1000, parts * 1000)?;
        for window in ready {
            match correlate::evaluate_window(&mut self.store, &self.config, window, now_ms) {
                Ok(summary) => {
                    self.failing.remove(&window.0);
                    if let Some(s) = summary {
                        self.metrics.windows_evaluated.fetch_add(1, Relaxed);
                        self.metrics.unknown_subscribers.fetch_add(s.unknown_subscribers, Relaxed);
                        self.metrics.incidents_opened.fetch_add(s.opened, Relaxed);
                        self.metrics.incidents_resolved.fetch_add(s.resolved, Relaxed);
                        self.metrics.deliveries_dropped.fetch_add(s.deliveries_dropped, Relaxed);
                    }
                }
                Err(e) => {
                    self.metrics.evaluation_failures.fetch_add(1, Relaxed);
                    let tries = self.failing.entry(window.0).or_default();
                    *tries += 1;
                    if *tries < TRIES {
                        // Later windows wait: incidents open and resolve in window order.
                        return Err(e);
                    }
                    // Only a database that answers may set a window aside.
                    self.store.quarantine_window(window.0)?;
                    self.failing.remove(&window.0);
                    self.metrics.windows_quarantined.fetch_add(1, Relaxed);
                    eprintln!(
                        "edgeprobe-collector: window {} quarantined after {TRIES} failed evaluations, going on: {e}",
                        window.0
                    );
                }
            }
        }
        if agents {
            let dropped = correlate::evaluate_agents(&mut self.store, &self.config, now_ms)?;
            self.metrics.deliveries_dropped.fetch_add(dropped, Relaxed);
        }
        self.metrics.open_incidents.store(self.store.open_incident_count()?, Relaxed);
        // Recovery of the actions whose windows after are in, a bounded batch a tick.
        crate::outcomes::measure(&mut self.store, &self.config, now_ms, 500)?;
        Ok(())
    }

    fn prune(&mut self) {
        let days = self.config.storage.retention_days;
        if days == 0 {
            return;
        }
        let before = crate::clock::now_ms() - days as i64 * 86_400_000;
        if let Err(e) = self.store.prune(before) {
            self.metrics.storage_errors.fetch_add(1, Relaxed);
            eprintln!("edgeprobe-collector: retention failed: {e}");
        }
    }
}

enum Recv {
    Item(Queued),
    Timeout,
    Closed,
}

/// A blocking receive with a deadline, for a plain thread reading a tokio channel.
fn recv_timeout(rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<Queued>, wait: Duration) -> Recv {
    match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
        Ok(Some(w)) => Recv::Item(w),
        Ok(None) => Recv::Closed,
        Err(_) => Recv::Timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeprobe_wire::{CaptureHealth, Report, SubscriberReport};

    fn report(seq: u64, window_start: i64) -> Report {
        Report {
            v: edgeprobe_wire::SCHEMA_VERSION,
            agent_id: "gw-1".into(),
            boot_id: "b".into(),
            seq,
            window_start: window_start as u64,
            window_end: window_start as u64 + 60_000,
            capture: CaptureHealth::default(),
            subscribers: vec![SubscriberReport {
                subscriber: "line-1".into(),
                metrics: Default::default(),
                counters: Default::default(),
                services: vec![],
                journeys: vec![],
                resolvers: vec![],
                dns_late: None,
            }],
            agent: None,
            part: 0,
            parts: 0,
        }
    }

    /// A window whose stored data cannot be evaluated is retried, then set aside; the windows
    /// after it, and a writer started again on the same database, go on.
    #[test]
    fn a_window_that_cannot_be_evaluated_is_quarantined_and_the_rest_go_on() {
        let dir = crate::testing::test_dir("writer-quarantine");
        let url = dir.to_str().unwrap().to_string();
        let mut store = Store::open(&url).unwrap();
        let (bad, good) = (60_000, 120_000);
        store.store_reports(&[&report(0, bad), &report(1, good)], 0).unwrap();
        store.damage_lines(bad, b"\xff not a line");
        let mut writer = Writer {
            store,
            config: CollectorConfig::default(),
            metrics: Default::default(),
            failing: Default::default(),
        };
        let now = 10 * 60_000;
        for _ in 1..TRIES {
            assert!(writer.evaluate(now, false).is_err(), "retried while it may still be a passing fault");
            assert_eq!((writer.store.window_state(bad), writer.store.window_state(good)), (0, 0));
        }
        writer.evaluate(now, false).unwrap();
        assert_eq!((writer.store.window_state(bad), writer.store.window_state(good)), (2, 1));
        let m = &writer.metrics;
        let counts = (
            m.evaluation_failures.load(Relaxed),
            m.windows_quarantined.load(Relaxed),
            m.windows_evaluated.load(Relaxed),
        );
        assert_eq!(counts, (u64::from(TRIES), 1, 1));
        // A new start finds nothing left to fail on.
        let mut again = Writer {
            store: Store::open(&url).unwrap(),
            config: CollectorConfig::default(),
            metrics: Default::default(),
            failing: Default::default(),
        };
        again.evaluate(now, true).unwrap();
        assert_eq!(again.metrics.evaluation_failures.load(Relaxed), 0);
    }
}
