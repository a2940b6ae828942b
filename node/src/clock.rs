//! The broker's wall clock, the one place node code reads it (through std,
//! which madsim virtualises in simulation).

use weir_core::Timestamp;

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(since.as_millis() as i64)
}
