//! MPLS label stack entries (RFC 3032).

use super::{Layer, Result, be32, check_len};

#[derive(Clone, Copy, Debug)]
pub struct MplsLabel<'a> {
    buf: &'a [u8],
}

impl<'a> MplsLabel<'a> {
    pub const LEN: usize = 4;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        check_len(Layer::Mpls, buf, Self::LEN)?;
        Ok(MplsLabel { buf })
    }

    pub fn label(&self) -> u32 {
        be32(self.buf, 0) >> 12
    }

    /// Set on the last entry of the stack.
    pub fn bottom_of_stack(&self) -> bool {
        self.buf[2] & 0x01 != 0
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[Self::LEN..]
    }
}
