//! InterPodAffinity: required pod affinity (the node's domain must hold a matching pod),
//! required anti-affinity (it must hold none), the anti-affinity of pods already placed (the
//! new pod must not be one they repel), and preferred terms of both sides as a score.
//!
//! Counts are per topology domain (a value of the term's topology key). Existing pods are
//! visited through the cache's label-set and term-set groups, so each distinct label set or
//! term set is matched once per cycle.

use crate::framework::{Cycle, CycleState, MAX_NODE_SCORE, Plugin, Rejection};
use crate::hash::FastMap;
use crate::labels::Labels;
use crate::node::{NodeInfo, PlacedPod};
use crate::pod::{AffinityTerm, PodInfo};

/// Upstream's reason when no pod satisfies the pod's affinity.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Upstream's reason when the pod's anti-affinity forbids the node.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Upstream's reason when a placed pod's anti-affinity forbids the node.
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// The weight of a placed pod's required affinity when scoring (upstream's
/// `hardPodAffinityWeight` default).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// The InterPodAffinity plugin.
pub struct InterPodAffinity;

/// Remembers, per label set, whether a term matches it.
struct TermMemo<'a> {
    term: &'a AffinityTerm,
    memo: Vec<u8>,
}

impl<'a> TermMemo<'a> {
    fn new(term: &'a AffinityTerm, bound: usize) -> TermMemo<'a> {
        TermMemo {
            term,
            memo: vec![0; bound],
        }
    }

    fn matches(&mut self, cycle: &Cycle<'_>, set: u32) -> bool {
        // Copies of nodes hold pods with no interned set; they never match.
        let Some(slot) = self.memo.get_mut(set as usize) else {
            return false;
        };
        if *slot == 0 {
            let hit = cycle
                .cache
                .label_set(set)
                .is_some_and(|(ns, labels)| self.term.matches(ns, labels, cycle.cache.namespace_labels(ns)));
            *slot = if hit { 1 } else { 2 };
        }
        *slot == 1
    }
}

fn add(map: &mut FastMap<u32, i64>, key: u32, delta: i64) {
    let entry = map.entry(key).or_default();
    *entry += delta;
    if *entry == 0 {
        map.remove(&key);
    }
}

/// Whether a placed pod's term is about the incoming pod.
fn term_matches_pod(term: &AffinityTerm, pod: &PodInfo, cycle: &Cycle<'_>) -> bool {
    term.matches(
        &pod.namespace,
        &pod.labels,
        cycle.cache.namespace_labels(&pod.namespace),
    )
}

/// The node's (key, value) label pair for a topology key, borrowed from the node.
fn domain<'a>(labels: &'a Labels, key: &str) -> Option<(&'a str, &'a str)> {
    labels.get_key_value(key).map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The node's interned (key, value) for a topology key.
fn domain_atoms(cycle: &Cycle<'_>, node: &NodeInfo, key: &str) -> Option<(u32, u32)> {
    let key = cycle.cache.atom(key)?;
    Some((key, node.label_atom(key)?))
}

/// Counts for the required terms, by interned topology key and value.
#[derive(Clone)]
pub struct FilterState {
    /// Domains where a placed pod's anti-affinity repels the pod.
    existing_anti: FastMap<(u32, u32), i64>,
    /// The interned topology key of each required affinity term.
    affinity_keys: Vec<Option<u32>>,
    /// Per required affinity term: matching pods per domain.
    affinity: Vec<FastMap<u32, i64>>,
    /// The interned topology key of each required anti-affinity term.
    anti_keys: Vec<Option<u32>>,
    /// Per required anti-affinity term: matching pods per domain.
    anti: Vec<FastMap<u32, i64>>,
    /// The pod matches all its own affinity terms, so it may be the first of its group.
    matches_own_affinity: bool,
}

impl FilterState {
    fn adjust(&mut self, cycle: &Cycle<'_>, other: &PlacedPod, node: &NodeInfo, delta: i64) {
        let pod = cycle.pod;
        let other = &other.info;
        for term in &other.anti_affinity {
            if let Some(pair) = domain_atoms(cycle, node, &term.topology_key)
                && term_matches_pod(term, pod, cycle)
            {
                let entry = self.existing_anti.entry(pair).or_default();
                *entry += delta;
                if *entry == 0 {
                    self.existing_anti.remove(&pair);
                }
            }
        }
        let ns_labels = cycle.cache.namespace_labels(&other.namespace);
        for (terms, counts) in [
            (&pod.affinity, &mut self.affinity),
            (&pod.anti_affinity, &mut self.anti),
        ] {
            for (term, map) in terms.iter().zip(counts.iter_mut()) {
                if let Some((_, value)) = domain_atoms(cycle, node, &term.topology_key)
                    && term.matches(&other.namespace, &other.labels, ns_labels)
                {
                    add(map, value, delta);
                }
            }
        }
    }
}

/// Per topology key and value, the preference score of the domain.
#[derive(Clone)]
pub struct ScoreState<'a> {
    topology: FastMap<&'a str, FastMap<&'a str, i64>>,
}

impl<'a> ScoreState<'a> {
    fn add(&mut self, labels: &'a Labels, key: &str, delta: i64) {
        if let Some((k, v)) = domain(labels, key) {
            *self.topology.entry(k).or_default().entry(v).or_default() += delta;
        }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>) -> Result<(), Rejection> {
        let (pod, cache) = (cycle.pod, cycle.cache);
        // The usual pod, with no terms among pods with none, has nothing to count on any node.
        if pod.affinity.is_empty() && pod.anti_affinity.is_empty() && !cache.has_anti_affinity_pods() {
            return Ok(());
        }
        let mut existing_anti: FastMap<(u32, u32), i64> = FastMap::default();
        // Per anti-affinity term set: a bit per term that repels this pod, and the terms' keys.
        let mut repels: Vec<Option<(u64, Vec<Option<u32>>)>> = vec![None; cache.anti_set_bound()];
        let keys = |terms: &[AffinityTerm]| -> Vec<Option<u32>> {
            terms.iter().map(|t| cache.atom(&t.topology_key)).collect()
        };
        let (affinity_keys, anti_keys) = (keys(&pod.affinity), keys(&pod.anti_affinity));
        let mut affinity: Vec<TermMemo<'_>> = pod
            .affinity
            .iter()
            .map(|t| TermMemo::new(t, cache.label_set_bound()))
            .collect();
        let mut anti: Vec<TermMemo<'_>> = pod
            .anti_affinity
            .iter()
            .map(|t| TermMemo::new(t, cache.label_set_bound()))
            .collect();
        let mut affinity_counts: Vec<FastMap<u32, i64>> = vec![FastMap::default(); affinity.len()];
        let mut anti_counts: Vec<FastMap<u32, i64>> = vec![FastMap::default(); anti.len()];
        for node in cache.nodes() {
            for g in &node.anti_groups {
                let Some(terms) = cache.anti_set(g.id) else { continue };
                let (mask, term_keys) = repels[g.id as usize].get_or_insert_with(|| {
                    let mask = terms
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| term_matches_pod(t, pod, cycle))
                        .fold(0u64, |m, (i, _)| m | (1u64 << (i % 64)));
                    (mask, keys(terms))
                });
                for (i, key) in term_keys.iter().enumerate() {
                    if *mask & (1 << (i % 64)) != 0
                        && let Some(key) = *key
                        && let Some(value) = node.label_atom(key)
                    {
                        *existing_anti.entry((key, value)).or_default() += i64::from(g.count);
                    }
                }
            }
            for (memos, term_keys, counts) in [
                (&mut affinity, &affinity_keys, &mut affinity_counts),
                (&mut anti, &anti_keys, &mut anti_counts),
            ] {
                for ((memo, key), map) in memos.iter_mut().zip(term_keys).zip(counts.iter_mut()) {
                    let Some(value) = key.and_then(|k| node.label_atom(k)) else {
                        continue;
                    };
                    for g in &node.label_groups {
                        if memo.matches(cycle, g.id) {
                            *map.entry(value).or_default() += i64::from(g.count);
                        }
                    }
                }
            }
        }
        if existing_anti.is_empty() && pod.affinity.is_empty() && pod.anti_affinity.is_empty() {
            return Ok(());
        }
        let ns_labels = cache.namespace_labels(&pod.namespace);
        state.affinity = Some(FilterState {
            existing_anti,
            affinity_keys,
            affinity: affinity_counts,
            anti_keys,
            anti: anti_counts,
            matches_own_affinity: pod
                .affinity
                .iter()
                .all(|t| t.matches(&pod.namespace, &pod.labels, ns_labels)),
        });
        Ok(())
    }

    fn filter(&self, _: &Cycle<'_>, state: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(s) = &state.affinity else { return Ok(()) };
        let mut affinity_met = true;
        for (key, counts) in s.affinity_keys.iter().zip(&s.affinity) {
            let Some(value) = key.and_then(|k| node.label_atom(k)) else {
                return Err(Rejection::unresolvable(self.name(), REASON_AFFINITY));
            };
            affinity_met &= counts.get(&value).is_some_and(|n| *n > 0);
        }
        // The first pod of a group that matches its own terms may start it anywhere.
        let first_of_group = s.affinity.iter().all(|m| m.is_empty()) && s.matches_own_affinity;
        if !affinity_met && !first_of_group {
            return Err(Rejection::unresolvable(self.name(), REASON_AFFINITY));
        }
        for (key, counts) in s.anti_keys.iter().zip(&s.anti) {
            if let Some(value) = key.and_then(|k| node.label_atom(k))
                && counts.get(&value).is_some_and(|n| *n > 0)
            {
                return Err(Rejection::unschedulable(self.name(), REASON_ANTI_AFFINITY));
            }
        }
        if !s.existing_anti.is_empty()
            && node
                .label_atoms
                .iter()
                .any(|pair| s.existing_anti.get(pair).is_some_and(|n| *n > 0))
        {
            return Err(Rejection::unschedulable(self.name(), REASON_EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }

    fn add_pod<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, pod: &PlacedPod, node: &'a NodeInfo) {
        if let Some(s) = &mut state.affinity {
            s.adjust(cycle, pod, node, 1);
        }
    }

    fn remove_pod<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, pod: &PlacedPod, node: &'a NodeInfo) {
        if let Some(s) = &mut state.affinity {
            s.adjust(cycle, pod, node, -1);
        }
    }

    fn pre_score<'a>(&self, cycle: &Cycle<'a>, state: &mut CycleState<'a>, _: &[&'a NodeInfo]) {
        let (pod, cache) = (cycle.pod, cycle.cache);
        let has_preferred = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !has_preferred && !cache.has_scoring_affinity_pods() {
            return;
        }
        let bound = cache.label_set_bound();
        let mut preferred: Vec<(i64, TermMemo<'_>)> = pod
            .preferred_affinity
            .iter()
            .map(|(w, t)| (i64::from(*w), TermMemo::new(t, bound)))
            .chain(
                pod.preferred_anti_affinity
                    .iter()
                    .map(|(w, t)| (-i64::from(*w), TermMemo::new(t, bound))),
            )
            .collect();
        let mut score = ScoreState {
            topology: FastMap::default(),
        };
        for node in cache.nodes() {
            if node.labels.is_empty() {
                continue;
            }
            for (weight, memo) in preferred.iter_mut() {
                let key = &memo.term.topology_key;
                for g in &node.label_groups {
                    if memo.matches(cycle, g.id) {
                        score.add(&node.labels, key, *weight * i64::from(g.count));
                    }
                }
            }
            if node.scoring_affinity_pods == 0 {
                continue;
            }
            for other in node.pods.iter().map(|p| &p.info).filter(|p| p.has_scoring_affinity()) {
                for term in other.affinity.iter().filter(|t| term_matches_pod(t, pod, cycle)) {
                    score.add(&node.labels, &term.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
                for (w, term) in other
                    .preferred_affinity
                    .iter()
                    .filter(|(_, t)| term_matches_pod(t, pod, cycle))
                {
                    score.add(&node.labels, &term.topology_key, i64::from(*w));
                }
                for (w, term) in other
                    .preferred_anti_affinity
                    .iter()
                    .filter(|(_, t)| term_matches_pod(t, pod, cycle))
                {
                    score.add(&node.labels, &term.topology_key, -i64::from(*w));
                }
            }
        }
        state.affinity_score = Some(score);
    }

    fn score(&self, _: &Cycle<'_>, state: &CycleState<'_>, node: &NodeInfo) -> i64 {
        let Some(s) = &state.affinity_score else { return 0 };
        s.topology
            .iter()
            .filter_map(|(key, values)| values.get(node.labels.get(*key)?.as_str()))
            .sum()
    }

    fn normalize(&self, state: &CycleState<'_>, _: &[&NodeInfo], scores: &mut [i64]) {
        if state.affinity_score.as_ref().is_none_or(|s| s.topology.is_empty()) {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max > min {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{cluster, cluster_scores, pod};
    use serde_json::json;

    fn nodes() -> Vec<serde_json::Value> {
        (0..3)
            .map(|i| {
                json!({"metadata": {"name": format!("n{i}"), "labels": {
                "kubernetes.io/hostname": format!("n{i}"),
                "topology.kubernetes.io/zone": if i < 2 { "a" } else { "b" }}}})
            })
            .collect()
    }

    fn with(
        name: &str,
        node: Option<&str>,
        labels: serde_json::Value,
        affinity: serde_json::Value,
    ) -> serde_json::Value {
        json!({"metadata": {"name": name, "labels": labels},
               "spec": {"nodeName": node, "containers": [{"name": "c"}], "affinity": affinity}})
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn run(cache: &crate::cache::Cache, p: &PodInfo) -> Vec<Result<(), Rejection>> {
        let cycle = Cycle { pod: p, cache };
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&cycle, &mut state).unwrap();
        cache
            .nodes()
            .iter()
            .map(|n| InterPodAffinity.filter(&cycle, &state, n))
            .collect()
    }

    #[test]
    fn anti_affinity_one_per_node() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")]}});
        let cache = cluster(&nodes(), &[with("a", Some("n0"), json!({"app": "web"}), anti.clone())]);
        let results = run(&cache, &pod(with("b", None, json!({"app": "web"}), anti)));
        assert_eq!(results[0].as_ref().unwrap_err().reasons, vec![REASON_ANTI_AFFINITY]);
        assert!(results[1].is_ok() && results[2].is_ok());
    }

    #[test]
    fn existing_pods_repel() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "topology.kubernetes.io/zone")]}});
        let cache = cluster(&nodes(), &[with("a", Some("n0"), json!({"app": "db"}), anti)]);
        let results = run(&cache, &pod(with("b", None, json!({"app": "web"}), json!({}))));
        assert_eq!(
            results[0].as_ref().unwrap_err().reasons,
            vec![REASON_EXISTING_ANTI_AFFINITY]
        );
        assert!(results[1].is_err(), "same zone");
        assert!(results[2].is_ok());
    }

    #[test]
    fn affinity_needs_a_match_unless_first_of_group() {
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "topology.kubernetes.io/zone")]}});
        let cache = cluster(&nodes(), &[with("a", Some("n2"), json!({"app": "db"}), json!({}))]);
        let results = run(&cache, &pod(with("b", None, json!({"app": "web"}), aff)));
        assert_eq!(results[0].as_ref().unwrap_err().reasons, vec![REASON_AFFINITY]);
        assert!(results[2].is_ok());

        let own = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "topology.kubernetes.io/zone")]}});
        let empty = cluster(&nodes(), &[]);
        assert!(
            run(&empty, &pod(with("c", None, json!({"app": "web"}), own)))
                .iter()
                .all(Result::is_ok)
        );
    }

    #[test]
    fn preferred_affinity_scores_domains() {
        let pref = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": term("db", "topology.kubernetes.io/zone")}]}});
        let cache = cluster(&nodes(), &[with("a", Some("n2"), json!({"app": "db"}), json!({}))]);
        let s = cluster_scores(
            &InterPodAffinity,
            &pod(with("b", None, json!({"app": "web"}), pref)),
            &cache,
        );
        assert_eq!(s, vec![0, 0, 100]);
    }
}
