//! PodTopologySpread: DoNotSchedule constraints reject nodes whose domain would exceed the
//! allowed skew over the emptiest domain; ScheduleAnyway constraints (and, for pods without
//! constraints that a service or workload selects, upstream's defaults: at most 3 apart per
//! host and 5 per zone) prefer emptier domains.
//!
//! Pods are counted per node through the cache's label-set groups, so a cycle matches each
//! distinct label set against a selector once rather than every pod.

use super::node_affinity::pod_matches_node;
use super::taint_toleration::first_untolerated;
use crate::framework::{Cycle, CycleState, MAX_NODE_SCORE, Plugin, Rejection};
use crate::hash::FastMap;
use crate::labels::Selector;
use crate::node::{NodeInfo, PlacedPod};
use crate::pod::{PodInfo, SpreadConstraint};

/// Upstream's reason when the skew would be too large.
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream's reason when the node lacks a constraint's topology label.
pub const REASON_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// The PodTopologySpread plugin.
pub struct PodTopologySpread;

/// Counts a selector's pods on nodes, remembering per label set whether it matches.
struct SetMatcher<'a> {
    cycle: &'a Cycle<'a>,
    selector: &'a Selector,
    memo: Vec<u8>,
}

impl<'a> SetMatcher<'a> {
    fn new(cycle: &'a Cycle<'a>, selector: &'a Selector) -> SetMatcher<'a> {
        SetMatcher {
            cycle,
            selector,
            memo: vec![0; cycle.cache.label_set_bound()],
        }
    }

    /// Live pods on `node` in the pod's namespace that the selector matches.
    fn count(&mut self, node: &NodeInfo) -> i64 {
        let mut n = 0;
        for g in &node.label_groups {
            // Copies of nodes hold pods with no interned set; they never match.
            let Some(slot) = self.memo.get_mut(g.id as usize) else {
                continue;
            };
            if *slot == 0 {
                let matches = self
                    .cycle
                    .cache
                    .label_set(g.id)
                    .is_some_and(|(ns, labels)| *ns == self.cycle.pod.namespace && self.selector.matches(labels));
                *slot = if matches { 1 } else { 2 };
            }
            if *slot == 1 {
                n += i64::from(g.live);
            }
        }
        n
    }
}

/// The interned ids of the constraints' topology keys (`None`: no node has the key).
fn key_atoms(cycle: &Cycle<'_>, constraints: &[SpreadConstraint]) -> Vec<Option<u32>> {
    constraints.iter().map(|c| cycle.cache.atom(&c.topology_key)).collect()
}

/// Whether the node has every one of the keys.
fn has_all(node: &NodeInfo, keys: &[Option<u32>]) -> bool {
    keys.iter().all(|k| k.is_some_and(|k| node.label_atom(k).is_some()))
}

/// The node's interned value for a key.
fn value_of(node: &NodeInfo, key: Option<u32>) -> Option<u32> {
    node.label_atom(key?)
}

/// Whether the node counts for a constraint under its node inclusion policies.
fn included(pod: &PodInfo, c: &SpreadConstraint, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || pod_matches_node(pod, node))
        && (!c.honor_taints || first_untolerated(&node.taints, &pod.tolerations).is_none())
}

/// Per DoNotSchedule constraint: matching pods per domain (by interned label value) and the
/// smallest count.
#[derive(Clone)]
pub struct FilterState {
    constraints: Vec<SpreadConstraint>,
    keys: Vec<Option<u32>>,
    counts: Vec<FastMap<u32, i64>>,
    min: Vec<i64>,
    self_match: Vec<bool>,
}

impl FilterState {
    fn recompute_min(&mut self) {
        for (i, c) in self.constraints.iter().enumerate() {
            let domains = &self.counts[i];
            self.min[i] = if (domains.len() as i32) < c.min_domains {
                0
            } else {
                domains.values().copied().min().unwrap_or(0)
            };
        }
    }

    fn adjust(&mut self, pod: &PodInfo, other: &PlacedPod, node: &NodeInfo, delta: i64) {
        let other = &other.info;
        if other.namespace != pod.namespace || other.deleting {
            return;
        }
        if !has_all(node, &self.keys) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if included(pod, c, node)
                && c.selector.matches(&other.labels)
                && let Some(value) = value_of(node, self.keys[i])
            {
                *self.counts[i].entry(value).or_default() += delta;
            }
        }
        self.recompute_min();
    }
}

/// Per ScheduleAnyway constraint, the raw score of each feasible node (`None`: ignored).
#[derive(Clone)]
pub struct ScoreState<'a> {
    scores: FastMap<&'a str, Option<i64>>,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>) -> Result<(), Rejection> {
        let constraints: Vec<SpreadConstraint> = cycle.pod.spread.iter().filter(|c| c.hard).cloned().collect();
        if constraints.is_empty() {
            return Ok(());
        }
        let keys = key_atoms(cycle, &constraints);
        let mut counts: Vec<FastMap<u32, i64>> = vec![FastMap::default(); constraints.len()];
        {
            let mut matchers: Vec<SetMatcher<'_>> = constraints
                .iter()
                .map(|c| SetMatcher::new(cycle, &c.selector))
                .collect();
            for node in cycle.cache.nodes() {
                if !has_all(node, &keys) {
                    continue;
                }
                for (i, c) in constraints.iter().enumerate() {
                    if included(cycle.pod, c, node)
                        && let Some(value) = value_of(node, keys[i])
                    {
                        *counts[i].entry(value).or_default() += matchers[i].count(node);
                    }
                }
            }
        }
        let self_match = constraints
            .iter()
            .map(|c| c.selector.matches(&cycle.pod.labels))
            .collect();
        let mut filter = FilterState {
            min: vec![0; constraints.len()],
            constraints,
            keys,
            counts,
            self_match,
        };
        filter.recompute_min();
        state.spread = Some(filter);
        Ok(())
    }

    fn filter(&self, _: &Cycle<'_>, state: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(s) = &state.spread else { return Ok(()) };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = value_of(node, s.keys[i]) else {
                return Err(Rejection::unresolvable(self.name(), REASON_LABEL));
            };
            let matching = s.counts[i].get(&value).copied().unwrap_or(0);
            let skew = matching + i64::from(s.self_match[i]) - s.min[i];
            if skew > i64::from(c.max_skew) {
                return Err(Rejection::unschedulable(self.name(), REASON_SKEW));
            }
        }
        Ok(())
    }

    fn add_pod<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, pod: &PlacedPod, node: &'a NodeInfo) {
        if let Some(s) = &mut state.spread {
            s.adjust(cycle.pod, pod, node, 1);
        }
    }

    fn remove_pod<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, pod: &PlacedPod, node: &'a NodeInfo) {
        if let Some(s) = &mut state.spread {
            s.adjust(cycle.pod, pod, node, -1);
        }
    }

    fn pre_score<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, nodes: &[&'a NodeInfo]) {
        let pod = cycle.pod;
        let constraints: Vec<SpreadConstraint> = if pod.spread.is_empty() {
            match cycle.cache.default_selector(pod) {
                Some(selector) => vec![
                    SpreadConstraint::soft(HOSTNAME, 3, selector.clone()),
                    SpreadConstraint::soft(ZONE, 5, selector),
                ],
                None => Vec::new(),
            }
        } else {
            pod.spread.iter().filter(|c| !c.hard).cloned().collect()
        };
        if constraints.is_empty() {
            return;
        }
        // With explicit constraints a node lacking a topology label is left out; the
        // defaults tolerate nodes without zones.
        let require_all = !pod.spread.is_empty();
        let keys = key_atoms(cycle, &constraints);
        let counted = |node: &NodeInfo| !require_all || has_all(node, &keys);
        let mut domains: Vec<FastMap<u32, i64>> = vec![FastMap::default(); constraints.len()];
        let mut scored = 0usize;
        for node in nodes.iter().filter(|n| counted(n)) {
            scored += 1;
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != HOSTNAME
                    && let Some(v) = value_of(node, keys[i])
                {
                    domains[i].entry(v).or_insert(0);
                }
            }
        }
        let weights: Vec<f64> = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME {
                    scored
                } else {
                    domains[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let mut matchers: Vec<SetMatcher<'_>> = constraints
            .iter()
            .map(|c| SetMatcher::new(cycle, &c.selector))
            .collect();
        for node in cycle.cache.nodes().iter().filter(|n| counted(n)) {
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME || !included(pod, c, node) {
                    continue;
                }
                let Some(v) = value_of(node, keys[i]) else { continue };
                if domains[i].contains_key(&v) {
                    let n = matchers[i].count(node);
                    *domains[i].entry(v).or_default() += n;
                }
            }
        }
        let mut scores = FastMap::with_capacity_and_hasher(nodes.len(), Default::default());
        for node in nodes {
            if !counted(node) {
                scores.insert(&*node.name, None);
                continue;
            }
            let mut total = 0.0;
            for (i, c) in constraints.iter().enumerate() {
                let Some(v) = value_of(node, keys[i]) else { continue };
                let count = if c.topology_key == HOSTNAME {
                    matchers[i].count(node)
                } else {
                    domains[i].get(&v).copied().unwrap_or(0)
                };
                total += count as f64 * weights[i] + f64::from(c.max_skew - 1);
            }
            scores.insert(&*node.name, Some(total.round() as i64));
        }
        state.spread_score = Some(ScoreState { scores });
    }

    fn score(&self, _: &Cycle<'_>, state: &CycleState<'_>, node: &NodeInfo) -> i64 {
        state
            .spread_score
            .as_ref()
            .and_then(|s| s.scores.get(&*node.name).copied().flatten())
            .unwrap_or(0)
    }

    fn normalize(&self, state: &CycleState<'_>, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(s) = &state.spread_score else { return };
        let ignored = |node: &NodeInfo| s.scores.get(&*node.name).is_none_or(Option::is_none);
        let counted = || {
            nodes
                .iter()
                .zip(scores.iter())
                .filter(|(n, _)| !ignored(n))
                .map(|(_, s)| *s)
        };
        let (min, max) = (counted().min().unwrap_or(0), counted().max().unwrap_or(0));
        for (node, score) in nodes.iter().zip(scores.iter_mut()) {
            *score = if ignored(node) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{cluster, pod};
    use serde_json::json;

    fn zone_nodes() -> Vec<serde_json::Value> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, z)| json!({"metadata": {"name": format!("n{i}"), "labels": {"kubernetes.io/hostname": format!("n{i}"), ZONE: z}}}))
            .collect()
    }

    fn web(name: &str, node: Option<&str>, when: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {
            "nodeName": node,
            "containers": [{"name": "c"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    }

    #[test]
    fn do_not_schedule_keeps_zones_within_skew() {
        let cache = cluster(&zone_nodes(), &[web("a", Some("n0"), "DoNotSchedule")]);
        let p = pod(web("b", None, "DoNotSchedule"));
        let cycle = Cycle { pod: &p, cache: &cache };
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&cycle, &mut state).unwrap();
        let n0 = cache.node("n0").unwrap();
        let err = PodTopologySpread.filter(&cycle, &state, n0).unwrap_err();
        assert_eq!(err.reasons, vec![REASON_SKEW]);
        assert!(
            PodTopologySpread
                .filter(&cycle, &state, cache.node("n1").unwrap())
                .is_ok()
        );

        // Removing the pod (as preemption would) makes n0 fit again.
        let placed = n0.pods[0].clone();
        PodTopologySpread.remove_pod(&cycle, &mut state, &placed, n0);
        assert!(PodTopologySpread.filter(&cycle, &state, n0).is_ok());
    }

    #[test]
    fn missing_label_is_unresolvable() {
        let mut nodes = zone_nodes();
        nodes.push(json!({"metadata": {"name": "bare"}}));
        let cache = cluster(&nodes, &[]);
        let p = pod(web("b", None, "DoNotSchedule"));
        let cycle = Cycle { pod: &p, cache: &cache };
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&cycle, &mut state).unwrap();
        let err = PodTopologySpread
            .filter(&cycle, &state, cache.node("bare").unwrap())
            .unwrap_err();
        assert_eq!(err.reasons, vec![REASON_LABEL]);
    }

    #[test]
    fn schedule_anyway_prefers_empty_zones() {
        let cache = cluster(
            &zone_nodes(),
            &[
                web("a", Some("n0"), "ScheduleAnyway"),
                web("b", Some("n0"), "ScheduleAnyway"),
                web("c", Some("n1"), "ScheduleAnyway"),
            ],
        );
        let p = pod(web("d", None, "ScheduleAnyway"));
        let s = crate::plugins::tests::cluster_scores(&PodTopologySpread, &p, &cache);
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], MAX_NODE_SCORE);
    }

    #[test]
    fn defaults_apply_to_pods_of_a_service() {
        let mut cache = cluster(
            &zone_nodes(),
            &[
                json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n0", "containers": [{"name": "c"}]}}),
            ],
        );
        let p = pod(json!({"metadata": {"name": "b", "labels": {"app": "web"}}}));
        let flat = crate::plugins::tests::cluster_scores(&PodTopologySpread, &p, &cache);
        assert_eq!(flat, vec![0, 0, 0], "no service, no default spreading");
        cache.set_owner_selector(
            "default",
            "Service/web".into(),
            Some(Selector::from_map(&[("app".into(), "web".into())].into())),
        );
        let s = crate::plugins::tests::cluster_scores(&PodTopologySpread, &p, &cache);
        assert!(s[0] < s[1] && s[1] == s[2], "{s:?}");
    }
}
