//! The portable capture fallback: pnet's datalink channel, one reader thread per interface,
//! feeding a bounded queue. Frames the queue has no room for are dropped and counted, so a
//! burst costs counters, not memory. Timestamps are taken at read time (see `Backend::Pnet`).

use pnet_datalink::{Channel, Config};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const QUEUE: usize = 8192;

pub struct Frame {
    pub ts_nanos: u64,
    pub data: Vec<u8>,
}

pub struct PortableCapture {
    rx: Receiver<Frame>,
    dropped: Arc<AtomicU64>,
}

impl PortableCapture {
    pub fn start(interfaces: &[String], stop: Arc<AtomicBool>) -> PortableCapture {
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        for name in interfaces {
            let (tx, stop, dropped, name) = (tx.clone(), stop.clone(), dropped.clone(), name.clone());
            std::thread::spawn(move || reader(&name, &tx, &stop, &dropped));
        }
        PortableCapture { rx, dropped }
    }

    /// The next frame, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Frame> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Frames dropped for want of queue room since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

fn reader(name: &str, tx: &SyncSender<Frame>, stop: &AtomicBool, dropped: &AtomicU64) {
    let mut said = false;
    while !stop.load(Ordering::Relaxed) {
        let iface = pnet_datalink::interfaces().into_iter().find(|i| i.name == name);
        let config = Config { read_timeout: Some(Duration::from_millis(100)), ..Config::default() };
        let channel = iface.map(|i| pnet_datalink::channel(&i, config));
        let mut rx = match channel {
            Some(Ok(Channel::Ethernet(_, rx))) => {
                if said {
                    eprintln!("edgeprobe: interface {name} is back");
                    said = false;
                }
                rx
            }
            other => {
                if !said {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "no such interface".into(),
                    };
                    eprintln!("edgeprobe: cannot capture on {name}: {why}; retrying every 2s");
                    said = true;
                }
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            match rx.next() {
                Ok(frame) => {
                    #[allow(clippy::disallowed_methods)] // the fallback has no kernel timestamp
                    let ts_nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                    if let Err(TrySendError::Full(_)) = tx.try_send(Frame { ts_nanos, data: frame.to_vec() }) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    eprintln!("edgeprobe: interface {name} went away; waiting for it");
                    said = true;
                    break;
                }
            }
        }
    }
}
