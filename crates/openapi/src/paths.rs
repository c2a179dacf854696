//! One group-version's OpenAPI 3.0 document: the REST paths kate serves for its resources and the
//! component schemas those paths reach.
//!
//! kubectl reads three things from these paths: a PATCH operation tagged with the kind's
//! `x-kubernetes-group-version-kind` whose parameters include `fieldValidation` (else it falls back
//! to client-side validation, which needs `/openapi/v2`), that operation's request content types
//! (strategic merge patch or not), and the kind schemas under `components.schemas`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::schemas::{self, Catalog, KindInfo, REF_PREFIX};
use crate::{ApiResource, Document};
use params::{DELETE, DELETE_COLLECTION, LIST, PATCH, PRETTY, WRITE};

/// The resources of one group-version, which share one document.
pub(crate) struct GroupVersion {
    /// The document's key under `/openapi/v3`: `api/v1` or `apis/apps/v1`.
    pub key: String,
    pub resources: Vec<ApiResource>,
}

impl GroupVersion {
    /// The key for a group and version: the core group lives under `api/`, the others under `apis/`.
    pub(crate) fn key_for(group: &str, version: &str) -> String {
        if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        }
    }
}

/// Builds and serializes the document of one group-version from a catalog of its kinds, moving
/// the reachable definitions out of the catalog rather than copying them.
pub(crate) fn document(gv: &GroupVersion, catalog: Catalog) -> Document {
    let mut paths = Map::new();
    for resource in &gv.resources {
        if let Some(info) = catalog.kind(&resource.group, &resource.version, &resource.kind) {
            add_resource(&mut paths, &gv.key, resource, info);
        }
    }
    let paths = Value::Object(paths);
    let schemas = take_reachable(&paths, Arc::unwrap_or_clone(catalog.defs));
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    let mut json = serde_json::to_vec(&doc).expect("a serde_json::Value always serializes");
    // Documents stay cached for the server's lifetime; drop the growth slack.
    json.shrink_to_fit();
    let hash = fnv1a(&json);
    Document { json, hash }
}

/// What every operation on one resource shares.
#[derive(Clone)]
struct Target<'a> {
    /// Operation-id infix, e.g. `AppsV1`.
    ident: String,
    tag: String,
    /// `Namespaced` or empty, as upstream's operation ids spell it.
    scope: &'static str,
    kind: &'a str,
    gvk: Value,
}

fn add_resource(paths: &mut Map<String, Value>, key: &str, r: &ApiResource, info: &KindInfo) {
    // Every served resource gets a list schema; only the unserved extras (Scale) lack one.
    let Some(list_def) = info.list_def.as_deref() else {
        return;
    };
    let target = Target {
        ident: ident(&r.group, &r.version),
        tag: tag(&r.group, &r.version),
        scope: if r.namespaced { "Namespaced" } else { "" },
        kind: &r.kind,
        gvk: json!({"group": r.group, "kind": r.kind, "version": r.version}),
    };
    let collection = if r.namespaced {
        format!("/{key}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("/{key}/{}", r.plural)
    };
    let params = |name: bool| {
        let mut params = Vec::new();
        if name {
            params.push(path_param("name", &format!("name of the {}", r.kind)));
        }
        if r.namespaced {
            params.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(query(&PRETTY));
        Value::Array(params)
    };

    paths.insert(
        collection.clone(),
        collection_item(&target, &info.def, list_def, params(false)),
    );
    let item = format!("{collection}/{{name}}");
    paths.insert(
        item.clone(),
        object_item(&target, "", &info.def, info.builtin, params(true)),
    );
    for sub in &r.subresources {
        let (target, suffix, def) = match sub.as_str() {
            "status" => (target.clone(), "Status", info.def.as_str()),
            "scale" => {
                let gvk = json!({"group": "autoscaling", "kind": "Scale", "version": "v1"});
                (Target { gvk, ..target.clone() }, "Scale", schemas::SCALE)
            }
            // Action subresources (log, exec, eviction, ...) have no schema kubectl reads.
            _ => continue,
        };
        let path = format!("{item}/{sub}");
        paths.insert(path, object_item(&target, suffix, def, info.builtin, params(true)));
    }
    if r.namespaced {
        let id = format!("list{}{}ForAllNamespaces", target.ident, r.kind);
        let list = operation(&target, "list", id, LIST, None, responses(&["200"], list_def, true));
        paths.insert(
            format!("/{key}/{}", r.plural),
            json!({"get": list, "parameters": [query(&PRETTY)]}),
        );
    }
}

/// `…/deployments`: list (and watch), create, delete collection.
fn collection_item(t: &Target, def: &str, list_def: &str, parameters: Value) -> Value {
    let (ident, scope, kind) = (&t.ident, t.scope, t.kind);
    json!({
        "get": operation(t, "list", format!("list{ident}{scope}{kind}"), LIST, None,
            responses(&["200"], list_def, true)),
        "post": operation(t, "post", format!("create{ident}{scope}{kind}"), WRITE,
            Some(object_body(def)), responses(&["200", "201", "202"], def, false)),
        "delete": operation(t, "deletecollection", format!("delete{ident}Collection{scope}{kind}"),
            DELETE_COLLECTION, Some(delete_body()), responses(&["200"], schemas::STATUS, false)),
        "parameters": parameters,
    })
}

/// `…/deployments/{name}` (read, replace, patch, delete) and its `/status` or `/scale` subresource
/// (named by `suffix`; read, replace, patch).
fn object_item(t: &Target, suffix: &str, def: &str, strategic: bool, parameters: Value) -> Value {
    let (ident, scope, kind) = (&t.ident, t.scope, t.kind);
    let mut item = json!({
        "get": operation(t, "get", format!("read{ident}{scope}{kind}{suffix}"), &[], None,
            responses(&["200"], def, false)),
        "put": operation(t, "put", format!("replace{ident}{scope}{kind}{suffix}"), WRITE,
            Some(object_body(def)), responses(&["200", "201"], def, false)),
        "patch": operation(t, "patch", format!("patch{ident}{scope}{kind}{suffix}"), PATCH,
            Some(patch_body(strategic)), responses(&["200", "201"], def, false)),
        "parameters": parameters,
    });
    if suffix.is_empty() {
        item["delete"] = operation(
            t,
            "delete",
            format!("delete{ident}{scope}{kind}"),
            DELETE,
            Some(delete_body()),
            responses(&["200", "202"], schemas::STATUS, false),
        );
    }
    item
}

fn operation(t: &Target, action: &str, id: String, params: &[Param], body: Option<Value>, responses: Value) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), id.into());
    op.insert("tags".into(), json!([t.tag]));
    if !params.is_empty() {
        op.insert("parameters".into(), params.iter().map(query).collect());
    }
    if let Some(body) = body {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses);
    op.insert("x-kubernetes-action".into(), action.into());
    op.insert("x-kubernetes-group-version-kind".into(), t.gvk.clone());
    Value::Object(op)
}

fn schema_ref(def: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{def}")})
}

fn object_body(def: &str) -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(def)}}, "required": true})
}

fn delete_body() -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(schemas::DELETE_OPTIONS)}}})
}

/// kubectl computes a strategic merge patch only when the PATCH operation lists its content type,
/// which upstream does for compiled-in kinds and never for custom resources.
fn patch_body(strategic: bool) -> Value {
    let mut types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if strategic {
        types.push("application/strategic-merge-patch+json");
    }
    let content: Map<String, Value> = types
        .into_iter()
        .map(|t| (t.to_owned(), json!({"schema": schema_ref(schemas::PATCH)})))
        .collect();
    json!({"content": content, "required": true})
}

fn responses(codes: &[&str], def: &str, watchable: bool) -> Value {
    let mut content = Map::new();
    content.insert("application/json".into(), json!({"schema": schema_ref(def)}));
    if watchable {
        content.insert(
            "application/json;stream=watch".into(),
            json!({"schema": schema_ref(def)}),
        );
    }
    let mut out = Map::new();
    for &code in codes {
        let description = match code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        out.insert(code.into(), json!({"description": description, "content": content}));
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true,
        "schema": {"type": "string"}})
}

fn query(&(name, ty, description): &Param) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty}})
}

/// A query parameter: name, schema type, description.
type Param = (&'static str, &'static str, &'static str);

/// The query parameters of each operation kind, as upstream declares them (descriptions are ours).
#[rustfmt::skip]
mod params {
    use super::Param;

    pub(super) const PRETTY: Param = ("pretty", "string", "If 'true', the output is pretty-printed.");
    pub(super) const DRY_RUN: Param = ("dryRun", "string", "When 'All', the request is validated but not persisted.");
    pub(super) const FIELD_MANAGER: Param =
        ("fieldManager", "string", "Who makes the change, as recorded in managedFields.");
    pub(super) const FIELD_VALIDATION: Param =
        ("fieldValidation", "string", "Unknown or duplicate fields in the body: Ignore, Warn or Strict.");
    pub(super) const FORCE: Param =
        ("force", "boolean", "For apply patches: take ownership of fields other managers own.");
    pub(super) const LABEL_SELECTOR: Param =
        ("labelSelector", "string", "Only objects whose labels match this selector.");
    pub(super) const FIELD_SELECTOR: Param =
        ("fieldSelector", "string", "Only objects whose fields match this selector.");
    pub(super) const LIMIT: Param = ("limit", "integer", "At most this many items; a continue token fetches the rest.");
    pub(super) const CONTINUE: Param =
        ("continue", "string", "Token from a previous limited list, to fetch the next page.");
    pub(super) const RESOURCE_VERSION: Param =
        ("resourceVersion", "string", "Version the result must be at least as new as (see resourceVersionMatch).");
    pub(super) const RESOURCE_VERSION_MATCH: Param =
        ("resourceVersionMatch", "string", "How resourceVersion applies: Exact or NotOlderThan.");
    pub(super) const WATCH: Param = ("watch", "boolean", "Stream changes instead of returning a list.");
    pub(super) const ALLOW_WATCH_BOOKMARKS: Param =
        ("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events during a watch.");
    pub(super) const SEND_INITIAL_EVENTS: Param =
        ("sendInitialEvents", "boolean", "With watch: begin with events for the current state.");
    pub(super) const TIMEOUT_SECONDS: Param =
        ("timeoutSeconds", "integer", "End the list or watch call after this many seconds.");
    pub(super) const GRACE_PERIOD_SECONDS: Param =
        ("gracePeriodSeconds", "integer", "Seconds before the object is deleted; 0 deletes at once.");
    pub(super) const ORPHAN_DEPENDENTS: Param = ("orphanDependents", "boolean", "Deprecated: use propagationPolicy.");
    pub(super) const PROPAGATION_POLICY: Param =
        ("propagationPolicy", "string", "How dependents are collected: Orphan, Background or Foreground.");

    pub(super) const WRITE: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
    pub(super) const PATCH: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
    pub(super) const DELETE: &[Param] = &[DRY_RUN, GRACE_PERIOD_SECONDS, ORPHAN_DEPENDENTS, PROPAGATION_POLICY];
    pub(super) const LIST: &[Param] = &[
        ALLOW_WATCH_BOOKMARKS, CONTINUE, FIELD_SELECTOR, LABEL_SELECTOR, LIMIT, RESOURCE_VERSION,
        RESOURCE_VERSION_MATCH, SEND_INITIAL_EVENTS, TIMEOUT_SECONDS, WATCH,
    ];
    pub(super) const DELETE_COLLECTION: &[Param] = &[
        CONTINUE, DRY_RUN, FIELD_SELECTOR, GRACE_PERIOD_SECONDS, LABEL_SELECTOR, LIMIT, ORPHAN_DEPENDENTS,
        PROPAGATION_POLICY, RESOURCE_VERSION, RESOURCE_VERSION_MATCH, SEND_INITIAL_EVENTS, TIMEOUT_SECONDS,
    ];
}

/// Upstream's operation-id infix: `rbac.authorization.k8s.io`, `v1` → `RbacAuthorizationV1`.
fn ident(group: &str, version: &str) -> String {
    let mut out: String = group_words(group).map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// Upstream's tag: `rbac.authorization.k8s.io`, `v1` → `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let mut words = group_words(group);
    let mut out = words.next().unwrap_or_default().to_owned();
    out.extend(words.map(capitalize));
    format!("{out}_{version}")
}

fn group_words(group: &str) -> impl Iterator<Item = &str> {
    let base = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    base.split('.').filter(|w| !w.is_empty())
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The definitions the paths reference, directly or through other definitions, sorted by name as
/// upstream sorts them.
fn take_reachable(paths: &Value, mut defs: Map<String, Value>) -> Map<String, Value> {
    let mut pending = Vec::new();
    collect_refs(paths, &mut pending);
    let mut taken = BTreeMap::new();
    while let Some(name) = pending.pop() {
        // A definition already taken is gone from `defs`, so cycles end here.
        if let Some(schema) = defs.remove(&name) {
            collect_refs(&schema, &mut pending);
            taken.insert(name, schema);
        }
    }
    taken.into_iter().collect()
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child.as_str().and_then(|r| r.strip_prefix(REF_PREFIX))) {
                    ("$ref", Some(name)) => out.push(name.to_owned()),
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// A stable content hash: kubectl only compares it, so 64-bit FNV-1a is enough.
fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::Descriptions;
    use crate::testing::resources;

    fn doc(key: &str) -> Value {
        let resources: Vec<ApiResource> = resources()
            .into_iter()
            .filter(|r| GroupVersion::key_for(&r.group, &r.version) == key)
            .collect();
        let catalog = Catalog::build(&resources, Descriptions::Keep);
        let gv = GroupVersion {
            key: key.to_owned(),
            resources,
        };
        serde_json::from_slice(&document(&gv, catalog).json).expect("JSON")
    }

    /// What kubectl's fieldValidation check and client-side apply look for: the first PATCH
    /// operation tagged with the GVK.
    fn patch_op<'a>(doc: &'a Value, gvk: &Value) -> Option<&'a Value> {
        let paths = doc["paths"].as_object()?;
        paths
            .values()
            .filter_map(|p| p.get("patch"))
            .find(|op| op["x-kubernetes-group-version-kind"] == *gvk)
    }

    fn has_query_param(op: &Value, name: &str) -> bool {
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
    }

    #[test]
    fn every_patch_operation_accepts_field_validation() {
        for key in ["api/v1", "apis/apps/v1", "apis/batch/v1", "apis/example.com/v1"] {
            let doc = doc(key);
            let ops: Vec<&Value> = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .filter_map(|p| p.get("patch"))
                .collect();
            assert!(!ops.is_empty());
            for op in ops {
                for param in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(has_query_param(op, param), "{key} {}: {param}", op["operationId"]);
                }
                assert_eq!(op["x-kubernetes-action"], "patch");
            }
        }
    }

    #[test]
    fn deployment_patch_offers_strategic_merge() {
        let doc = doc("apis/apps/v1");
        let op = patch_op(&doc, &json!({"group": "apps", "kind": "Deployment", "version": "v1"})).expect("patch op");
        let content = op["requestBody"]["content"].as_object().expect("content");
        for t in [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ] {
            assert!(content.contains_key(t), "{t}");
        }
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(item["patch"]["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(item["delete"]["x-kubernetes-action"], "delete");
        let collection = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(collection["delete"]["x-kubernetes-action"], "deletecollection");
        assert!(has_query_param(&collection["get"], "labelSelector"));
        assert!(has_query_param(&collection["get"], "watch"));
        let all = &doc["paths"]["/apis/apps/v1/deployments"]["get"];
        assert_eq!(all["operationId"], "listAppsV1DeploymentForAllNamespaces");
    }

    #[test]
    fn scale_subresource_uses_autoscaling_scale() {
        let doc = doc("apis/apps/v1");
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert_eq!(
            scale["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
        );
        let status = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"];
        assert_eq!(status["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    }

    #[test]
    fn core_paths_and_cluster_scope() {
        let doc = doc("api/v1");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/configmaps/{name}"));
        assert!(paths.contains_key("/api/v1/configmaps"));
        assert!(paths.contains_key("/api/v1/namespaces/{name}/status"));
        assert!(paths.contains_key("/api/v1/nodes/{name}"));
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/log"));
        assert_eq!(
            paths["/api/v1/namespaces/{name}"]["patch"]["operationId"],
            "patchCoreV1Namespace"
        );
        let params = paths["/api/v1/namespaces/{name}"]["parameters"]
            .as_array()
            .expect("params");
        assert!(params.iter().all(|p| p["name"] != "namespace"));
    }

    #[test]
    fn custom_resources_get_no_strategic_merge() {
        let doc = doc("apis/example.com/v1");
        let op = patch_op(
            &doc,
            &json!({"group": "example.com", "kind": "Widget", "version": "v1"}),
        )
        .expect("patch op");
        assert!(
            op["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        assert!(has_query_param(op, "fieldValidation"));
    }

    #[test]
    fn names_follow_upstream() {
        assert_eq!(ident("", "v1"), "CoreV1");
        assert_eq!(ident("rbac.authorization.k8s.io", "v1"), "RbacAuthorizationV1");
        assert_eq!(tag("rbac.authorization.k8s.io", "v1"), "rbacAuthorization_v1");
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(fnv1a(b""), "CBF29CE484222325");
    }
}
