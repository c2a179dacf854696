//! The scheduler's view of the cluster: nodes with the pods bound (or assumed bound) to them,
//! namespaces' labels and the selectors of services and workloads, fed by watches.
//!
//! A pod is *assumed* on a node as soon as the scheduler picks it, before the binding is
//! written; the next pod is scheduled against that, so bindings can be in flight while
//! scheduling goes on. The watch event of the bound pod confirms the assumption; a failed
//! binding forgets it.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::labels::{Labels, Selector};
use crate::node::{NodeInfo, PlacedPod};
use crate::pod::{AffinityTerm, PodInfo};

/// Gives equal values one small id, counted by users, so that pods sharing labels (all the
/// replicas of a workload) are matched against a selector once per cycle, not once per pod.
#[derive(Debug)]
pub struct Interner<K> {
    ids: HashMap<K, u32>,
    entries: Vec<Option<(K, u32)>>,
    free: Vec<u32>,
}

impl<K: Hash + Eq + Clone> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            ids: HashMap::new(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    /// The id of `key`, taking one reference.
    pub fn acquire(&mut self, key: K) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            if let Some((_, refs)) = &mut self.entries[id as usize] {
                *refs += 1;
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = Some((key.clone(), 1));
                id
            }
            None => {
                self.entries.push(Some((key.clone(), 1)));
                (self.entries.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        id
    }

    /// Drops one reference to `id`, freeing it with the last.
    pub fn release(&mut self, id: u32) {
        let Some(slot) = self.entries.get_mut(id as usize) else {
            return;
        };
        let emptied = match slot {
            Some((_, refs)) => {
                *refs -= 1;
                *refs == 0
            }
            None => false,
        };
        if emptied && let Some((key, _)) = slot.take() {
            self.ids.remove(&key);
            self.free.push(id);
        }
    }

    /// Whether no value has a reference.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of `key`, if it has one.
    pub fn id_of<Q>(&self, key: &Q) -> Option<u32>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ids.get(key).copied()
    }

    /// The value of `id`.
    pub fn get(&self, id: u32) -> Option<&K> {
        self.entries.get(id as usize).and_then(|e| e.as_ref()).map(|(k, _)| k)
    }

    /// One more than the largest id handed out (the size of a per-id table).
    pub fn id_bound(&self) -> usize {
        self.entries.len()
    }
}

/// What a node update changed, to decide whether waiting pods deserve another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    /// A new node.
    Added,
    /// Something scheduling reads changed (labels, taints, allocatable, cordon, images).
    Changed,
    /// Only fields scheduling ignores changed (heartbeats, conditions).
    Unchanged,
}

/// What recording a bound pod changed, to decide whether waiting pods deserve another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodChange {
    /// The pod was assumed; now its binding is confirmed.
    Confirmed,
    /// A pod the cache did not have.
    Added,
    /// Its node, labels or deletion changed.
    Changed,
    /// Nothing scheduling reads changed (status updates).
    Unchanged,
}

/// Where a pod is in the cache.
#[derive(Debug)]
struct Placement {
    node: Arc<str>,
    assumed: bool,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<Arc<str>, usize>,
    /// Pods bound to nodes the cache has not seen (or no longer has).
    orphans: HashMap<Arc<str>, NodeInfo>,
    pods: HashMap<Arc<str>, Placement>,
    /// Placed pods with preferred pod (anti-)affinity terms, which score other pods.
    scoring_affinity_pods: usize,
    label_sets: Interner<(String, Labels)>,
    anti_sets: Interner<Vec<AffinityTerm>>,
    namespaces: HashMap<String, Labels>,
    /// Per namespace, the selectors of services, replica sets and stateful sets, by
    /// `kind/name`: their pods get the default topology spreading.
    owner_selectors: HashMap<String, HashMap<String, Selector>>,
    /// How many nodes have each image.
    image_nodes: HashMap<String, usize>,
    /// Node label keys and values, interned.
    atoms: Interner<String>,
}

impl Cache {
    /// The nodes, in a stable order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The position of a node in [`Cache::nodes`].
    pub fn node_position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The (namespace, labels) of label set `id`.
    pub fn label_set(&self, id: u32) -> Option<&(String, Labels)> {
        self.label_sets.get(id)
    }

    /// One more than the largest label set id.
    pub fn label_set_bound(&self) -> usize {
        self.label_sets.id_bound()
    }

    /// The anti-affinity terms of term set `id`.
    pub fn anti_set(&self, id: u32) -> Option<&Vec<AffinityTerm>> {
        self.anti_sets.get(id)
    }

    /// Whether some pod in the cache has required anti-affinity terms.
    pub fn has_anti_affinity_pods(&self) -> bool {
        !self.anti_sets.is_empty()
    }

    /// Whether some pod in the cache has preferred pod (anti-)affinity terms.
    pub fn has_scoring_affinity_pods(&self) -> bool {
        self.scoring_affinity_pods > 0
    }

    /// One more than the largest anti-affinity term set id.
    pub fn anti_set_bound(&self) -> usize {
        self.anti_sets.id_bound()
    }

    /// The interned id of a node label key or value, if any node has it.
    pub fn atom(&self, text: &str) -> Option<u32> {
        self.atoms.id_of(text)
    }

    /// A namespace's labels.
    pub fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces.get(ns)
    }

    /// How many nodes have `image`.
    pub fn nodes_with_image(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Adds or refreshes a node.
    pub fn upsert_node(&mut self, node: &Node) -> NodeChange {
        let name: Arc<str> = node.metadata.name.as_deref().unwrap_or_default().into();
        if let Some(&i) = self.index.get(&name) {
            let before = self.nodes[i].clone_without_pods();
            self.count_images(i, -1);
            self.nodes[i].set_node(node);
            self.count_images(i, 1);
            self.intern_labels(i);
            let after = &self.nodes[i];
            let same = before.labels == after.labels
                && before.taints == after.taints
                && before.unschedulable == after.unschedulable
                && before.allocatable == after.allocatable
                && before.images == after.images;
            return if same {
                NodeChange::Unchanged
            } else {
                NodeChange::Changed
            };
        }
        let mut info = self.orphans.remove(&name).unwrap_or_default();
        info.name = name.clone();
        info.set_node(node);
        self.nodes.push(info);
        self.index.insert(name, self.nodes.len() - 1);
        self.count_images(self.nodes.len() - 1, 1);
        self.intern_labels(self.nodes.len() - 1);
        NodeChange::Added
    }

    /// Re-interns node `i`'s labels, releasing the previous ids.
    fn intern_labels(&mut self, i: usize) {
        let old = std::mem::take(&mut self.nodes[i].label_atoms);
        let atoms: Vec<(u32, u32)> = self.nodes[i]
            .labels
            .iter()
            .map(|(k, v)| (self.atoms.acquire(k.clone()), self.atoms.acquire(v.clone())))
            .collect();
        for (k, v) in old {
            self.atoms.release(k);
            self.atoms.release(v);
        }
        self.nodes[i].label_atoms = atoms;
    }

    /// Removes a node; its pods stay accounted in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        self.count_images(i, -1);
        let mut info = self.nodes.swap_remove(i);
        for (k, v) in std::mem::take(&mut info.label_atoms) {
            self.atoms.release(k);
            self.atoms.release(v);
        }
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        if !info.pods.is_empty() {
            self.orphans.insert(info.name.clone(), info);
        }
    }

    fn count_images(&mut self, i: usize, delta: isize) {
        for image in self.nodes[i].images.keys() {
            let n = self.image_nodes.entry(image.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.image_nodes.remove(image);
            }
        }
    }

    /// Records a bound pod (confirming it if it was assumed); says what that changed.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) -> PodChange {
        let change = match self.pods.get(&pod.key) {
            Some(p) if p.assumed => PodChange::Confirmed,
            Some(p) => {
                let moved = pod.node_name.as_deref() != Some(&*p.node);
                let old = self.placed_info(&pod.key, &p.node);
                if moved || old.is_none_or(|o| o.labels != pod.labels || o.deleting != pod.deleting) {
                    PodChange::Changed
                } else {
                    PodChange::Unchanged
                }
            }
            None => PodChange::Added,
        };
        self.remove_pod(&pod.key);
        if let Some(node) = pod.node_name.clone() {
            self.place(pod, node.into(), false);
        }
        change
    }

    fn placed_info(&self, key: &str, node: &str) -> Option<&Arc<PodInfo>> {
        let info = match self.index.get(node) {
            Some(&i) => &self.nodes[i],
            None => self.orphans.get(node)?,
        };
        info.pods.iter().find(|p| &*p.info.key == key).map(|p| &p.info)
    }

    /// Places a pod on `node` before its binding is written.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: Arc<str>) {
        self.remove_pod(&pod.key);
        self.place(pod, node, true);
    }

    /// Undoes [`Cache::assume`] after a failed binding (a confirmed pod stays).
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether a pod is assumed but not yet confirmed.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a pod is placed on (bound or assumed).
    pub fn placement(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| &*p.node)
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: Arc<str>, assumed: bool) {
        let label_set = self.label_sets.acquire((pod.namespace.clone(), pod.labels.clone()));
        let anti_set = (!pod.anti_affinity.is_empty()).then(|| self.anti_sets.acquire(pod.anti_affinity.clone()));
        if pod.has_scoring_affinity() {
            self.scoring_affinity_pods += 1;
        }
        let placed = PlacedPod {
            info: pod.clone(),
            label_set,
            anti_set,
        };
        self.pods.insert(
            pod.key.clone(),
            Placement {
                node: node.clone(),
                assumed,
            },
        );
        match self.index.get(&node) {
            Some(&i) => self.nodes[i].add_pod(placed),
            None => self
                .orphans
                .entry(node.clone())
                .or_insert_with(|| NodeInfo {
                    name: node,
                    ..Default::default()
                })
                .add_pod(placed),
        }
    }

    /// Removes a pod wherever it is; returns it if it was placed.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let placement = self.pods.remove(key)?;
        let placed = match self.index.get(&placement.node) {
            Some(&i) => self.nodes[i].remove_pod(key),
            None => {
                let orphan = self.orphans.get_mut(&placement.node)?;
                let placed = orphan.remove_pod(key);
                if orphan.pods.is_empty() {
                    self.orphans.remove(&placement.node);
                }
                placed
            }
        }?;
        self.label_sets.release(placed.label_set);
        if let Some(id) = placed.anti_set {
            self.anti_sets.release(id);
        }
        if placed.info.has_scoring_affinity() {
            self.scoring_affinity_pods -= 1;
        }
        Some(placed.info)
    }

    /// The keys of every placed pod.
    pub fn pod_keys(&self) -> Vec<Arc<str>> {
        self.pods.keys().cloned().collect()
    }

    /// The names of every node.
    pub fn node_names(&self) -> Vec<Arc<str>> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Keeps only the namespaces named in `names`.
    pub fn retain_namespaces(&mut self, names: &HashSet<String>) {
        self.namespaces.retain(|n, _| names.contains(n));
    }

    /// Keeps only the `kind` owners whose `namespace/kind/name` is in `keys`.
    pub fn retain_owners(&mut self, kind: &str, keys: &HashSet<String>) {
        for (namespace, owners) in self.owner_selectors.iter_mut() {
            owners.retain(|id, _| {
                !id.strip_prefix(kind).is_some_and(|rest| rest.starts_with('/'))
                    || keys.contains(&format!("{namespace}/{id}"))
            });
        }
    }

    /// Records a namespace's labels.
    pub fn upsert_namespace(&mut self, name: &str, labels: Labels) {
        self.namespaces.insert(name.to_string(), labels);
    }

    /// Forgets a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Records (or with `None` forgets) the selector of a service or workload `kind/name`.
    pub fn set_owner_selector(&mut self, namespace: &str, id: String, selector: Option<Selector>) {
        match selector {
            Some(s) => {
                self.owner_selectors
                    .entry(namespace.to_string())
                    .or_default()
                    .insert(id, s);
            }
            None => {
                if let Some(m) = self.owner_selectors.get_mut(namespace) {
                    m.remove(&id);
                }
            }
        }
    }

    /// The selector of the pod's "siblings" for default spreading: every service and workload
    /// selecting the pod, combined; `None` when nothing selects it.
    pub fn default_selector(&self, pod: &PodInfo) -> Option<Selector> {
        let owners = self.owner_selectors.get(&pod.namespace)?;
        let mut combined: Option<Selector> = None;
        for selector in owners.values().filter(|s| s.matches(&pod.labels)) {
            combined.get_or_insert_with(Selector::everything).and_all(selector);
        }
        combined
    }
}

impl NodeInfo {
    fn clone_without_pods(&self) -> NodeInfo {
        NodeInfo {
            name: self.name.clone(),
            labels: self.labels.clone(),
            taints: self.taints.clone(),
            unschedulable: self.unschedulable,
            allocatable: self.allocatable.clone(),
            images: self.images.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::tests::pod;
    use serde_json::json;

    fn k8s_node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"zone": "a"}},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}
        }))
        .unwrap()
    }

    fn bound(name: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(pod(json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
        })))
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = Cache::default();
        assert_eq!(c.upsert_node(&k8s_node("n1")), NodeChange::Added);
        assert_eq!(c.upsert_node(&k8s_node("n1")), NodeChange::Unchanged);
        let p = bound("a", "n1");
        c.assume(p.clone(), "n1".into());
        assert!(c.is_assumed("default/a"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        assert_eq!(c.add_pod(p.clone()), PodChange::Confirmed);
        assert_eq!(c.add_pod(p), PodChange::Unchanged);
        assert!(!c.is_assumed("default/a"));
        c.forget("default/a");
        assert_eq!(
            c.node("n1").unwrap().requested.milli_cpu,
            1000,
            "confirmed pods are not forgotten"
        );
        c.remove_pod("default/a");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
        assert_eq!(c.label_set_bound(), 1);
        assert!(c.label_set(0).is_none(), "the label set was released");
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_them() {
        let mut c = Cache::default();
        c.add_pod(bound("a", "n2"));
        assert!(c.node("n2").is_none());
        c.upsert_node(&k8s_node("n2"));
        assert_eq!(c.node("n2").unwrap().pods.len(), 1);
        c.remove_node("n2");
        c.upsert_node(&k8s_node("n2"));
        assert_eq!(c.node("n2").unwrap().pods.len(), 1);
    }

    /// Pod `b`, on `node`, with `affinity`.
    fn pod_b(node: &str, affinity: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(pod(json!({
            "metadata": {"name": "b", "labels": {"app": "db"}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}], "affinity": affinity}
        })))
    }

    /// Places a plain pod and then `b`, checking that `counted` reports `b` from when it is
    /// placed until it is removed.
    fn counts(b: Arc<PodInfo>, counted: fn(&Cache) -> bool) {
        let mut c = Cache::default();
        c.upsert_node(&k8s_node("n1"));
        c.add_pod(bound("a", "n1"));
        assert!(!counted(&c));
        c.add_pod(b);
        assert!(counted(&c));
        c.remove_pod("default/b");
        assert!(!counted(&c));
    }

    #[test]
    fn knows_whether_any_pod_repels_others() {
        let affinity = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
        counts(pod_b("n1", affinity), Cache::has_anti_affinity_pods);
    }

    #[test]
    fn knows_whether_any_pod_prefers_company() {
        let affinity = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 10, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}]}});
        // On a node the cache does not know yet: such pods count too.
        let preferring = pod_b("n2", affinity);
        assert!(preferring.has_scoring_affinity());
        counts(preferring, Cache::has_scoring_affinity_pods);
    }

    #[test]
    fn default_selector_combines_owners() {
        let mut c = Cache::default();
        let p = pod(json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "f"}}}));
        assert!(c.default_selector(&p).is_none());
        let svc = Selector::from_map(&[("app".to_string(), "web".to_string())].into());
        c.set_owner_selector("default", "Service/web".into(), Some(svc));
        let s = c.default_selector(&p).unwrap();
        assert!(s.matches(&p.labels));
    }
}
