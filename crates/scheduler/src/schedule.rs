//! One scheduling attempt: PreFilter, then Filter over the nodes starting where the last
//! attempt stopped until enough feasible nodes are found (upstream's adaptive
//! percentageOfNodesToScore), then Score and pick the best, breaking ties at random.

use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{Cycle, CycleState, Rejection, fit_message};
use crate::node::{NodeInfo, PlacedPod};
use crate::plugins::Profile;
use crate::pod::PodInfo;
use crate::queue::Nominator;

/// Below this many nodes, every node is considered.
const MIN_FEASIBLE_NODES: usize = 100;
/// The least share of nodes considered in a large cluster, in percent.
const MIN_FEASIBLE_PERCENTAGE: usize = 5;
/// Upstream's message when the cluster has no nodes.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// Why no node fits.
#[derive(Debug, Clone)]
pub struct FitFailure {
    /// Nodes in the cluster.
    pub total: usize,
    /// Each rejected node's position in the cache and the refusal.
    pub rejections: Vec<(usize, Rejection)>,
    /// A PreFilter refusal, which stands for every node.
    pub pre_filter: Option<Rejection>,
}

impl FitFailure {
    /// The plugins that refused, so that only relevant cluster events retry the pod.
    pub fn plugins(&self) -> Vec<&'static str> {
        let mut plugins: Vec<&'static str> = self
            .pre_filter
            .iter()
            .chain(self.rejections.iter().map(|(_, r)| r))
            .map(|r| r.plugin)
            .collect();
        plugins.sort_unstable();
        plugins.dedup();
        plugins
    }

    /// Upstream's message, with `post_filter` (preemption's verdict) appended.
    pub fn message(&self, post_filter: &str) -> String {
        if self.total == 0 {
            return NO_NODES.to_string();
        }
        let pre = self.pre_filter.as_ref().map(|r| r.reasons.join(", "));
        fit_message(
            self.total,
            self.rejections.iter().map(|(_, r)| r),
            None,
            pre.as_deref(),
            post_filter,
        )
    }
}

/// The scheduling algorithm and what it carries between attempts.
pub struct Algorithm {
    /// The plugins.
    pub profile: Profile,
    /// Where the next attempt starts looking, so that all nodes get their turn.
    next_start: usize,
    rng: u64,
    /// `percentageOfNodesToScore`; 0 is adaptive.
    percentage: usize,
}

impl Algorithm {
    /// The default profile with `percentage` of nodes to score (0: upstream's adaptive rule).
    pub fn new(percentage: usize) -> Algorithm {
        Algorithm {
            profile: Profile::default_profile(),
            next_start: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            percentage,
        }
    }

    /// How many feasible nodes to find before scoring.
    pub fn feasible_nodes_to_find(&self, total: usize) -> usize {
        if total < MIN_FEASIBLE_NODES || self.percentage >= 100 {
            return total;
        }
        let percentage = if self.percentage > 0 {
            self.percentage
        } else {
            50usize.saturating_sub(total / 125).max(MIN_FEASIBLE_PERCENTAGE)
        };
        (total * percentage / 100).max(MIN_FEASIBLE_NODES)
    }

    /// Runs every Filter plugin against a node.
    pub fn filter(&self, cycle: &Cycle<'_>, state: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        for plugin in &self.profile.filters {
            plugin.filter(cycle, state, node)?;
        }
        Ok(())
    }

    /// Runs the filters with the pods nominated to the node that are at least as important
    /// as this one counted as if already there.
    pub fn filter_with_nominated<'a>(
        &self,
        cycle: &Cycle<'a>,
        state: &CycleState<'a>,
        node: &'a NodeInfo,
        nominator: &Nominator,
    ) -> Result<(), Rejection> {
        let pod = cycle.pod;
        let mut ahead = nominator
            .on_node(&node.name)
            .iter()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .peekable();
        if ahead.peek().is_none() {
            return self.filter(cycle, state, node);
        }
        let mut with = node.clone();
        let mut with_state = state.clone();
        for p in ahead {
            self.add_to(cycle, &mut with_state, &mut with, node, p);
        }
        self.filter(cycle, &with_state, &with)
    }

    /// Adds a pod to a copy of a node, and to the plugins' state (`original` is the cached
    /// node, whose labels the state borrows).
    pub fn add_to<'a>(
        &self,
        cycle: &Cycle<'a>,
        state: &mut CycleState<'a>,
        copy: &mut NodeInfo,
        original: &'a NodeInfo,
        pod: &Arc<PodInfo>,
    ) {
        let placed = PlacedPod {
            info: pod.clone(),
            // Not interned: the plugins that read sets use the cache's nodes, not copies.
            label_set: u32::MAX,
            anti_set: None,
        };
        for plugin in &self.profile.filters {
            plugin.add_pod(cycle, state, &placed, original);
        }
        copy.add_pod(placed);
    }

    /// Runs the PreFilter plugins.
    pub fn pre_filter<'a>(&self, cycle: &Cycle<'a>) -> Result<CycleState<'a>, Rejection> {
        let mut state = CycleState::default();
        for plugin in &self.profile.filters {
            plugin.pre_filter(cycle, &mut state)?;
        }
        Ok(state)
    }

    /// Picks a node for the pod, or says why none fits.
    pub fn schedule(&mut self, cache: &Cache, pod: &PodInfo, nominator: &Nominator) -> Result<Arc<str>, FitFailure> {
        let nodes = cache.nodes();
        let total = nodes.len();
        let fail = |rejections, pre_filter| FitFailure {
            total,
            rejections,
            pre_filter,
        };
        if total == 0 {
            return Err(fail(Vec::new(), None));
        }
        let cycle = Cycle { pod, cache };
        let state = match self.pre_filter(&cycle) {
            Ok(state) => state,
            Err(r) => return Err(fail(Vec::new(), Some(r))),
        };
        // A pod that preemption made room for tries its nominated node first.
        let nominated = nominator
            .node_of(&pod.key)
            .map(|n| &**n)
            .or(pod.nominated_node.as_deref());
        if let Some(i) = nominated.and_then(|n| cache.node_position(n))
            && self.filter_with_nominated(&cycle, &state, &nodes[i], nominator).is_ok()
        {
            return Ok(nodes[i].name.clone());
        }
        let wanted = self.feasible_nodes_to_find(total);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted.min(total));
        let mut rejections = Vec::new();
        let mut processed = 0;
        for offset in 0..total {
            let i = (self.next_start + offset) % total;
            processed += 1;
            match self.filter_with_nominated(&cycle, &state, &nodes[i], nominator) {
                Ok(()) => {
                    feasible.push(&nodes[i]);
                    if feasible.len() >= wanted {
                        break;
                    }
                }
                Err(r) => rejections.push((i, r)),
            }
        }
        self.next_start = (self.next_start + processed) % total;
        match feasible.len() {
            0 => Err(fail(rejections, None)),
            1 => Ok(feasible[0].name.clone()),
            _ => Ok(self.select(&cycle, state, &feasible)),
        }
    }

    /// Scores the feasible nodes and picks the best, at random among equals.
    fn select<'a>(&mut self, cycle: &Cycle<'a>, mut state: CycleState<'a>, feasible: &[&'a NodeInfo]) -> Arc<str> {
        for (plugin, _) in &self.profile.scorers {
            plugin.pre_score(cycle, &mut state, feasible);
        }
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.profile.scorers {
            for (score, node) in scores.iter_mut().zip(feasible) {
                *score = plugin.score(cycle, &state, node);
            }
            plugin.normalize(&state, feasible, &mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                *total += score * weight;
            }
        }
        let mut best = 0;
        let mut ties = 0u64;
        for (i, total) in totals.iter().enumerate() {
            if *total > totals[best] {
                best = i;
                ties = 1;
            } else if *total == totals[best] {
                ties += 1;
                // Reservoir sampling: each of the equal best is kept with equal chance.
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        feasible[best].name.clone()
    }

    /// A xorshift step: cheap randomness for tie-breaking and preemption's starting point.
    pub fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{cluster, nodes, pod};
    use serde_json::json;

    fn asking(name: &str, cpu: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}}))
    }

    #[test]
    fn sample_size_follows_upstream() {
        let a = Algorithm::new(0);
        assert_eq!(a.feasible_nodes_to_find(50), 50);
        assert_eq!(a.feasible_nodes_to_find(1000), 420);
        assert_eq!(a.feasible_nodes_to_find(5000), 500);
        assert_eq!(a.feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn picks_the_least_allocated_node() {
        let mut cache = cluster(&nodes(3), &[]);
        for (name, node) in [("a", "n0"), ("b", "n2")] {
            let mut p = asking(name, "2");
            p.node_name = Some(node.into());
            cache.add_pod(Arc::new(p));
        }
        let mut alg = Algorithm::new(0);
        let chosen = alg.schedule(&cache, &asking("c", "1"), &Nominator::default()).unwrap();
        assert_eq!(&*chosen, "n1");
    }

    #[test]
    fn failure_counts_reasons() {
        let cache = cluster(&nodes(3), &[]);
        let mut alg = Algorithm::new(0);
        let err = alg.schedule(&cache, &asking("big", "3"), &Nominator::default());
        assert!(err.is_ok());
        let mut full = cluster(&nodes(3), &[]);
        for i in 0..3 {
            let mut p = asking(&format!("f{i}"), "3");
            p.node_name = Some(format!("n{i}"));
            full.add_pod(Arc::new(p));
        }
        let err = alg
            .schedule(&full, &asking("big", "3"), &Nominator::default())
            .unwrap_err();
        assert_eq!(err.message(""), "0/3 nodes are available: 3 Insufficient cpu.");
        assert_eq!(err.plugins(), vec!["NodeResourcesFit"]);
        let empty = Cache::default();
        assert_eq!(
            alg.schedule(&empty, &asking("x", "1"), &Nominator::default())
                .unwrap_err()
                .message(""),
            NO_NODES
        );
    }

    #[test]
    fn nominated_pods_hold_their_room() {
        let cache = cluster(&nodes(1), &[]);
        let mut nominator = Nominator::default();
        let mut important = asking("vip", "3");
        important.priority = 100;
        nominator.nominate(Arc::new(important), "n0".into());
        let mut alg = Algorithm::new(0);
        assert!(alg.schedule(&cache, &asking("late", "2"), &nominator).is_err());
    }
}

#[cfg(test)]
mod throughput {
    //! The algorithm alone at upstream's benchmark scale, without any API in the way:
    //! `cargo test --release -p kate-scheduler throughput -- --ignored --nocapture`.

    use super::*;
    use crate::plugins::tests::{cluster, pod};
    use serde_json::json;
    use std::time::Instant;

    fn run(name: &str, extra: serde_json::Value, nodes: usize, placed: usize, pods: usize) {
        let node_json: Vec<serde_json::Value> = (0..nodes)
            .map(|i| {
                // The labels of a simulated node: long keys with shared prefixes.
                json!({"metadata": {"name": format!("n{i}"), "labels": {
                    "kubernetes.io/hostname": format!("n{i}"),
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "kate-simulated",
                    "topology.kubernetes.io/region": "kate-sim",
                    "topology.kubernetes.io/zone": format!("z{}", i % 3),
                    "kate.dev/simulated": "true"}}})
            })
            .collect();
        let mut cache = cluster(&node_json, &[]);
        let nominator = Nominator::default();
        let mut alg = Algorithm::new(0);
        let make = |i: usize| {
            let mut spec = json!({"containers": [{"name": "c", "image": "pause",
                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]});
            for (k, v) in extra.as_object().into_iter().flatten() {
                spec[k] = v.clone();
            }
            pod(json!({"metadata": {"name": format!("p{i}"), "labels": {"color": "green"}}, "spec": spec}))
        };
        let place = |cache: &mut Cache, alg: &mut Algorithm, i: usize| {
            let p = make(i);
            let node = alg.schedule(cache, &p, &nominator).expect("fits");
            let mut bound = p;
            bound.node_name = Some(node.to_string());
            cache.assume(Arc::new(bound), node);
        };
        for i in 0..placed {
            place(&mut cache, &mut alg, i);
        }
        let started = Instant::now();
        for i in placed..placed + pods {
            place(&mut cache, &mut alg, i);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {nodes} nodes, {placed} placed, {pods} pods: {:.0} pods/s",
            pods as f64 / secs
        );
    }

    #[test]
    #[ignore = "a measurement, not a check"]
    fn throughput() {
        run("basic", json!({}), 5000, 1000, 10_000);
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "green"}}}]});
        run("topology spread", spread, 5000, 1000, 10_000);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        run("anti-affinity", anti, 5000, 1000, 4000);
    }
}
