//! NodeAffinity: `nodeSelector` and required node affinity filter nodes; preferred node
//! affinity terms add their weights to a node's score.

use crate::framework::{Cycle, CycleState, Plugin, Rejection, default_normalize};
use crate::labels::any_term_matches;
use crate::node::NodeInfo;
use crate::pod::PodInfo;

/// Upstream's reason text.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The NodeAffinity plugin.
pub struct NodeAffinity;

/// Whether the node satisfies the pod's `nodeSelector` and required node affinity.
pub fn pod_matches_node(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_node_terms
            .as_ref()
            .is_none_or(|terms| any_term_matches(terms, &node.name, &node.labels))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        if pod_matches_node(cycle.pod, node) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(self.name(), REASON))
        }
    }

    fn score(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> i64 {
        cycle
            .pod
            .preferred_node_terms
            .iter()
            .filter(|(_, term)| term.matches(&node.name, &node.labels))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }

    fn normalize(&self, _: &CycleState<'_>, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter, node, pod, scores};
    use serde_json::json;

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}))
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let by_selector = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "nodeSelector": {"topology.kubernetes.io/zone": "a"}}}),
        );
        assert!(filter(&NodeAffinity, &by_selector, &zoned("n1", "a")).is_ok());
        let err = filter(&NodeAffinity, &by_selector, &zoned("n2", "b")).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);

        let by_affinity = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b", "c"]}]}
            ]}}}}}),
        );
        assert!(filter(&NodeAffinity, &by_affinity, &zoned("n1", "a")).is_err());
        assert!(filter(&NodeAffinity, &by_affinity, &zoned("n2", "b")).is_ok());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}}
            ]}}}}),
        );
        let nodes = [zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "c")];
        assert_eq!(scores(&NodeAffinity, &p, &nodes), vec![33, 100, 0]);
    }
}
