//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), applied the way
//! the upstream apiserver applies what kubectl sends.
//!
//! Objects merge recursively and `null` deletes a key. Lists are replaced unless the schema gives
//! them patch strategy `merge`: lists of objects then merge by the merge key, lists of scalars
//! merge as sets. Directives (`$patch`, `$retainKeys`, `$setElementOrder/…`,
//! `$deleteFromPrimitiveList/…`) steer the merge and never reach the result. Where the schema is
//! absent or silent, the engine behaves like JSON merge patch, as upstream does for unknown
//! fields.

mod directives;
mod list;
mod order;
mod path;

#[cfg(test)]
mod kubectl_tests;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::PatchError;
use crate::schema::{FieldMeta, SchemaNode};
pub(crate) use directives::is_directive;
use directives::{FieldPatch, Marker, ObjectPatch, invalid};
use path::Path;

/// Applies a strategic merge patch to `original` using the kind's OpenAPI `schema` (`None`: JSON-merge-like).
pub fn strategic_merge(original: &Value, patch: &Value, schema: Option<SchemaNode<'_>>) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject {
            path: Path::Root.to_string(),
        });
    };
    let base = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    // A top-level `$patch: delete` cannot remove the object itself; it empties it.
    let merged = merge_object(base, patch, schema, &Path::Root)?.unwrap_or_default();
    Ok(Value::Object(merged))
}

/// Merges a patch object into `original`; `None` means the patch deleted the object.
fn merge_object(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<SchemaNode<'_>>,
    at: &Path<'_>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    let parsed = ObjectPatch::parse(patch, schema, at)?;
    match parsed.marker {
        Marker::Delete => Ok(None),
        Marker::Replace => apply(Map::new(), &parsed, schema, at).map(Some),
        Marker::Merge => apply(original, &parsed, schema, at).map(Some),
    }
}

/// Merges a list item whose `$patch` marker the list code has already acted upon.
fn merge_item(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<SchemaNode<'_>>,
    at: &Path<'_>,
) -> Result<Map<String, Value>, PatchError> {
    let parsed = ObjectPatch::parse(patch, schema, at)?;
    apply(original, &parsed, schema, at)
}

fn apply(
    mut target: Map<String, Value>,
    patch: &ObjectPatch<'_>,
    schema: Option<SchemaNode<'_>>,
    at: &Path<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(keep) = &patch.retain {
        retain_keys(&mut target, keep, &patch.fields, at)?;
    }
    for field in &patch.fields {
        let meta = schema.map(|s| s.field(field.name)).unwrap_or_default();
        let here = Path::Field(at, field.name);
        // Ordering needs the list as it was before this patch touched it.
        let before = match field.order {
            Some(_) => target.get(field.name).and_then(Value::as_array).cloned(),
            None => None,
        };
        if let Some(value) = field.value {
            set_field(&mut target, field.name, value, &meta, &here)?;
        }
        if let Some(order) = field.order {
            order_field(&mut target, field, order, before.unwrap_or_default(), &meta, &here)?;
        }
        // Removal runs after ordering, as upstream does; the two steps do not commute.
        if let (Some(remove), Some(Value::Array(items))) = (field.remove, target.get_mut(field.name)) {
            items.retain(|item| !remove.iter().any(|r| order::same(item, r)));
        }
    }
    Ok(target)
}

/// `$retainKeys`: fields of the original not listed are cleared, and the patch may only set listed ones.
fn retain_keys(
    target: &mut Map<String, Value>,
    keep: &[&str],
    fields: &[FieldPatch<'_>],
    at: &Path<'_>,
) -> Result<(), PatchError> {
    let unlisted = fields
        .iter()
        .find(|f| f.value.is_some_and(|v| !v.is_null()) && !keep.contains(&f.name));
    if let Some(field) = unlisted {
        return Err(invalid(
            at,
            "$retainKeys",
            format!("the patch sets {:?}, which the list does not retain", field.name),
        ));
    }
    target.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

fn set_field(
    target: &mut Map<String, Value>,
    name: &str,
    value: &Value,
    meta: &FieldMeta<'_>,
    at: &Path<'_>,
) -> Result<(), PatchError> {
    if value.is_null() {
        target.shift_remove(name);
        return Ok(());
    }
    let old = target.get_mut(name).map(std::mem::take);
    match merge_value(old, value, meta, at)? {
        // Inserting over an existing key keeps its position in the object.
        Some(merged) => {
            target.insert(name.to_owned(), merged);
        }
        None => {
            target.shift_remove(name);
        }
    }
    Ok(())
}

/// The new value of a field; `None` when a `$patch: delete` removed it.
fn merge_value(
    old: Option<Value>,
    patch: &Value,
    meta: &FieldMeta<'_>,
    at: &Path<'_>,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(patch) => {
            let base = match old {
                Some(Value::Object(map)) if !meta.replace => map,
                _ => Map::new(),
            };
            Ok(merge_object(base, patch, meta.schema, at)?.map(Value::Object))
        }
        Value::Array(patch) if meta.merge => {
            let base = match old {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            list::merge_list(base, patch, meta, at).map(|items| Some(Value::Array(items)))
        }
        Value::Array(patch) => Ok(Some(Value::Array(list::scrub(patch)))),
        scalar => Ok(Some(scalar.clone())),
    }
}

fn order_field(
    target: &mut Map<String, Value>,
    field: &FieldPatch<'_>,
    order: &[Value],
    before: Vec<Value>,
    meta: &FieldMeta<'_>,
    at: &Path<'_>,
) -> Result<(), PatchError> {
    let patch_list = field.value.and_then(Value::as_array).map(Vec::as_slice);
    order::validate(patch_list, order, meta.merge_key, at)?;
    match target.get_mut(field.name) {
        None => Ok(()),
        Some(Value::Array(items)) => {
            let merged = std::mem::take(items);
            *items = order::apply(merged, order, &before, meta.merge_key, at)?;
            Ok(())
        }
        Some(_) => Err(invalid(
            at,
            "$setElementOrder",
            "the field it orders is not a list".to_owned(),
        )),
    }
}
