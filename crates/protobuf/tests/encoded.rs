//! Hand-encoded bodies exercising what the captured kubectl fixtures do not: pointer zeros,
//! packed and unpacked lists, negative numbers, times, inline structs, custom forms, errors.

mod support;

use kate_protobuf::{DecodeError, decode};
use serde_json::{Value, json};
use support::{Msg, body, meta};

fn object(api_version: &str, kind: &str, raw: Msg) -> Value {
    match decode(&body(api_version, kind, &raw.0)) {
        Ok(d) => d.object,
        Err(e) => panic!("{kind}: {e}"),
    }
}

#[test]
fn namespace_drops_go_zero_values() {
    let raw = Msg::new()
        .msg(1, meta("team-a", ""))
        .msg(2, Msg::new())
        .msg(3, Msg::new().str(1, ""));
    assert_eq!(
        object("v1", "Namespace", raw),
        json!({"kind": "Namespace", "apiVersion": "v1",
               "metadata": {"name": "team-a", "creationTimestamp": null}, "spec": {}, "status": {}})
    );
}

#[test]
fn configmap_with_data_and_labels() {
    let raw = Msg::new()
        .msg(1, meta("cfg", "ns").entry(11, "tier", "web").entry(11, "app", "shop"))
        .entry(2, "b", "2")
        .entry(2, "a", "1")
        .entry(3, "bin", "\u{0}\u{1}");
    assert_eq!(
        object("v1", "ConfigMap", raw),
        json!({"kind": "ConfigMap", "apiVersion": "v1",
               "metadata": {"name": "cfg", "namespace": "ns", "creationTimestamp": null,
                            "labels": {"app": "shop", "tier": "web"}},
               "data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAE="}})
    );
}

#[test]
fn secret_binary_data_is_base64() {
    let raw = Msg::new()
        .msg(1, meta("s", "ns"))
        .msg(2, Msg::new().str(1, "key").bytes(2, &[0xde, 0xad, 0xbe, 0xef]))
        .str(3, "Opaque")
        .bool(5, false);
    assert_eq!(
        object("v1", "Secret", raw),
        json!({"kind": "Secret", "apiVersion": "v1",
               "metadata": {"name": "s", "namespace": "ns", "creationTimestamp": null},
               "data": {"key": "3q2+7w=="}, "type": "Opaque", "immutable": false})
    );
}

fn int_or_string_int(v: i64) -> Msg {
    Msg::new().int(1, 0).int(2, v).str(3, "")
}

fn int_or_string_str(v: &str) -> Msg {
    Msg::new().int(1, 1).int(2, 0).str(3, v)
}

#[test]
fn deployment_with_strategy_resources_env_and_ports() {
    let container = Msg::new()
        .str(1, "app")
        .str(2, "nginx:1.27")
        .str(3, "nginx")
        .str(4, "-g")
        .str(4, "daemon off;")
        .str(5, "")
        .msg(
            6,
            Msg::new().str(1, "http").int(2, 0).int(3, 80).str(4, "TCP").str(5, ""),
        )
        .msg(7, Msg::new().str(1, "MODE").str(2, "prod"))
        .msg(7, Msg::new().str(1, "EMPTY").str(2, ""))
        .msg(
            8,
            Msg::new().entry_msg(1, "memory", Msg::new().str(1, "128Mi")).entry_msg(
                2,
                "cpu",
                Msg::new().str(1, "250m"),
            ),
        )
        .str(13, "")
        .str(14, "")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false)
        .str(20, "");
    let pod_spec = Msg::new()
        .msg(2, container)
        .str(3, "")
        .str(6, "")
        .str(8, "")
        .str(9, "")
        .str(10, "")
        .bool(11, false)
        .bool(12, false)
        .bool(13, false)
        .str(16, "")
        .str(17, "")
        .str(19, "")
        .str(24, "")
        .bool(21, false);
    let spec = Msg::new()
        .int(1, 0)
        .msg(2, Msg::new().entry(1, "app", "web"))
        .msg(
            3,
            Msg::new().msg(1, meta("", "").entry(11, "app", "web")).msg(2, pod_spec),
        )
        .msg(
            4,
            Msg::new().str(1, "RollingUpdate").msg(
                2,
                Msg::new().msg(1, int_or_string_int(0)).msg(2, int_or_string_str("25%")),
            ),
        )
        .int(5, 0)
        .bool(7, false)
        .int(9, 600);
    let raw = Msg::new().msg(1, meta("web", "team-a")).msg(2, spec).msg(3, Msg::new());
    assert_eq!(
        object("apps/v1", "Deployment", raw),
        json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "web", "namespace": "team-a", "creationTimestamp": null},
            "spec": {
                // replicas is a pointer: an explicit 0 must survive.
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "app", "image": "nginx:1.27",
                            "command": ["nginx"], "args": ["-g", "daemon off;"],
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}}
                        }],
                        "automountServiceAccountToken": false
                    }
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "progressDeadlineSeconds": 600
            },
            "status": {}
        })
    );
}

#[test]
fn service_with_named_target_port() {
    let port = Msg::new()
        .str(1, "web")
        .str(2, "TCP")
        .int(3, 443)
        .msg(4, int_or_string_str("https"))
        .int(5, 0);
    // clusterIP and sessionAffinity are non-pointer omitempty strings: Go writes "", JSON drops it.
    let spec = Msg::new()
        .msg(1, port)
        .entry(2, "app", "web")
        .str(3, "")
        .str(4, "ClusterIP")
        .str(7, "");
    let raw = Msg::new()
        .msg(1, meta("web", "ns"))
        .msg(2, spec)
        .msg(3, Msg::new().msg(1, Msg::new()));
    assert_eq!(
        object("v1", "Service", raw),
        json!({"kind": "Service", "apiVersion": "v1",
               "metadata": {"name": "web", "namespace": "ns", "creationTimestamp": null},
               "spec": {"ports": [{"name": "web", "protocol": "TCP", "port": 443, "targetPort": "https"}],
                        "selector": {"app": "web"}, "type": "ClusterIP"},
               "status": {"loadBalancer": {}}})
    );
}

#[test]
fn negative_numbers_and_both_list_encodings() {
    // supplementalGroups is declared unpacked upstream; a packed list must decode too.
    let security = Msg::new().int(2, -1).int(4, 1000).int(4, 2000).packed(4, &[3000, -5]);
    let raw = Msg::new()
        .msg(1, meta("p", "ns"))
        .msg(2, Msg::new().msg(14, security).int(25, -7));
    let pod = object("v1", "Pod", raw);
    assert_eq!(
        pod["spec"]["securityContext"],
        json!({"runAsUser": -1, "supplementalGroups": [1000, 2000, 3000, -5]})
    );
    assert_eq!(pod["spec"]["priority"], json!(-7));
}

#[test]
fn inline_volume_source_and_quantity_and_merged_messages() {
    let volume = Msg::new().str(1, "cache").msg(
        2,
        Msg::new().msg(2, Msg::new().str(1, "Memory").msg(2, Msg::new().str(1, "1Gi"))),
    );
    // The same singular message twice: protobuf merges them field by field.
    let raw = Msg::new()
        .msg(1, meta("p", "ns"))
        .msg(2, Msg::new().msg(1, volume).str(10, "node-1"))
        .msg(2, Msg::new().str(19, "custom"));
    let pod = object("v1", "Pod", raw);
    assert_eq!(
        pod["spec"],
        json!({"volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
               "nodeName": "node-1", "schedulerName": "custom"})
    );
}

#[test]
fn lease_times() {
    let micro = Msg::new().int(1, 1_704_067_200).int(2, 5_000);
    let spec = Msg::new().str(1, "").int(2, 15).msg(3, micro).int(5, 0);
    let meta = meta("l", "kube-system").msg(9, Msg::new().int(1, 1_704_067_201).int(2, 999));
    let lease = object("coordination.k8s.io/v1", "Lease", Msg::new().msg(1, meta).msg(2, spec));
    assert_eq!(lease["metadata"]["deletionTimestamp"], "2024-01-01T00:00:01Z");
    assert_eq!(
        lease["spec"],
        json!({"holderIdentity": "", "leaseDurationSeconds": 15,
               "acquireTime": "2024-01-01T00:00:00.000005Z", "leaseTransitions": 0})
    );
}

#[test]
fn subject_access_review_extra_is_a_map_of_lists() {
    let spec = Msg::new()
        .str(3, "alice")
        .str(4, "devs")
        .entry_msg(5, "scopes", Msg::new().str(1, "a").str(1, "b"))
        .str(6, "");
    let sar = object(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        Msg::new().msg(1, meta("", "")).msg(2, spec),
    );
    assert_eq!(
        sar["spec"],
        json!({"user": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn controller_revision_raw_extension_is_parsed_json() {
    let raw = Msg::new()
        .msg(1, meta("rev", "ns"))
        .msg(2, Msg::new().bytes(1, br#"{"spec":{"x":1}}"#))
        .int(3, 2);
    let rev = object("apps/v1", "ControllerRevision", raw);
    assert_eq!(rev["data"], json!({"spec": {"x": 1}}));
    assert_eq!(rev["revision"], 2);
}

#[test]
fn delete_options_under_any_group() {
    let raw = Msg::new().int(1, 0).str(4, "Foreground").str(5, "All");
    let got = decode(&body("apps/v1", "DeleteOptions", &raw.0)).map(|d| d.object);
    assert_eq!(
        got,
        Ok(json!({"kind": "DeleteOptions", "apiVersion": "apps/v1",
                  "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]}))
    );
}

#[test]
fn crd_schema_unions_and_doubles() {
    let string_prop = Msg::new().str(5, "string").double(11, 0.0).int(13, 0);
    let list_prop = Msg::new()
        .str(5, "array")
        .msg(24, Msg::new().msg(1, Msg::new().str(5, "integer")));
    let root = Msg::new()
        .str(5, "object")
        .entry_msg(29, "name", string_prop)
        .entry_msg(29, "ports", list_prop)
        .msg(30, Msg::new().bool(1, true))
        .entry_msg(32, "name", Msg::new().str(2, "ports"))
        .msg(8, Msg::new().bytes(1, br#"{"name":"x"}"#))
        .double(19, 0.5)
        .bool(38, true);
    let version = Msg::new()
        .str(1, "v1")
        .bool(2, true)
        .bool(3, true)
        .msg(4, Msg::new().msg(1, root));
    let names = Msg::new()
        .str(1, "widgets")
        .str(2, "widget")
        .str(4, "Widget")
        .str(5, "WidgetList");
    let spec = Msg::new()
        .str(1, "example.com")
        .msg(3, names)
        .str(4, "Namespaced")
        .msg(7, version);
    let crd = object(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        Msg::new().msg(1, meta("widgets.example.com", "")).msg(2, spec),
    );
    assert_eq!(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "default": {"name": "x"},
            "multipleOf": 0.5,
            "properties": {
                "name": {"type": "string", "minimum": 0.0, "maxLength": 0},
                "ports": {"type": "array", "items": {"type": "integer"}}
            },
            "additionalProperties": true,
            "dependencies": {"name": ["ports"]},
            "x-kubernetes-preserve-unknown-fields": true
        })
    );
    assert_eq!(
        crd["spec"]["names"],
        json!({"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"})
    );
}

#[test]
fn unknown_kinds_and_malformed_bodies() {
    let raw = Msg::new().msg(1, meta("x", "")).0;
    assert_eq!(
        decode(&body("example.com/v1", "Widget", &raw)),
        Err(DecodeError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    assert!(matches!(
        decode(b"{\"kind\":\"Namespace\"}"),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(decode(&body("v1", "", &raw)), Err(DecodeError::Malformed(_))));
    // metadata.name (a string) sent as a varint.
    let wrong = Msg::new().msg(1, Msg::new().int(1, 5)).0;
    assert!(matches!(
        decode(&body("v1", "Namespace", &wrong)),
        Err(DecodeError::Malformed(_))
    ));
    let mut truncated = body("v1", "Namespace", &raw);
    truncated.pop();
    assert!(matches!(decode(&truncated), Err(DecodeError::Malformed(_))));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut schema = Msg::new().str(5, "object");
    for _ in 0..200 {
        schema = Msg::new().msg(28, schema);
    }
    let version = Msg::new().str(1, "v1").msg(4, Msg::new().msg(1, schema));
    let raw = Msg::new().msg(2, Msg::new().msg(7, version)).0;
    assert!(matches!(
        decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &raw)),
        Err(DecodeError::Malformed(_))
    ));
}
