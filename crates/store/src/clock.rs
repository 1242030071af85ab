//! Wall-clock time for the store's dated decisions (key expiry, grace periods, budget windows):
//! the gateway's one clock seam, shared with the router, so that tests move time instead of
//! sleeping through it.

pub use idlehands_clock::{Clock, ManualClock, SystemClock};
