//! Property tests: the JSON the cache writes and reads without parsing agrees with serde_json
//! on the same values, since a binding stores what `Stored::splice` writes.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::cached::tests::without_managed_fields;
use super::cached::{Cached, Set, Stored};
use super::pick::pick;
use super::raw::RawObject;

const KEYS: &str = "(metadata|spec|status|managedFields|resourceVersion|nodeName|a\"b|\\\\|é|[a-z]{1,2})";

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Floats that survive a JSON round trip exactly, as serde_json's default parser needs.
        (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
        "[a-z\"\\\\\t/é]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((KEYS, inner), 0..6).prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// An object whose metadata may hold managedFields and a resourceVersion, anywhere among
/// other fields.
fn object() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((KEYS, json_value()), 0..5),
        prop::option::of(prop::collection::vec((KEYS, json_value()), 0..5)),
    )
        .prop_map(|(fields, metadata)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            if let Some(metadata) = metadata {
                object.insert("metadata".into(), Value::Object(metadata.into_iter().collect()));
            }
            Value::Object(object)
        })
}

/// Paths of one to three keys, none lying within another nor in the metadata.
fn paths() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(KEYS, 1..4), 0..4).prop_map(|paths| {
        let mut kept: Vec<Vec<String>> = Vec::new();
        for path in paths.into_iter().filter(|p| p[0] != "metadata") {
            let overlaps = |other: &Vec<String>| path.starts_with(other) || other.starts_with(&path);
            if !kept.iter().any(overlaps) {
                kept.push(path);
            }
        }
        kept
    })
}

/// Sets `path` in `value` as indexing would, turning anything in the way into an object.
fn set(value: &mut Value, path: &[String], to: &Value) {
    match path.split_first() {
        None => *value = to.clone(),
        Some((first, rest)) => {
            if !value.is_object() {
                *value = Value::Object(Map::new());
            }
            if let Value::Object(map) = value {
                set(map.entry(first.clone()).or_insert(Value::Null), rest, to);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn splicing_sets_matches_serde_on_the_changed_copy(object in object(), paths in paths(), to in json_value()) {
        let path_refs: Vec<Vec<&str>> = paths.iter().map(|p| p.iter().map(String::as_str).collect()).collect();
        let sets: Vec<Set<'_>> = path_refs.iter().map(|p| (p.as_slice(), &to)).collect();
        let mut expected = object.clone();
        if let Some(meta) = expected.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("resourceVersion");
        }
        for path in &paths {
            set(&mut expected, path, &to);
        }
        let json = serde_json::to_vec(&object).expect("json");
        let stored = Stored::splice(&RawObject::parse(&json).expect("an object"), &sets);
        let want = String::from_utf8(serde_json::to_vec(&expected).expect("json")).expect("utf-8");
        prop_assert_eq!(String::from_utf8_lossy(stored.bytes()), want);
        let served = Cached::stamped(&stored, 42);
        let expected = super::stamp(expected, 42);
        let want = serde_json::to_vec(&expected).expect("json");
        prop_assert_eq!(served.json(), want.as_slice());
        let want = serde_json::to_vec(&without_managed_fields(&expected)).expect("json");
        prop_assert_eq!(served.json_without_managed_fields().concat(), want);
    }

    #[test]
    fn picking_matches_walking_the_parsed_value(object in json_value(), path in prop::collection::vec(KEYS, 0..4)) {
        let json = serde_json::to_vec(&object).expect("json");
        let walked = path.iter().try_fold(&object, |v, step| v.get(step.as_str()));
        let picked = pick(&json, &path);
        prop_assert_eq!(picked.as_ref(), walked);
    }
}
