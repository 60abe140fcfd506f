//! An injectable clock, so a retry delay is real on hardware and instant in tests.

use std::fmt::Debug;
use std::time::Duration;

/// Where waits go. Backends take an `Arc<dyn Clock>` so tests can make a
/// 250 ms retry delay instant and observable.
pub trait Clock: Send + Sync + Debug {
    /// Blocks the calling thread for `duration` (or pretends to).
    fn sleep(&self, duration: Duration);
}

/// The real clock: [`std::thread::sleep`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
