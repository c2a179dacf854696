//! The default plugins, in upstream's order, with upstream's default score weights.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use crate::framework::Plugin;

/// Which plugins run at each extension point.
pub struct Profile {
    /// PreFilter and Filter plugins, in order (the first refusal decides a node).
    pub filters: Vec<&'static dyn Plugin>,
    /// PreScore and Score plugins with their weights.
    pub scorers: Vec<(&'static dyn Plugin, i64)>,
}

impl Profile {
    /// Upstream's default profile (minus the volume plugins: kate has no volume binding).
    pub fn default_profile() -> Profile {
        Profile {
            filters: vec![
                &node_unschedulable::NodeUnschedulable,
                &node_name::NodeName,
                &taint_toleration::TaintToleration,
                &node_affinity::NodeAffinity,
                &node_ports::NodePorts,
                &node_resources::NodeResourcesFit,
                &pod_topology_spread::PodTopologySpread,
                &inter_pod_affinity::InterPodAffinity,
            ],
            scorers: vec![
                (&taint_toleration::TaintToleration, 3),
                (&node_affinity::NodeAffinity, 2),
                (&node_resources::NodeResourcesFit, 1),
                (&pod_topology_spread::PodTopologySpread, 2),
                (&inter_pod_affinity::InterPodAffinity, 2),
                (&balanced_allocation::BalancedAllocation, 1),
                (&image_locality::ImageLocality, 1),
            ],
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Helpers to run one plugin against a pod and nodes.

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;

    use crate::cache::Cache;
    use crate::framework::{Cycle, CycleState, Plugin, Rejection};
    use crate::node::NodeInfo;
    use crate::pod::PodInfo;

    pub use crate::node::tests::node;
    pub use crate::pod::tests::pod;

    /// Runs PreFilter and Filter of one plugin against one node.
    pub fn filter(plugin: &dyn Plugin, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let cache = Cache::default();
        let cycle = Cycle { pod, cache: &cache };
        let mut state = CycleState::default();
        plugin.pre_filter(&cycle, &mut state)?;
        plugin.filter(&cycle, &state, node)
    }

    /// Runs PreScore, Score and NormalizeScore of one plugin over the nodes.
    pub fn scores(plugin: &dyn Plugin, pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let cache = Cache::default();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        score_refs(plugin, pod, &cache, &refs)
    }

    /// Like [`scores`] over every node of a cache.
    pub fn cluster_scores(plugin: &dyn Plugin, pod: &PodInfo, cache: &Cache) -> Vec<i64> {
        let refs: Vec<&NodeInfo> = cache.nodes().iter().collect();
        score_refs(plugin, pod, cache, &refs)
    }

    fn score_refs<'a>(plugin: &dyn Plugin, pod: &'a PodInfo, cache: &'a Cache, nodes: &[&'a NodeInfo]) -> Vec<i64> {
        let cycle = Cycle { pod, cache };
        let mut state = CycleState::default();
        plugin.pre_score(&cycle, &mut state, nodes);
        let mut s: Vec<i64> = nodes.iter().map(|n| plugin.score(&cycle, &state, n)).collect();
        plugin.normalize(&state, nodes, &mut s);
        s
    }

    /// `n` node objects `n0`, `n1`, … labelled with their hostname.
    pub fn nodes(n: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| serde_json::json!({"metadata": {"name": format!("n{i}"), "labels": {"kubernetes.io/hostname": format!("n{i}")}}}))
            .collect()
    }

    /// A cache with these nodes (4 cpu, 16Gi, 110 pods by default) and bound pods.
    pub fn cluster(nodes: &[serde_json::Value], pods: &[serde_json::Value]) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            let mut n = n.clone();
            if n.pointer("/status/allocatable").is_none() {
                n["status"]["allocatable"] = serde_json::json!({"cpu": "4", "memory": "16Gi", "pods": "110"});
            }
            let node: Node = serde_json::from_value(n).expect("node JSON");
            cache.upsert_node(&node);
        }
        for p in pods {
            cache.add_pod(Arc::new(pod(p.clone())));
        }
        cache
    }
}
