//! The resources the server serves: names, scope, subresources and the strategy of each kind.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::strategy::{self, Strategy};
use crate::watchcache::Cached;

/// Subresources a resource can have beyond the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: writes there change only `.status`; writes to the object never do.
    Status,
    /// `/scale`: an `autoscaling/v1 Scale` view of `spec.replicas`.
    Scale,
    /// `/finalize` (namespaces): writes there change only `spec.finalizers`.
    Finalize,
    /// `/binding` (pods): assigns the pod to a node, as the scheduler does.
    Binding,
    /// `/log` (pods): a container's log, from its kubelet.
    Log,
    /// `/exec` (pods): runs a command in a container, through its kubelet.
    Exec,
    /// `/attach` (pods): a running container's streams, through its kubelet.
    Attach,
    /// `/portforward` (pods): connections to the pod's ports, through its kubelet.
    PortForward,
}

impl Subresource {
    /// The URL segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Finalize => "finalize",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }

    /// The verbs it serves.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Finalize => &["update"],
            Subresource::Binding => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
            _ => &["get", "patch", "update"],
        }
    }

    /// The (group, version, kind) it answers with, for a parent of `group/version` `kind`.
    pub fn response_kind(
        self,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
    ) -> (&'static str, &'static str, &'static str) {
        match self {
            Subresource::Scale => ("autoscaling", "v1", "Scale"),
            Subresource::Binding => ("", "v1", "Binding"),
            Subresource::Log => ("", "v1", "Pod"),
            Subresource::Exec => ("", "v1", "PodExecOptions"),
            Subresource::Attach => ("", "v1", "PodAttachOptions"),
            Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
            _ => (group, version, kind),
        }
    }
}

/// A resource whose objects are stored as another resource's, converted on the way in and out
/// (events.k8s.io/v1 Events are core/v1 Events, so both APIs see the same events).
pub struct View {
    /// The store key prefix of the resource that holds the objects.
    pub storage_prefix: &'static str,
    /// Stored form → this resource's form.
    pub read: fn(&Value) -> Value,
    /// This resource's form → stored form.
    pub write: fn(&Value) -> Value,
}

/// One served resource: everything discovery, routing and the generic registry need.
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Categories such as `all`.
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Whether `metadata.generation` tracks spec changes.
    pub generation: bool,
    /// The kind-specific behaviour.
    pub strategy: Box<dyn Strategy>,
    /// Set when the objects are stored as another resource's.
    pub view: Option<View>,
}

impl ResourceDef {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Whether the resource has the given subresource.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix of all objects of this resource, ending in `/`.
    pub fn key_prefix(&self) -> String {
        if let Some(view) = &self.view {
            return view.storage_prefix.to_string();
        }
        if self.group.is_empty() || self.group == "apps" || self.group == "batch" {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The store key prefix for one namespace (or all objects when `ns` is None).
    pub fn prefix_in(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix_in(ns))
    }

    /// A stored object as this resource shows it.
    pub fn shown(&self, stored: Arc<Cached>) -> Arc<Cached> {
        match &self.view {
            Some(view) => Cached::new((view.read)(&stored)),
            None => stored,
        }
    }

    /// An object of this resource in the form it is stored in.
    pub fn stored_form<'a>(&self, obj: &'a Value) -> Cow<'a, Value> {
        match &self.view {
            Some(view) => Cow::Owned((view.write)(obj)),
            None => Cow::Borrowed(obj),
        }
    }

    /// `plural` or `plural.group`, as upstream names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// All served resources, in discovery order.
pub struct Catalog {
    resources: Vec<Arc<ResourceDef>>,
}

impl Catalog {
    /// The built-in Kubernetes resources.
    pub fn builtin() -> Catalog {
        Catalog {
            resources: strategy::builtin_resources().into_iter().map(Arc::new).collect(),
        }
    }

    /// Every resource, in discovery order.
    pub fn all(&self) -> &[Arc<ResourceDef>] {
        &self.resources
    }

    /// The resource with this group, version and plural name.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDef>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Group versions in preference order, each with its resources.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str, Vec<&Arc<ResourceDef>>)> {
        let mut out: Vec<(&'static str, &'static str, Vec<&Arc<ResourceDef>>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, v, _)| *g == r.group && *v == r.version) {
                Some((_, _, list)) => list.push(r),
                None => out.push((r.group, r.version, vec![r])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let c = Catalog::builtin();
        let deploy = c.find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.key(Some("default"), "web"), "/registry/deployments/default/web");
        let lease = c.find("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(lease.prefix_in(None), "/registry/coordination.k8s.io/leases/");
        let ns = c.find("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "/registry/namespaces/kube-system"
        );
    }

    #[test]
    fn plural_names_are_unique_per_group_version() {
        let c = Catalog::builtin();
        for r in c.all() {
            let same = c
                .all()
                .iter()
                .filter(|o| o.group == r.group && o.version == r.version && o.plural == r.plural);
            assert_eq!(same.count(), 1, "{}", r.plural);
        }
    }
}
