//! The plugin framework, after upstream's: each plugin may precompute per-pod state
//! (PreFilter), reject nodes (Filter), precompute for scoring (PreScore), score nodes (Score)
//! and rescale its scores (NormalizeScore). The state plugins share within one scheduling
//! cycle is the typed [`CycleState`], borrowed from the cache for the cycle's length.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::cache::Cache;
use crate::node::{NodeInfo, PlacedPod};
use crate::plugins::{inter_pod_affinity, pod_topology_spread};
use crate::pod::PodInfo;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node was rejected: whether evicting pods could help, and upstream's reason texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The node does not fit now, but might after preemption.
    Unschedulable,
    /// Preemption cannot make the node fit (taints, affinity, capacity too small).
    UnschedulableAndUnresolvable,
}

/// A plugin's refusal of a node (or, from PreFilter, of every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Whether preemption may help.
    pub code: Code,
    /// The reasons, as counted in the "0/N nodes are available" message.
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that refused.
    pub plugin: &'static str,
}

impl Rejection {
    /// A refusal that preemption may resolve.
    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    /// A refusal that preemption cannot resolve.
    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin,
        }
    }
}

/// What every plugin sees during one cycle: the pod and the cluster.
pub struct Cycle<'a> {
    /// The pod being scheduled.
    pub pod: &'a PodInfo,
    /// The cluster.
    pub cache: &'a Cache,
}

/// Per-cycle state of the plugins that need more than the node at hand.
#[derive(Clone, Default)]
pub struct CycleState<'a> {
    /// PodTopologySpread's domain counts for DoNotSchedule constraints.
    pub spread: Option<pod_topology_spread::FilterState>,
    /// PodTopologySpread's counts for ScheduleAnyway constraints.
    pub spread_score: Option<pod_topology_spread::ScoreState<'a>>,
    /// InterPodAffinity's counts for required terms.
    pub affinity: Option<inter_pod_affinity::FilterState>,
    /// InterPodAffinity's per-domain scores for preferred terms.
    pub affinity_score: Option<inter_pod_affinity::ScoreState<'a>>,
}

/// A scheduling plugin; every extension point is optional.
pub trait Plugin: Send + Sync {
    /// The upstream plugin name.
    fn name(&self) -> &'static str;

    /// Precomputes per-pod state; a rejection here fails every node.
    fn pre_filter<'a>(&self, _cycle: &Cycle<'a>, _state: &mut CycleState<'a>) -> Result<(), Rejection> {
        Ok(())
    }

    /// Whether the pod fits the node.
    fn filter(&self, _cycle: &Cycle<'_>, _state: &CycleState<'_>, _node: &NodeInfo) -> Result<(), Rejection> {
        Ok(())
    }

    /// Updates PreFilter state as if `pod` were added to `node` (nominated pods).
    fn add_pod<'a>(&self, _cycle: &Cycle<'a>, _state: &mut CycleState<'a>, _pod: &PlacedPod, _node: &'a NodeInfo) {}

    /// Updates PreFilter state as if `pod` were removed from `node` (preemption victims).
    fn remove_pod<'a>(&self, _cycle: &Cycle<'a>, _state: &mut CycleState<'a>, _pod: &PlacedPod, _node: &'a NodeInfo) {}

    /// Precomputes scoring state over the feasible nodes.
    fn pre_score<'a>(&self, _cycle: &Cycle<'a>, _state: &mut CycleState<'a>, _nodes: &[&'a NodeInfo]) {}

    /// The node's raw score.
    fn score(&self, _cycle: &Cycle<'_>, _state: &CycleState<'_>, _node: &NodeInfo) -> i64 {
        0
    }

    /// Rescales raw scores (index-aligned with the nodes given to PreScore) to 0..=100.
    fn normalize(&self, _state: &CycleState<'_>, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// Rescales scores so the largest becomes [`MAX_NODE_SCORE`], optionally reversed (fewer is
/// better), as upstream's default normalization.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// Upstream's "0/N nodes are available: ..." text: the reasons of the rejected nodes counted
/// and sorted, `absent` (a reason and how many nodes it stands for) added for nodes without a
/// status of their own, then PreFilter's message in place of all that, then PostFilter's.
pub fn fit_message<'r>(
    total: usize,
    rejections: impl Iterator<Item = &'r Rejection>,
    absent: Option<(&str, usize)>,
    pre_filter: Option<&str>,
    post_filter: &str,
) -> String {
    let mut message = format!("0/{total} nodes are available:");
    if let Some(pre) = pre_filter {
        message.push_str(&format!(" {pre}."));
    } else {
        let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
        for rejection in rejections {
            for reason in &rejection.reasons {
                *histogram.entry(reason).or_default() += 1;
            }
        }
        if let Some((reason, n)) = absent.filter(|(_, n)| *n > 0) {
            *histogram.entry(reason).or_default() += n;
        }
        let mut parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        if !parts.is_empty() {
            message.push_str(&format!(" {}.", parts.join(", ")));
        }
    }
    if !post_filter.is_empty() {
        message.push_str(&format!(" {post_filter}."));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_matches_upstream() {
        let cpu = Rejection::unschedulable("NodeResourcesFit", "Insufficient cpu");
        let taint = Rejection::unresolvable(
            "TaintToleration",
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
        );
        let rejections = [cpu.clone(), cpu, taint];
        let preemption = fit_message(
            3,
            std::iter::empty(),
            Some(("Preemption is not helpful for scheduling", 3)),
            None,
            "",
        );
        assert_eq!(
            fit_message(3, rejections.iter(), None, None, &format!("preemption: {preemption}")),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn normalization() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
