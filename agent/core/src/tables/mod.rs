//! Bounded tables shared by the analyzers: a map that forgets its oldest entry, and an interner
//! of the strings many flows share. Their sizes come from configuration, never from traffic.

pub mod fifo;
pub mod interner;
