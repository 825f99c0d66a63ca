//! Capture sources: shells that hand frames and their timestamps to the core.

pub mod file;
pub mod live;
pub mod portable;
pub mod ring;
