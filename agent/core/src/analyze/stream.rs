//! In-order delivery of one direction of a TCP connection's bytes to an application parser.
//! Only what follows the bytes already delivered is passed on; a retransmitted prefix is cut,
//! and a gap (a segment lost before the probe) ends delivery, since parsers that lose their
//! place would misread what follows.

use crate::analyze::tcp::{Segment, seq_lt};

#[derive(Clone, Copy, Debug, Default)]
pub struct InOrder {
    expect: Option<u32>,
    broken: bool,
}

/// The stream lost its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap;

impl InOrder {
    /// The new bytes of `seg` (empty when all were seen before). `captured` is the segment's
    /// payload as captured, which a snap length may have cut: that is a gap too.
    pub fn take<'a>(&mut self, seg: &Segment, captured: &'a [u8]) -> Result<&'a [u8], Gap> {
        if self.broken {
            return Err(Gap);
        }
        if seg.len == 0 {
            return Ok(&[]);
        }
        let expect = *self.expect.get_or_insert(seg.seq);
        let end = seg.seq.wrapping_add(seg.len);
        if !seq_lt(expect, end) {
            return Ok(&[]);
        }
        if seq_lt(expect, seg.seq) || (captured.len() as u32) < seg.len {
            self.broken = true;
            return Err(Gap);
        }
        let skip = expect.wrapping_sub(seg.seq) as usize;
        self.expect = Some(end);
        Ok(&captured[skip..seg.len as usize])
    }

    /// As `take`, except that a segment the snap length cut keeps the stream's place: returns
    /// its new bytes as captured and how many new bytes the capture left out after them, for
    /// parsers that can step over bytes they know the length of.
    pub fn take_cut<'a>(&mut self, seg: &Segment, captured: &'a [u8]) -> Result<(&'a [u8], u32), Gap> {
        if (captured.len() as u32) >= seg.len {
            return self.take(seg, captured).map(|b| (b, 0));
        }
        if self.broken {
            return Err(Gap);
        }
        let expect = *self.expect.get_or_insert(seg.seq);
        let end = seg.seq.wrapping_add(seg.len);
        if !seq_lt(expect, end) {
            return Ok((&[], 0));
        }
        if seq_lt(expect, seg.seq) {
            self.broken = true;
            return Err(Gap);
        }
        let skip = expect.wrapping_sub(seg.seq) as usize;
        self.expect = Some(end);
        let seen = captured.get(skip..).unwrap_or_default();
        Ok((seen, seg.len - (skip + seen.len()) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::segment as seg;

    #[test]
    fn overlap_is_cut_and_gap_breaks() {
        let mut s = InOrder::default();
        assert_eq!(s.take(&seg(10, 4), b"abcd"), Ok(&b"abcd"[..]));
        assert_eq!(s.take(&seg(12, 4), b"cdef"), Ok(&b"ef"[..]));
        assert_eq!(s.take(&seg(10, 4), b"abcd"), Ok(&b""[..]));
        assert_eq!(s.take(&seg(30, 1), b"z"), Err(Gap));
        assert_eq!(s.take(&seg(16, 1), b"g"), Err(Gap));
    }

    #[test]
    fn snapped_payload_is_a_gap() {
        let mut s = InOrder::default();
        assert_eq!(s.take(&seg(1, 100), &[0; 60]), Err(Gap));
    }

    #[test]
    fn snapped_payload_can_be_stepped_over() {
        let mut s = InOrder::default();
        assert_eq!(s.take_cut(&seg(1, 100), &[7; 60]), Ok((&[7u8; 60][..], 40)));
        // A retransmission overlapping the cut part: only what is new, none of it captured.
        assert_eq!(s.take_cut(&seg(71, 50), &[8; 20]), Ok((&[][..], 20)));
        assert_eq!(s.take_cut(&seg(121, 4), b"abcd"), Ok((&b"abcd"[..], 0)));
        assert_eq!(s.take_cut(&seg(200, 4), &[0; 2]), Err(Gap));
    }
}
