//! Restart and image pull back-off: 10 s doubling to 5 minutes, forgotten after 10 minutes of
//! good behaviour, as upstream's kubelet.

use std::time::{Duration, Instant};

/// The first delay.
const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts over at the first delay.
const RESET_AFTER: Duration = Duration::from_secs(600);

/// The back-off of one container (or one image pull).
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    delay: Option<Duration>,
    until: Option<Instant>,
}

impl Backoff {
    /// Whether the next attempt must still wait.
    pub fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When the wait ends, if there is one.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// The current delay between attempts.
    pub fn delay(&self) -> Duration {
        self.delay.unwrap_or_default()
    }

    /// Notes a failure at `now` (for a container, after it ran for `ran`): the first failure
    /// may retry at once, each further one waits twice as long, up to the maximum.
    pub fn failed(&mut self, now: Instant, ran: Duration) {
        if ran >= RESET_AFTER {
            self.delay = None;
        }
        let next = match self.delay {
            None => Duration::ZERO,
            Some(d) if d.is_zero() => INITIAL,
            Some(d) => (d * 2).min(MAX),
        };
        self.delay = Some(next);
        self.until = Some(now + next);
    }

    /// Notes a failure that always waits, the first time for the initial delay (image pulls).
    pub fn failed_and_wait(&mut self, now: Instant) {
        self.delay.get_or_insert(Duration::ZERO);
        self.failed(now, Duration::ZERO);
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_and_resets_after_a_long_run() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(!b.waiting(now));
        b.failed(now, Duration::ZERO);
        assert!(!b.waiting(now), "the first restart is immediate");
        let delays: Vec<u64> = (0..7)
            .map(|_| {
                b.failed(now, Duration::from_secs(1));
                b.until().unwrap().duration_since(now).as_secs()
            })
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert!(b.waiting(now));
        b.failed(now, RESET_AFTER);
        assert!(!b.waiting(now));
    }
}
