//! Wall-clock time in milliseconds: the gateway's one clock seam (shared with the store), so
//! tests can move time without sleeping. Wall-clock (not monotonic) because per-minute buckets
//! must line up across instances once state is shared.

pub use idlehands_clock::{Clock, ManualClock, SystemClock};

pub(crate) fn minute_of(ms: u64) -> u64 {
    ms / 60_000
}
