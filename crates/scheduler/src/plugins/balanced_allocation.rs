//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in
//! similar proportions once the pod is placed (one minus their standard deviation).

use crate::framework::{Cycle, CycleState, MAX_NODE_SCORE, Plugin};
use crate::node::NodeInfo;

/// The NodeResourcesBalancedAllocation plugin.
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> i64 {
        let want = &cycle.pod.requests;
        // Best-effort pods are not scored, so that they do not all pile onto one node.
        if want.milli_cpu == 0 && want.memory == 0 {
            return 0;
        }
        let (alloc, used) = (&node.allocatable, &node.requested);
        let fraction = |req: i64, cap: i64| (cap > 0).then(|| (req as f64 / cap as f64).min(1.0));
        let cpu = fraction(used.milli_cpu + want.milli_cpu, alloc.milli_cpu);
        let memory = fraction(used.memory + want.memory, alloc.memory);
        let std = match (cpu, memory) {
            (Some(a), Some(b)) => ((a - b) / 2.0).abs(),
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{node, pod, scores};
    use serde_json::json;

    #[test]
    fn balanced_nodes_score_higher() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}}));
        let a = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
        );
        let b = node(
            json!({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "10"}}}),
        );
        // a: 0.5 and 0.5 → 100; b: 0.5 and 0.125 → 1 - 0.1875 → 81.
        assert_eq!(scores(&BalancedAllocation, &p, &[a, b]), vec![100, 81]);
        let empty = pod(json!({"metadata": {"name": "q"}}));
        let c = node(json!({"metadata": {"name": "c"}}));
        assert_eq!(scores(&BalancedAllocation, &empty, &[c]), vec![0]);
    }
}
