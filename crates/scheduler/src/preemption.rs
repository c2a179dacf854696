//! Preemption (upstream's DefaultPreemption PostFilter): when nothing fits, find nodes where
//! evicting lower-priority pods would make room, evict as few and as unimportant pods as
//! possible, and nominate the node for the pod.

use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{Code, Cycle, CycleState, Rejection, fit_message};
use crate::node::{NodeInfo, PlacedPod};
use crate::pod::PodInfo;
use crate::queue::Nominator;
use crate::schedule::{Algorithm, FitFailure};

/// Upstream's reason for a node without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Upstream's reason for nodes where eviction cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's message for pods that may not preempt.
pub const NEVER: &str = "not eligible due to preemptionPolicy=Never.";
/// Upstream's message while earlier victims are still terminating.
pub const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// At least this share of the candidate nodes (in percent) is tried.
const MIN_CANDIDATE_PERCENTAGE: usize = 10;
/// And at least this many.
const MIN_CANDIDATES: usize = 100;

/// What preemption decided.
#[derive(Debug)]
pub enum Outcome {
    /// Evict `victims` from `node` and nominate it for the pod.
    Preempt {
        /// The chosen node.
        node: Arc<str>,
        /// The pods to evict.
        victims: Vec<Arc<PodInfo>>,
        /// Lower-priority pods nominated to that node, which lose their nomination.
        displaced: Vec<Arc<PodInfo>>,
    },
    /// The pod may not preempt; the text is upstream's explanation.
    NotEligible(&'static str),
    /// No node would do even with evictions; the text is upstream's "0/N nodes" explanation.
    NoCandidates(String),
}

impl Outcome {
    /// The text appended to the scheduling failure message (empty when preempting).
    pub fn message(&self) -> String {
        match self {
            Outcome::Preempt { .. } => String::new(),
            Outcome::NotEligible(m) => (*m).to_string(),
            Outcome::NoCandidates(m) => format!("preemption: {m}"),
        }
    }
}

/// Decides preemption for a pod that fits nowhere.
pub fn preempt(
    algorithm: &mut Algorithm,
    cache: &Cache,
    pod: &PodInfo,
    failure: &FitFailure,
    nominator: &Nominator,
) -> Outcome {
    if pod.never_preempts {
        return Outcome::NotEligible(NEVER);
    }
    let nodes = cache.nodes();
    let nominated = nominator
        .node_of(&pod.key)
        .map(|n| &**n)
        .or(pod.nominated_node.as_deref());
    if let Some(nominated) = nominated.and_then(|n| cache.node(n)) {
        let unresolvable = failure
            .rejections
            .iter()
            .any(|(i, r)| *nodes[*i].name == *nominated.name && r.code == Code::UnschedulableAndUnresolvable);
        let victim_terminating = nominated
            .pods
            .iter()
            .any(|p| p.info.priority < pod.priority && p.info.deleting);
        if !unresolvable && victim_terminating {
            return Outcome::NotEligible(TERMINATING);
        }
    }
    let potential: Vec<usize> = match &failure.pre_filter {
        Some(r) if r.code == Code::UnschedulableAndUnresolvable => Vec::new(),
        Some(_) => (0..nodes.len()).collect(),
        None => failure
            .rejections
            .iter()
            .filter(|(_, r)| r.code == Code::Unschedulable)
            .map(|(i, _)| *i)
            .collect(),
    };
    let cycle = Cycle { pod, cache };
    let state = match algorithm.pre_filter(&cycle) {
        Ok(state) if !potential.is_empty() => state,
        _ => return no_candidates(nodes.len(), &[]),
    };
    let wanted = (potential.len() * MIN_CANDIDATE_PERCENTAGE / 100)
        .max(MIN_CANDIDATES)
        .min(potential.len());
    let start = algorithm.random() as usize % potential.len();
    let mut candidates: Vec<(usize, Vec<Arc<PodInfo>>)> = Vec::new();
    let mut refused: Vec<Rejection> = Vec::new();
    for offset in 0..potential.len() {
        let i = potential[(start + offset) % potential.len()];
        match select_victims(algorithm, &cycle, &state, &nodes[i], nominator) {
            Ok(victims) => {
                candidates.push((i, victims));
                if candidates.len() >= wanted {
                    break;
                }
            }
            Err(r) => refused.push(r),
        }
    }
    let Some(best) = pick(&candidates) else {
        return no_candidates(nodes.len(), &refused);
    };
    let (i, victims) = &candidates[best];
    let node = nodes[*i].name.clone();
    let displaced = nominator
        .on_node(&node)
        .iter()
        .filter(|p| p.priority < pod.priority && p.key != pod.key)
        .cloned()
        .collect();
    Outcome::Preempt {
        node,
        victims: victims.clone(),
        displaced,
    }
}

fn no_candidates(total: usize, refused: &[Rejection]) -> Outcome {
    let message = fit_message(
        total,
        refused.iter(),
        Some((NOT_HELPFUL, total - refused.len())),
        None,
        "",
    );
    Outcome::NoCandidates(message)
}

/// The fewest, least important pods whose eviction from `node` lets the pod fit.
fn select_victims<'a>(
    algorithm: &Algorithm,
    cycle: &Cycle<'a>,
    state: &CycleState<'a>,
    node: &'a NodeInfo,
    nominator: &Nominator,
) -> Result<Vec<Arc<PodInfo>>, Rejection> {
    let pod = cycle.pod;
    let mut potential: Vec<PlacedPod> = node
        .pods
        .iter()
        .filter(|p| p.info.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Rejection::unresolvable("DefaultPreemption", NO_VICTIMS));
    }
    let mut copy = node.clone();
    let mut state = state.clone();
    for ahead in nominator
        .on_node(&node.name)
        .iter()
        .filter(|p| p.key != pod.key && p.priority >= pod.priority)
    {
        algorithm.add_to(cycle, &mut state, &mut copy, node, ahead);
    }
    let remove = |copy: &mut NodeInfo, state: &mut CycleState<'a>, victim: &PlacedPod| {
        copy.remove_pod(&victim.info.key);
        for plugin in &algorithm.profile.filters {
            plugin.remove_pod(cycle, state, victim, node);
        }
    };
    for victim in &potential {
        remove(&mut copy, &mut state, victim);
    }
    algorithm.filter(cycle, &state, &copy)?;
    // Give back as many pods as still fit, most important first.
    potential.sort_by(|a, b| {
        b.info
            .priority
            .cmp(&a.info.priority)
            .then(a.info.started.cmp(&b.info.started))
    });
    let mut victims = Vec::new();
    for candidate in potential {
        copy.add_pod(candidate.clone());
        for plugin in &algorithm.profile.filters {
            plugin.add_pod(cycle, &mut state, &candidate, node);
        }
        if algorithm.filter(cycle, &state, &copy).is_err() {
            remove(&mut copy, &mut state, &candidate);
            victims.push(candidate.info);
        }
    }
    Ok(victims)
}

/// Upstream's choice among candidate nodes: the lowest top victim priority, then the lowest
/// sum of priorities, then the fewest victims, then the latest start of the top victims.
fn pick(candidates: &[(usize, Vec<Arc<PodInfo>>)]) -> Option<usize> {
    if let Some(free) = candidates.iter().position(|(_, v)| v.is_empty()) {
        return Some(free);
    }
    let key = |victims: &[Arc<PodInfo>]| {
        let top = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        // Shifted so that negative priorities still add up to a smaller sum.
        let sum: i64 = victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_top = victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| v.started)
            .min()
            .unwrap_or(0);
        (top, sum, victims.len(), std::cmp::Reverse(earliest_top))
    };
    candidates
        .iter()
        .enumerate()
        .min_by_key(|(_, (_, victims))| key(victims))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{cluster, nodes, pod};
    use serde_json::json;

    fn bound(name: &str, node: Option<&str>, cpu: &str, priority: i32) -> serde_json::Value {
        json!({"metadata": {"name": name}, "spec": {"nodeName": node, "priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})
    }

    fn attempt(cache: &Cache, p: &PodInfo) -> Outcome {
        let mut alg = Algorithm::new(0);
        let nominator = Nominator::default();
        let failure = alg.schedule(cache, p, &nominator).unwrap_err();
        preempt(&mut alg, cache, p, &failure, &nominator)
    }

    #[test]
    fn evicts_the_least_important_pods_needed() {
        let cache = cluster(
            &nodes(2),
            &[
                bound("low-a", Some("n0"), "2", 1),
                bound("low-b", Some("n0"), "2", 1),
                bound("mid", Some("n1"), "4", 5),
            ],
        );
        let Outcome::Preempt { node, victims, .. } = attempt(&cache, &pod(bound("vip", None, "2", 10))) else {
            panic!("expected preemption");
        };
        assert_eq!(&*node, "n0");
        assert_eq!(victims.len(), 1, "one 2-cpu pod is enough");
    }

    #[test]
    fn nothing_lower_means_no_victims() {
        let cache = cluster(
            &nodes(3),
            &(0..3)
                .map(|i| bound(&format!("p{i}"), Some(&format!("n{i}")), "4", 10))
                .collect::<Vec<_>>(),
        );
        let outcome = attempt(&cache, &pod(bound("same", None, "1", 10)));
        assert_eq!(
            outcome.message(),
            "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn unresolvable_nodes_are_not_helped() {
        let cache = cluster(&nodes(3), &[]);
        let outcome = attempt(&cache, &pod(bound("huge", None, "8", 10)));
        assert_eq!(
            outcome.message(),
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preemption_policy_never() {
        let cache = cluster(&nodes(1), &[bound("low", Some("n0"), "4", 0)]);
        let mut p = pod(bound("vip", None, "1", 10));
        p.never_preempts = true;
        assert_eq!(attempt(&cache, &p).message(), NEVER);
    }
}
