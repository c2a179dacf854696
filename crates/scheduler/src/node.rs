//! [`NodeInfo`]: one node with the running sums the filters and scores read — requested
//! resources, host ports, and pods grouped by label set — kept up to date as pods come and go,
//! so that a scheduling cycle never walks a node's pods to add them up.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;

use crate::labels::Labels;
use crate::pod::{HostPort, PodInfo};
use crate::resources::Resources;

/// How many pods of one interned label set (or anti-affinity term set) a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The interned set's id.
    pub id: u32,
    /// Pods of the set on the node.
    pub count: u32,
    /// Of those, the ones not being deleted (topology spread ignores terminating pods).
    pub live: u32,
}

/// A pod on a node, with the ids of its interned sets.
#[derive(Debug, Clone)]
pub struct PlacedPod {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Its (namespace, labels) set.
    pub label_set: u32,
    /// Its required anti-affinity term set, if it has one.
    pub anti_set: Option<u32>,
}

/// One node and the aggregate of the pods on it.
///
/// Every attempt filters and scores hundreds of nodes, most of them not touched since the
/// attempt before, so the fields the filters and scores read come first and together (hence
/// `repr(C)`, which keeps the order): a node's check then touches its first few cache lines
/// instead of lines spread over the whole struct.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub struct NodeInfo {
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// Its pods, assumed ones included.
    pub pods: Vec<PlacedPod>,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// Sum of the requests of its pods.
    pub requested: Resources,
    /// Sum of the scoring requests of its pods (defaults for unset cpu and memory).
    pub non_zero_requested: Resources,
    /// Host ports its pods claim.
    pub used_ports: Vec<HostPort>,
    /// Pods per required anti-affinity term set.
    pub anti_groups: Vec<Group>,
    /// Pods whose affinity terms count when scoring other pods.
    pub scoring_affinity_pods: usize,
    /// The node's name.
    pub name: Arc<str>,
    /// Its labels.
    pub labels: Labels,
    /// Its labels as interned (key, value) ids (see [`crate::cache::Cache::atom`]): topology
    /// lookups in hot loops compare integers rather than long, similar label keys.
    pub label_atoms: Vec<(u32, u32)>,
    /// Images present, by every name, with their sizes in bytes.
    pub images: HashMap<String, i64>,
    /// Pods per label set.
    pub label_groups: Vec<Group>,
}

impl NodeInfo {
    /// A node without pods, from its API object.
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.name_any().into(),
            ..Default::default()
        };
        info.set_node(node);
        info
    }

    /// Refreshes what comes from the node object, keeping the pods.
    pub fn set_node(&mut self, node: &Node) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        self.images = status
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|image| {
                let size = image.size_bytes.unwrap_or(0);
                image.names.iter().flatten().map(move |n| (n.clone(), size))
            })
            .collect();
    }

    /// Adds a pod's requests, ports and set memberships.
    pub fn add_pod(&mut self, placed: PlacedPod) {
        let pod = &placed.info;
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        bump(&mut self.label_groups, placed.label_set, 1, !pod.deleting);
        if let Some(id) = placed.anti_set {
            bump(&mut self.anti_groups, id, 1, !pod.deleting);
        }
        if pod.has_scoring_affinity() {
            self.scoring_affinity_pods += 1;
        }
        self.pods.push(placed);
    }

    /// Removes a pod by key; returns it if it was here.
    pub fn remove_pod(&mut self, key: &str) -> Option<PlacedPod> {
        let at = self.pods.iter().position(|p| &*p.info.key == key)?;
        let placed = self.pods.swap_remove(at);
        let pod = &placed.info;
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero);
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        bump(&mut self.label_groups, placed.label_set, -1, !pod.deleting);
        if let Some(id) = placed.anti_set {
            bump(&mut self.anti_groups, id, -1, !pod.deleting);
        }
        if pod.has_scoring_affinity() {
            self.scoring_affinity_pods -= 1;
        }
        Some(placed)
    }

    /// The interned value of the label with interned key `key`.
    pub fn label_atom(&self, key: u32) -> Option<u32> {
        self.label_atoms.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Pods of label set `id` on this node (`live_only`: not counting terminating ones).
    pub fn count_in_set(&self, id: u32, live_only: bool) -> u32 {
        self.label_groups
            .iter()
            .find(|g| g.id == id)
            .map_or(0, |g| if live_only { g.live } else { g.count })
    }
}

fn bump(groups: &mut Vec<Group>, id: u32, delta: i32, live: bool) {
    let live_delta = if live { delta } else { 0 };
    match groups.iter().position(|g| g.id == id) {
        Some(i) => {
            let g = &mut groups[i];
            g.count = g.count.saturating_add_signed(delta);
            g.live = g.live.saturating_add_signed(live_delta);
            if g.count == 0 {
                groups.swap_remove(i);
            }
        }
        None if delta > 0 => groups.push(Group {
            id,
            count: delta as u32,
            live: live_delta.max(0) as u32,
        }),
        None => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A node from JSON with 4 cpu, 16Gi and 110 pods unless the JSON says otherwise.
    pub fn node(v: serde_json::Value) -> NodeInfo {
        let mut v = v;
        if v.pointer("/status/allocatable").is_none() {
            v["status"]["allocatable"] = json!({"cpu": "4", "memory": "16Gi", "pods": "110"});
        }
        NodeInfo::from_node(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn sums_follow_pods() {
        let mut n = node(json!({"metadata": {"name": "n1"}}));
        let p = crate::pod::tests::pod(json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}},
                     "ports": [{"containerPort": 80, "hostPort": 80}]}]}
        }));
        n.add_pod(PlacedPod {
            info: Arc::new(p),
            label_set: 7,
            anti_set: None,
        });
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.count_in_set(7, true), 1);
        assert!(n.remove_pod("default/a").is_some());
        assert_eq!(n.requested.milli_cpu, 0);
        assert!(n.used_ports.is_empty() && n.label_groups.is_empty());
        assert!(n.remove_pod("default/a").is_none());
    }
}
