//! NodePorts: a pod's host ports must be free on the node.

use crate::framework::{Cycle, CycleState, Plugin, Rejection};
use crate::node::NodeInfo;

/// Upstream's reason text.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The NodePorts plugin.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let clash = cycle
            .pod
            .host_ports
            .iter()
            .any(|wanted| node.used_ports.iter().any(|used| used.conflicts(wanted)));
        if clash {
            Err(Rejection::unschedulable(self.name(), REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::PlacedPod;
    use crate::plugins::tests::{filter, node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn with_port(name: &str, port: i32, protocol: &str) -> crate::pod::PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": protocol}]}]}}))
    }

    #[test]
    fn host_ports_cannot_be_shared() {
        let mut n = node(json!({"metadata": {"name": "n"}}));
        n.add_pod(PlacedPod {
            info: Arc::new(with_port("a", 8080, "TCP")),
            label_set: 0,
            anti_set: None,
        });
        let err = filter(&NodePorts, &with_port("b", 8080, "TCP"), &n).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);
        assert!(filter(&NodePorts, &with_port("c", 8080, "UDP"), &n).is_ok());
        assert!(filter(&NodePorts, &with_port("d", 8081, "TCP"), &n).is_ok());
    }
}
