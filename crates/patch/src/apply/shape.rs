//! How server-side apply sees a value through its schema — which parts are tracked field by field
//! and which are owned whole — and the walks built on that: the fields a value sets, the fields a
//! write changed, and where a path leads.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fieldset::{Element, FieldSet, compare_values, render};
use crate::schema::{FieldMeta, SchemaNode};
use crate::strategic::is_directive;

const LIST_TYPE: &str = "x-kubernetes-list-type";
const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";
const MAP_TYPE: &str = "x-kubernetes-map-type";

/// How the items of a list are identified.
pub(crate) enum ListKind<'s> {
    /// The list is one value, owned and replaced as a whole.
    Atomic,
    /// Scalar items identified by their value.
    Set,
    /// Object items identified by these key fields.
    Map(Vec<&'s str>),
}

/// Reads `x-kubernetes-list-type`; without it, a patch strategy of `merge` makes the list keyed
/// by its merge key (or a set), which is how upstream converts its own built-in schemas.
pub(crate) fn list_kind(schema: Option<SchemaNode<'_>>) -> ListKind<'_> {
    let Some(node) = schema else {
        return ListKind::Atomic;
    };
    match node.keyword(LIST_TYPE).and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = node
                .keyword(LIST_MAP_KEYS)
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                ListKind::Atomic
            } else {
                ListKind::Map(keys)
            }
        }
        Some("set") => ListKind::Set,
        Some(_) => ListKind::Atomic,
        None => {
            let meta = FieldMeta::of(node);
            match (meta.merge, meta.merge_key) {
                (true, Some(key)) => ListKind::Map(vec![key]),
                (true, None) => ListKind::Set,
                (false, _) => ListKind::Atomic,
            }
        }
    }
}

/// Whether an object is owned as a whole (`x-kubernetes-map-type: atomic`).
pub(crate) fn atomic_map(schema: Option<SchemaNode<'_>>) -> bool {
    schema.and_then(|s| s.keyword(MAP_TYPE)).and_then(Value::as_str) == Some("atomic")
}

/// Schema of field `name`, and whether the schema declares it: declared fields of a structure
/// are only containers, while entries of a free-form map are owned themselves.
pub(crate) fn field_schema<'s>(schema: Option<SchemaNode<'s>>, name: &str) -> (Option<SchemaNode<'s>>, bool) {
    schema.map_or((None, false), |s| s.property(name))
}

fn key_value<'v>(item: &'v Value, key: &str, item_schema: Option<SchemaNode<'v>>) -> Option<&'v Value> {
    // Upstream fills a missing key field from its schema default (a port's `protocol: TCP`).
    item.get(key)
        .filter(|v| !v.is_null())
        .or_else(|| field_schema(item_schema, key).0.and_then(|s| s.keyword("default")))
}

/// The element naming `item` in a list; `None` when the item lacks a key field.
pub(crate) fn element(item: &Value, kind: &ListKind<'_>, item_schema: Option<SchemaNode<'_>>) -> Option<Element> {
    match kind {
        ListKind::Atomic => None,
        ListKind::Set => Some(Element::Value(item.clone())),
        ListKind::Map(keys) => {
            item.as_object()?;
            let fields = keys
                .iter()
                .map(|&key| Some((key.to_owned(), key_value(item, key, item_schema)?.clone())))
                .collect::<Option<Vec<_>>>()?;
            Some(Element::key(fields))
        }
    }
}

/// A part of a value that is tracked on its own.
pub(crate) struct Child<'v, 's> {
    pub element: Element,
    pub value: &'v Value,
    pub schema: Option<SchemaNode<'s>>,
    /// Whether the child is owned itself, besides whatever it contains.
    pub member: bool,
}

/// The separately tracked parts of `value`, or `None` when the value is a leaf: a scalar, null,
/// an empty object, or an atomic object or list. List items that cannot be named are skipped.
pub(crate) fn children<'v, 's>(value: &'v Value, schema: Option<SchemaNode<'s>>) -> Option<Vec<Child<'v, 's>>> {
    match value {
        Value::Object(map) if !map.is_empty() && !atomic_map(schema) => {
            let object = schema.map(SchemaNode::object);
            let children = map.iter().map(|(name, value)| {
                let (schema, declared) = object.map_or((None, false), |o| o.property(name));
                Child {
                    element: Element::Field(name.clone()),
                    value,
                    schema,
                    member: !declared,
                }
            });
            Some(children.collect())
        }
        Value::Array(items) => {
            let kind = list_kind(schema);
            if matches!(kind, ListKind::Atomic) {
                return None;
            }
            let item_schema = schema.and_then(SchemaNode::items);
            let named = items.iter().filter_map(|item| {
                Some(Child {
                    element: element(item, &kind, item_schema)?,
                    value: item,
                    schema: item_schema,
                    member: true,
                })
            });
            Some(named.collect())
        }
        _ => None,
    }
}

/// The fields `value` sets, as upstream's `ToFieldSet` lists them: what a write from nothing
/// changes.
pub(crate) fn fields(value: &Value, schema: Option<SchemaNode<'_>>) -> FieldSet {
    changed(None, value, schema)
}

/// The fields of `new` that a write from `old` changed: leaves with a different value, and owned
/// nodes (list items, map entries) that `old` lacks. With no `old`, every field of `new`.
pub(crate) fn changed(old: Option<&Value>, new: &Value, schema: Option<SchemaNode<'_>>) -> FieldSet {
    /// The changed subtree below one node; `top` for the object itself, never a member.
    fn walk(old: Option<&Value>, new: &Value, schema: Option<SchemaNode<'_>>, top: bool) -> FieldSet {
        let Some(children) = children(new, schema) else {
            return FieldSet::subtree(!top && old.is_none_or(|old| compare_values(old, new).is_ne()));
        };
        let mut out = FieldSet::subtree(false);
        for child in children {
            let before = old.and_then(|old| step(old, &child.element, schema));
            let mut below = walk(before.map(|(v, _)| v), child.value, child.schema, false);
            if child.member && before.is_none() {
                below.own();
            }
            out.graft(child.element, below);
        }
        out
    }
    walk(old, new, schema, true)
}

/// Follows one element from `value`, returning the child and its schema.
fn step<'v, 's>(
    value: &'v Value,
    element: &Element,
    schema: Option<SchemaNode<'s>>,
) -> Option<(&'v Value, Option<SchemaNode<'s>>)> {
    if let Element::Field(name) = element {
        let child = value.as_object()?.get(name)?;
        return Some((child, field_schema(schema, name).0));
    }
    let items = value.as_array()?;
    let item_schema = schema.and_then(SchemaNode::items);
    let found = match element {
        Element::Index(index) => items.get(*index),
        Element::Value(wanted) => items.iter().find(|item| compare_values(item, wanted).is_eq()),
        Element::Key(fields) => items.iter().find(|item| {
            item.is_object()
                && fields.iter().all(|(key, wanted)| {
                    key_value(item, key, item_schema).is_some_and(|v| compare_values(v, wanted).is_eq())
                })
        }),
        Element::Field(_) => None,
    };
    found.map(|item| (item, item_schema))
}

/// Whether `path` leads to something inside `value`.
pub(crate) fn exists(value: &Value, path: &[Element], schema: Option<SchemaNode<'_>>) -> bool {
    let mut here = (value, schema);
    for element in path {
        match step(here.0, element, here.1) {
            Some(next) => here = next,
            None => return false,
        }
    }
    true
}

/// Rejects an applied configuration that cannot be tracked: keyed-list items without their keys,
/// items listed twice, and strategic-merge directives, which server-side apply does not take.
pub(crate) fn validate(value: &Value, schema: Option<SchemaNode<'_>>) -> Result<(), String> {
    fn walk(value: &Value, schema: Option<SchemaNode<'_>>, path: &mut Vec<Element>) -> Result<(), String> {
        if let Value::Object(map) = value {
            let undeclared = |key: &String| schema.is_none_or(|s| !s.declares(key));
            if let Some(key) = map.keys().find(|k| is_directive(k) && undeclared(k)) {
                return Err(format!(
                    "{}: {key:?} is a strategic merge patch directive, which server-side apply does not accept",
                    location(path)
                ));
            }
        }
        if let (Value::Array(items), ListKind::Map(keys)) = (value, list_kind(schema)) {
            let item_schema = schema.and_then(SchemaNode::items);
            for (index, item) in items.iter().enumerate() {
                let problem = if item.is_object() {
                    let missing = keys.iter().find(|&&k| key_value(item, k, item_schema).is_none());
                    missing.map(|key| format!("has an element that omits key field {key:?}"))
                } else {
                    Some("may not have non-map elements".to_owned())
                };
                if let Some(problem) = problem {
                    return Err(format!(
                        "{}: element {index}: associative list with keys {problem}",
                        location(path)
                    ));
                }
            }
        }
        let Some(children) = children(value, schema) else {
            return Ok(());
        };
        let mut seen = BTreeSet::new();
        for child in children {
            if value.is_array() && !seen.insert(child.element.clone()) {
                return Err(format!(
                    "{}: duplicate entries for key {}",
                    location(path),
                    child.element
                ));
            }
            path.push(child.element);
            walk(child.value, child.schema, path)?;
            path.pop();
        }
        Ok(())
    }
    walk(value, schema, &mut Vec::new())
}

/// Where an error is, in upstream's path syntax; the object itself shows as `.`.
fn location(path: &[Element]) -> String {
    if path.is_empty() { ".".to_owned() } else { render(path) }
}
