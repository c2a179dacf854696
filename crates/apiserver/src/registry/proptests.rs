//! Property tests: no request body, however malformed, crashes the registry or changes stored
//! data when it is refused.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::testing::registry;
use super::{PatchType, WriteOptions};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z$/.-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                "(metadata|spec|data|name|labels|containers|image|replicas|\\$patch|[a-z]{1,5})",
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_crash_or_corrupt(body in json_value(), patch in json_value(), kind in 0usize..4) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rt, registry) = registry(dir.path());
        let plurals = ["configmaps", "deployments", "pods", "services"];
        let def = registry.catalog.all().iter().find(|d| d.plural == plurals[kind]).cloned().expect("served");
        rt.block_on(async {
            let before = registry.store.current_revision().await.expect("revision");
            let created = registry.create(&def, Some("default"), body.clone(), &WriteOptions::default()).await;
            if created.is_err() {
                prop_assert_eq!(registry.store.current_revision().await.expect("revision"), before);
            }
            let seed = json!({"metadata": {"name": "seed"}, "data": {"a": "b"}});
            let cms = registry.catalog.find("", "v1", "configmaps").cloned().expect("served");
            registry.create(&cms, Some("default"), seed, &WriteOptions::default()).await.expect("seed");
            for ty in [PatchType::Merge, PatchType::Strategic, PatchType::Json, PatchType::Apply] {
                let stored = registry.get(&cms, Some("default"), "seed").await.expect("seed exists");
                let result = registry.patch(&cms, Some("default"), "seed", ty, &patch, None, &WriteOptions::default()).await;
                if let Err(e) = result {
                    prop_assert!((400..500).contains(&e.code), "{e}");
                    let after = registry.get(&cms, Some("default"), "seed").await.expect("seed kept");
                    prop_assert_eq!(&**after, &**stored);
                }
            }
            Ok(())
        })?;
    }
}
