//! TLS handshake timing on one TCP connection.
//!
//! Records are followed in both directions. The ClientHello is reassembled across records and
//! segments in a buffer of at most `max_hello` bytes (hellos with post-quantum key shares span
//! several segments). Times: `hello_us` runs from the segment completing the ClientHello to the
//! one completing the ServerHello (a HelloRetryRequest is skipped: the first ClientHello still
//! starts the clock); `handshake_us` runs to the first application_data record the client sends
//! after the ServerHello, the moment it can send data. A plaintext alert before then ends the
//! handshake as `alert`; a connection that ends first is `incomplete`.
//!
//! Two kinds of connection are followed with less: one seen from the middle of its handshake
//! (its first payload a ServerHello: the capture began after the ClientHello), which ends as
//! `incomplete` with what could be read and no times, since its start was not seen; and one
//! whose segments the snap length cut. There record headers are read where they were captured
//! and bodies stepped over by their length: a hello whose body was cut still times the
//! handshake (without SNI or version), and a record header that was cut loses the connection,
//! which then ends as `incomplete`.

use crate::analyze::stream::{Gap, InOrder};
use crate::analyze::tcp::Segment;
use crate::dissect::tls::{self, ClientHello};
use crate::event::{TlsEvent, TlsOutcome};
use crate::time::Timestamp;

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
    /// Part of the current handshake record's body was cut by the snap length.
    cut: bool,
    /// A cut hid where the next record starts: this direction is no longer read.
    adrift: bool,
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
    /// The first ClientHello was not seen: the capture began after it.
    partial: bool,
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
            partial: false,
        }
    }

    /// A session for a connection whose first payload is the server's ServerHello.
    pub fn partial(max_hello: usize) -> Self {
        TlsSession { partial: true, ..Self::new(max_hello) }
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
        let (mut bytes, cut) = self.dirs[dir].stream.take_cut(seg, captured)?;
        if self.dirs[dir].adrift {
            return Ok(None);
        }
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
        if cut > 0 && !self.lost {
            self.step_over(now, dir, cut as usize);
        }
        Ok(None)
    }

    /// Steps over `n` bytes the snap length cut. Within the current record's body the record
    /// goes on; past its end, the record ends here and where the next one starts is unknown,
    /// so this direction is no longer read (the other may still end the handshake).
    fn step_over(&mut self, now: Timestamp, dir: usize, n: usize) {
        let d = &mut self.dirs[dir];
        if d.header.len() < 5 {
            d.adrift = true;
            return;
        }
        if d.content_type == tls::CONTENT_HANDSHAKE {
            d.cut = true;
        }
        if n < d.remaining {
            d.remaining -= n;
            return;
        }
        d.adrift = n > d.remaining;
        d.remaining = 0;
        d.header.clear();
        if std::mem::take(&mut d.cut) {
            self.on_cut_hello(now, dir);
        }
    }

    /// A handshake record whose body was cut has ended: if it began the hello awaited, the
    /// hello is taken as whole here (unread), so the handshake is still timed.
    fn on_cut_hello(&mut self, now: Timestamp, dir: usize) {
        let buf = std::mem::take(&mut self.dirs[dir].handshake);
        match (dir, buf.first()) {
            (0, Some(&tls::HANDSHAKE_CLIENT_HELLO)) if self.hello.is_none() => {
                self.hello = Some(ClientHello::default());
                self.client_hello_at = Some(now);
            }
            (1, Some(&tls::HANDSHAKE_SERVER_HELLO)) if self.server_hello_at.is_none() => {
                // Type, length, version, then the random that marks a HelloRetryRequest.
                match buf.get(6..38) {
                    Some(random) if random == tls::HRR_RANDOM => {}
                    Some(_) if self.hello.is_some() || self.partial => self.server_hello_at = Some(now),
                    _ => self.lost = true,
                }
            }
            _ => {}
        }
    }

    /// The connection ended: an unfinished handshake is `incomplete`.
    pub fn finish(&self) -> Option<TlsEvent> {
        if self.client_hello_at.is_none() && !(self.partial && self.server_hello_at.is_some()) {
            return None;
        }
        Some(self.event(TlsOutcome::Incomplete, None))
    }

    fn on_record_start(&mut self, now: Timestamp, dir: usize) -> Option<TlsEvent> {
        let ty = self.dirs[dir].content_type;
        if self.client_hello_at.is_none() && !(self.partial && self.server_hello_at.is_some()) {
            return None;
        }
        if ty == tls::CONTENT_ALERT {
            return Some(self.event(TlsOutcome::Alert, None));
        }
        if dir == 0 && ty == tls::CONTENT_APPLICATION_DATA && self.server_hello_at.is_some() {
            let outcome = if self.partial { TlsOutcome::Incomplete } else { TlsOutcome::Ok };
            return Some(self.event(outcome, Some(now)));
        }
        None
    }

    fn on_handshake_bytes(&mut self, now: Timestamp, dir: usize, body: &[u8]) {
        let waiting = if dir == 0 {
            // Seen from the middle, the client's later handshake messages are not a hello.
            self.hello.is_none() && !(self.partial && self.server_hello_at.is_some())
        } else {
            (self.hello.is_some() || self.partial) && self.server_hello_at.is_none()
        };
        if !waiting {
            return;
        }
        if dir == 0
            && self.partial
            && self.dirs[0].handshake.is_empty()
            && body.first() != Some(&tls::HANDSHAKE_CLIENT_HELLO)
        {
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
        let hello = self.hello.clone().unwrap_or_default();
        // Seen from the middle, the handshake's start is unknown: no times.
        let start = self.client_hello_at.filter(|_| !self.partial);
        let since = |t: Option<Timestamp>| Some(t?.micros_since(start?));
        TlsEvent {
            outcome,
            sni: hello.sni,
            alpn: hello.alpn,
            version: self.version.and_then(tls::version_name).map(str::to_string),
            hello_us: since(self.server_hello_at),
            handshake_us: since(data_at),
        }
    }
}
