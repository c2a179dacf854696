//! Merging an applied configuration into the live object, and pruning the fields an applier
//! gave up.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{Element, FieldSet};
use super::shape::{ListKind, atomic_map, element, field_schema, list_kind};
use crate::schema::SchemaNode;

/// The live value with `applied` merged in: objects field by field, keyed lists and sets item by
/// item, everything else replaced. `None` when `applied` is `null`, which removes the field.
pub(crate) fn merge(live: Option<Value>, applied: &Value, schema: Option<SchemaNode<'_>>) -> Option<Value> {
    match applied {
        Value::Null => None,
        Value::Object(fields) if !atomic_map(schema) => {
            let mut base = match live {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            for (name, value) in fields {
                let before = base.get_mut(name).map(Value::take);
                match merge(before, value, field_schema(schema, name).0) {
                    // Inserting over an existing key keeps its position in the object.
                    Some(merged) => {
                        base.insert(name.clone(), merged);
                    }
                    None => {
                        base.shift_remove(name);
                    }
                }
            }
            Some(Value::Object(base))
        }
        Value::Array(items) => match list_kind(schema) {
            ListKind::Atomic => Some(applied.clone()),
            kind => {
                let base = match live {
                    Some(Value::Array(base)) => base,
                    _ => Vec::new(),
                };
                let item_schema = schema.and_then(SchemaNode::items);
                Some(Value::Array(merge_list(base, items, &kind, item_schema)))
            }
        },
        _ => Some(applied.clone()),
    }
}

/// What the live list holds at one position while it is being merged.
enum Slot {
    /// An item the applied list does not mention (or that has no key); it stays where it is.
    Kept(Value),
    /// An item the applied list also has; the merged item goes where upstream would put it.
    Shared(Element),
}

/// Merges a keyed list or set. Items keep the live order, except that items named by the applied
/// list follow its order, and new items go just before the next shared item that follows them
/// in the applied list — the order upstream's merge produces.
fn merge_list(
    live: Vec<Value>,
    applied: &[Value],
    kind: &ListKind<'_>,
    item_schema: Option<SchemaNode<'_>>,
) -> Vec<Value> {
    let named: Vec<Option<Element>> = applied.iter().map(|item| element(item, kind, item_schema)).collect();
    let wanted: BTreeSet<&Element> = named.iter().flatten().collect();
    let mut shared_live: BTreeMap<Element, Value> = BTreeMap::new();
    let mut slots = Vec::with_capacity(live.len());
    for item in live {
        match element(&item, kind, item_schema).filter(|e| wanted.contains(e)) {
            // A live duplicate of an applied item is dropped: the applied item replaces both.
            Some(e) if shared_live.contains_key(&e) => {}
            Some(e) => {
                shared_live.insert(e.clone(), item);
                slots.push(Slot::Shared(e));
            }
            None => slots.push(Slot::Kept(item)),
        }
    }
    let shared_order: Vec<&Element> = named
        .iter()
        .flatten()
        .filter(|e| shared_live.contains_key(*e))
        .collect();

    let merged_item = |index: usize, shared_live: &mut BTreeMap<Element, Value>| {
        let before = named[index].as_ref().and_then(|e| shared_live.remove(e));
        merge(before, &applied[index], item_schema)
    };
    let mut out = Vec::with_capacity(slots.len() + applied.len());
    let mut next_applied = 0;
    let mut next_shared = 0;
    for slot in slots {
        match slot {
            Slot::Kept(item) => out.push(item),
            // A shared item that is not next in applied order is merged later, in that order.
            Slot::Shared(e) if shared_order.get(next_shared) != Some(&&e) => {}
            Slot::Shared(e) => {
                let at = named.iter().position(|n| n.as_ref() == Some(&e));
                let end = at.map_or(next_applied, |at| at + 1);
                for index in next_applied..end {
                    out.extend(merged_item(index, &mut shared_live));
                }
                next_applied = end;
                next_shared += 1;
            }
        }
    }
    for index in next_applied..applied.len() {
        out.extend(merged_item(index, &mut shared_live));
    }
    out
}

/// Removes the members of `remove` from `value`, unless `keep` owns something at or below them:
/// a field stays while any manager still owns part of it. Containers emptied this way go too,
/// as upstream turns them into `null`.
pub(crate) fn prune(value: &mut Value, remove: &FieldSet, keep: &FieldSet, schema: Option<SchemaNode<'_>>) {
    if !remove.is_empty() {
        prune_at(value, &mut Vec::new(), remove, keep, schema);
    }
}

fn prune_at(
    value: &mut Value,
    path: &mut Vec<Element>,
    remove: &FieldSet,
    keep: &FieldSet,
    schema: Option<SchemaNode<'_>>,
) {
    // Decides the fate of one child: `true` drops it.
    let visit = |child: &mut Value, element: Element, child_schema, path: &mut Vec<Element>| {
        path.push(element);
        let drop = if !remove.covers(path) {
            false
        } else if remove.contains(path) && !keep.covers(path) {
            true
        } else {
            let was_empty = is_empty(child);
            prune_at(child, path, remove, keep, child_schema);
            !was_empty && is_empty(child) && !keep.contains(path)
        };
        path.pop();
        drop
    };
    match value {
        Value::Object(map) if !atomic_map(schema) => map.retain(|name, child| {
            let child_schema = field_schema(schema, name).0;
            !visit(child, Element::Field(name.clone()), child_schema, path)
        }),
        Value::Array(items) => {
            let kind = list_kind(schema);
            let item_schema = schema.and_then(SchemaNode::items);
            items.retain_mut(|item| match element(item, &kind, item_schema) {
                Some(e) => !visit(item, e, item_schema, path),
                None => true,
            });
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}
