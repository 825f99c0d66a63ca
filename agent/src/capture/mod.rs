//! Capture sources: shells that hand frames and their timestamps to the core.

pub mod clock;
pub mod file;
pub mod live;
#[cfg(feature = "pnet")]
pub mod portable;
pub mod ring;
