//! HTTP/1.x timing on one plaintext TCP connection: each request's method and Host, its final
//! response's status, and the time from the request's first byte to the final response's first
//! byte. Keep-alive and pipelining are followed by framing both directions (Content-Length,
//! chunked, no body for HEAD, 1xx, 204 and 304); interim 1xx responses (`100 Continue`) do not
//! end a request. Paths, queries and bodies are read past, never kept.
//!
//! Bounds: a header block over `MAX_HEADER` bytes or more than `MAX_PENDING` unanswered
//! pipelined requests stop the analysis of the connection.

use crate::analyze::stream::{Gap, InOrder};
use crate::analyze::tcp::Segment;
use crate::event::HttpEvent;
use crate::time::Timestamp;
use std::collections::VecDeque;

const MAX_HEADER: usize = 16 * 1024;
const MAX_PENDING: usize = 32;
const MAX_CHUNK_LINE: usize = 1024;

const METHODS: [&[u8]; 9] =
    [b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];

/// True when `b` starts like an HTTP/1.x request.
pub fn looks_like_request(b: &[u8]) -> bool {
    METHODS.iter().any(|m| b.starts_with(m))
}

/// A request line, or the first bytes of one too short to tell (`GE`, `POST` without its
/// space): a first segment can end anywhere, and the analyzer must see it from its first byte.
pub fn may_begin_request(b: &[u8]) -> bool {
    looks_like_request(b) || (!b.is_empty() && METHODS.iter().any(|m| m.len() > b.len() && m.starts_with(b)))
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Body {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes: nothing after it can be framed.
    UntilClose,
}

#[derive(Clone, Debug, Default)]
enum State {
    #[default]
    Start,
    Headers,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers,
    Opaque,
}

#[derive(Clone, Debug, Default)]
struct Direction {
    stream: InOrder,
    state: State,
    buf: Vec<u8>,
    started: Timestamp,
}

struct Pending {
    method: String,
    host: Option<String>,
    at: Timestamp,
}

/// The parsed header block of one message.
struct Head {
    first_line: String,
    host: Option<String>,
    body: Body,
}

#[derive(Default)]
pub struct HttpSession {
    dirs: [Direction; 2],
    pending: VecDeque<Pending>,
    lost: bool,
    /// The first request's Host, until `take_name` tells it.
    first_host: Option<Option<String>>,
    named: bool,
    /// The snap length cut a segment: from then on messages are found where segments start,
    /// as tshark does with frames it cannot reassemble.
    blind: bool,
}

impl HttpSession {
    /// The name the connection is for, told once: the first request's Host as soon as its
    /// header block is read (`Some(None)` without one, or when it cannot be read), `None`
    /// before that.
    pub fn take_name(&mut self) -> Option<Option<String>> {
        if self.named || (self.first_host.is_none() && !self.lost) {
            return None;
        }
        self.named = true;
        Some(self.first_host.take().flatten())
    }

    /// Feeds one segment; finished request/response pairs go to `done`.
    pub fn feed(
        &mut self,
        now: Timestamp,
        dir: usize,
        seg: &Segment,
        captured: &[u8],
        done: &mut Vec<HttpEvent>,
    ) -> Result<(), Gap> {
        let (mut bytes, cut) = self.dirs[dir].stream.take_cut(seg, captured)?;
        if cut > 0 || self.blind {
            self.blind = true;
            // Only a segment whose start is new can start a message.
            if bytes.len() as u32 + cut == seg.len {
                self.blind_segment(now, dir, bytes, done);
            }
            return Ok(());
        }
        while !bytes.is_empty() && !self.lost {
            let d = &mut self.dirs[dir];
            match d.state {
                State::Start => {
                    // Stray line ends between messages are allowed (RFC 9112, 2.2).
                    let skip = bytes.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                    bytes = &bytes[skip..];
                    if !bytes.is_empty() {
                        d.started = now;
                        d.buf.clear();
                        d.state = State::Headers;
                    }
                }
                State::Headers => {
                    let old = d.buf.len();
                    let room = MAX_HEADER - old;
                    let take = bytes.len().min(room);
                    d.buf.extend_from_slice(&bytes[..take]);
                    let from = old.saturating_sub(3);
                    match find(&d.buf[from..], b"\r\n\r\n") {
                        Some(i) => {
                            let end = from + i + 4;
                            bytes = &bytes[end - old..];
                            let head = parse_head(&d.buf[..end]);
                            d.buf.clear();
                            self.on_head(dir, head, now, done);
                        }
                        None if take < bytes.len() || d.buf.len() >= MAX_HEADER => self.lost = true,
                        None => bytes = &[],
                    }
                }
                State::Length(n) => {
                    let take = (bytes.len() as u64).min(n);
                    bytes = &bytes[take as usize..];
                    d.state = if take == n { State::Start } else { State::Length(n - take) };
                }
                State::ChunkSize | State::Trailers => {
                    let Some(i) = find(bytes, b"\n") else {
                        d.buf.extend_from_slice(bytes);
                        if d.buf.len() > MAX_CHUNK_LINE {
                            self.lost = true;
                        }
                        bytes = &[];
                        continue;
                    };
                    d.buf.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    let line = std::mem::take(&mut d.buf);
                    let line = trim(&line);
                    if matches!(d.state, State::Trailers) {
                        if line.is_empty() {
                            d.state = State::Start;
                        }
                        continue;
                    }
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    match std::str::from_utf8(trim(hex)).ok().and_then(|h| u64::from_str_radix(h, 16).ok()) {
                        Some(0) => d.state = State::Trailers,
                        Some(n) => d.state = State::ChunkData(n),
                        None => self.lost = true,
                    }
                }
                State::ChunkData(n) => {
                    let take = (bytes.len() as u64).min(n);
                    bytes = &bytes[take as usize..];
                    d.state = if take == n { State::ChunkDataEnd(2) } else { State::ChunkData(n - take) };
                }
                State::ChunkDataEnd(left) => {
                    // The CRLF after chunk data; tolerate a bare LF.
                    if bytes[0] == b'\n' || left == 1 {
                        d.state = State::ChunkSize;
                    } else {
                        d.state = State::ChunkDataEnd(1);
                    }
                    bytes = &bytes[1..];
                }
                State::Opaque => bytes = &[],
            }
        }
        Ok(())
    }

    /// `now` is the time of the segment that completed the header block: a request's TTFB
    /// runs from there (as tshark's `http.time` without body reassembly), a response's ends
    /// where its first byte came (`started`).
    fn on_head(&mut self, dir: usize, head: Head, now: Timestamp, done: &mut Vec<HttpEvent>) {
        let started = self.dirs[dir].started;
        let mut body = head.body;
        if dir == 0 {
            let method = head.first_line.split(' ').next().unwrap_or_default().to_string();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || self.pending.len() >= MAX_PENDING
            {
                self.lost = true;
                return;
            }
            // A request without a length has no body (RFC 9112, 6.3); only responses run to close.
            if body == Body::UntilClose {
                body = Body::None;
            }
            if method == "CONNECT" {
                body = Body::UntilClose;
            }
            if !self.named && self.first_host.is_none() {
                self.first_host = Some(head.host.clone());
            }
            self.pending.push_back(Pending { method, host: head.host, at: now });
        } else {
            let mut parts = head.first_line.split(' ');
            let version = parts.next().unwrap_or_default();
            let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
                self.lost = true;
                return;
            };
            if !version.starts_with("HTTP/1.") {
                self.lost = true;
                return;
            }
            if (100..200).contains(&status) && status != 101 {
                self.dirs[dir].state = State::Start;
                return; // interim: the request waits for its final response
            }
            let Some(req) = self.pending.pop_front() else {
                self.lost = true;
                return;
            };
            if req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
                body = Body::None;
            }
            if status == 101 || (req.method == "CONNECT" && (200..300).contains(&status)) {
                body = Body::UntilClose;
            }
            done.push(HttpEvent { method: req.method, host: req.host, status, ttfb_us: started.micros_since(req.at) });
        }
        self.dirs[dir].state = match body {
            Body::None => State::Start,
            Body::Length(0) => State::Start,
            Body::Length(n) => State::Length(n),
            Body::Chunked => State::ChunkSize,
            Body::UntilClose => State::Opaque,
        };
    }
}

impl HttpSession {
    /// A segment read without framing: a request line or a status line at its start is a
    /// message, whatever the snap length left of the rest. A request's Host is read if its
    /// line was captured whole.
    fn blind_segment(&mut self, now: Timestamp, dir: usize, bytes: &[u8], done: &mut Vec<HttpEvent>) {
        if dir == 0 {
            if !looks_like_request(bytes) || self.pending.len() >= MAX_PENDING {
                return;
            }
            let method = bytes.iter().position(|&b| b == b' ').map_or(bytes, |i| &bytes[..i]);
            // Lines after the first that end within what was captured.
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(&bytes[..0], |i| &bytes[..i]);
            let host = parse_head(whole).host;
            if !self.named && self.first_host.is_none() {
                self.first_host = Some(host.clone());
            }
            self.pending.push_back(Pending { method: String::from_utf8_lossy(method).into_owned(), host, at: now });
            return;
        }
        let Some(rest) = bytes.strip_prefix(b"HTTP/1.") else { return };
        let status = rest.get(2..5).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse::<u16>().ok());
        let Some(status) = status.filter(|s| (100..600).contains(s)) else { return };
        if (100..200).contains(&status) && status != 101 {
            return; // interim: the request waits for its final response
        }
        if let Some(req) = self.pending.pop_front() {
            done.push(HttpEvent { method: req.method, host: req.host, status, ttfb_us: now.micros_since(req.at) });
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// The first line, Host, and how the body is framed. Only these headers are read.
fn parse_head(block: &[u8]) -> Head {
    let mut lines = block.split(|&b| b == b'\n').map(trim);
    let first_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut head = Head { first_line, host: None, body: Body::UntilClose };
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (trim(&line[..colon]), trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"host") && head.host.is_none() {
            head.host = Some(String::from_utf8_lossy(value).to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with(b"chunked");
        }
    }
    head.body = if chunked {
        Body::Chunked
    } else {
        match length {
            Some(n) => Body::Length(n),
            None => Body::UntilClose,
        }
    };
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Conn {
        s: HttpSession,
        seq: [u32; 2],
        done: Vec<HttpEvent>,
    }

    impl Conn {
        fn new() -> Self {
            Conn { s: HttpSession::default(), seq: [1, 1], done: Vec::new() }
        }

        fn send(&mut self, ms: u64, dir: usize, bytes: &[u8]) {
            let seg = crate::testing::segment(self.seq[dir], bytes.len() as u32);
            self.seq[dir] += bytes.len() as u32;
            self.s.feed(Timestamp(ms * 1_000_000), dir, &seg, bytes, &mut self.done).unwrap();
        }
    }

    #[test]
    fn pipelined_keep_alive_with_chunked_and_head() {
        let mut c = Conn::new();
        c.send(0, 0, b"GET /a HTTP/1.1\r\nHost: Example.org\r\n\r\nHEAD /b HTTP/1.1\r\nHost: example.org\r\n\r\n");
        c.send(1, 0, b"POST /c HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5\r\n\r\nhello");
        c.send(30, 1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n");
        c.send(45, 1, b"HTTP/1.1 404 Not Found\r\nContent-Length: 120\r\n\r\n");
        c.send(50, 1, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        let got: Vec<_> = c.done.iter().map(|e| (e.method.as_str(), e.status, e.ttfb_us)).collect();
        assert_eq!(got, [("GET", 200, 30_000), ("HEAD", 404, 45_000), ("POST", 201, 49_000)]);
        assert_eq!(c.done[0].host.as_deref(), Some("example.org"));
    }

    #[test]
    fn expect_continue_times_the_final_response() {
        let mut c = Conn::new();
        c.send(0, 0, b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        c.send(20, 1, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.send(21, 0, b"abc");
        c.send(60, 1, b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(c.done.len(), 1);
        assert_eq!((c.done[0].status, c.done[0].ttfb_us), (204, 60_000));
    }

    #[test]
    fn a_request_line_may_start_in_a_tiny_segment() {
        for b in [&b"G"[..], b"GE", b"GET", b"GET ", b"POS", b"OPTIONS", b"GET / HTTP/1.1"] {
            assert!(may_begin_request(b), "{b:?}");
        }
        for b in [&b""[..], b"g", b"GX", b"GETX", b"SSH-2.0", b"\x16\x03"] {
            assert!(!may_begin_request(b), "{b:?}");
        }
    }

    #[test]
    fn headers_split_across_segments() {
        let mut c = Conn::new();
        c.send(0, 0, b"GET / HTTP/1.0\r\nHo");
        c.send(1, 0, b"st: a\r\n\r");
        c.send(2, 0, b"\n");
        c.send(10, 1, b"HTTP/1.0 200 OK\r\n\r\nbody until close");
        assert_eq!(c.done.len(), 1);
        assert_eq!(c.done[0].host.as_deref(), Some("a"));
        // From the segment that completed the request's header block.
        assert_eq!(c.done[0].ttfb_us, 8_000);
    }

    #[test]
    fn oversized_header_stops_analysis() {
        let mut c = Conn::new();
        c.send(0, 0, b"GET / HTTP/1.1\r\n");
        let filler = vec![b'x'; MAX_HEADER];
        c.send(1, 0, &filler);
        c.send(2, 1, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(c.done.is_empty());
        assert!(c.s.lost);
    }
}
