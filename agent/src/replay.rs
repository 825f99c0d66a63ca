//! `edgeprobe replay`: the core over a capture file at full speed, with packet time as the clock.

use crate::capture::file::{CaptureError, CaptureFile};
use edgeprobe_core::{CoreConfig, Counters, Probe, Timestamp};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// What a replay saw, for the summary line.
#[derive(Debug)]
pub struct ReplaySummary {
    pub counters: Counters,
    pub elapsed: Duration,
    pub events: u64,
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
        format!(
            "replay: {} packets, {} bytes, {:.3} s, {:.0} packets/s, {} events, {} unparsed{kinds}, {} flow evictions",
            self.counters.packets,
            self.counters.bytes,
            secs,
            pps,
            self.events,
            self.counters.unparsed,
            self.counters.flow_evictions
        )
    }
}

/// Replays `path`, writing events as JSON lines to `events` when given.
pub fn replay(
    path: &Path,
    config: CoreConfig,
    mut events: Option<&mut dyn Write>,
) -> Result<ReplaySummary, CaptureError> {
    // Wall time, for the throughput summary only; measurements use packet time.
    let started = std::time::Instant::now();
    let mut file = CaptureFile::open(path)?;
    let mut probe = Probe::new(config);
    let mut last = Timestamp::ZERO;
    let mut count = 0u64;
    let mut write_error = None;
    let mut drain = |probe: &mut Probe, out: &mut Option<&mut dyn Write>| {
        while let Some(event) = probe.poll_event() {
            count += 1;
            if let Some(w) = out.as_mut() {
                if let Err(e) = serde_json::to_writer(&mut **w, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|_| w.write_all(b"\n"))
                {
                    write_error.get_or_insert(e);
                }
            }
        }
    };
    let result = file.for_each_frame(|frame| {
        last = last.max(frame.ts);
        probe.handle_frame(frame.ts, frame.link, frame.data, frame.wire_len);
        drain(&mut probe, &mut events);
    });
    probe.finish(last);
    drain(&mut probe, &mut events);
    if let Some(w) = events.as_mut() {
        let _ = w.flush();
    }
    Ok(ReplaySummary {
        counters: probe.counters().clone(),
        elapsed: started.elapsed(),
        events: count,
        error: result.err(),
    })
}
