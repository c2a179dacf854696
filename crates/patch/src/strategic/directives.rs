//! Splitting one patch object into its directives and its per-field changes.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::path::Path;
use crate::PatchError;
use crate::schema::SchemaNode;

/// Key of the directive that says how the object containing it is applied.
pub(crate) const MARKER: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Whether a key is one of the directives, which must never reach a stored object.
pub(crate) fn is_directive(key: &str) -> bool {
    key == MARKER || key == RETAIN_KEYS || key.starts_with(SET_ORDER) || key.starts_with(DELETE_FROM)
}

/// The value of a `$patch` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Merge into the original (the default).
    Merge,
    /// Take the patch as the new value (for an object) or the whole list (for a list item).
    Replace,
    /// Remove the object (or, in a list, the items with the same merge key).
    Delete,
}

impl Marker {
    pub(crate) fn parse(value: &Value, path: &Path<'_>) -> Result<Self, PatchError> {
        match value.as_str() {
            Some("merge") => Ok(Marker::Merge),
            Some("replace") => Ok(Marker::Replace),
            Some("delete") => Ok(Marker::Delete),
            _ => Err(invalid(
                path,
                MARKER,
                format!("expected \"merge\", \"replace\" or \"delete\", got {value}"),
            )),
        }
    }
}

/// Everything a patch object asks for one field of the original.
#[derive(Debug)]
pub(crate) struct FieldPatch<'p> {
    pub name: &'p str,
    /// The new value (`null` deletes).
    pub value: Option<&'p Value>,
    /// `$setElementOrder/<name>`.
    pub order: Option<&'p [Value]>,
    /// `$deleteFromPrimitiveList/<name>`.
    pub remove: Option<&'p [Value]>,
}

/// A patch object with its directives parsed and validated.
#[derive(Debug)]
pub(crate) struct ObjectPatch<'p> {
    pub marker: Marker,
    /// `$retainKeys`: the only keys of the original that survive.
    pub retain: Option<Vec<&'p str>>,
    /// Per-field changes, in the order their first key appears in the patch.
    pub fields: Vec<FieldPatch<'p>>,
}

enum Slot {
    Value,
    Order,
    Remove,
}

impl<'p> ObjectPatch<'p> {
    pub(crate) fn parse(
        patch: &'p Map<String, Value>,
        schema: Option<SchemaNode<'_>>,
        path: &Path<'_>,
    ) -> Result<Self, PatchError> {
        let mut parsed = ObjectPatch {
            marker: Marker::Merge,
            retain: None,
            fields: Vec::new(),
        };
        let mut index: HashMap<&'p str, usize> = HashMap::new();
        for (key, value) in patch {
            let (name, slot) = if key == MARKER {
                parsed.marker = Marker::parse(value, path)?;
                continue;
            } else if key == RETAIN_KEYS {
                parsed.retain = Some(string_list(value, path)?);
                continue;
            } else if let Some(name) = key.strip_prefix(SET_ORDER) {
                (name, Slot::Order)
            } else if let Some(name) = key.strip_prefix(DELETE_FROM) {
                (name, Slot::Remove)
            } else if key.starts_with('$') && !schema.is_some_and(|s| s.declares(key)) {
                return Err(PatchError::UnknownDirective {
                    path: path.to_string(),
                    key: key.clone(),
                });
            } else {
                (key.as_str(), Slot::Value)
            };
            let list = match slot {
                Slot::Value => None,
                _ => Some(directive_list(key, name, value, path)?),
            };
            let at = *index.entry(name).or_insert_with(|| {
                parsed.fields.push(FieldPatch {
                    name,
                    value: None,
                    order: None,
                    remove: None,
                });
                parsed.fields.len() - 1
            });
            let field = &mut parsed.fields[at];
            match slot {
                Slot::Value => field.value = Some(value),
                Slot::Order => field.order = list,
                Slot::Remove => field.remove = list,
            }
        }
        Ok(parsed)
    }
}

fn directive_list<'p>(key: &str, name: &str, value: &'p Value, path: &Path<'_>) -> Result<&'p [Value], PatchError> {
    if name.is_empty() {
        return Err(invalid(path, key, "the directive names no field".to_owned()));
    }
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| invalid(path, key, format!("expected a list, got {value}")))
}

fn string_list<'p>(value: &'p Value, path: &Path<'_>) -> Result<Vec<&'p str>, PatchError> {
    let not_strings = || {
        invalid(
            path,
            RETAIN_KEYS,
            format!("expected a list of field names, got {value}"),
        )
    };
    value
        .as_array()
        .ok_or_else(not_strings)?
        .iter()
        .map(|v| v.as_str().ok_or_else(not_strings))
        .collect()
}

/// Builds an `InvalidDirective` error.
pub(crate) fn invalid(path: &Path<'_>, directive: &str, reason: String) -> PatchError {
    PatchError::InvalidDirective {
        path: path.to_string(),
        directive: directive.to_owned(),
        reason,
    }
}
