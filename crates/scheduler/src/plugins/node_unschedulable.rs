//! NodeUnschedulable: cordoned nodes take only pods that tolerate the unschedulable taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerated;
use crate::framework::{Cycle, CycleState, Plugin, Rejection};
use crate::node::NodeInfo;

/// Upstream's reason text.
pub const REASON: &str = "node(s) were unschedulable";

/// The NodeUnschedulable plugin.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerated(&cycle.pod.tolerations, &taint) {
            return Ok(());
        }
        Err(Rejection::unresolvable(self.name(), REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter, node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_need_a_toleration() {
        let cordoned = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}));
        let plain = pod(json!({"metadata": {"name": "p"}}));
        let err = filter(&NodeUnschedulable, &plain, &cordoned).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);
        let tolerant = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&NodeUnschedulable, &tolerant, &cordoned).is_ok());
    }
}
