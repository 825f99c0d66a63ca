//! DNS over TCP: splits each direction's in-order byte stream into length-prefixed messages
//! (RFC 7766). Only the first `HEAD_BYTES` of a message are kept, enough for the header and
//! question; a message is handed on when its last byte arrives, the moment tshark times it.

use crate::analyze::stream::{Gap, InOrder};
use crate::analyze::tcp::Segment;

const HEAD_BYTES: usize = 512;

#[derive(Clone, Debug, Default)]
struct Direction {
    stream: InOrder,
    len_bytes: heapless::Vec<u8, 2>,
    msg_len: usize,
    got: usize,
    head: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct DnsStream {
    dirs: [Direction; 2],
}

impl DnsStream {
    /// Feeds a segment's captured payload; complete messages (their heads) go to `done`.
    pub fn feed(&mut self, dir: usize, seg: &Segment, captured: &[u8], done: &mut Vec<Vec<u8>>) -> Result<(), Gap> {
        let d = &mut self.dirs[dir];
        let mut bytes = d.stream.take(seg, captured)?;
        while !bytes.is_empty() {
            if d.len_bytes.len() < 2 {
                let _ = d.len_bytes.push(bytes[0]);
                bytes = &bytes[1..];
                if d.len_bytes.len() == 2 {
                    d.msg_len = usize::from(u16::from_be_bytes([d.len_bytes[0], d.len_bytes[1]]));
                    d.got = 0;
                    d.head.clear();
                }
                if d.len_bytes.len() < 2 || d.msg_len > 0 {
                    continue;
                }
            }
            let take = (d.msg_len - d.got).min(bytes.len());
            let keep = take.min(HEAD_BYTES.saturating_sub(d.head.len()));
            d.head.extend_from_slice(&bytes[..keep]);
            d.got += take;
            bytes = &bytes[take..];
            if d.got == d.msg_len {
                done.push(std::mem::take(&mut d.head));
                d.len_bytes.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, len: usize) -> Segment {
        crate::testing::segment(seq, len as u32)
    }

    #[test]
    fn message_split_across_segments_completes_on_last() {
        let mut s = DnsStream::default();
        let mut done = Vec::new();
        let msg: Vec<u8> = [&[0u8, 6][..], b"abcdef"].concat();
        s.feed(0, &seg(100, 4), &msg[..4], &mut done).unwrap();
        assert!(done.is_empty());
        // A retransmission of the first part changes nothing.
        s.feed(0, &seg(100, 4), &msg[..4], &mut done).unwrap();
        s.feed(0, &seg(104, 4), &msg[4..], &mut done).unwrap();
        assert_eq!(done, vec![b"abcdef".to_vec()]);
    }

    #[test]
    fn two_messages_in_one_segment() {
        let mut s = DnsStream::default();
        let mut done = Vec::new();
        let bytes = [0u8, 1, b'x', 0, 2, b'y', b'z'];
        s.feed(1, &seg(1, bytes.len()), &bytes, &mut done).unwrap();
        assert_eq!(done, vec![b"x".to_vec(), b"yz".to_vec()]);
    }

    #[test]
    fn gap_stops_tracking() {
        let mut s = DnsStream::default();
        let mut done = Vec::new();
        s.feed(0, &seg(1, 2), &[0, 9], &mut done).unwrap();
        assert_eq!(s.feed(0, &seg(10, 2), &[1, 2], &mut done), Err(Gap));
    }
}
