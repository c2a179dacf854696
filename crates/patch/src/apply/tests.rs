//! Server-side apply and managed-fields scenarios against a small Deployment-like schema with a
//! keyed list (containers by name, ports by port and protocol), a set (finalizers), an atomic
//! list (args), an atomic map (selector) and a list keyed only by its merge key (env).

use serde_json::{Map, Value, json};

use super::*;

pub(super) fn defs() -> Map<String, Value> {
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let defs = json!({
        "Deployment": {"type": "object", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": r("ObjectMeta"), "spec": r("Spec"), "status": r("Status")
        }},
        "ObjectMeta": {"type": "object", "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "managedFields": {"type": "array", "items": {"type": "object"}}
        }},
        "Spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "paused": {"type": "boolean"},
            "selector": {"allOf": [r("Selector")], "x-kubernetes-map-type": "atomic"},
            "template": r("Template")
        }},
        "Selector": {"type": "object", "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
        }},
        "Template": {"type": "object", "properties": {"metadata": r("ObjectMeta"), "spec": r("PodSpec")}},
        "PodSpec": {"type": "object", "properties": {
            "containers": {"type": "array", "items": r("Container"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
        }},
        "Container": {"type": "object", "properties": {
            "name": {"type": "string"}, "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
            "ports": {"type": "array", "items": r("Port"), "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["containerPort", "protocol"]},
            "env": {"type": "array", "items": r("Env"),
                "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}
        }},
        "Port": {"type": "object", "properties": {
            "containerPort": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}
        }},
        "Env": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}},
        "Status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
    });
    match defs {
        Value::Object(defs) => defs,
        _ => unreachable!(),
    }
}

pub(super) const ROOT: &str = r##"{"$ref": "#/components/schemas/Deployment"}"##;

/// Runs `f` with the test schema.
pub(super) fn with_schema<T>(f: impl FnOnce(SchemaNode<'_>) -> T) -> T {
    let defs = defs();
    let root: Value = serde_json::from_str(ROOT).unwrap();
    f(SchemaNode {
        node: &root,
        defs: &defs,
    })
}

fn opts(manager: &str) -> ApplyOptions<'_> {
    ApplyOptions {
        manager,
        force: false,
        api_version: "apps/v1",
        now: "2024-01-01T00:00:00Z",
        subresource: None,
        status_subresource: true,
    }
}

fn update(manager: &str) -> UpdateOptions<'_> {
    UpdateOptions {
        manager,
        api_version: "apps/v1",
        now: "2024-01-02T00:00:00Z",
        subresource: None,
        status_subresource: true,
    }
}

fn ssa(live: Option<&Value>, applied: &Value, opts: &ApplyOptions<'_>) -> Result<Value, ApplyError> {
    with_schema(|schema| apply(live, applied, opts, Some(schema)))
}

fn ok(live: Option<&Value>, applied: &Value, manager: &str) -> Value {
    ssa(live, applied, &opts(manager)).unwrap()
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
                ]}
            }
        }
    })
}

fn entries(object: &Value) -> Vec<Value> {
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
    let all = object["metadata"]["managedFields"].as_array().unwrap();
    all.iter().find(|e| e["manager"] == manager).unwrap()
}

fn without_managed_fields(mut object: Value) -> Value {
    object["metadata"].as_object_mut().unwrap().remove("managedFields");
    object
}

#[test]
fn create_by_apply_records_the_fields_v1_upstream_would() {
    let created = ok(None, &deployment(3, "nginx:1"), "kubectl");
    assert_eq!(without_managed_fields(created.clone()), deployment(3, "nginx:1"));
    let fields = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }
        }
    });
    let expected = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
        "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields
    }]);
    // Byte-for-byte, since upstream compares and displays the stored form.
    assert_eq!(
        serde_json::to_string(&created["metadata"]["managedFields"]).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
}

#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let created = ok(None, &deployment(3, "nginx:1"), "kubectl");
    let later = ApplyOptions {
        now: "2025-05-05T00:00:00Z",
        ..opts("kubectl")
    };
    let again = ssa(Some(&created), &deployment(3, "nginx:1"), &later).unwrap();
    assert_eq!(again, created);
}

#[test]
fn dropping_a_field_from_the_configuration_deletes_it() {
    let created = ok(None, &deployment(3, "nginx:1"), "kubectl");
    let mut smaller = deployment(3, "nginx:1");
    smaller["metadata"].as_object_mut().unwrap().remove("labels");
    smaller["spec"].as_object_mut().unwrap().remove("replicas");
    smaller["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx", "image": "nginx:1"}]);
    let applied = ok(Some(&created), &smaller, "kubectl");
    assert_eq!(without_managed_fields(applied.clone()), smaller);
    let fields = &entry(&applied, "kubectl")["fieldsV1"];
    assert!(fields["f:spec"].get("f:replicas").is_none());
    assert!(fields.get("f:metadata").is_none());
}

#[test]
fn dropped_fields_stay_while_another_manager_owns_them() {
    let created = ok(None, &deployment(3, "nginx:1"), "a");
    let shared = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    // Equal values are no conflict: both managers own the field.
    let both = ok(Some(&created), &shared, "b");
    assert_eq!(entry(&both, "a")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(entry(&both, "b")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));

    let mut without = deployment(3, "nginx:1");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let after = ok(Some(&both), &without, "a");
    assert_eq!(after["spec"]["replicas"], 3);
    assert!(entry(&after, "a")["fieldsV1"]["f:spec"].get("f:replicas").is_none());
}

#[test]
fn changing_a_field_another_manager_owns_conflicts() {
    let created = ok(None, &deployment(3, "nginx:1"), "a");
    let err = ssa(Some(&created), &deployment(5, "nginx:2"), &opts("b")).unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("expected conflicts, got {err:?}");
    };
    let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [".spec.replicas", ".spec.template.spec.containers[name=\"nginx\"].image"]
    );
    assert_eq!(conflicts[0].message(), "conflict with \"a\"");
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(err.status_code(), 409);
}

#[test]
fn force_takes_ownership() {
    let created = ok(None, &deployment(3, "nginx:1"), "a");
    let force = ApplyOptions {
        force: true,
        ..opts("b")
    };
    let scaled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let taken = ssa(Some(&created), &scaled, &force).unwrap();
    assert_eq!(taken["spec"]["replicas"], 5);
    assert!(entry(&taken, "a")["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert_eq!(entry(&taken, "b")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // The old owner reapplying its value now conflicts with the new one.
    let err = ssa(Some(&taken), &deployment(3, "nginx:1"), &opts("a")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"b\": .spec.replicas"
    );
}

#[test]
fn server_side_apply_after_client_side_apply_conflicts_on_changed_replicas() {
    let mut created = deployment(3, "nginx:1");
    with_schema(|s| record_update(None, &mut created, &update("kubectl-client-side-apply"), Some(s)));
    let err = ssa(Some(&created), &deployment(5, "nginx:1"), &opts("kubectl")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(conflicts) = err else {
        unreachable!()
    };
    assert_eq!(
        conflicts[0].message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );
    assert_eq!(conflicts[0].operation, Operation::Update);
}

#[test]
fn updates_take_the_fields_they_change() {
    let created = ok(None, &deployment(3, "nginx:1"), "kubectl");
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    with_schema(|s| record_update(Some(&created), &mut scaled, &update("kube-scale"), Some(s)));
    assert!(
        entry(&scaled, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert_eq!(
        entry(&scaled, "kube-scale"),
        &json!({"manager": "kube-scale", "operation": "Update", "apiVersion": "apps/v1",
            "time": "2024-01-02T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    );
    // Apply entries sort before Update entries, as upstream stores them.
    let managers: Vec<Value> = entries(&scaled).iter().map(|e| e["manager"].clone()).collect();
    assert_eq!(managers, [json!("kubectl"), json!("kube-scale")]);

    // A write that changes nothing leaves every entry alone.
    let mut same = scaled.clone();
    with_schema(|s| record_update(Some(&scaled), &mut same, &update("other"), Some(s)));
    assert_eq!(same, scaled);
}

#[test]
fn updates_that_remove_fields_take_them_from_their_owners() {
    let created = ok(None, &deployment(3, "nginx:1"), "kubectl");
    let mut edited = created.clone();
    edited["metadata"].as_object_mut().unwrap().remove("labels");
    with_schema(|s| record_update(Some(&created), &mut edited, &update("kubectl-edit"), Some(s)));
    assert!(entry(&edited, "kubectl")["fieldsV1"].get("f:metadata").is_none());
    // Removing a field is no ownership of it, so the editor has no entry at all.
    assert_eq!(entries(&edited).len(), 1);
}

#[test]
fn create_by_update_owns_everything_and_clients_may_reset_tracking() {
    let mut created = deployment(3, "nginx:1");
    with_schema(|s| record_update(None, &mut created, &update("kubectl-create"), Some(s)));
    let fields = &entry(&created, "kubectl-create")["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert!(fields["f:metadata"].get("f:name").is_none());

    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([]);
    with_schema(|s| record_update(Some(&created), &mut reset, &update("x"), Some(s)));
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn updates_record_neither_identity_nor_server_owned_metadata_nor_status_of_the_main_resource() {
    let mut created = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "uid": "u", "resourceVersion": "3", "labels": {"app": "web"}},
        "spec": {"replicas": 1}, "status": {"replicas": 1}});
    with_schema(|s| record_update(None, &mut created, &update("kubectl-create"), Some(s)));
    let fields = &entry(&created, "kubectl-create")["fieldsV1"];
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(fields), Some(vec!["f:metadata".into(), "f:spec".into()]));
    assert_eq!(keys(&fields["f:metadata"]), Some(vec!["f:labels".into()]));

    let mut named = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    with_schema(|s| record_update(None, &mut named, &update("kubectl-create"), Some(s)));
    assert!(
        named["metadata"].get("managedFields").is_none(),
        "nothing tracked, no entry"
    );

    let mut status = created.clone();
    status["status"]["replicas"] = json!(2);
    let through_status = UpdateOptions {
        subresource: Some("status"),
        ..update("controller")
    };
    with_schema(|s| record_update(Some(&created), &mut status, &through_status, Some(s)));
    assert_eq!(
        entry(&status, "controller")["fieldsV1"],
        json!({"f:status": {"f:replicas": {}}})
    );
}

#[test]
fn status_belongs_to_the_status_subresource() {
    let mut config = deployment(3, "nginx:1");
    config["status"] = json!({"replicas": 9});
    let created = ok(None, &config, "kubectl");
    assert!(created.get("status").is_none());

    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 3}});
    let through_status = ApplyOptions {
        subresource: Some("status"),
        ..opts("controller")
    };
    let reported = ssa(Some(&created), &status, &through_status).unwrap();
    assert_eq!(reported["status"]["replicas"], 3);
    assert_eq!(reported["spec"]["replicas"], 3);
    let controller = entry(&reported, "controller");
    assert_eq!(controller["subresource"], "status");
    assert_eq!(controller["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
}

#[test]
fn keyed_lists_merge_by_key_sets_union_and_atomic_lists_replace() {
    let mut live = deployment(3, "nginx:1");
    live["metadata"]["finalizers"] = json!(["a"]);
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "args": ["x", "y"]},
        {"name": "b", "env": [{"name": "E", "value": "1"}]}
    ]);
    let mut live = ok(None, &live, "first");
    // Owned by nobody, so the other applier neither conflicts with nor removes them.
    with_schema(|s| {
        let old = live.clone();
        live["metadata"]["managedFields"] = json!([]);
        record_update(Some(&old), &mut live, &update("reset"), Some(s));
    });
    let mut config = deployment(3, "nginx:1");
    config["metadata"]["finalizers"] = json!(["b"]);
    config["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "c"},
        {"name": "b", "env": [{"name": "F", "value": "2"}]},
        {"name": "a", "args": ["z"]}
    ]);
    let merged = ok(Some(&live), &config, "second");
    assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b"]));
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "c"},
            {"name": "b", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
            {"name": "a", "args": ["z"]}
        ])
    );
    let fields = &entry(&merged, "second")["fieldsV1"];
    assert_eq!(fields["f:metadata"]["f:finalizers"], json!({"v:\"b\"": {}}));
    let a = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"];
    assert_eq!(a, &json!({".": {}, "f:args": {}, "f:name": {}}));
}

#[test]
fn new_items_go_before_the_next_shared_item() {
    let mut live = deployment(3, "nginx:1");
    live["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
    let live = ok(None, &live, "first");
    let mut config = deployment(3, "nginx:1");
    config["spec"]["template"]["spec"]["containers"] = json!([{"name": "c"}, {"name": "b"}]);
    let merged = ok(Some(&live), &config, "second");
    let names: Vec<&Value> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("a"), &json!("c"), &json!("b")]);
}

#[test]
fn missing_key_fields_take_their_schema_default() {
    let mut live = deployment(3, "nginx:1");
    live["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}]);
    let live = ok(None, &live, "a");
    let merged = ok(Some(&live), &deployment(3, "nginx:1"), "b");
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );
}

#[test]
fn malformed_configurations_are_rejected() {
    let invalid = |config: Value| match ssa(None, &config, &opts("m")) {
        Err(ApplyError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let mut managed = deployment(1, "x");
    managed["metadata"]["managedFields"] = json!([]);
    assert_eq!(invalid(managed), "metadata.managedFields must be nil");
    assert!(invalid(json!({"kind": "Deployment"})).contains("apiVersion and kind"));

    let mut keyless = deployment(1, "x");
    keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    assert_eq!(
        invalid(keyless),
        ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\""
    );
    let mut twice = deployment(1, "x");
    twice["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    assert_eq!(
        invalid(twice),
        ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
    );
    let mut directive = deployment(1, "x");
    directive["spec"]["$patch"] = json!("replace");
    assert!(invalid(directive).contains("directive"));
}

#[test]
fn without_a_schema_everything_is_a_field_and_lists_are_atomic() {
    let config = json!({"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"},
        "spec": {"list": [1, 2], "nested": {"a": 1}}});
    let created = apply(None, &config, &opts("m"), None).unwrap();
    assert_eq!(
        entry(&created, "m")["fieldsV1"],
        json!({"f:spec": {".": {}, "f:list": {}, "f:nested": {".": {}, "f:a": {}}}})
    );
    let again = apply(Some(&created), &config, &opts("m"), None).unwrap();
    assert_eq!(again, created);
}
