//! Virtual time: the open-device retry sleeps here without sleeping.

use parking_lot::Mutex;
use std::time::Duration;
use vfio_core::Clock;

/// A [`Clock`] whose sleeps return at once, advance a virtual "now" and are
/// recorded, so a test can assert that a 250 ms retry happened without
/// spending 250 ms.
#[derive(Debug, Default)]
pub struct MockClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    now: Duration,
    sleeps: Vec<Duration>,
}

impl MockClock {
    /// A clock at virtual time zero with no sleeps recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Virtual time elapsed since the clock was made: the sum of every sleep
    /// and every [`advance`](Self::advance).
    pub fn now(&self) -> Duration {
        self.state.lock().now
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().sleeps.clone()
    }

    /// Moves virtual time forward without recording a sleep.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock();
        state.now = state.now.saturating_add(by);
    }
}

impl Clock for MockClock {
    fn sleep(&self, duration: Duration) {
        let mut state = self.state.lock();
        state.now = state.now.saturating_add(duration);
        state.sleeps.push(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_advance_virtual_time_instantly_and_are_recorded() {
        let clock = MockClock::new();
        let start = std::time::Instant::now();
        clock.sleep(Duration::from_secs(3600));
        clock.advance(Duration::from_millis(5));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_millis(3_600_005));
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(3600)]);
    }
}
