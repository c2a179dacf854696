//! RFC 7386 JSON merge patch and RFC 6902 JSON patch.

use serde_json::{Map, Value};

use crate::PatchError;

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`) to `original`.
pub fn json_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut doc = original.clone();
    merge_into(&mut doc, patch);
    Ok(doc)
}

// Hand-rolled rather than `json_patch::merge` because that one removes keys with
// `swap_remove`, which reshuffles the remaining keys of the stored object.
fn merge_into(doc: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    if let Value::Object(target) = doc {
        for (key, value) in patch {
            if value.is_null() {
                target.shift_remove(key);
            } else {
                merge_into(target.entry(key.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`) to `original`, atomically.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_array() {
        return Err(PatchError::InvalidJsonPatch(
            "a JSON patch must be an array of operations".to_owned(),
        ));
    }
    let ops: ::json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    // Applied to a copy, so a failed patch needs no undo: json-patch's own undo path can hit
    // an `unreachable!` on some inputs (seen with an `add` at "/0" of a non-array root).
    let mut doc = original.clone();
    ::json_patch::patch_unsafe(&mut doc, &ops).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_replaces_deletes_and_recurses() {
        let original = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "z": 0});
        let patch = json!({"a": null, "b": {"c": null, "e": 4}, "l": [3], "n": {"x": null}});
        let merged = json_merge(&original, &patch).unwrap();
        assert_eq!(merged, json!({"b": {"d": 3, "e": 4}, "l": [3], "z": 0, "n": {}}));
    }

    #[test]
    fn merge_keeps_key_order_when_deleting() {
        let original = json!({"a": 1, "b": 2, "c": 3, "d": 4});
        let merged = json_merge(&original, &json!({"b": null})).unwrap();
        let keys: Vec<_> = merged.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a", "c", "d"]);
    }

    #[test]
    fn merge_with_non_object_patch_replaces_document() {
        assert_eq!(json_merge(&json!({"a": 1}), &json!([1])).unwrap(), json!([1]));
        assert_eq!(json_merge(&json!("x"), &json!({"a": 1})).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn json_patch_applies_operations() {
        let original = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]);
        assert_eq!(
            json_patch(&original, &patch).unwrap(),
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn json_patch_rejects_non_array() {
        let err = json_patch(&json!({}), &json!({"op": "add"})).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn json_patch_rejects_unknown_op() {
        let err = json_patch(&json!({}), &json!([{"op": "frobnicate", "path": "/a"}])).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
    }

    #[test]
    fn json_patch_rejects_bad_pointer() {
        let patch = json!([{"op": "add", "path": "no-slash", "value": 1}]);
        let err = json_patch(&json!({}), &patch).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
    }

    #[test]
    fn json_patch_failed_test_is_unprocessable_and_atomic() {
        let original = json!({"a": 1});
        let patch = json!([
            {"op": "add", "path": "/b", "value": 2},
            {"op": "test", "path": "/a", "value": 5}
        ]);
        let err = json_patch(&original, &patch).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed(_)));
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn json_patch_missing_path_fails() {
        let patch = json!([{"op": "remove", "path": "/missing"}]);
        let err = json_patch(&json!({"a": 1}), &patch).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed(_)));
    }
}
