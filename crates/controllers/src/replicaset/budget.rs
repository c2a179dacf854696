//! A per-object event budget, as upstream's event spam filter keeps: an object may record a
//! burst of events, then one more every few minutes. Scaling a ReplicaSet to 1,000 pods thus
//! records its first creations rather than 1,000 events, which would double the writes the
//! scale-up costs the API server.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Events an object may record at once.
const BURST: f64 = 25.0;
/// How long it takes to earn one more.
const REFILL: Duration = Duration::from_secs(300);
/// Past this many tracked objects, those with a full budget are forgotten.
const TRACKED: usize = 4096;

/// Remaining events per object uid, with when that was computed.
#[derive(Debug, Default)]
pub(super) struct EventBudget {
    left: Mutex<HashMap<String, (f64, Instant)>>,
}

impl EventBudget {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (f64, Instant)>> {
        self.left.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the object `uid` may record an event now; spends one if so.
    pub(super) fn allow(&self, uid: &str) -> bool {
        self.allow_at(uid, Instant::now())
    }

    fn allow_at(&self, uid: &str, now: Instant) -> bool {
        let refill = |(left, at): (f64, Instant)| {
            (left + now.saturating_duration_since(at).as_secs_f64() / REFILL.as_secs_f64()).min(BURST)
        };
        let mut budgets = self.lock();
        if budgets.len() > TRACKED {
            budgets.retain(|_, b| refill(*b) < BURST);
        }
        let left = budgets.get(uid).map_or(BURST, |b| refill(*b));
        let allowed = left >= 1.0;
        budgets.insert(uid.to_string(), (if allowed { left - 1.0 } else { left }, now));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill() {
        let budget = EventBudget::default();
        let start = Instant::now();
        assert!((0..25).all(|_| budget.allow_at("rs", start)));
        assert!(!budget.allow_at("rs", start));
        assert!(budget.allow_at("other", start), "budgets are per object");
        assert!(!budget.allow_at("rs", start + REFILL / 2));
        assert!(budget.allow_at("rs", start + REFILL));
        assert!(!budget.allow_at("rs", start + REFILL));
    }
}
