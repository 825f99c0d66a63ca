//! `edgeprobe replay`: the core over a capture file at full speed, with packet time as the clock.

use crate::capture::file::{CaptureError, CaptureFile};
use edgeprobe_core::{CoreConfig, Counters, Probe, Timestamp};
use edgeprobe_wire::{Encoding, Report, encode};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// What a replay saw, for the summary line.
#[derive(Debug)]
pub struct ReplaySummary {
    pub counters: Counters,
    pub elapsed: Duration,
    pub events: u64,
    pub reports: u64,
    /// Set when the capture was damaged; the frames before the damage were measured.
    pub error: Option<CaptureError>,
}

impl ReplaySummary {
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let pps = if secs > 0.0 { self.counters.packets as f64 / secs } else { 0.0 };
        let kinds: Vec<String> =
            self.counters.unparsed_kinds().iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
        // Only when it happened: a snap length too short for what the analyzers read.
        let cut = match self.counters.segments_truncated {
            0 => String::new(),
            n => format!(", {n} TLS/HTTP segments cut by the snap length"),
        };
        format!(
            "replay: {} packets, {} bytes, {:.3} s, {:.0} packets/s, {} events, {} reports, {} unparsed{kinds}, {} flow evictions{cut}",
            self.counters.packets,
            self.counters.bytes,
            secs,
            pps,
            self.events,
            self.reports,
            self.counters.unparsed,
            self.counters.flow_evictions
        )
    }
}

/// What a replay writes, and where.
pub struct ReplayOutput<'a> {
    pub out: &'a mut dyn Write,
    pub events: bool,
    pub reports: bool,
    /// Every round-trip sample, as `rtt_sample` lines.
    pub rtt_samples: bool,
    /// Where reports also go (the MQTT publisher), with the boot id they carry.
    pub sink: Option<(&'a mut dyn FnMut(Report), String)>,
    /// Moves the capture in time so that its first packet falls here; durations are unchanged.
    pub start_at: Option<Timestamp>,
}

/// Replays `path`. Events and window reports go to `output` as JSON lines, as it asks.
pub fn replay(
    path: &Path,
    config: CoreConfig,
    agent_id: String,
    output: &mut ReplayOutput<'_>,
) -> Result<ReplaySummary, CaptureError> {
    // Wall time, for the throughput summary only; measurements use packet time.
    let started = std::time::Instant::now();
    let mut file = CaptureFile::open(path)?;
    let mut probe = Probe::new(config);
    // A replay is one "boot" named after its input, so the same file gives the same reports;
    // one that publishes is a boot of its own.
    let boot_id = output.sink.as_ref().map(|(_, b)| b.clone()).unwrap_or_else(|| replay_boot_id(path));
    probe.set_identity(agent_id, boot_id);
    if output.rtt_samples {
        probe.trace_rtt();
    }
    let mut last = Timestamp::ZERO;
    let (mut events, mut reports) = (0u64, 0u64);
    let mut drain = |probe: &mut Probe, output: &mut ReplayOutput<'_>| {
        while let Some(event) = probe.poll_event() {
            events += 1;
            if output.events {
                let _ = serde_json::to_writer(&mut *output.out, &event);
                let _ = output.out.write_all(b"\n");
            }
        }
        while let Some(sample) = probe.poll_rtt_sample() {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                kind: &'static str,
                #[serde(flatten)]
                sample: &'a edgeprobe_core::RttTrace,
            }
            let _ = serde_json::to_writer(&mut *output.out, &Line { kind: "rtt_sample", sample: &sample });
            let _ = output.out.write_all(b"\n");
        }
        while let Some(report) = probe.poll_report() {
            reports += 1;
            if output.reports {
                let _ = output.out.write_all(&encode(&report, Encoding::Json));
                let _ = output.out.write_all(b"\n");
            }
            if let Some((sink, _)) = output.sink.as_mut() {
                sink(report);
            }
        }
    };
    // Shifting every timestamp by one offset keeps every duration exact.
    let mut shift: Option<i128> = None;
    let start_at = output.start_at;
    let result = file.for_each_frame(|frame| {
        let offset = *shift.get_or_insert_with(|| start_at.map_or(0, |t| i128::from(t.0) - i128::from(frame.ts.0)));
        let ts = Timestamp((i128::from(frame.ts.0) + offset).clamp(0, i128::from(u64::MAX)) as u64);
        last = last.max(ts);
        probe.handle_frame(ts, frame.link, frame.data, frame.wire_len);
        drain(&mut probe, output);
    });
    probe.finish(last);
    drain(&mut probe, output);
    Ok(ReplaySummary {
        counters: probe.counters().clone(),
        elapsed: started.elapsed(),
        events,
        reports,
        error: result.err(),
    })
}

/// A stable boot id for a replay: FNV-1a of the file's name.
fn replay_boot_id(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("replay-{hash:016x}")
}

/// A new random boot id (128 bits from the kernel, hex), for runs that publish.
pub fn random_boot_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
