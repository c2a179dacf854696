//! Property tests: no input makes the decoder panic, whatever its shape.

mod support;

use kate_protobuf::{DecodeError, decode};
use proptest::prelude::*;
use support::{Msg, body, meta};

/// Every kind the schema table accepts.
const KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("v1", "Node"),
    ("v1", "Endpoints"),
    ("v1", "Event"),
    ("v1", "PersistentVolume"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("v1", "Binding"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("events.k8s.io/v1", "Event"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("policy/v1", "PodDisruptionBudget"),
    ("policy/v1", "Eviction"),
    ("autoscaling/v1", "Scale"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("meta.k8s.io/v1", "DeleteOptions"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
];

const FIXTURES: &[&str] = &[
    "namespace",
    "configmap",
    "secret",
    "deployment",
    "service",
    "cronjob",
    "role",
];

#[test]
fn every_kind_is_known() {
    for (api_version, kind) in KINDS {
        // Every kind has metadata at tag 1 except DeleteOptions, whose tag 1 is a number.
        let raw = if *kind == "DeleteOptions" {
            Msg::new()
        } else {
            Msg::new().msg(1, meta("x", ""))
        };
        let decoded = decode(&body(api_version, kind, &raw.0));
        assert!(
            matches!(decoded, Ok(ref d) if d.object["kind"] == *kind),
            "{api_version} {kind}: {decoded:?}"
        );
        if *kind != "DeleteOptions" {
            assert_eq!(
                decoded.map(|d| d.object["metadata"].clone()),
                Ok(serde_json::json!({"name": "x", "creationTimestamp": null}))
            );
        }
    }
}

/// Random but well-formed records on the tags Kubernetes messages use, nested a few levels, so
/// that the schema-driven paths (not just the wire reader) meet wrong wire types and values.
fn message() -> impl Strategy<Value = Msg> {
    let leaf = prop::collection::vec(
        prop_oneof![
            (1u32..45, any::<i64>()).prop_map(|(t, v)| Msg::new().int(t, v)),
            (1u32..45, any::<f64>()).prop_map(|(t, v)| Msg::new().double(t, v)),
            (1u32..45, prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, v)| Msg::new().bytes(t, &v)),
            (1u32..45, "[a-z{}\":0-9]{0,8}").prop_map(|(t, v)| Msg::new().str(t, &v)),
            (1u32..45, any::<bool>()).prop_map(|(t, v)| Msg::new().bool(t, v)),
            (1u32..45, prop::collection::vec(any::<i64>(), 0..4)).prop_map(|(t, v)| Msg::new().packed(t, &v)),
            (1u32..45, "[a-z]{0,3}", "[a-z0-9]{0,3}").prop_map(|(t, k, v)| Msg::new().entry(t, &k, &v)),
        ],
        0..6,
    )
    .prop_map(concat);
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop::collection::vec((1u32..45, "[a-z]{0,3}", any::<bool>(), inner), 0..6).prop_map(|fields| {
            // Either a plain embedded message or a map entry holding it.
            let encode = |(t, key, as_entry, m): (u32, String, bool, Msg)| {
                if as_entry {
                    Msg::new().entry_msg(t, &key, m)
                } else {
                    Msg::new().msg(t, m)
                }
            };
            concat(fields.into_iter().map(encode).collect())
        })
    })
}

fn concat(parts: Vec<Msg>) -> Msg {
    Msg(parts.into_iter().flat_map(|m| m.0).collect())
}

/// Decoding may fail, but only with one of the two documented errors, and a known kind never
/// reports itself unknown.
fn check(result: Result<kate_protobuf::Decoded, DecodeError>, known_kind: bool) {
    if known_kind {
        assert!(!matches!(result, Err(DecodeError::UnknownKind { .. })), "{result:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(decode(&bytes), false);
        check(decode(&[b"k8s\0".as_slice(), &bytes].concat()), false);
    }

    #[test]
    fn arbitrary_raw_for_every_kind(kind in 0..KINDS.len(), raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let (api_version, kind) = KINDS[kind];
        check(decode(&body(api_version, kind, &raw)), true);
    }

    #[test]
    fn structured_raw_for_every_kind(kind in 0..KINDS.len(), raw in message()) {
        let (api_version, kind) = KINDS[kind];
        check(decode(&body(api_version, kind, &raw.0)), true);
    }

    #[test]
    fn mutated_fixtures(
        fixture in 0..FIXTURES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let path = format!("{}/tests/fixtures/{}.pb", env!("CARGO_MANIFEST_DIR"), FIXTURES[fixture]);
        let mut bytes = std::fs::read(path).unwrap_or_default();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        check(decode(&bytes), false);
    }
}
