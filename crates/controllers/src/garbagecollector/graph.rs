//! The ownership graph: every observed object keyed by uid, with the ownerReferences it holds
//! and, for each owner uid, the objects that name it. The graph is only a view built from
//! watches, so it decides what deserves a look, never what gets deleted: that always takes a
//! live read of the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::discovery::ApiResource;

/// The finalizer that holds an owner until its blocking dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that holds an owner until its dependents no longer name it.
pub const ORPHAN: &str = "orphan";

/// Where an object lives.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its resource, as discovered.
    pub resource: Arc<ApiResource>,
    /// Its namespace; `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// An observed object, reduced to what the collector needs.
#[derive(Debug, Clone)]
pub struct Node {
    /// Which object this is.
    pub identity: Identity,
    /// Its ownerReferences.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node for an object of `resource`; `None` when the object lacks a name or uid.
    pub fn new(resource: Arc<ApiResource>, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            identity: Identity {
                resource,
                namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
                name: meta.name.clone()?,
                uid: meta.uid.clone()?,
            },
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    /// Being deleted in the foreground: waiting for its dependents to go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    /// Being deleted with its dependents left behind.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

/// Work the graph hands to the collector's workers, by uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// See whether the object lost its owners, or whether its foreground deletion can finish.
    Delete(String),
    /// Remove the object from its dependents' ownerReferences, then its orphan finalizer.
    Orphan(String),
}

/// The ownership graph.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → uids of observed objects naming it, whether or not the owner was observed.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The observed object with this uid.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Records an added or changed object; returns the work the change calls for.
    pub fn observe(&mut self, node: Node) -> Vec<Item> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.remove(&uid);
        let mut work = Vec::new();
        let old_owners = old.as_ref().map(|o| o.owners.as_slice()).unwrap_or_default();
        for gone in old_owners.iter().filter(|r| !node.owners.contains(r)) {
            if !node.owners.iter().any(|r| r.uid == gone.uid) {
                self.unlink(&gone.uid, &uid);
            }
            // A reference removed or made non-blocking may be what a foreground owner waits for.
            if self.nodes.get(&gone.uid).is_some_and(Node::deleting_dependents) {
                work.push(Item::Delete(gone.uid.clone()));
            }
        }
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if !node.deleting && self.needs_check(&node) {
            work.push(Item::Delete(uid.clone()));
        }
        if node.deleting_dependents() && !old.as_ref().is_some_and(Node::deleting_dependents) {
            work.push(Item::Delete(uid.clone()));
            work.extend(self.dependent_uids(&uid).map(Item::Delete));
        }
        if node.orphaning() && !old.as_ref().is_some_and(Node::orphaning) {
            work.push(Item::Orphan(uid.clone()));
        }
        self.nodes.insert(uid, node);
        work
    }

    /// Records that the object with this uid is gone; returns the work that calls for.
    pub fn forget(&mut self, uid: &str) -> Vec<Item> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work: Vec<Item> = self.dependent_uids(uid).map(Item::Delete).collect();
        for owner in &node.owners {
            self.unlink(&owner.uid, uid);
            if self.nodes.get(&owner.uid).is_some_and(Node::deleting_dependents) {
                work.push(Item::Delete(owner.uid.clone()));
            }
        }
        work
    }

    /// The uids of the observed objects of `resource` (compared by identity, so a resource
    /// re-discovered under a new version is a different one).
    pub fn uids_of(&self, resource: &Arc<ApiResource>) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| Arc::ptr_eq(&n.identity.resource, resource))
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// The observed object `reference`, held by `dependent`, points at, provided its
    /// coordinates agree: same group, kind and name, and a namespaced owner must share the
    /// dependent's namespace (cross-namespace references resolve to nothing, as upstream).
    pub fn owner_of(&self, dependent: &Identity, reference: &OwnerReference) -> Option<&Node> {
        let owner = self.nodes.get(&reference.uid)?;
        let id = &owner.identity;
        let same = id.name == reference.name
            && id.resource.kind == reference.kind
            && id.resource.group == group_of(&reference.api_version)
            && (id.namespace.is_none() || id.namespace == dependent.namespace);
        same.then_some(owner)
    }

    /// Whether some owner of `node` is unknown, elsewhere than it claims, or being deleted in
    /// the foreground: only then does the object need a look at the API.
    pub fn needs_check(&self, node: &Node) -> bool {
        node.owners
            .iter()
            .any(|r| self.owner_of(&node.identity, r).is_none_or(Node::deleting_dependents))
    }

    /// The observed objects that validly name `owner` as an owner.
    pub fn dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents_where(owner, |_| true)
    }

    /// The dependents of `owner` whose reference to it has blockOwnerDeletion set.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents_where(owner, |r| r.block_owner_deletion == Some(true))
    }

    fn dependents_where(&self, owner: &str, keep: impl Fn(&OwnerReference) -> bool) -> Vec<&Node> {
        self.dependent_uids(owner)
            .filter_map(|uid| self.nodes.get(&uid))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == owner && keep(r) && self.owner_of(&d.identity, r).is_some())
            })
            .collect()
    }

    fn dependent_uids(&self, owner: &str) -> impl Iterator<Item = String> + '_ {
        self.dependents.get(owner).into_iter().flatten().cloned()
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

/// The group of an apiVersion (`apps/v1` → `apps`, `v1` → the core group, ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configmaps() -> Arc<ApiResource> {
        Arc::new(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        })
    }

    fn cluster_roles() -> Arc<ApiResource> {
        Arc::new(ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            plural: "clusterroles".into(),
        })
    }

    fn node(resource: &Arc<ApiResource>, ns: Option<&str>, name: &str, owners: &[(&Node, bool)]) -> Node {
        Node {
            identity: Identity {
                resource: resource.clone(),
                namespace: ns.map(String::from),
                name: name.into(),
                uid: format!("uid-{}-{name}", ns.unwrap_or("")),
            },
            owners: owners.iter().map(|(o, block)| reference(o, *block)).collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn reference(owner: &Node, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: owner.identity.resource.api_version.clone(),
            kind: owner.identity.resource.kind.clone(),
            name: owner.identity.name.clone(),
            uid: owner.identity.uid.clone(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers.push(finalizer.into());
        n
    }

    fn uid(n: &Node) -> String {
        n.identity.uid.clone()
    }

    fn sorted(nodes: Vec<&Node>) -> Vec<String> {
        let mut out: Vec<String> = nodes.into_iter().map(|n| n.identity.name.clone()).collect();
        out.sort();
        out
    }

    #[test]
    fn an_owner_seen_first_needs_no_work_for_its_dependents() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        let dep = node(&cm, Some("a"), "dep", &[(&owner, false)]);
        assert!(g.observe(owner.clone()).is_empty());
        assert!(g.observe(dep.clone()).is_empty());
        assert_eq!(sorted(g.dependents(&uid(&owner))), ["dep"]);
    }

    #[test]
    fn a_dependent_of_an_unseen_owner_is_checked() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        let dep = node(&cm, Some("a"), "dep", &[(&owner, false)]);
        assert_eq!(g.observe(dep.clone()), [Item::Delete(uid(&dep))]);
        g.observe(owner.clone());
        assert!(!g.needs_check(&dep), "the owner arrived");
    }

    #[test]
    fn an_owner_going_away_sends_its_dependents_to_be_checked() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        let a = node(&cm, Some("a"), "a", &[(&owner, false)]);
        let b = node(&cm, Some("a"), "b", &[(&owner, true)]);
        g.observe(owner.clone());
        g.observe(a.clone());
        g.observe(b.clone());
        let mut work = g.forget(&uid(&owner));
        work.sort_by_key(|i| format!("{i:?}"));
        assert_eq!(work, [Item::Delete(uid(&a)), Item::Delete(uid(&b))]);
        assert!(g.needs_check(&a));
        assert!(g.forget("never-seen").is_empty());
    }

    #[test]
    fn foreground_deletion_sends_the_owner_and_its_dependents() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        let blocking = node(&cm, Some("a"), "blocking", &[(&owner, true)]);
        let loose = node(&cm, Some("a"), "loose", &[(&owner, false)]);
        g.observe(owner.clone());
        g.observe(blocking.clone());
        g.observe(loose.clone());
        let mut work = g.observe(deleting(owner.clone(), FOREGROUND));
        work.sort_by_key(|i| format!("{i:?}"));
        let mut expected = vec![
            Item::Delete(uid(&owner)),
            Item::Delete(uid(&blocking)),
            Item::Delete(uid(&loose)),
        ];
        expected.sort_by_key(|i| format!("{i:?}"));
        assert_eq!(work, expected);
        assert_eq!(sorted(g.blocking_dependents(&uid(&owner))), ["blocking"]);
        assert!(g.needs_check(&loose), "its owner waits for it");
        assert!(
            g.observe(deleting(owner.clone(), FOREGROUND)).is_empty(),
            "only the transition calls for work"
        );
        assert_eq!(g.forget(&uid(&loose)), [Item::Delete(uid(&owner))]);
        assert_eq!(g.forget(&uid(&blocking)), [Item::Delete(uid(&owner))]);
        assert!(g.blocking_dependents(&uid(&owner)).is_empty());
    }

    #[test]
    fn dropping_a_reference_wakes_a_foreground_owner() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = deleting(node(&cm, Some("a"), "owner", &[]), FOREGROUND);
        let mut dep = node(&cm, Some("a"), "dep", &[(&owner, true)]);
        g.observe(owner.clone());
        g.observe(dep.clone());
        dep.owners[0].block_owner_deletion = Some(false);
        assert!(g.observe(dep.clone()).contains(&Item::Delete(uid(&owner))));
        assert!(g.blocking_dependents(&uid(&owner)).is_empty());
        assert_eq!(sorted(g.dependents(&uid(&owner))), ["dep"]);
        dep.owners.clear();
        assert_eq!(g.observe(dep.clone()), [Item::Delete(uid(&owner))]);
        assert!(g.dependents(&uid(&owner)).is_empty());
    }

    #[test]
    fn orphan_deletion_is_sent_once() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        g.observe(owner.clone());
        let orphaning = deleting(owner.clone(), ORPHAN);
        assert_eq!(g.observe(orphaning.clone()), [Item::Orphan(uid(&owner))]);
        assert!(g.observe(orphaning).is_empty());
    }

    #[test]
    fn an_owner_elsewhere_does_not_count() {
        let cm = configmaps();
        let mut g = Graph::default();
        let owner = node(&cm, Some("a"), "owner", &[]);
        let elsewhere = node(&cm, Some("b"), "dep", &[(&owner, true)]);
        g.observe(owner.clone());
        assert_eq!(g.observe(elsewhere.clone()), [Item::Delete(uid(&elsewhere))]);
        assert!(g.owner_of(&elsewhere.identity, &elsewhere.owners[0]).is_none());
        assert!(g.dependents(&uid(&owner)).is_empty(), "not a valid dependent");
        let mut renamed = reference(&owner, false);
        renamed.name = "other".into();
        assert!(g.owner_of(&owner.identity, &renamed).is_none());
    }

    #[test]
    fn a_cluster_scoped_owner_serves_every_namespace() {
        let (cm, roles) = (configmaps(), cluster_roles());
        let mut g = Graph::default();
        let owner = node(&roles, None, "role", &[]);
        let a = node(&cm, Some("a"), "x", &[(&owner, false)]);
        let b = node(&cm, Some("b"), "x", &[(&owner, false)]);
        g.observe(owner.clone());
        assert!(g.observe(a).is_empty());
        assert!(g.observe(b).is_empty());
        assert_eq!(g.dependents(&uid(&owner)).len(), 2);
    }

    #[test]
    fn objects_are_found_by_resource() {
        let (cm, roles) = (configmaps(), cluster_roles());
        let mut g = Graph::default();
        g.observe(node(&cm, Some("a"), "x", &[]));
        g.observe(node(&roles, None, "r", &[]));
        assert_eq!(g.uids_of(&cm), ["uid-a-x"]);
        assert!(g.uids_of(&configmaps()).is_empty(), "another discovery's resource");
    }

    #[test]
    fn groups_of_api_versions() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("rbac.authorization.k8s.io/v1"), "rbac.authorization.k8s.io");
    }

    #[test]
    fn nodes_need_a_name_and_uid() {
        let meta = ObjectMeta {
            name: Some("x".into()),
            namespace: Some("a".into()),
            ..Default::default()
        };
        assert!(Node::new(configmaps(), &meta).is_none());
        let meta = ObjectMeta {
            uid: Some("u".into()),
            deletion_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            )),
            finalizers: Some(vec![ORPHAN.into()]),
            ..meta
        };
        let n = Node::new(configmaps(), &meta).expect("complete");
        assert!(n.orphaning() && !n.deleting_dependents());
    }
}
