//! The spool: reports not yet acknowledged by the broker, in order, bounded in bytes, surviving
//! restarts. It is what makes delivery at-least-once; the MQTT client's own in-flight queue is
//! cleared on a clean-session reconnect.
//!
//! Gateways run on flash, so the spool writes sparingly: a report lives in memory while the
//! broker acknowledges it promptly, and goes to disk only when it has waited `flush_after`
//! (the broker is slow or gone) or the agent stops. One file per report, written to a temporary
//! name and renamed, so a crash never leaves half a report. File names sort in report order:
//! `{window_start:013}-{boot_id}-{seq:010}.report`.
//!
//! When the spool is full the oldest reports go, and are counted, so the next report can say how
//! many were lost. The count survives restarts (a small `dropped` file), and a report that
//! carried a count and is itself dropped hands its count on, so no loss goes unreported.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SUFFIX: &str = ".report";

/// Identifies one report across boots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReportId {
    pub window_start: u64,
    pub boot_id: String,
    pub seq: u64,
    /// The part of a window's report split in parts; 0 for a whole one.
    pub part: u32,
}

const DROPPED_FILE: &str = "dropped";

impl ReportId {
    /// The file name, with the drop count the report carries.
    fn file_name(&self, carried: u64) -> String {
        let part = if self.part > 0 { format!("p{:05}", self.part) } else { String::new() };
        format!("{:013}-{}-{:010}{part}-{carried}{SUFFIX}", self.window_start, self.boot_id, self.seq)
    }

    fn parse(name: &str) -> Option<(ReportId, u64)> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (window, rest) = stem.split_once('-')?;
        let (rest, carried) = rest.rsplit_once('-')?;
        let (boot, seq) = rest.rsplit_once('-')?;
        let (seq, part) = match seq.split_once('p') {
            Some((seq, part)) => (seq, part.parse().ok()?),
            None => (seq, 0),
        };
        let id =
            ReportId { window_start: window.parse().ok()?, boot_id: boot.to_string(), seq: seq.parse().ok()?, part };
        Some((id, carried.parse().ok()?))
    }
}

struct Entry {
    id: ReportId,
    /// Drops this report tells of; handed on if it is dropped in turn.
    carried: u64,
    payload: Vec<u8>,
    queued: Instant,
    on_disk: bool,
}

pub struct Spool {
    dir: Option<PathBuf>,
    max_bytes: usize,
    flush_after: Duration,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Reports dropped to make room, not yet told in a report.
    dropped: u64,
    dropped_on_disk: u64,
    /// Files the spool could not write or remove (a full or read-only disk).
    pub write_errors: u64,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), loading what an earlier run left.
    /// Without a directory the spool is memory only.
    pub fn open(dir: Option<&Path>, max_bytes: usize, flush_after: Duration) -> io::Result<Self> {
        let mut spool = Spool {
            dir: dir.map(Path::to_path_buf),
            max_bytes,
            flush_after,
            entries: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            dropped_on_disk: 0,
            write_errors: 0,
        };
        let Some(dir) = dir else { return Ok(spool) };
        fs::create_dir_all(dir)?;
        if let Ok(text) = fs::read_to_string(dir.join(DROPPED_FILE)) {
            spool.dropped = text.trim().parse().unwrap_or(0);
            spool.dropped_on_disk = spool.dropped;
        }
        let mut found: Vec<(ReportId, u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            match ReportId::parse(&name) {
                Some((id, carried)) => found.push((id, carried, path)),
                // Leftover temporary files from a crash mid-write.
                None if name.ends_with(".tmp") => {
                    let _ = fs::remove_file(&path);
                }
                None => {}
            }
        }
        found.sort_by_key(|f| f.0.file_name(0));
        for (id, carried, path) in found {
            let Ok(payload) = fs::read(&path) else {
                spool.write_errors += 1;
                continue;
            };
            spool.bytes += payload.len();
            spool.entries.push_back(Entry { id, carried, payload, queued: Instant::now(), on_disk: true });
        }
        spool.enforce_bound();
        Ok(spool)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The drops not yet told: the next report carries them (pass the count to `push`).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Queues a report that tells of `carried` drops; drops the oldest when over the bound.
    pub fn push(&mut self, id: ReportId, payload: Vec<u8>, carried: u64) {
        self.bytes += payload.len();
        self.entries.push_back(Entry { id, carried, payload, queued: Instant::now(), on_disk: false });
        self.enforce_bound();
        if self.flush_after.is_zero() {
            // Configured to write at once: a crash then loses nothing already reported.
            self.flush(false);
        }
    }

    /// The broker acknowledged this report.
    pub fn ack(&mut self, id: &ReportId) {
        if let Some(i) = self.entries.iter().position(|e| &e.id == id) {
            if let Some(e) = self.entries.remove(i) {
                self.bytes -= e.payload.len();
                self.remove_file(&e);
            }
        }
    }

    /// Every queued report, oldest first, for (re)publishing.
    pub fn pending(&self) -> impl Iterator<Item = (&ReportId, &[u8])> {
        self.entries.iter().map(|e| (&e.id, e.payload.as_slice()))
    }

    /// Writes reports that have waited longer than `flush_after` (all, with `everything`).
    /// Returns how many were written.
    pub fn flush(&mut self, everything: bool) -> usize {
        let Some(dir) = self.dir.clone() else { return 0 };
        if self.dropped != self.dropped_on_disk {
            match write_atomic(&dir, DROPPED_FILE, self.dropped.to_string().as_bytes()) {
                Ok(()) => self.dropped_on_disk = self.dropped,
                Err(_) => self.write_errors += 1,
            }
        }
        let mut written = 0;
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.on_disk || (!everything && e.queued.elapsed() < self.flush_after) {
                continue;
            }
            match write_atomic(&dir, &e.id.file_name(e.carried), &e.payload) {
                Ok(()) => {
                    self.entries[i].on_disk = true;
                    written += 1;
                }
                Err(_) => self.write_errors += 1,
            }
        }
        written
    }

    /// Drops the oldest reports until `incoming` more bytes fit, so the report about to be
    /// queued can tell of every drop it causes.
    pub fn make_room(&mut self, incoming: usize) {
        self.drop_oldest_while(|s| s.bytes + incoming > s.max_bytes && !s.entries.is_empty());
    }

    fn enforce_bound(&mut self) {
        self.drop_oldest_while(|s| s.bytes > s.max_bytes && s.entries.len() > 1);
    }

    fn drop_oldest_while(&mut self, over: impl Fn(&Self) -> bool) {
        while over(self) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.payload.len();
                self.dropped += 1 + e.carried;
                self.remove_file(&e);
            }
        }
    }

    fn remove_file(&mut self, e: &Entry) {
        if let (true, Some(dir)) = (e.on_disk, &self.dir) {
            if fs::remove_file(dir.join(e.id.file_name(e.carried))).is_err() {
                self.write_errors += 1;
            }
        }
    }
}

fn write_atomic(dir: &Path, name: &str, payload: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(payload)?;
    f.sync_data()?;
    fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> ReportId {
        ReportId { window_start: 1_700_000_000_000 + seq * 60_000, boot_id: "b1".into(), seq, part: 0 }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgeprobe-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn survives_a_restart_in_order_and_writes_only_when_asked() {
        let d = dir("restart");
        let mut s = Spool::open(Some(&d), 1 << 20, Duration::from_secs(3600)).unwrap();
        for seq in 0..3 {
            s.push(id(seq), vec![seq as u8; 10], 0);
        }
        assert_eq!(s.flush(false), 0, "nothing waited long enough: no flash write");
        s.ack(&id(0));
        assert_eq!(s.flush(true), 2);
        drop(s);
        let s = Spool::open(Some(&d), 1 << 20, Duration::from_secs(3600)).unwrap();
        let seqs: Vec<u64> = s.pending().map(|(i, _)| i.seq).collect();
        assert_eq!(seqs, [1, 2]);
    }

    /// Parts of one window's report are spooled apart, in order, and read back as parts; a
    /// spool written before parts existed reads as whole reports.
    #[test]
    fn parts_survive_a_restart_in_order() {
        let d = dir("parts");
        let mut s = Spool::open(Some(&d), 1 << 20, Duration::from_secs(3600)).unwrap();
        for part in [0, 1, 2, 10] {
            s.push(ReportId { part, ..id(7) }, vec![1; 10], 0);
        }
        s.push(id(8), vec![1; 10], 0);
        s.flush(true);
        drop(s);
        fs::write(d.join("1700000000000-b1-0000000000-0.report"), [2; 10]).unwrap();
        let s = Spool::open(Some(&d), 1 << 20, Duration::from_secs(3600)).unwrap();
        let ids: Vec<(u64, u32)> = s.pending().map(|(i, _)| (i.seq, i.part)).collect();
        assert_eq!(ids, [(0, 0), (7, 0), (7, 1), (7, 2), (7, 10), (8, 0)]);
    }

    #[test]
    fn full_spool_drops_oldest_and_counts() {
        let d = dir("full");
        let mut s = Spool::open(Some(&d), 25, Duration::ZERO).unwrap();
        for seq in 0..5 {
            let carried = s.take_dropped();
            s.push(id(seq), vec![0; 10], carried);
            s.flush(false);
        }
        // Reports 0..2 went; 1 and 2 carried the earlier drops, which were handed on.
        assert_eq!(s.take_dropped() + s.entries.iter().map(|e| e.carried).sum::<u64>(), 3);
        assert_eq!(s.pending().map(|(i, _)| i.seq).collect::<Vec<_>>(), [3, 4]);
        let reports = fs::read_dir(&d).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some()).count();
        assert_eq!(reports, 2, "dropped reports leave the disk too");
    }

    #[test]
    fn drop_count_survives_a_restart() {
        let d = dir("dropcount");
        let mut s = Spool::open(Some(&d), 15, Duration::ZERO).unwrap();
        s.push(id(1), vec![0; 10], 0);
        s.push(id(2), vec![0; 10], 0);
        s.flush(true);
        drop(s);
        let mut s = Spool::open(Some(&d), 15, Duration::ZERO).unwrap();
        assert_eq!(s.take_dropped(), 1);
    }

    #[test]
    fn acked_report_leaves_the_disk() {
        let d = dir("ack");
        let mut s = Spool::open(Some(&d), 1 << 20, Duration::ZERO).unwrap();
        s.push(id(7), b"x".to_vec(), 0);
        s.flush(true);
        s.ack(&id(7));
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
    }
}
