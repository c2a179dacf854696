//! The patches kubectl really sends, against a trimmed copy of the Kubernetes OpenAPI v3 schema
//! (same definition names, wrappers and `x-kubernetes-patch-*` extensions as the real one).

use serde_json::{Value, json};

use super::{SchemaNode, strategic_merge};

fn r(name: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}})
}

fn merge_list(item: &str, key: &str, strategy: &str) -> Value {
    json!({
        "type": "array",
        "items": r(item),
        "x-kubernetes-patch-merge-key": key,
        "x-kubernetes-patch-strategy": strategy
    })
}

fn defs() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    json!({
        "io.k8s.api.apps.v1.Deployment": {"type": "object", "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": r("io.k8s.api.apps.v1.DeploymentSpec")
        }},
        "io.k8s.api.apps.v1.DeploymentSpec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "selector": r("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
            "strategy": {
                "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}],
                "default": {},
                "x-kubernetes-patch-strategy": "retainKeys"
            },
            "template": r("io.k8s.api.core.v1.PodTemplateSpec")
        }},
        "io.k8s.api.apps.v1.DeploymentStrategy": {"type": "object", "properties": {
            "rollingUpdate": r("io.k8s.api.apps.v1.RollingUpdateDeployment"),
            "type": {"type": "string"}
        }},
        "io.k8s.api.apps.v1.RollingUpdateDeployment": {"type": "object", "properties": {
            "maxSurge": {"x-kubernetes-int-or-string": true},
            "maxUnavailable": {"x-kubernetes-int-or-string": true}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector": {"type": "object", "properties": {
            "matchLabels": string_map.clone()
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
            "annotations": string_map.clone(),
            "labels": string_map,
            "name": {"type": "string"},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""},
                "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
            "ownerReferences": merge_list("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "uid", "merge")
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": {"type": "object", "properties": {
            "uid": {"type": "string"}, "name": {"type": "string"}
        }},
        "io.k8s.api.core.v1.Pod": {"type": "object", "properties": {
            "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": r("io.k8s.api.core.v1.PodSpec")
        }},
        "io.k8s.api.core.v1.PodTemplateSpec": {"type": "object", "properties": {
            "metadata": r("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": r("io.k8s.api.core.v1.PodSpec")
        }},
        "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
            "containers": merge_list("io.k8s.api.core.v1.Container", "name", "merge"),
            "volumes": merge_list("io.k8s.api.core.v1.Volume", "name", "merge,retainKeys"),
            "tolerations": {"type": "array", "items": r("io.k8s.api.core.v1.Toleration")}
        }},
        "io.k8s.api.core.v1.Toleration": {"type": "object", "properties": {"key": {"type": "string"}}},
        "io.k8s.api.core.v1.Container": {"type": "object", "properties": {
            "name": {"type": "string"},
            "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            "env": merge_list("io.k8s.api.core.v1.EnvVar", "name", "merge"),
            "ports": merge_list("io.k8s.api.core.v1.ContainerPort", "containerPort", "merge"),
            "volumeMounts": merge_list("io.k8s.api.core.v1.VolumeMount", "mountPath", "merge")
        }},
        "io.k8s.api.core.v1.EnvVar": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string"}
        }},
        "io.k8s.api.core.v1.ContainerPort": {"type": "object", "properties": {
            "containerPort": {"type": "integer"}, "protocol": {"type": "string"}
        }},
        "io.k8s.api.core.v1.VolumeMount": {"type": "object", "properties": {
            "mountPath": {"type": "string"}, "name": {"type": "string"}
        }},
        "io.k8s.api.core.v1.Volume": {"type": "object", "properties": {
            "name": {"type": "string"},
            "emptyDir": {"type": "object"},
            "configMap": {"type": "object"}
        }}
    })
}

fn apply(kind: &str, original: &Value, patch: &Value) -> Value {
    let defs = defs();
    let root = json!({"$ref": format!("#/components/schemas/{kind}")});
    let schema = SchemaNode {
        node: &root,
        defs: defs.as_object().unwrap(),
    };
    strategic_merge(original, patch, Some(schema)).unwrap()
}

fn deployment(strategy: Value, env: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27", "env": env,
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                ]}
            }
        }
    })
}

fn rolling() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
}

#[test]
fn second_apply_updates_env_image_and_replicas() {
    let original = deployment(
        rolling(),
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
    );
    let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"..."}},"spec":{"replicas":3,"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"C"}],"env":[{"name":"C","value":"3"},{"$patch":"delete","name":"B"}],"image":"nginx:1.28","name":"nginx"}]}}}});
    let mut expected = deployment(
        rolling(),
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]),
    );
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("...");
    expected["spec"]["replicas"] = json!(3);
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert_eq!(apply("io.k8s.api.apps.v1.Deployment", &original, &patch), expected);
}

#[test]
fn kubectl_edit_changes_pod_image() {
    let original = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.0", "args": ["-g"]}]}
    });
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"image":"nginx:9.9","name":"nginx"}]}});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:9.9", "args": ["-g"]}]}
        })
    );
}

#[test]
fn set_image_keeps_sidecar_position() {
    let original = json!({"spec": {"containers": [
        {"name": "sidecar", "image": "envoy:1"},
        {"name": "nginx", "image": "nginx:1"}
    ]}});
    let patch = json!({"spec": {"containers": [{"image": "nginx:2", "name": "nginx"}]}});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({"spec": {"containers": [
            {"name": "sidecar", "image": "envoy:1"},
            {"name": "nginx", "image": "nginx:2"}
        ]}})
    );
}

#[test]
fn rollout_restart_adds_template_annotation() {
    let original = deployment(rolling(), json!([]));
    let patch = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}});
    let mut expected = original.clone();
    expected["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"});
    assert_eq!(apply("io.k8s.api.apps.v1.Deployment", &original, &patch), expected);
}

#[test]
fn null_deletes_a_label() {
    let original = deployment(rolling(), json!([]));
    let patch = json!({"metadata": {"labels": {"tier": null}}});
    let merged = apply("io.k8s.api.apps.v1.Deployment", &original, &patch);
    assert_eq!(merged["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn strategy_switch_to_recreate_drops_rolling_update() {
    let original = deployment(rolling(), json!([]));
    for patch in [
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
    ] {
        let merged = apply("io.k8s.api.apps.v1.Deployment", &original, &patch);
        assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}

#[test]
fn volume_source_switch_uses_retain_keys_in_list_items() {
    let original = json!({"spec": {"volumes": [
        {"name": "data", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"}]
    }});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({"spec": {"volumes": [
            {"name": "data", "configMap": {"name": "cm"}},
            {"name": "cache", "emptyDir": {}}
        ]}})
    );
}

#[test]
fn finalizers_merge_as_a_set() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({"metadata": {"finalizers": ["a", "b", "c"]}})
    );
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({"metadata": {"finalizers": ["b"]}})
    );
}

#[test]
fn ports_merge_by_numeric_key_and_tolerations_replace() {
    let original = json!({"spec": {
        "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
        "tolerations": [{"key": "a"}, {"key": "b"}]
    }});
    let patch = json!({"spec": {
        "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "UDP"}, {"containerPort": 443}]}],
        "tolerations": [{"key": "c"}]
    }});
    assert_eq!(
        apply("io.k8s.api.core.v1.Pod", &original, &patch),
        json!({"spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "UDP"}, {"containerPort": 443}]}],
            "tolerations": [{"key": "c"}]
        }})
    );
}
