//! Property tests: apply and update tracking never panic, and applying the same configuration
//! twice is a fixed point, alone or after another manager.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::tests::with_schema;
use super::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(Value::from),
        Just(json!(1.0)),
        prop::sample::select(vec!["a", "b", "TCP"]).prop_map(Value::from),
    ]
}

/// Mostly well-typed values, sometimes replaced by a value of the wrong shape.
fn or_noise(typed: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => typed,
        1 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ]
}

fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    let present = fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?)));
    Value::Object(present.collect::<Map<_, _>>())
}

fn name() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(Value::from)
}

fn container() -> impl Strategy<Value = Value> {
    let port = (
        prop::sample::select(vec![80, 443]),
        prop::option::of(prop::sample::select(vec!["TCP", "UDP"])),
    )
        .prop_map(|(port, protocol)| {
            object(vec![
                ("containerPort", Some(port.into())),
                ("protocol", protocol.map(Value::from)),
            ])
        });
    let env = (name(), prop::option::of(scalar()))
        .prop_map(|(name, value)| object(vec![("name", Some(name)), ("value", value)]));
    (
        name(),
        prop::option::of(scalar()),
        prop::option::of(or_noise(prop::collection::vec(scalar(), 0..3).prop_map(Value::Array))),
        prop::option::of(or_noise(prop::collection::vec(port, 0..3).prop_map(Value::Array))),
        prop::option::of(or_noise(prop::collection::vec(env, 0..3).prop_map(Value::Array))),
    )
        .prop_map(|(name, image, args, ports, env)| {
            object(vec![
                ("name", Some(name)),
                ("image", image),
                ("args", args),
                ("ports", ports),
                ("env", env),
            ])
        })
}

fn config() -> impl Strategy<Value = Value> {
    let labels = prop::collection::vec((name(), scalar()), 0..3).prop_map(|entries| {
        let map = entries
            .into_iter()
            .map(|(k, v)| (k.as_str().unwrap_or("k").to_owned(), v));
        Value::Object(map.collect())
    });
    let finalizers = prop::collection::vec(name(), 0..3).prop_map(Value::Array);
    let containers = prop::collection::vec(container(), 0..4).prop_map(Value::Array);
    (
        prop::option::of(or_noise(labels)),
        prop::option::of(or_noise(finalizers)),
        prop::option::of(scalar()),
        prop::option::of(or_noise(containers)),
        prop::option::of(scalar()),
    )
        .prop_map(|(labels, finalizers, replicas, containers, status)| {
            let metadata = object(vec![
                ("name", Some("web".into())),
                ("labels", labels),
                ("finalizers", finalizers),
            ]);
            let pod = object(vec![("containers", containers)]);
            let spec = object(vec![("replicas", replicas), ("template", Some(json!({"spec": pod})))]);
            object(vec![
                ("apiVersion", Some("apps/v1".into())),
                ("kind", Some("Deployment".into())),
                ("metadata", Some(metadata)),
                ("spec", Some(spec)),
                ("status", status.map(|replicas| json!({"replicas": replicas}))),
            ])
        })
}

fn opts(manager: &'static str, force: bool, now: &'static str) -> ApplyOptions<'static> {
    ApplyOptions {
        manager,
        force,
        api_version: "apps/v1",
        now,
        subresource: None,
        status_subresource: false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_twice_is_a_fixed_point(config in config()) {
        with_schema(|schema| {
            let first = apply(None, &config, &opts("m", false, "t1"), Some(schema));
            if let Ok(created) = first {
                let again = apply(Some(&created), &config, &opts("m", false, "t2"), Some(schema));
                prop_assert_eq!(again, Ok(created));
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_second_applier_reaches_a_fixed_point_too(base in config(), config in config(), force: bool) {
        with_schema(|schema| {
            let Ok(live) = apply(None, &base, &opts("a", false, "t1"), Some(schema)) else {
                return Ok(());
            };
            if let Ok(taken) = apply(Some(&live), &config, &opts("b", force, "t2"), Some(schema)) {
                let again = apply(Some(&taken), &config, &opts("b", force, "t3"), Some(schema));
                prop_assert_eq!(again, Ok(taken));
            }
            Ok(())
        })?;
    }

    #[test]
    fn update_tracking_never_panics(old in config(), new in config(), create: bool) {
        with_schema(|schema| {
            let updates = UpdateOptions {
                manager: "u",
                api_version: "apps/v1",
                now: "t",
                subresource: None,
                status_subresource: true,
            };
            let Ok(mut old) = apply(None, &old, &opts("a", false, "t1"), Some(schema)) else {
                return;
            };
            let mut new = new;
            record_update((!create).then_some(&old), &mut new, &updates, Some(schema));
            record_update(None, &mut old, &updates, None);
        });
    }
}
