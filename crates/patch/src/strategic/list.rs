//! Lists: merging by key or as sets where the schema says so, and scrubbing replaced lists.

use serde_json::{Map, Value};

use super::directives::{MARKER, Marker, is_directive};
use super::merge_item;
use super::order::{missing_key, normalize, same};
use super::path::Path;
use crate::PatchError;
use crate::schema::{FieldMeta, SchemaNode};

/// Merges a list whose schema has patch strategy `merge`.
pub(crate) fn merge_list(
    base: Vec<Value>,
    patch: &[Value],
    meta: &FieldMeta<'_>,
    at: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    match classify(&base, patch, at)? {
        Items::Scalars => Ok(merge_scalars(base, patch)),
        Items::Objects(patch) => {
            let key = meta.merge_key.ok_or_else(|| PatchError::Unmergeable {
                path: at.to_string(),
                reason: "the list has patch strategy merge but no merge key".to_owned(),
            })?;
            let item_schema = meta.schema.and_then(SchemaNode::items);
            merge_objects(base, &patch, key, item_schema, at)
        }
    }
}

enum Items<'p> {
    Scalars,
    Objects(Vec<&'p Map<String, Value>>),
}

fn classify<'p>(base: &[Value], patch: &'p [Value], at: &Path<'_>) -> Result<Items<'p>, PatchError> {
    let unmergeable = |reason: &str| PatchError::Unmergeable {
        path: at.to_string(),
        reason: reason.to_owned(),
    };
    if base.iter().chain(patch).any(Value::is_array) {
        return Err(unmergeable("lists of lists cannot be merged"));
    }
    let objects = base.iter().chain(patch).filter(|v| v.is_object()).count();
    if objects == 0 {
        return Ok(Items::Scalars);
    }
    if objects != base.len() + patch.len() {
        return Err(unmergeable("the list mixes objects and scalar values"));
    }
    Ok(Items::Objects(patch.iter().filter_map(Value::as_object).collect()))
}

/// Set union: the patch adds values the original lacks; duplicates collapse like upstream.
fn merge_scalars(base: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(base.len() + patch.len());
    for value in base.iter().chain(patch) {
        if !merged.iter().any(|m| same(m, value)) {
            merged.push(value.clone());
        }
    }
    let wanted: Vec<&Value> = patch.iter().collect();
    let server: Vec<&Value> = base.iter().collect();
    normalize(merged, &wanted, &server, None)
}

fn merge_objects(
    base: Vec<Value>,
    patch: &[&Map<String, Value>],
    key: &str,
    item_schema: Option<SchemaNode<'_>>,
    at: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    if let Some(i) = base.iter().position(|item| item.get(key).is_none()) {
        return Err(missing_key(&Path::Item(at, i), Some(key)));
    }
    let mut work = base;
    let mut replace = false;
    let mut updates = Vec::with_capacity(patch.len());
    for (i, item) in patch.iter().enumerate() {
        let here = Path::Item(at, i);
        let marker = match item.get(MARKER) {
            Some(m) => Marker::parse(m, &here)?,
            None => Marker::Merge,
        };
        match marker {
            Marker::Replace => replace = true,
            Marker::Delete => {
                let id = item.get(key).ok_or_else(|| missing_key(&here, Some(key)))?;
                work.retain(|w| !w.get(key).is_some_and(|v| same(v, id)));
            }
            Marker::Merge => {
                let id = item.get(key).ok_or_else(|| missing_key(&here, Some(key)))?;
                updates.push((i, *item, id));
            }
        }
    }
    if replace {
        // The remaining plain items become the whole list, taken as fresh objects.
        return updates
            .into_iter()
            .map(|(i, item, _)| merge_item(Map::new(), item, item_schema, &Path::Item(at, i)))
            .map(|merged| merged.map(Value::Object))
            .collect();
    }
    let server_ids: Vec<Value> = work.iter().filter_map(|w| w.get(key).cloned()).collect();
    for &(i, item, id) in &updates {
        let here = Path::Item(at, i);
        match work.iter().position(|w| w.get(key).is_some_and(|v| same(v, id))) {
            Some(pos) => {
                let original = match std::mem::take(&mut work[pos]) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                work[pos] = Value::Object(merge_item(original, item, item_schema, &here)?);
            }
            None => work.push(Value::Object(merge_item(Map::new(), item, item_schema, &here)?)),
        }
    }
    let wanted: Vec<&Value> = updates.iter().map(|&(_, _, id)| id).collect();
    let server: Vec<&Value> = server_ids.iter().collect();
    Ok(normalize(work, &wanted, &server, Some(key)))
}

/// A list taken as-is from the patch (no merge strategy): keep the data, drop directives, and
/// honour `$patch: delete` items by leaving them out.
pub(crate) fn scrub(items: &[Value]) -> Vec<Value> {
    items.iter().filter_map(scrub_value).collect()
}

fn scrub_value(value: &Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.get(MARKER).and_then(Value::as_str) == Some("delete") {
                return None;
            }
            let kept = map
                .iter()
                .filter(|(k, _)| !is_directive(k))
                .filter_map(|(k, v)| scrub_value(v).map(|v| (k.clone(), v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => Some(Value::Array(scrub(items))),
        other => Some(other.clone()),
    }
}
