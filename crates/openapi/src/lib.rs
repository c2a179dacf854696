//! The OpenAPI v3 documents kate publishes under `/openapi/v3`, and the schema index that strategic
//! merge patch and field validation use.
//!
//! kubectl needs these documents for every write (it checks that PATCH accepts `fieldValidation`),
//! for client-side apply (merge keys and patch strategies) and for `kubectl explain`. Schemas and
//! descriptions come from k8s-openapi; upstream's patch and list metadata, which k8s-openapi lacks,
//! comes from the facts table in `facts.rs`. Everything is built lazily on first use and cached,
//! because the server must start in well under a second and idle in little memory.
//!
//! Documents are keyed by group-version, so custom resources can later get documents of their own;
//! until their CRD schemas are wired in, kinds that are not compiled in get an open schema.

#![warn(missing_docs)]

mod facts;
mod kinds;
mod paths;
mod schemas;
mod unknown;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};

use crate::paths::GroupVersion;
use crate::schemas::{Catalog, Descriptions, REF_PREFIX};
pub use crate::unknown::unknown_fields;

/// One resource the server serves, as the OpenAPI builder needs to know it.
#[derive(Clone, Debug)]
pub struct ApiResource {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Resource name in URLs, e.g. `deployments`.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Subresources served; `status` and `scale` are published, others are ignored.
    pub subresources: Vec<String>,
    /// Kind of the list, e.g. `DeploymentList`.
    pub list_kind: String,
}

/// One serialized OpenAPI 3.0 document and the hash that versions its URL.
#[derive(Debug)]
pub struct Document {
    /// The document as JSON.
    pub json: Vec<u8>,
    /// Content hash (16 upper-case hex digits) for `?hash=`; equal content gives an equal hash.
    pub hash: String,
}

/// A kind's root schema node plus the components map its `$ref`s resolve in.
#[derive(Clone)]
pub struct SchemaRef {
    defs: Arc<Map<String, Value>>,
    name: String,
}

impl SchemaRef {
    /// The kind's schema.
    pub fn node(&self) -> &Value {
        self.defs.get(&self.name).unwrap_or(&Value::Null)
    }

    /// All definitions, keyed by upstream name (`io.k8s.api.core.v1.PodSpec`).
    pub fn defs(&self) -> &Map<String, Value> {
        &self.defs
    }

    /// Follows `$ref` and single-element `allOf` wrappers to the schema that declares the type.
    ///
    /// Read a property's own extensions (patch strategy, merge key, list type) before resolving:
    /// they sit on the wrapper, not on the referenced definition.
    pub fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        // Bounded: a definition that is nothing but a reference to itself must not hang us.
        for _ in 0..16 {
            if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
                match reference.strip_prefix(REF_PREFIX).and_then(|n| self.defs.get(n)) {
                    Some(target) => node = target,
                    None => break,
                }
            } else if let (Some([only]), None) = (
                node.get("allOf").and_then(Value::as_array).map(Vec::as_slice),
                node.get("properties"),
            ) {
                node = only;
            } else {
                break;
            }
        }
        node
    }
}

/// The OpenAPI v3 documents and schemas of a set of served resources, built on first use.
pub struct OpenApi {
    groups: Vec<GroupVersion>,
    by_key: HashMap<String, usize>,
    catalog: OnceLock<Catalog>,
    docs: Vec<OnceLock<Arc<Document>>>,
}

impl OpenApi {
    /// Indexes `resources` by group-version; builds nothing yet.
    pub fn new(resources: Vec<ApiResource>) -> Self {
        let mut groups: Vec<GroupVersion> = Vec::new();
        let mut by_key = HashMap::new();
        for resource in resources {
            let key = GroupVersion::key_for(&resource.group, &resource.version);
            let index = *by_key.entry(key.clone()).or_insert_with(|| {
                groups.push(GroupVersion {
                    key,
                    resources: Vec::new(),
                });
                groups.len() - 1
            });
            groups[index].resources.push(resource);
        }
        let docs = groups.iter().map(|_| OnceLock::new()).collect();
        OpenApi {
            groups,
            by_key,
            catalog: OnceLock::new(),
            docs,
        }
    }

    /// The `/openapi/v3` discovery map: each group-version's document URL, versioned by its hash.
    ///
    /// The hashes need the documents, so the first call builds them all.
    pub fn root(&self) -> Value {
        let paths: Map<String, Value> = self
            .groups
            .iter()
            .enumerate()
            .map(|(index, gv)| {
                let url = format!("/openapi/v3/{}?hash={}", gv.key, self.doc_at(index).hash);
                (gv.key.clone(), json!({"serverRelativeURL": url}))
            })
            .collect();
        json!({"paths": paths})
    }

    /// The document of one group-version, by its key: `api/v1` or `apis/apps/v1`.
    pub fn document(&self, path: &str) -> Option<Arc<Document>> {
        let index = *self.by_key.get(path.trim_matches('/'))?;
        Some(self.doc_at(index))
    }

    /// The schema of a served kind (or of `autoscaling/v1` Scale, the body of `/scale`), for
    /// patching and validation. Descriptions are left out to keep the long-lived catalog small.
    pub fn kind_schema(&self, group: &str, version: &str, kind: &str) -> Option<SchemaRef> {
        let catalog = self.catalog();
        let info = catalog.kind(group, version, kind)?;
        Some(SchemaRef {
            defs: Arc::clone(&catalog.defs),
            name: info.def.clone(),
        })
    }

    fn catalog(&self) -> &Catalog {
        self.catalog.get_or_init(|| {
            let resources = self.groups.iter().flat_map(|gv| &gv.resources);
            Catalog::build(resources, Descriptions::Drop)
        })
    }

    fn doc_at(&self, index: usize) -> Arc<Document> {
        // Each document gets a catalog of just its own kinds, with descriptions, dropped once the
        // document is serialized.
        let doc = self.docs[index].get_or_init(|| {
            let gv = &self.groups[index];
            Arc::new(paths::document(gv, Catalog::build(&gv.resources, Descriptions::Keep)))
        });
        Arc::clone(doc)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::ApiResource;

    /// Shorthand for one resource in test fixtures.
    pub(crate) fn resource(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        subresources: &[&str],
    ) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            subresources: subresources.iter().map(|s| (*s).to_owned()).collect(),
            list_kind: format!("{kind}List"),
        }
    }

    /// The resources the brief names, plus one custom resource.
    pub(crate) fn resources() -> Vec<ApiResource> {
        let r = resource;
        vec![
            r("", "v1", "Namespace", "namespaces", false, &["status"]),
            r(
                "",
                "v1",
                "Pod",
                "pods",
                true,
                &["status", "log", "exec", "binding", "eviction"],
            ),
            r("", "v1", "Node", "nodes", false, &["status"]),
            r("", "v1", "Service", "services", true, &["status"]),
            r("", "v1", "Endpoints", "endpoints", true, &[]),
            r("", "v1", "ConfigMap", "configmaps", true, &[]),
            r("", "v1", "Secret", "secrets", true, &[]),
            r("", "v1", "ServiceAccount", "serviceaccounts", true, &["token"]),
            r("", "v1", "Event", "events", true, &[]),
            r("", "v1", "PersistentVolume", "persistentvolumes", false, &["status"]),
            r(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                true,
                &["status"],
            ),
            r("", "v1", "LimitRange", "limitranges", true, &[]),
            r("", "v1", "ResourceQuota", "resourcequotas", true, &["status"]),
            r("apps", "v1", "Deployment", "deployments", true, &["status", "scale"]),
            r("apps", "v1", "ReplicaSet", "replicasets", true, &["status", "scale"]),
            r("apps", "v1", "StatefulSet", "statefulsets", true, &["status", "scale"]),
            r("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
            r("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[]),
            r("batch", "v1", "Job", "jobs", true, &["status"]),
            r("batch", "v1", "CronJob", "cronjobs", true, &["status"]),
            r("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
            r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &[]),
            r("events.k8s.io", "v1", "Event", "events", true, &[]),
            r(
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                "priorityclasses",
                false,
                &[],
            ),
            r(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
                &["status"],
            ),
            r("example.com", "v1", "Widget", "widgets", true, &["status"]),
        ]
    }

    /// Every compiled-in kind, for checks that must cover the whole facts table.
    pub(crate) fn all_builtin_resources() -> Vec<ApiResource> {
        crate::kinds::BUILTINS
            .iter()
            .map(|b| resource(b.group, b.version, b.kind, &b.kind.to_lowercase(), true, &["status"]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::testing::resources;

    fn parsed(api: &OpenApi, key: &str) -> Value {
        let doc = api.document(key).expect("document exists");
        serde_json::from_slice(&doc.json).expect("document is JSON")
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OpenApi>();
        assert_send_sync::<SchemaRef>();
    }

    #[test]
    fn new_is_cheap() {
        let many: Vec<ApiResource> = (0..20).flat_map(|_| resources()).collect();
        let start = Instant::now();
        let api = OpenApi::new(many);
        assert!(start.elapsed() < Duration::from_millis(5), "took {:?}", start.elapsed());
        assert!(api.catalog.get().is_none() && api.docs.iter().all(|d| d.get().is_none()));
    }

    #[test]
    fn root_lists_every_group_version() {
        let api = OpenApi::new(resources());
        let root = api.root();
        let paths = root["paths"].as_object().expect("paths map");
        let expected = [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/discovery.k8s.io/v1",
            "apis/events.k8s.io/v1",
            "apis/scheduling.k8s.io/v1",
            "apis/policy/v1",
            "apis/example.com/v1",
        ];
        assert_eq!(paths.len(), expected.len());
        for key in expected {
            let hash = &api.document(key).expect("document").hash;
            assert_eq!(
                paths[key]["serverRelativeURL"],
                format!("/openapi/v3/{key}?hash={hash}")
            );
        }
    }

    #[test]
    fn hashes_are_stable_and_documents_cached() {
        let first = OpenApi::new(resources());
        let second = OpenApi::new(resources());
        assert_eq!(first.root(), second.root());
        let a = first.document("apis/apps/v1").expect("apps");
        let b = first.document("/apis/apps/v1").expect("apps");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(first.document("apis/nope/v1").is_none());
    }

    #[test]
    fn published_schemas_carry_upstream_patch_metadata() {
        let api = OpenApi::new(resources());
        let apps = parsed(&api, "apis/apps/v1");
        let schemas = &apps["components"]["schemas"];
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy["description"].is_string());
        let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(meta["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
        assert_eq!(meta["ownerReferences"]["x-kubernetes-list-map-keys"], json!(["uid"]));
    }

    #[test]
    fn kind_schemas_carry_gvk_arrays() {
        let api = OpenApi::new(resources());
        for resource in resources() {
            let doc = parsed(&api, &GroupVersion::key_for(&resource.group, &resource.version));
            let gvk = json!([{"group": resource.group, "kind": resource.kind, "version": resource.version}]);
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            assert!(
                schemas.values().any(|s| s["x-kubernetes-group-version-kind"] == gvk),
                "no schema for {gvk}"
            );
        }
    }

    #[test]
    fn every_ref_resolves_inside_its_document() {
        fn refs<'a>(node: &'a Value, out: &mut Vec<&'a str>) {
            match node {
                Value::Object(map) => map.iter().for_each(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }),
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let api = OpenApi::new(resources());
        for key in api.root()["paths"].as_object().expect("paths").keys() {
            let doc = parsed(&api, key);
            let mut found = Vec::new();
            refs(&doc, &mut found);
            assert!(!found.is_empty());
            for reference in found {
                let name = reference.strip_prefix(REF_PREFIX).expect("local component ref");
                assert!(doc["components"]["schemas"].get(name).is_some(), "{key}: {reference}");
            }
        }
    }

    #[test]
    fn kind_schema_finds_served_kinds_and_scale() {
        let api = OpenApi::new(resources());
        let deployment = api.kind_schema("apps", "v1", "Deployment").expect("deployment");
        assert_eq!(
            deployment.node()["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let spec = deployment.resolve(&deployment.node()["properties"]["spec"]);
        assert!(spec["properties"]["template"].is_object());
        assert!(api.kind_schema("autoscaling", "v1", "Scale").is_some());
        assert!(api.kind_schema("rbac.authorization.k8s.io", "v1", "Role").is_none());
    }
}
