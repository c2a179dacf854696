//! NodeResourcesFit: the pod's requests must fit in what the node's pods leave of its
//! allocatable resources; as a score, the least allocated node wins (cpu and memory, weight 1
//! each, as upstream's default `LeastAllocated` strategy).

use std::borrow::Cow;

use crate::framework::{Code, Cycle, CycleState, MAX_NODE_SCORE, Plugin, Rejection};
use crate::node::NodeInfo;

/// The NodeResourcesFit plugin.
pub struct NodeResourcesFit;

/// Checks every resource and returns all shortfalls, as upstream reports them together.
pub fn check_fit(cycle: &Cycle<'_>, node: &NodeInfo) -> Result<(), Rejection> {
    let want = &cycle.pod.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    let mut unresolvable = false;
    if node.pods.len() as i64 + 1 > alloc.pods {
        reasons.push("Too many pods".into());
    }
    let mut check = |want: i64, alloc: i64, used: i64, reason: Cow<'static, str>| {
        if want > 0 && want > alloc - used {
            reasons.push(reason);
            // Not even an empty node would do, so preemption cannot help.
            unresolvable |= want > alloc;
        }
    };
    check(
        want.milli_cpu,
        alloc.milli_cpu,
        used.milli_cpu,
        "Insufficient cpu".into(),
    );
    check(want.memory, alloc.memory, used.memory, "Insufficient memory".into());
    check(
        want.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
        "Insufficient ephemeral-storage".into(),
    );
    for (name, amount) in &want.scalar {
        check(
            *amount,
            alloc.scalar(name),
            used.scalar(name),
            format!("Insufficient {name}").into(),
        );
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        code: if unresolvable {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        },
        reasons,
        plugin: "NodeResourcesFit",
    })
}

/// Upstream's `leastRequestedScore` for one resource.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        check_fit(cycle, node)
    }

    fn score(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> i64 {
        let want = &cycle.pod.non_zero;
        let (alloc, used) = (&node.allocatable, &node.non_zero_requested);
        let pairs = [
            (used.milli_cpu + want.milli_cpu, alloc.milli_cpu),
            (used.memory + want.memory, alloc.memory),
        ];
        let (sum, counted) = pairs
            .iter()
            .filter(|(_, cap)| *cap > 0)
            .fold((0, 0), |(sum, n), &(req, cap)| (sum + least_requested(req, cap), n + 1));
        if counted == 0 {
            return 0;
        }
        sum / counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::PlacedPod;
    use crate::plugins::tests::{filter, node, pod, scores};
    use serde_json::json;
    use std::sync::Arc;

    fn asking(name: &str, cpu: &str, memory: &str) -> crate::pod::PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    fn n(name: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name}}))
    }

    #[test]
    fn reports_every_shortfall() {
        let mut node = n("n");
        node.add_pod(PlacedPod {
            info: Arc::new(asking("a", "3", "15Gi")),
            label_set: 0,
            anti_set: None,
        });
        let err = filter(&NodeResourcesFit, &asking("b", "2", "2Gi"), &node).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(err.code, Code::Unschedulable);
        assert!(filter(&NodeResourcesFit, &asking("c", "1", "1Gi"), &node).is_ok());
    }

    #[test]
    fn larger_than_the_node_is_unresolvable() {
        let err = filter(&NodeResourcesFit, &asking("b", "5", "1Gi"), &n("n")).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu"]);
        assert_eq!(err.code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn pod_count_and_extended_resources() {
        let small = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4", "memory": "1Gi", "pods": "1", "example.com/gpu": "1"}}}),
        );
        let gpu = pod(json!({"metadata": {"name": "g"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"example.com/gpu": "2"}}}]}}));
        let err = filter(&NodeResourcesFit, &gpu, &small).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient example.com/gpu"]);
        let mut full = small.clone();
        full.add_pod(PlacedPod {
            info: Arc::new(asking("a", "1", "1Mi")),
            label_set: 0,
            anti_set: None,
        });
        let err = filter(&NodeResourcesFit, &asking("b", "1", "1Mi"), &full).unwrap_err();
        assert_eq!(err.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let mut busy = n("busy");
        busy.add_pod(PlacedPod {
            info: Arc::new(asking("a", "2", "8Gi")),
            label_set: 0,
            anti_set: None,
        });
        let s = scores(&NodeResourcesFit, &asking("b", "1", "4Gi"), &[busy, n("idle")]);
        // busy: cpu (4-3)/4 = 25, memory (16-12)/16 = 25; idle: 75 and 75.
        assert_eq!(s, vec![25, 75]);
    }
}
