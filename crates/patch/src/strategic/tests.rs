//! Directive-by-directive tests against a small self-referential schema modelled on upstream's
//! `MergeItem` test type.

use serde_json::{Value, json};

use super::{SchemaNode, strategic_merge};
use crate::PatchError;

fn defs() -> Value {
    let item = "#/components/schemas/MergeItem";
    json!({
        "MergeItem": {"type": "object", "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "other": {"type": "string"},
            "$ref": {"type": "string"},
            "mergingList": {"type": "array", "items": {"$ref": item},
                "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"},
            "nonMergingList": {"type": "array", "items": {"$ref": item}},
            "mergingIntList": {"type": "array", "items": {"type": "integer"},
                "x-kubernetes-patch-strategy": "merge"},
            "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
            "noKeyList": {"type": "array", "items": {"type": "object"},
                "x-kubernetes-patch-strategy": "merge"},
            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
            "replacingMap": {"type": "object", "x-kubernetes-patch-strategy": "replace"},
            "retainKeysMap": {"allOf": [{"$ref": item}], "x-kubernetes-patch-strategy": "retainKeys"},
            "child": {"allOf": [{"$ref": item}]}
        }}
    })
}

fn smp(original: Value, patch: Value) -> Result<Value, PatchError> {
    let defs = defs();
    let root = json!({"$ref": "#/components/schemas/MergeItem"});
    let schema = SchemaNode {
        node: &root,
        defs: defs.as_object().unwrap(),
    };
    strategic_merge(&original, &patch, Some(schema))
}

fn ok(original: Value, patch: Value) -> Value {
    smp(original, patch).unwrap()
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let original = json!({"name": "a", "simpleMap": {"k1": "1", "k2": "2"}, "child": {"value": "v"}});
    let patch = json!({"value": "x", "simpleMap": {"k2": null, "k3": "3"}, "child": {"other": "o"}});
    assert_eq!(
        ok(original, patch),
        json!({"name": "a", "simpleMap": {"k1": "1", "k3": "3"}, "child": {"value": "v", "other": "o"}, "value": "x"})
    );
}

#[test]
fn list_without_merge_strategy_is_replaced() {
    let original = json!({"nonMergingList": [{"name": "1"}, {"name": "2"}], "nonMergingIntList": [1, 2]});
    let patch = json!({"nonMergingList": [{"name": "3"}], "nonMergingIntList": [2, 3]});
    assert_eq!(ok(original, patch.clone()), patch);
}

#[test]
fn merging_list_updates_matching_items_in_place() {
    let original = json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2"}]});
    let patch = json!({"mergingList": [{"name": "2", "value": "b"}, {"name": "3"}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2", "value": "b"}, {"name": "3"}]})
    );
}

#[test]
fn merging_list_puts_new_items_first_like_upstream() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "2"}]});
    let patch = json!({"mergingList": [{"name": "3", "value": "c"}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "3", "value": "c"}, {"name": "1"}, {"name": "2"}]})
    );
}

#[test]
fn merging_list_follows_patch_order() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]});
    let patch = json!({"mergingList": [
        {"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "other": "x"}
    ]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [
            {"name": "3", "value": "c"}, {"name": "1", "value": "a"},
            {"name": "2", "value": "b", "other": "x"}
        ]})
    );
    let original = json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]});
    let patch = json!({"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [
            {"name": "2", "value": "b"}, {"name": "3", "value": "c"}, {"name": "1", "value": "a"}
        ]})
    );
}

#[test]
fn nested_lists_merge_with_item_schema() {
    let original = json!({"mergingList": [{"name": "1", "mergingList": [{"name": "a", "value": "1"}]}]});
    let patch = json!({"mergingList": [{"name": "1", "mergingList": [{"name": "a", "other": "2"}]}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "1", "mergingList": [{"name": "a", "value": "1", "other": "2"}]}]})
    );
}

#[test]
fn patch_delete_removes_all_matching_items() {
    let original = json!({"mergingList": [
        {"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"}, {"name": "3"}, {"name": "3"}
    ]});
    let patch = json!({"mergingList": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "2", "value": "a"}]})
    );
}

#[test]
fn patch_delete_of_item_in_missing_list_is_dropped() {
    let original = json!({"name": "hi"});
    let patch = json!({"mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]});
    assert_eq!(
        ok(original, patch),
        json!({"name": "hi", "mergingList": [{"name": "hello"}]})
    );
}

#[test]
fn patch_replace_item_replaces_whole_list() {
    let original = json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2"}]});
    let patch = json!({"mergingList": [{"name": "3"}, {"$patch": "replace"}, {"name": "1"}]});
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "3"}, {"name": "1"}]})
    );
    let original = json!({"mergingList": [{"name": "1"}]});
    let patch = json!({"mergingList": [{"$patch": "replace"}]});
    assert_eq!(ok(original, patch), json!({"mergingList": []}));
}

#[test]
fn patch_replace_on_map_replaces_it() {
    let original = json!({"child": {"name": "1", "value": "1"}, "other": "keep"});
    let patch = json!({"child": {"$patch": "replace", "other": "a"}});
    assert_eq!(ok(original, patch), json!({"child": {"other": "a"}, "other": "keep"}));
    let patch = json!({"$patch": "replace", "name": "n"});
    assert_eq!(ok(json!({"value": "v"}), patch), json!({"name": "n"}));
}

#[test]
fn patch_delete_on_map_deletes_it() {
    let original = json!({"simpleMap": {"k": "v"}, "name": "n"});
    assert_eq!(
        ok(original, json!({"simpleMap": {"$patch": "delete"}})),
        json!({"name": "n"})
    );
    assert_eq!(ok(json!({"name": "n"}), json!({"$patch": "delete"})), json!({}));
    assert_eq!(
        ok(json!({"name": "n"}), json!({"child": {"$patch": "delete"}})),
        json!({"name": "n"})
    );
}

#[test]
fn patch_merge_on_map_is_the_default() {
    let original = json!({"child": {"name": "1"}});
    let patch = json!({"child": {"$patch": "merge", "value": "v"}});
    assert_eq!(ok(original, patch), json!({"child": {"name": "1", "value": "v"}}));
}

#[test]
fn replace_strategy_map_is_taken_wholesale() {
    let original = json!({"replacingMap": {"a": 1, "b": 2}});
    let patch = json!({"replacingMap": {"c": 3}});
    assert_eq!(ok(original, patch), json!({"replacingMap": {"c": 3}}));
}

#[test]
fn primitive_merge_list_is_a_set_union() {
    let original = json!({"mergingIntList": [1, 2]});
    assert_eq!(
        ok(original, json!({"mergingIntList": [2, 3]})),
        json!({"mergingIntList": [1, 2, 3]})
    );
    let original = json!({"mergingIntList": [1, 2, 3]});
    assert_eq!(
        ok(original, json!({"mergingIntList": [3, 1]})),
        json!({"mergingIntList": [2, 3, 1]})
    );
}

#[test]
fn delete_from_primitive_list() {
    let original = json!({"mergingIntList": [1, 2, 3, 3]});
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [3, 7]});
    assert_eq!(ok(original, patch), json!({"mergingIntList": [1, 2]}));
    // Works on lists without merge strategy too, and never creates a missing list.
    let original = json!({"nonMergingIntList": [1, 2, 3]});
    let patch = json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]});
    assert_eq!(ok(original, patch), json!({"nonMergingIntList": [1, 3]}));
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [3]});
    assert_eq!(ok(json!({"name": "x"}), patch), json!({"name": "x"}));
}

#[test]
fn set_element_order_sorts_object_list() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "2"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]
    });
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [
            {"name": "4", "value": "4"}, {"name": "1"}, {"name": "2", "value": "2"}, {"name": "3", "value": "3"}
        ]})
    );
}

#[test]
fn set_element_order_keeps_server_only_items() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "2"}, {"name": "x"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "2"}, {"name": "1"}],
        "mergingList": [{"name": "1", "value": "a"}]
    });
    // "x" is server-only; it stays after the items it followed on the server.
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "2"}, {"name": "1", "value": "a"}, {"name": "x"}]})
    );
}

#[test]
fn set_element_order_ignores_absent_entries() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "3"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
        "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
    });
    assert_eq!(
        ok(original, patch),
        json!({"mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]})
    );
    let original = json!({"mergingIntList": [1, 3]});
    let patch = json!({"$setElementOrder/mergingIntList": [3, 2, 1]});
    assert_eq!(ok(original, patch), json!({"mergingIntList": [3, 1]}));
}

#[test]
fn set_element_order_with_primitive_additions_and_deletions() {
    let original = json!({"mergingIntList": [1, 2, 3]});
    let patch = json!({
        "$setElementOrder/mergingIntList": [1, 2, 4],
        "$deleteFromPrimitiveList/mergingIntList": [3],
        "mergingIntList": [4]
    });
    assert_eq!(ok(original, patch), json!({"mergingIntList": [1, 2, 4]}));
}

#[test]
fn set_element_order_must_agree_with_patch_list() {
    let original = json!({"mergingList": [{"name": "1"}, {"name": "3"}, {"name": "2"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
    });
    let err = smp(original, patch).unwrap_err();
    assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn set_element_order_rejects_malformed_values() {
    let original = json!({"mergingList": [{"name": "1"}], "child": {}});
    for patch in [
        json!({"$setElementOrder/mergingList": {"name": "1"}}),
        json!({"$setElementOrder/mergingList": [{"value": "1"}]}),
        json!({"$setElementOrder/": []}),
        json!({"$setElementOrder/child": []}),
    ] {
        let err = smp(original.clone(), patch.clone()).unwrap_err();
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{patch}: {err}");
    }
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    let original = json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "b"}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "other": "c", "value": null}});
    assert_eq!(
        ok(original, patch),
        json!({"retainKeysMap": {"name": "foo", "other": "c"}})
    );
}

#[test]
fn retain_keys_rejects_patching_unlisted_fields() {
    let original = json!({"retainKeysMap": {"name": "foo"}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "x"}});
    assert!(matches!(
        smp(original.clone(), patch).unwrap_err(),
        PatchError::InvalidDirective { .. }
    ));
    let patch = json!({"retainKeysMap": {"$retainKeys": "name"}});
    assert!(matches!(
        smp(original, patch).unwrap_err(),
        PatchError::InvalidDirective { .. }
    ));
}

#[test]
fn unknown_directive_is_rejected_but_declared_dollar_field_is_data() {
    let err = smp(json!({}), json!({"child": {"$frobnicate": 1}})).unwrap_err();
    assert_eq!(
        err,
        PatchError::UnknownDirective {
            path: "child".to_owned(),
            key: "$frobnicate".to_owned()
        }
    );
    assert_eq!(
        ok(json!({}), json!({"child": {"$ref": "#/x"}})),
        json!({"child": {"$ref": "#/x"}})
    );
}

#[test]
fn invalid_patch_marker_is_rejected() {
    for patch in [
        json!({"child": {"$patch": "explode"}}),
        json!({"mergingList": [{"name": "1", "$patch": 3}]}),
    ] {
        let err = smp(json!({"mergingList": [{"name": "1"}]}), patch).unwrap_err();
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
    }
}

#[test]
fn missing_merge_key_is_rejected() {
    let original = json!({"mergingList": [{"name": "1", "value": "a"}]});
    let err = smp(original, json!({"mergingList": [{"value": "b"}]})).unwrap_err();
    assert_eq!(
        err,
        PatchError::MissingMergeKey {
            path: "mergingList[0]".to_owned(),
            key: "name".to_owned()
        }
    );
    assert_eq!(err.status_code(), 422);
    let err = smp(json!({}), json!({"mergingList": [{"$patch": "delete"}]})).unwrap_err();
    assert!(matches!(err, PatchError::MissingMergeKey { .. }));
    let original = json!({"mergingList": [{"value": "a"}]});
    let err = smp(original, json!({"mergingList": [{"name": "1"}]})).unwrap_err();
    assert!(matches!(err, PatchError::MissingMergeKey { .. }));
}

#[test]
fn unmergeable_lists_are_rejected() {
    let err = smp(json!({}), json!({"mergingIntList": [[1]]})).unwrap_err();
    assert!(matches!(err, PatchError::Unmergeable { .. }));
    let err = smp(json!({"mergingIntList": [1]}), json!({"mergingIntList": [{"a": 1}]})).unwrap_err();
    assert!(matches!(err, PatchError::Unmergeable { .. }));
    let err = smp(json!({}), json!({"noKeyList": [{"a": 1}]})).unwrap_err();
    assert!(matches!(err, PatchError::Unmergeable { .. }));
}

#[test]
fn patch_must_be_an_object() {
    let err = smp(json!({}), json!([1])).unwrap_err();
    assert!(matches!(err, PatchError::NotAnObject { .. }));
    assert_eq!(err.status_code(), 400);
}

#[test]
fn type_changes_take_the_patch_value() {
    let original = json!({"child": [1, 2], "name": {"a": 1}});
    let patch = json!({"child": {"name": "x", "value": null}, "name": "n"});
    assert_eq!(ok(original, patch), json!({"child": {"name": "x"}, "name": "n"}));
}

#[test]
fn directives_never_leak_into_new_values() {
    let patch = json!({
        "child": {
            "$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}],
            "mergingList": [
                {"name": "b"},
                {"name": "a", "$setElementOrder/mergingIntList": [2, 1], "mergingIntList": [2, 1]},
                {"name": "gone", "$patch": "delete"}
            ],
            "$deleteFromPrimitiveList/mergingIntList": [1],
            "retainKeysMap": {"$retainKeys": ["name"], "name": "r"}
        },
        "nonMergingList": [{"name": "x", "$patch": "replace", "mergingList": [{"$patch": "delete", "name": "y"}]}]
    });
    let merged = ok(json!({}), patch);
    assert_eq!(
        merged,
        json!({
            "child": {
                "mergingList": [{"name": "b"}, {"name": "a", "mergingIntList": [2, 1]}],
                "retainKeysMap": {"name": "r"}
            },
            "nonMergingList": [{"name": "x", "mergingList": []}]
        })
    );
}

#[test]
fn without_schema_behaves_like_json_merge() {
    let original = json!({"mergingList": [{"name": "1"}], "m": {"a": 1, "b": 2}});
    let patch = json!({"mergingList": [{"name": "2"}], "m": {"a": null, "c": 3}});
    assert_eq!(
        strategic_merge(&original, &patch, None).unwrap(),
        json!({"mergingList": [{"name": "2"}], "m": {"b": 2, "c": 3}})
    );
}
