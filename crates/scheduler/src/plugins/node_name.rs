//! NodeName: a pod that names its node fits only that node.

use crate::framework::{Cycle, CycleState, Plugin, Rejection};
use crate::node::NodeInfo;

/// Upstream's reason text.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName plugin.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        match &cycle.pod.node_name {
            Some(wanted) if **wanted != *node.name => Err(Rejection::unresolvable(self.name(), REASON)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter, node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}}));
        assert!(filter(&NodeName, &p, &node(json!({"metadata": {"name": "n1"}}))).is_ok());
        let err = filter(&NodeName, &p, &node(json!({"metadata": {"name": "n2"}}))).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);
        let free = pod(json!({"metadata": {"name": "q"}}));
        assert!(filter(&NodeName, &free, &node(json!({"metadata": {"name": "n2"}}))).is_ok());
    }
}
