//! Wall-clock time, the one place the collector reads it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds; 0 before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
