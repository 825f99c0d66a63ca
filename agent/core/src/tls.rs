//! TLS handshake timing on one TCP connection.
//!
//! Records are followed in both directions. The ClientHello is reassembled across records and
//! segments in a buffer of at most `max_hello` bytes (hellos with post-quantum key shares span
//! several segments). Times: `hello_us` runs from the segment completing the ClientHello to the
//! one completing the ServerHello (a HelloRetryRequest is skipped: the first ClientHello still
//! starts the clock); `handshake_us` runs to the first application_data record the client sends
//! after the ServerHello, the moment it can send data. A plaintext alert before then ends the
//! handshake as `alert`; a connection that ends first is `incomplete`.

use crate::event::{TlsEvent, TlsOutcome};
use crate::stream::{Gap, InOrder};
use crate::tcp::Segment;
use crate::time::Timestamp;
use crate::wire::tls::{self, ClientHello};

/// The server's handshake bytes before the ServerHello: a HelloRetryRequest at most.
const MAX_SERVER_HELLO: usize = 4096;

#[derive(Clone, Debug, Default)]
struct Records {
    stream: InOrder,
    header: heapless::Vec<u8, 5>,
    remaining: usize,
    content_type: u8,
    /// Handshake bytes collected while a hello is awaited.
    handshake: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct TlsSession {
    dirs: [Records; 2],
    max_hello: usize,
    client_hello_at: Option<Timestamp>,
    hello: Option<ClientHello>,
    server_hello_at: Option<Timestamp>,
    version: Option<u16>,
    /// The connection stopped looking like TLS, or a buffer would have overflowed.
    lost: bool,
    /// `take_name` has told the connection's name.
    named: bool,
}

impl TlsSession {
    pub fn new(max_hello: usize) -> Self {
        TlsSession {
            dirs: Default::default(),
            max_hello,
            client_hello_at: None,
            hello: None,
            server_hello_at: None,
            version: None,
            lost: false,
            named: false,
        }
    }

    /// The name the connection is for, told once: the ClientHello's SNI as soon as the hello is
    /// whole (`Some(None)` without one, or when the hello cannot be read), `None` before that.
    pub fn take_name(&mut self) -> Option<Option<String>> {
        if self.named || (self.hello.is_none() && !self.lost) {
            return None;
        }
        self.named = true;
        Some(self.hello.as_ref().and_then(|h| h.sni.clone()))
    }

    /// Feeds one segment; returns the event when the handshake completes or fails.
    pub fn feed(
        &mut self,
        now: Timestamp,
        dir: usize,
        seg: &Segment,
        captured: &[u8],
    ) -> Result<Option<TlsEvent>, Gap> {
        let mut bytes = self.dirs[dir].stream.take(seg, captured)?;
        while !bytes.is_empty() && !self.lost {
            let d = &mut self.dirs[dir];
            if d.header.len() < 5 {
                let _ = d.header.push(bytes[0]);
                bytes = &bytes[1..];
                if d.header.len() == 5 {
                    d.content_type = d.header[0];
                    d.remaining = usize::from(u16::from_be_bytes([d.header[3], d.header[4]]));
                    if d.header[1] != 3 {
                        self.lost = true;
                        break;
                    }
                    if let Some(event) = self.on_record_start(now, dir) {
                        return Ok(Some(event));
                    }
                    if self.dirs[dir].remaining == 0 {
                        self.dirs[dir].header.clear();
                    }
                }
                continue;
            }
            let n = d.remaining.min(bytes.len());
            let body = &bytes[..n];
            bytes = &bytes[n..];
            d.remaining -= n;
            if d.remaining == 0 {
                d.header.clear();
            }
            if d.content_type == tls::CONTENT_HANDSHAKE {
                self.on_handshake_bytes(now, dir, body);
            }
        }
        Ok(None)
    }

    /// The connection ended: an unfinished handshake is `incomplete`.
    pub fn finish(&self) -> Option<TlsEvent> {
        self.client_hello_at?;
        Some(self.event(TlsOutcome::Incomplete, None))
    }

    fn on_record_start(&mut self, now: Timestamp, dir: usize) -> Option<TlsEvent> {
        let ty = self.dirs[dir].content_type;
        self.client_hello_at?;
        if ty == tls::CONTENT_ALERT {
            return Some(self.event(TlsOutcome::Alert, None));
        }
        if dir == 0 && ty == tls::CONTENT_APPLICATION_DATA && self.server_hello_at.is_some() {
            return Some(self.event(TlsOutcome::Ok, Some(now)));
        }
        None
    }

    fn on_handshake_bytes(&mut self, now: Timestamp, dir: usize, body: &[u8]) {
        let waiting =
            if dir == 0 { self.hello.is_none() } else { self.hello.is_some() && self.server_hello_at.is_none() };
        if !waiting {
            return;
        }
        let limit = if dir == 0 { self.max_hello } else { MAX_SERVER_HELLO };
        let buf = &mut self.dirs[dir].handshake;
        if buf.len() + body.len() > limit {
            self.lost = true;
            return;
        }
        buf.extend_from_slice(body);
        // Whole handshake messages at the front of the buffer.
        while buf.len() >= 4 {
            let len = (usize::from(buf[1]) << 16) | (usize::from(buf[2]) << 8) | usize::from(buf[3]);
            if buf.len() < 4 + len {
                return;
            }
            let (ty, msg) = (buf[0], &buf[4..4 + len]);
            match (dir, ty) {
                (0, tls::HANDSHAKE_CLIENT_HELLO) => {
                    match tls::parse_client_hello(msg) {
                        Ok(hello) => {
                            self.hello = Some(hello);
                            self.client_hello_at = Some(now);
                        }
                        Err(_) => self.lost = true,
                    }
                    buf.clear();
                    return;
                }
                (1, tls::HANDSHAKE_SERVER_HELLO) => match tls::parse_server_hello(msg) {
                    Ok(sh) if sh.hello_retry_request => {
                        buf.drain(..4 + len);
                    }
                    Ok(sh) => {
                        self.server_hello_at = Some(now);
                        self.version = Some(sh.version);
                        buf.clear();
                        return;
                    }
                    Err(_) => {
                        self.lost = true;
                        return;
                    }
                },
                _ => {
                    self.lost = true;
                    return;
                }
            }
        }
    }

    fn event(&self, outcome: TlsOutcome, data_at: Option<Timestamp>) -> TlsEvent {
        let start = self.client_hello_at.unwrap_or_default();
        let hello = self.hello.clone().unwrap_or_default();
        TlsEvent {
            outcome,
            sni: hello.sni,
            alpn: hello.alpn,
            version: self.version.and_then(tls::version_name).map(str::to_string),
            hello_us: self.server_hello_at.map(|t| t.micros_since(start)),
            handshake_us: data_at.map(|t| t.micros_since(start)),
        }
    }
}
