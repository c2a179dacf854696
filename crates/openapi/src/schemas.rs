//! The schema catalog: every definition the served kinds need, generated from k8s-openapi and
//! shaped the way upstream publishes OpenAPI 3.0 (`components.schemas`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, ObjectMeta, Patch};
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::{ApiResource, facts, kinds};

/// Where every `$ref` of a published document points.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

// Definition names that paths and generated schemas refer to directly.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A `(group, version, kind)` key.
pub(crate) type Gvk = (String, String, String);

/// What the catalog knows about one kind.
pub(crate) struct KindInfo {
    /// Definition name of the kind's schema.
    pub def: String,
    /// Definition name of its list schema; `None` for kinds generated without a resource (Scale).
    pub list_def: Option<String>,
    /// Compiled-in kinds accept strategic merge patch; custom resources do not.
    pub builtin: bool,
}

/// Whether a catalog keeps the schemas' descriptions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Descriptions {
    /// For published documents: kubectl explain prints them.
    Keep,
    /// For the long-lived catalog behind patching and validation, which never reads them; they are
    /// most of the schemas' bytes.
    Drop,
}

/// Kinds every catalog holds whether or not they are served: the body of every `/scale`
/// subresource, and the body of error and delete responses.
const EXTRAS: [(&str, &str, &str); 2] = [("autoscaling", "v1", "Scale"), ("", "v1", "Status")];

/// All definitions for a set of kinds, plus where each kind's schema is.
pub(crate) struct Catalog {
    /// Definitions keyed by upstream name, shaped as `components.schemas` entries.
    pub defs: Arc<Map<String, Value>>,
    kinds: HashMap<Gvk, KindInfo>,
}

impl Catalog {
    /// Generates the definitions of `resources` and of the `EXTRAS`, plus the meta types every
    /// document references.
    pub(crate) fn build<'a>(
        resources: impl IntoIterator<Item = &'a ApiResource>,
        descriptions: Descriptions,
    ) -> Catalog {
        // No transforms: k8s-openapi's schemas already use only OpenAPI 3.0 constructs apart from
        // `$ref` siblings, which `normalize` handles after the facts are overlaid.
        let settings = SchemaSettings::openapi3().with(|s| {
            s.meta_schema = None;
            s.transforms.clear();
        });
        let mut generator = settings.into_generator();
        generator.subschema_for::<ObjectMeta>();
        generator.subschema_for::<ListMeta>();
        generator.subschema_for::<DeleteOptions>();
        generator.subschema_for::<Patch>();

        let served = resources.into_iter().map(|r| {
            let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
            (gvk, Some(r.list_kind.as_str()))
        });
        let extras = EXTRAS.iter().map(|&(g, v, k)| ((g.into(), v.into(), k.into()), None));
        // A Vec keeps generation order, so equal inputs give byte-equal documents and hashes.
        let mut order: Vec<(Gvk, Option<&str>)> = Vec::new();
        let mut kinds = HashMap::new();
        for (gvk, list_kind) in served.chain(extras) {
            if kinds.contains_key(&gvk) {
                continue;
            }
            let (def, builtin) = match kinds::builtin(&gvk.0, &gvk.1, &gvk.2) {
                Some(b) => ((b.add)(&mut generator), true),
                None => (custom_def_name(&gvk), false),
            };
            let list_def = list_kind.map(|list| sibling_name(&def, list));
            kinds.insert(gvk.clone(), KindInfo { def, list_def, builtin });
            order.push((gvk, list_kind));
        }

        let mut defs = generator.take_definitions(false);
        upstream_scalars(&mut defs);
        for (gvk, list_kind) in &order {
            let info = &kinds[gvk];
            if !info.builtin {
                defs.insert(info.def.clone(), custom_schema());
            }
            if let Some(Value::Object(schema)) = defs.get_mut(&info.def) {
                drop_required_metadata(schema);
                add_gvk(schema, gvk);
            }
            if let (Some(list_def), Some(list_kind)) = (&info.list_def, list_kind) {
                let list_gvk = (gvk.0.clone(), gvk.1.clone(), (*list_kind).to_owned());
                let list = list_schema(&defs, &info.def, &list_gvk);
                defs.insert(list_def.clone(), list);
            }
        }
        facts::overlay(&mut defs);
        for schema in defs.values_mut() {
            normalize(schema, descriptions);
        }
        Catalog {
            defs: Arc::new(defs),
            kinds,
        }
    }

    /// The catalog's entry for a kind, if it was generated.
    pub(crate) fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&KindInfo> {
        self.kinds.get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }
}

/// Upstream names a custom resource's schema after its group reversed, e.g. `com.example.v1.Widget`.
fn custom_def_name((group, version, kind): &Gvk) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// `io.k8s.api.apps.v1.Deployment` + `DeploymentList` → `io.k8s.api.apps.v1.DeploymentList`.
fn sibling_name(def: &str, kind: &str) -> String {
    match def.rsplit_once('.') {
        Some((package, _)) => format!("{package}.{kind}"),
        None => kind.to_owned(),
    }
}

/// A custom resource's schema before its CRD's `openAPIV3Schema` is wired in: typed metadata, the
/// rest open, so field validation accepts any spec.
fn custom_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": format!("{REF_PREFIX}{OBJECT_META}")},
        },
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// k8s-openapi describes IntOrString and Quantity with the CRD-only `x-kubernetes-int-or-string`;
/// upstream's OpenAPI 3.0 documents use `oneOf` alternatives instead.
fn upstream_scalars(defs: &mut Map<String, Value>) {
    let shapes = [
        (
            INT_OR_STRING,
            json!({"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}),
        ),
        (QUANTITY, json!({"oneOf": [{"type": "string"}, {"type": "number"}]})),
    ];
    for (name, shape) in shapes {
        if let Some(Value::Object(schema)) = defs.get_mut(name) {
            schema.shift_remove("x-kubernetes-int-or-string");
            if let Value::Object(shape) = shape {
                schema.extend(shape);
            }
        }
    }
}

/// k8s-openapi marks `metadata` required because its Rust field is not optional; upstream requires
/// it of no kind but core/v1 Event, which the facts table restores.
fn drop_required_metadata(schema: &mut Map<String, Value>) {
    let Some(Value::Array(required)) = schema.get_mut("required") else {
        return;
    };
    required.retain(|r| r != "metadata");
    if required.is_empty() {
        schema.shift_remove("required");
    }
}

/// Kind schemas carry their GVK as an array; kubectl explain and client-side apply find a kind's
/// schema by it.
fn add_gvk(schema: &mut Map<String, Value>, (group, version, kind): &Gvk) {
    schema.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": group, "kind": kind, "version": version}]),
    );
}

/// k8s-openapi has no list types with schemas, so list schemas are assembled from the item kind.
fn list_schema(defs: &Map<String, Value>, item_def: &str, gvk: &Gvk) -> Value {
    let item_props = defs.get(item_def).and_then(|s| s.get("properties"));
    let type_meta = |name: &str| {
        item_props
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    schema.insert(
        "properties".into(),
        json!({
            "apiVersion": type_meta("apiVersion"),
            "items": {"type": "array", "items": {"$ref": format!("{REF_PREFIX}{item_def}")}},
            "kind": type_meta("kind"),
            "metadata": {"$ref": format!("{REF_PREFIX}{LIST_META}")},
        }),
    );
    schema.insert("required".into(), json!(["items"]));
    add_gvk(&mut schema, gvk);
    Value::Object(schema)
}

/// Drops descriptions if asked, then wraps `$ref`s that have siblings.
///
/// OpenAPI 3.0 ignores siblings of `$ref`, so upstream (and kubectl, which reads descriptions and
/// patch extensions from them) writes `allOf: [{$ref}]` next to the siblings instead.
fn normalize(schema: &mut Value, descriptions: Descriptions) {
    let Value::Object(map) = schema else {
        return;
    };
    if descriptions == Descriptions::Drop {
        map.shift_remove("description");
    }
    subschemas_mut(map).for_each(|sub| normalize(sub, descriptions));
    if map.len() > 1
        && let Some(reference) = map.shift_remove("$ref")
    {
        map.insert("allOf".into(), json!([{"$ref": reference}]));
    }
}

/// The direct subschemas of a schema object.
///
/// Only subschema positions count: a `properties` map may itself have a property named `$ref`
/// (JSONSchemaProps does) or `description` (PriorityClass does).
fn subschemas_mut(schema: &mut Map<String, Value>) -> impl Iterator<Item = &mut Value> {
    schema
        .iter_mut()
        .flat_map(|(keyword, child)| -> Box<dyn Iterator<Item = &mut Value>> {
            match (keyword.as_str(), child) {
                ("properties", Value::Object(props)) => Box::new(props.values_mut()),
                ("items" | "additionalProperties" | "not", child) => Box::new(std::iter::once(child)),
                ("allOf" | "anyOf" | "oneOf", Value::Array(alternatives)) => Box::new(alternatives.iter_mut()),
                _ => Box::new(std::iter::empty()),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::all_builtin_resources;

    /// No `$ref` may keep siblings: OpenAPI 3.0 readers ignore them.
    fn assert_refs_alone(schema: &Value, at: &str) {
        let Value::Object(map) = schema else { return };
        if map.contains_key("$ref") {
            assert_eq!(map.len(), 1, "{at}");
        }
        for (keyword, child) in map {
            match (keyword.as_str(), child) {
                ("properties", Value::Object(props)) => props
                    .iter()
                    .for_each(|(p, s)| assert_refs_alone(s, &format!("{at}.{p}"))),
                ("items" | "additionalProperties", child) => assert_refs_alone(child, at),
                ("allOf" | "oneOf" | "anyOf", Value::Array(xs)) => xs.iter().for_each(|s| assert_refs_alone(s, at)),
                _ => {}
            }
        }
    }

    #[test]
    fn schemas_are_openapi_3_0_shaped() {
        let catalog = Catalog::build(&all_builtin_resources(), Descriptions::Keep);
        for (name, schema) in catalog.defs.iter() {
            assert_refs_alone(schema, name);
            assert!(schema.get("x-kubernetes-int-or-string").is_none(), "{name}");
        }
        let int_or_string = &catalog.defs[INT_OR_STRING];
        assert_eq!(int_or_string["format"], "int-or-string");
        assert!(int_or_string["description"].is_string());
        assert_eq!(
            catalog.defs[QUANTITY]["oneOf"],
            json!([{"type": "string"}, {"type": "number"}])
        );
        // JSONSchemaProps has a property literally named `$ref`; it must survive.
        let props =
            &catalog.defs["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]["properties"];
        assert_eq!(props["$ref"]["type"], "string");
    }

    #[test]
    fn lean_catalog_drops_descriptions_but_not_properties_named_description() {
        let priority = crate::testing::resource(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &[],
        );
        let catalog = Catalog::build([&priority], Descriptions::Drop);
        let schema = &catalog.defs["io.k8s.api.scheduling.v1.PriorityClass"];
        assert!(schema.get("description").is_none());
        assert_eq!(schema["properties"]["description"], json!({"type": "string"}));
        let meta = &catalog.defs[OBJECT_META]["properties"]["ownerReferences"];
        assert_eq!(meta["x-kubernetes-patch-merge-key"], "uid");
    }

    #[test]
    fn kinds_get_gvk_and_optional_metadata() {
        let catalog = Catalog::build(&all_builtin_resources(), Descriptions::Keep);
        let deployment = &catalog.defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(deployment.get("required").is_none());
        let list = &catalog.defs["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "DeploymentList");
        assert_eq!(list["required"], json!(["items"]));
        assert_eq!(
            catalog.defs["io.k8s.api.core.v1.Event"]["required"],
            json!(["metadata", "involvedObject"])
        );
        let info = catalog.kind("", "v1", "Pod").expect("pod");
        assert!(info.builtin);
        assert_eq!(info.list_def.as_deref(), Some("io.k8s.api.core.v1.PodList"));
    }

    #[test]
    fn custom_kinds_are_named_like_upstream_and_open() {
        let widget = crate::testing::resource("stable.example.com", "v1", "Widget", "widgets", true, &[]);
        let catalog = Catalog::build([&widget], Descriptions::Keep);
        let info = catalog.kind("stable.example.com", "v1", "Widget").expect("widget");
        assert!(!info.builtin);
        assert_eq!(info.def, "com.example.stable.v1.Widget");
        assert_eq!(catalog.defs[&info.def]["x-kubernetes-preserve-unknown-fields"], true);
        assert!(catalog.defs.contains_key("com.example.stable.v1.WidgetList"));
    }
}
