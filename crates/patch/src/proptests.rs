//! Property tests: no engine panics on arbitrary input, and strategic merge without a schema is
//! exactly JSON merge for patches free of directives.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{SchemaNode, json_merge, json_patch, strategic_merge};

const PLAIN_KEYS: &[&str] = &["name", "list", "ints", "map", "plain", "x"];
const DIRECTIVE_KEYS: &[&str] = &[
    "$patch",
    "$retainKeys",
    "$setElementOrder/list",
    "$setElementOrder/ints",
    "$deleteFromPrimitiveList/ints",
    "$deleteFromPrimitiveList/",
    "$frobnicate",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::from),
        Just(json!(1.0)),
        prop::sample::select(vec!["a", "b", "delete", "replace", "merge", "name", "/x", "/0"]).prop_map(Value::from),
    ]
}

fn json_with(keys: Vec<&'static str>) -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys.clone()), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn any_json() -> impl Strategy<Value = Value> {
    json_with(PLAIN_KEYS.iter().chain(DIRECTIVE_KEYS).copied().collect())
}

fn plain_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::sample::select(PLAIN_KEYS.to_vec()),
            json_with(PLAIN_KEYS.to_vec()),
        ),
        0..5,
    )
    .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn json_patch_ops() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "bogus"]);
    let path = prop::sample::select(vec!["", "/", "/x", "/map/x", "/list/0", "/list/-", "/list/9", "x"]);
    prop::collection::vec((op, path.clone(), path, any_json()), 0..4).prop_map(|ops| {
        Value::Array(
            ops.into_iter()
                .map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}))
                .collect(),
        )
    })
}

fn schema_defs() -> Map<String, Value> {
    let node = "#/components/schemas/Node";
    let defs = json!({"Node": {"type": "object", "properties": {
        "list": {"type": "array", "items": {"$ref": node},
            "x-kubernetes-patch-strategy": "merge,retainKeys", "x-kubernetes-patch-merge-key": "name"},
        "ints": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
        "map": {"allOf": [{"$ref": node}], "x-kubernetes-patch-strategy": "retainKeys"},
        "plain": {"type": "array", "items": {"$ref": node}}
    }}});
    defs.as_object().unwrap().clone()
}

fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            k == "$patch"
                || k == "$retainKeys"
                || k.starts_with("$setElementOrder/")
                || k.starts_with("$deleteFromPrimitiveList/")
                || has_directive(v)
        }),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn engines_never_panic(original in any_json(), patch in any_json(), ops in json_patch_ops()) {
        let defs = schema_defs();
        let root = json!({"$ref": "#/components/schemas/Node"});
        let schema = SchemaNode { node: &root, defs: &defs };
        let _ = json_merge(&original, &patch);
        let _ = json_patch(&original, &patch);
        let _ = json_patch(&original, &ops);
        let _ = strategic_merge(&original, &patch, None);
        if let Ok(merged) = strategic_merge(&original, &patch, Some(schema)) {
            prop_assert!(merged.is_object());
        }
    }

    #[test]
    fn directives_never_reach_the_result(original in plain_object(), patch in any_json()) {
        let defs = schema_defs();
        let root = json!({"$ref": "#/components/schemas/Node"});
        for schema in [None, Some(SchemaNode { node: &root, defs: &defs })] {
            if let Ok(merged) = strategic_merge(&original, &patch, schema) {
                prop_assert!(!has_directive(&merged), "{} leaked into {}", patch, merged);
            }
        }
    }

    #[test]
    fn strategic_without_schema_is_json_merge(original in any_json(), patch in plain_object()) {
        let strategic = strategic_merge(&original, &patch, None);
        prop_assert_eq!(strategic, json_merge(&original, &patch));
    }
}
