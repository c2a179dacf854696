//! Navigating OpenAPI v3 schemas and reading the Kubernetes extensions (patch strategy, list and
//! map types) that strategic merge patch and server-side apply depend on.

use serde_json::{Map, Value};

/// A position in an OpenAPI v3 schema plus the `components.schemas` map its `$ref`s point into.
#[derive(Clone, Copy, Debug)]
pub struct SchemaNode<'a> {
    /// The schema object at this position; may itself be a `$ref` or an `allOf` wrapper.
    pub node: &'a Value,
    /// Definitions that `#/components/schemas/<name>` references resolve against.
    pub defs: &'a Map<String, Value>,
}

/// Bounds `$ref` chains so that a cyclic definition cannot hang a request.
const MAX_REF_HOPS: usize = 32;

const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";
const PATCH_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";

impl<'a> SchemaNode<'a> {
    fn at(self, node: &'a Value) -> Self {
        SchemaNode { node, defs: self.defs }
    }

    /// Follows `$ref` / `allOf: [{$ref}]` wrappers to the schema carrying `properties` or `items`.
    fn resolve(self) -> Self {
        let mut current = self;
        for _ in 0..MAX_REF_HOPS {
            match current.referenced() {
                Some(next) => current = current.at(next),
                None => break,
            }
        }
        current
    }

    fn referenced(self) -> Option<&'a Value> {
        let reference = match self.node.get("$ref") {
            Some(r) => r.as_str(),
            None => self
                .node
                .get("allOf")?
                .as_array()?
                .iter()
                .find_map(|part| part.get("$ref").and_then(Value::as_str)),
        }?;
        let name = reference
            .strip_prefix("#/components/schemas/")
            .or_else(|| reference.strip_prefix("#/definitions/"))?;
        self.defs.get(name)
    }

    /// Metadata for the field `name` of the object this node describes (unknown if undescribed).
    pub(crate) fn field(self, name: &str) -> FieldMeta<'a> {
        self.property(name).0.map(FieldMeta::of).unwrap_or_default()
    }

    /// Schema of the field `name` of the object this node describes, and whether the object
    /// declares it (rather than allowing any field through `additionalProperties`).
    pub(crate) fn property(self, name: &str) -> (Option<SchemaNode<'a>>, bool) {
        self.object().property(name)
    }

    /// The object this node describes, resolved once for looking up many of its fields.
    pub(crate) fn object(self) -> ObjectSchema<'a> {
        let object = self.resolve();
        ObjectSchema {
            properties: object.node.get("properties").and_then(Value::as_object),
            any: object.node.get("additionalProperties").filter(|a| a.is_object()),
            object,
        }
    }

    /// Whether `name` is a declared property, which makes a `$`-prefixed key data, not a directive.
    pub(crate) fn declares(self, name: &str) -> bool {
        self.property(name).1
    }

    /// Schema of the items of the list this node describes.
    pub(crate) fn items(self) -> Option<SchemaNode<'a>> {
        let list = self.resolve();
        list.node.get("items").map(|items| list.at(items))
    }

    /// A keyword of this node. Extensions sit on the property itself, but tolerate schemas that
    /// put them on the referenced definition instead.
    pub(crate) fn keyword(self, name: &str) -> Option<&'a Value> {
        self.node.get(name).or_else(|| self.resolve().node.get(name))
    }
}

/// An object's schema with its `$ref`s followed: its declared properties, and the schema of
/// any other field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ObjectSchema<'a> {
    object: SchemaNode<'a>,
    properties: Option<&'a Map<String, Value>>,
    any: Option<&'a Value>,
}

impl<'a> ObjectSchema<'a> {
    /// See [`SchemaNode::property`].
    pub(crate) fn property(self, name: &str) -> (Option<SchemaNode<'a>>, bool) {
        match self.properties.and_then(|p| p.get(name)) {
            Some(declared) => (Some(self.object.at(declared)), true),
            None => (self.any.map(|a| self.object.at(a)), false),
        }
    }
}

/// How the patch engine must treat one field, as declared by the schema.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FieldMeta<'a> {
    /// Schema of the field's value, if the parent describes the field at all.
    pub schema: Option<SchemaNode<'a>>,
    /// Lists are merged (by `merge_key` for objects, as a set for scalars) instead of replaced.
    pub merge: bool,
    /// Objects are replaced wholesale instead of merged.
    pub replace: bool,
    /// Key identifying items of a merged list of objects.
    pub merge_key: Option<&'a str>,
}

impl<'a> FieldMeta<'a> {
    /// Reads the patch metadata declared on a property's schema.
    pub(crate) fn of(property: SchemaNode<'a>) -> Self {
        let extension = |name: &str| property.keyword(name).and_then(Value::as_str);
        let strategy = extension(PATCH_STRATEGY).unwrap_or_default();
        let has = |wanted: &str| strategy.split(',').any(|s| s.trim() == wanted);
        FieldMeta {
            schema: Some(property),
            merge: has("merge"),
            replace: has("replace"),
            merge_key: extension(PATCH_MERGE_KEY),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resolves_refs_and_all_of_wrappers() {
        let defs = json!({
            "Outer": {"properties": {
                "inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}], "x-kubernetes-patch-strategy": "retainKeys"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "Inner": {"properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"},
                          "x-kubernetes-patch-strategy": "merge,retainKeys", "x-kubernetes-patch-merge-key": "name"},
                "$ref": {"type": "string"}
            }},
            "Item": {"properties": {"name": {"type": "string"}}}
        });
        let defs = defs.as_object().unwrap();
        let root = json!({"$ref": "#/components/schemas/Outer"});
        let root = SchemaNode { node: &root, defs };

        let inner = root.field("inner");
        assert!(!inner.merge && !inner.replace);
        let items = inner.schema.unwrap().field("items");
        assert!(items.merge);
        assert_eq!(items.merge_key, Some("name"));
        let item = items.schema.unwrap().items().unwrap();
        assert!(item.declares("name"));
        assert!(inner.schema.unwrap().declares("$ref"));
        assert!(root.field("labels").schema.unwrap().field("anything").schema.is_some());
        assert!(root.field("missing").schema.is_none());
    }

    #[test]
    fn cyclic_refs_terminate() {
        let defs = json!({"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}});
        let defs = defs.as_object().unwrap();
        let root = json!({"$ref": "#/components/schemas/A"});
        let root = SchemaNode { node: &root, defs };
        assert!(root.field("x").schema.is_none());
    }
}
