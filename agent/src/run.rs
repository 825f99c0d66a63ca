//! `edgeprobe run`: live capture on the configured interfaces, the core, and the publisher.
//!
//! One thread captures and measures (the core is single-threaded and needs no locks); a small
//! tokio runtime runs the MQTT publisher and the signal handlers. Time: measurements use the
//! kernel's packet timestamps, which are wall-clock time; the packet clock (`capture::clock`)
//! takes wall-clock steps out of them (NTP's first sync on a gateway without an RTC), so a step
//! moves no timer and no latency, and only relabels the report windows.

use crate::capture::clock::{LiveTime, read_clocks};
use crate::capture::live::Backend;
use crate::capture::ring::{Ring, RingConfig, parse_bpf, wait};
use crate::config::AgentConfig;
use crate::publish::mqtt::{Identity, Publisher};
use crate::replay::random_boot_id;
use anyhow::Context;
use edgeprobe_core::analyze::journey::JourneyConfig;
use edgeprobe_core::config::PushedConfig;
use edgeprobe_core::{LinkType, Probe};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const POLL_MS: i32 = 100;
const REOPEN_EVERY: Duration = Duration::from_secs(2);

struct Interface {
    name: String,
    ring: Option<Ring>,
    last_attempt: Option<Instant>,
    said_missing: bool,
}

pub fn run(config: AgentConfig, print_events: bool, capabilities: Vec<String>) -> anyhow::Result<()> {
    anyhow::ensure!(!config.capture.interfaces.is_empty(), "capture.interfaces is empty: nothing to watch");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let agent_id = config.agent_id();
    let boot_id = random_boot_id();
    let identity = Identity { agent_id: agent_id.clone(), boot_id: boot_id.clone(), capabilities };
    let (pushed_tx, pushed) = std::sync::mpsc::channel();
    let publisher = runtime.block_on(Publisher::start(config.mqtt.clone(), identity, Some(pushed_tx)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    runtime.spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        flag.store(true, Ordering::SeqCst);
    });

    let filter =
        config.capture.bpf.as_deref().map(parse_bpf).transpose().map_err(|e| anyhow::anyhow!("capture.bpf: {e}"))?;
    let ring_config = RingConfig {
        block_size: config.capture.ring_block_kib * 1024,
        block_count: config.capture.ring_blocks,
        retire_ms: 50,
        filter,
    };
    let snaplen = config.capture.snaplen as usize;
    let mut interfaces: Vec<Interface> = config
        .capture
        .interfaces
        .iter()
        .map(|name| Interface { name: name.clone(), ring: None, last_attempt: None, said_missing: false })
        .collect();
    let mut probe = Probe::new(config.core());
    probe.set_identity(agent_id, boot_id.clone());
    eprintln!("edgeprobe: boot {boot_id}, capturing on {}", config.capture.interfaces.join(", "));

    let stdout = std::io::stdout();
    let mut m = Measure {
        probe,
        time: LiveTime::new(read_clocks()),
        runtime: &runtime,
        publisher: &publisher,
        out: print_events.then(|| std::io::BufWriter::new(stdout)),
        snaplen,
        pushed,
        local: (config.journeys.clone(), config.subscribers.opt_out.clone()),
    };
    match config.capture.backend {
        Backend::Ring => ring_loop(&mut m, &mut interfaces, &ring_config, &stop),
        #[cfg(feature = "pnet")]
        Backend::Pnet => {
            let capture = crate::capture::portable::PortableCapture::start(&config.capture.interfaces, stop.clone());
            while !stop.load(Ordering::SeqCst) {
                if let Some(frame) = capture.next(Duration::from_millis(POLL_MS as u64)) {
                    // pnet stamps a frame when its thread reads it: sample after receiving it.
                    m.sample();
                    m.apply_pushed();
                    m.frame(frame.ts_nanos, &frame.data, frame.data.len() as u32);
                }
                m.probe.add_kernel_drops(capture.take_dropped());
                m.tick();
            }
        }
        #[cfg(not(feature = "pnet"))]
        Backend::Pnet => anyhow::bail!("this build leaves out the pnet backend; use \"ring\""),
    }
    m.sample();
    let now = m.time.now();
    let time = m.time;
    let mut probe = m.probe;
    let mut out = m.out;
    let c = probe.counters();
    eprintln!(
        "edgeprobe: stopped: {} packets, {} kernel drops, {} flow evictions",
        c.packets, c.kernel_drops, c.flow_evictions
    );
    probe.finish(now);
    drain(&mut probe, &runtime, &publisher, out.as_mut().map(|w| w as &mut dyn Write), &time);
    let left = runtime.block_on(publisher.shutdown(Duration::from_secs(10)));
    if left > 0 {
        eprintln!("edgeprobe: {left} reports wait in the spool for the broker");
    }
    if let Some(w) = out.as_mut() {
        w.flush().context("stdout")?;
    }
    Ok(())
}

/// The measuring side of the capture loop: the core, its packet clock, and where output goes.
struct Measure<'a> {
    probe: Probe,
    time: LiveTime,
    runtime: &'a tokio::runtime::Runtime,
    publisher: &'a Publisher,
    out: Option<std::io::BufWriter<std::io::Stdout>>,
    snaplen: usize,
    /// Configs pushed by the collector, already checked by the publisher.
    pushed: std::sync::mpsc::Receiver<Option<PushedConfig>>,
    /// The config file's journeys and opt-outs, for when a push is withdrawn.
    local: (Vec<JourneyConfig>, Vec<String>),
}

impl Measure<'_> {
    fn frame(&mut self, ts_nanos: u64, data: &[u8], wire_len: u32) {
        let ts = self.time.frame(ts_nanos);
        let data = &data[..data.len().min(self.snaplen)];
        self.probe.handle_frame(ts, LinkType::Ethernet, data, wire_len);
        // Drain per frame: a full ring holds a hundred thousand frames, and their events must
        // not pile up (a SYN flood ends a flow with every packet).
        self.drain();
    }

    /// Timers between packets, on the packet clock; they start with the first packet.
    fn tick(&mut self) {
        self.apply_pushed();
        self.sample();
        if self.probe.counters().packets > 0 {
            self.probe.handle_timeout(self.time.now());
        }
        self.drain();
    }

    /// Configs pushed since the last call take effect. Called before each batch of frames is
    /// read too: the agent tells the collector it runs a config once it has handed it over
    /// here, so a connection made after that is measured under it.
    fn apply_pushed(&mut self) {
        while let Ok(update) = self.pushed.try_recv() {
            let (journeys, mut opt_out) = self.local.clone();
            let journeys = match update {
                Some(pushed) => {
                    opt_out.extend(pushed.opt_out);
                    pushed.journeys
                }
                None => journeys,
            };
            self.probe.set_journeys(journeys);
            self.probe.set_opt_out(opt_out);
        }
    }

    /// Reads both clocks; a step they show is taken out of the packet times from now on.
    fn sample(&mut self) {
        if let Some(step) = self.time.sample(read_clocks(), &mut self.probe) {
            eprintln!(
                "edgeprobe: the wall clock stepped by {:+.3} s; latencies are unaffected, report windows follow the new time",
                step as f64 / 1e9
            );
        }
    }

    fn drain(&mut self) {
        drain(
            &mut self.probe,
            self.runtime,
            self.publisher,
            self.out.as_mut().map(|w| w as &mut dyn Write),
            &self.time,
        );
    }
}

fn ring_loop(m: &mut Measure<'_>, interfaces: &mut [Interface], ring_config: &RingConfig, stop: &AtomicBool) {
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        for iface in interfaces.iter_mut().filter(|i| i.ring.is_none()) {
            if iface.last_attempt.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                continue;
            }
            iface.last_attempt = Some(Instant::now());
            match Ring::open(&iface.name, ring_config) {
                Ok(ring) => {
                    if iface.said_missing {
                        eprintln!("edgeprobe: interface {} is back", iface.name);
                    }
                    iface.ring = Some(ring);
                    iface.said_missing = false;
                }
                Err(e) if !iface.said_missing => {
                    eprintln!(
                        "edgeprobe: cannot capture on {}: {e}; retrying every {}s",
                        iface.name,
                        REOPEN_EVERY.as_secs()
                    );
                    iface.said_missing = true;
                }
                Err(_) => {}
            }
        }
        let fds: Vec<i32> = interfaces.iter().filter_map(|i| i.ring.as_ref().map(Ring::fd)).collect();
        let failed = if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            Vec::new()
        } else {
            wait(&fds, POLL_MS)
        };
        m.sample();
        m.apply_pushed();
        for iface in interfaces.iter_mut() {
            let Some(ring) = iface.ring.as_mut() else { continue };
            if failed.contains(&ring.fd()) {
                eprintln!("edgeprobe: interface {} went away; waiting for it", iface.name);
                iface.ring = None;
                iface.said_missing = true;
                continue;
            }
            ring.read(|frame| m.frame(frame.ts_nanos, frame.data, frame.wire_len));
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            for ring in interfaces.iter().filter_map(|i| i.ring.as_ref()) {
                if let Ok((_, drops)) = ring.statistics() {
                    m.probe.add_kernel_drops(drops);
                }
            }
        }
        m.tick();
    }
}

/// Events carry wall time, so their timestamps get the steps the packet clock took out back.
fn drain(
    probe: &mut Probe,
    runtime: &tokio::runtime::Runtime,
    publisher: &Publisher,
    mut out: Option<&mut dyn Write>,
    time: &LiveTime,
) {
    while let Some(mut event) = probe.poll_event() {
        if let Some(w) = out.as_mut() {
            event.ts = time.wall(event.ts);
            let _ = serde_json::to_writer(&mut **w, &event);
            let _ = w.write_all(b"\n");
            let _ = w.flush();
        }
    }
    while let Some(report) = probe.poll_report() {
        let _ = runtime.block_on(publisher.publish(report));
    }
}
