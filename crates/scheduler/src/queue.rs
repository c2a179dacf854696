//! The scheduling queue, after upstream's: pods ready to try (by priority, then arrival), pods
//! backing off after a failure (1 s doubling to 10 s), and unschedulable pods parked until a
//! cluster event might make them fit; plus the nominator, which remembers where preemption
//! made room for whom.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pod::PodInfo;

/// The first backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays parked as unschedulable without any event before it is retried.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// Distinguishes this entry's heap items from stale ones.
    seq: u64,
    backoff_until: Instant,
    parked_at: Instant,
    /// The scheduling cycle in which the pod was last popped.
    cycle: u64,
    /// Plugins that rejected the pod last time.
    rejected_by: Vec<&'static str>,
}

#[derive(Debug, PartialEq, Eq)]
struct Ready {
    priority: i32,
    seq: u64,
    key: Arc<str>,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pods waiting to be scheduled.
#[derive(Debug, Default)]
pub struct Queue {
    pods: HashMap<Arc<str>, Entry>,
    active: BinaryHeap<Ready>,
    backoff: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>>,
    /// Keys of the parked (unschedulable) pods, so events and flushes touch only those.
    parked: HashSet<Arc<str>>,
    seq: u64,
    cycle: u64,
    /// The cycle in which pods were last moved by a cluster event; a pod popped before it
    /// failed against stale state, so it backs off rather than parking.
    move_cycle: u64,
    /// When parked pods were last checked for having waited too long.
    stale_checked: Option<Instant>,
}

/// A popped pod.
pub struct Popped {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl Queue {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn activate(&mut self, key: &Arc<str>) {
        self.parked.remove(key);
        let seq = self.next_seq();
        if let Some(e) = self.pods.get_mut(key) {
            e.place = Place::Active;
            e.seq = seq;
            self.active.push(Ready {
                priority: e.info.priority,
                seq,
                key: key.clone(),
            });
        }
    }

    /// Adds a new pending pod, or refreshes a queued one; a real change (labels or spec) of a
    /// parked pod makes it ready again.
    pub fn upsert(&mut self, info: Arc<PodInfo>) {
        let key = info.key.clone();
        let Some(e) = self.pods.get_mut(&key) else {
            let now = Instant::now();
            self.pods.insert(
                key.clone(),
                Entry {
                    info,
                    place: Place::Active,
                    attempts: 0,
                    seq: 0,
                    backoff_until: now,
                    parked_at: now,
                    cycle: 0,
                    rejected_by: Vec::new(),
                },
            );
            self.activate(&key);
            return;
        };
        let changed = e.info.fingerprint != info.fingerprint;
        let priority_changed = e.info.priority != info.priority;
        e.info = info;
        match e.place {
            Place::Unschedulable if changed => self.requeue_after_move(&key),
            Place::Active if priority_changed => self.activate(&key),
            _ => {}
        }
    }

    /// Forgets a pod (deleted, bound elsewhere, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.pods.remove(key);
        self.parked.remove(key);
    }

    /// Keeps only the pods whose key passes `keep` (after a relist).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pods.retain(|k, _| keep(k));
        self.parked.retain(|k| keep(k));
    }

    /// Takes the most important ready pod.
    pub fn pop(&mut self) -> Option<Popped> {
        while let Some(ready) = self.active.pop() {
            let Some(e) = self.pods.get_mut(&ready.key) else {
                continue;
            };
            if e.place != Place::Active || e.seq != ready.seq {
                continue;
            }
            self.cycle += 1;
            e.place = Place::InFlight;
            e.cycle = self.cycle;
            return Some(Popped {
                info: e.info.clone(),
                attempts: e.attempts,
            });
        }
        None
    }

    /// The popped pod was assumed on a node: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// The popped pod fits nowhere: it parks until a cluster event, or backs off if an event
    /// happened while it was being scheduled.
    pub fn unschedulable(&mut self, key: &str, rejected_by: Vec<&'static str>) {
        let move_cycle = self.move_cycle;
        let Some(e) = self.pods.get_mut(key) else { return };
        e.attempts += 1;
        e.rejected_by = rejected_by;
        let now = Instant::now();
        e.backoff_until = now + backoff(e.attempts);
        if move_cycle >= e.cycle {
            self.back_off(key);
        } else {
            e.place = Place::Unschedulable;
            e.parked_at = now;
            self.parked.insert(e.info.key.clone());
        }
    }

    /// Scheduling or binding failed for another reason: retry after backoff.
    pub fn retry(&mut self, info: Arc<PodInfo>) {
        let key = info.key.clone();
        let attempts = self.pods.get(&key).map_or(0, |e| e.attempts) + 1;
        self.upsert(info);
        if let Some(e) = self.pods.get_mut(&key) {
            e.attempts = attempts;
            e.backoff_until = Instant::now() + backoff(attempts);
        }
        self.back_off(&key);
    }

    fn back_off(&mut self, key: &str) {
        self.parked.remove(key);
        let seq = self.next_seq();
        let Some(e) = self.pods.get_mut(key) else { return };
        e.place = Place::Backoff;
        e.seq = seq;
        self.backoff.push(Reverse((e.backoff_until, seq, e.info.key.clone())));
    }

    fn requeue_after_move(&mut self, key: &Arc<str>) {
        let Some(e) = self.pods.get(key) else { return };
        if e.backoff_until > Instant::now() {
            self.back_off(key);
        } else {
            self.activate(key);
        }
    }

    /// A cluster event that may help: parked pods rejected by one of `plugins` (all parked
    /// pods when `None`) are retried.
    pub fn move_parked(&mut self, plugins: Option<&[&str]>) {
        self.move_cycle = self.cycle;
        let keys: Vec<Arc<str>> = self
            .parked
            .iter()
            .filter(|k| {
                self.pods
                    .get(*k)
                    .is_some_and(|e| plugins.is_none_or(|ps| e.rejected_by.iter().any(|r| ps.contains(r))))
            })
            .cloned()
            .collect();
        for key in keys {
            self.requeue_after_move(&key);
        }
    }

    /// Moves pods whose backoff is over to the ready queue, and retries pods parked too long.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&key)
                .is_some_and(|e| e.place == Place::Backoff && e.seq == seq)
            {
                self.activate(&key);
            }
        }
        if self
            .stale_checked
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.stale_checked = Some(now);
        let stale: Vec<Arc<str>> = self
            .parked
            .iter()
            .filter(|k| {
                self.pods
                    .get(*k)
                    .is_some_and(|e| now.duration_since(e.parked_at) >= MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for key in stale {
            self.requeue_after_move(&key);
        }
    }

    /// When the next backoff ends, if any pod is backing off.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }
}

/// Upstream's backoff: 1 s, doubling per failed attempt, at most 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d *= 2;
        if d > MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

/// Pods nominated to nodes by preemption, so that the room made for them is kept for them.
#[derive(Debug, Default)]
pub struct Nominator {
    by_node: HashMap<Arc<str>, Vec<Arc<PodInfo>>>,
    by_pod: HashMap<Arc<str>, Arc<str>>,
}

impl Nominator {
    /// Records (or moves) a pod's nomination.
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: Arc<str>) {
        self.remove(&pod.key);
        self.by_pod.insert(pod.key.clone(), node.clone());
        self.by_node.entry(node).or_default().push(pod);
    }

    /// Forgets a pod's nomination.
    pub fn remove(&mut self, key: &str) {
        let Some(node) = self.by_pod.remove(key) else { return };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|p| &*p.key != key);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn on_node(&self, node: &str) -> &[Arc<PodInfo>] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }

    /// The node a pod is nominated to.
    pub fn node_of(&self, key: &str) -> Option<&Arc<str>> {
        self.by_pod.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::tests::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name}, "spec": {"priority": priority, "containers": [{"name": "c"}]}}),
        ))
    }

    #[test]
    fn priority_then_arrival() {
        let mut q = Queue::default();
        q.upsert(p("low", 0));
        q.upsert(p("high", 10));
        q.upsert(p("low2", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).map(|x| x.info.name.clone()).collect();
        assert_eq!(order, vec!["high", "low", "low2"]);
    }

    #[test]
    fn unschedulable_pods_park_until_an_event() {
        let mut q = Queue::default();
        q.upsert(p("a", 0));
        let popped = q.pop().unwrap();
        q.unschedulable(&popped.info.key, vec!["NodeResourcesFit"]);
        assert!(q.pop().is_none());
        q.move_parked(Some(&["InterPodAffinity"]));
        assert!(
            q.pop().is_none() && q.next_backoff().is_none(),
            "an unrelated event leaves it parked"
        );
        q.move_parked(None);
        // Still within its 1 s backoff, so it backs off first.
        assert!(q.pop().is_none());
        q.flush(Instant::now() + Duration::from_secs(2));
        assert_eq!(q.pop().unwrap().attempts, 1);
    }

    #[test]
    fn an_event_during_the_attempt_means_backoff() {
        let mut q = Queue::default();
        q.upsert(p("a", 0));
        let popped = q.pop().unwrap();
        q.move_parked(None);
        q.unschedulable(&popped.info.key, vec![]);
        assert!(q.next_backoff().is_some());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(9), Duration::from_secs(10));
    }

    #[test]
    fn nominations() {
        let mut n = Nominator::default();
        n.nominate(p("a", 5), "n1".into());
        n.nominate(p("a", 5), "n2".into());
        assert!(n.on_node("n1").is_empty());
        assert_eq!(n.on_node("n2").len(), 1);
        n.remove("default/a");
        assert!(n.node_of("default/a").is_none());
    }
}
