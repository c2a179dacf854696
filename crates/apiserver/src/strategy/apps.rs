//! apps/v1 workloads: defaults, selector/template validation and the rows kubectl prints.

use serde_json::{Map, Value, json};

use super::Strategy;
use super::pod::{default_pod_spec, validate_pod_spec};
use super::table::{AGE, Column, NAME, age_cell, arr, col, i, name_cell, or_none, s, selector_string, wide};
use crate::error::Cause;

/// Defaults shared by every kind with a `spec.template` pod template.
fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec").and_then(Value::as_object_mut) {
        default_pod_spec(spec);
    }
}

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("spec").and_then(Value::as_object_mut)
}

/// A workload must select its own template's pods, and the selector is fixed after creation.
pub fn validate_selector_and_template(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let selector = obj.pointer("/spec/selector");
    let has_terms = selector.is_some_and(|sel| {
        sel.get("matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
            || !arr(sel, "/matchExpressions").is_empty()
    });
    if !has_terms {
        causes.push(Cause::required("spec.selector"));
    } else if let Some(match_labels) = selector
        .and_then(|sel| sel.get("matchLabels"))
        .and_then(Value::as_object)
    {
        let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
        let matches = match_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                obj.pointer("/spec/template/metadata/labels").unwrap_or(&Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
    }
    causes.extend(validate_pod_spec(
        obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
        "spec.template.spec",
    ));
    if let Some(old) = old
        && old.pointer("/spec/selector") != selector
    {
        causes.push(Cause::immutable("spec.selector"));
    }
    if obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &obj["spec"]["replicas"],
            "must be greater than or equal to 0",
        ));
    }
    causes
}

/// The `-o wide` Containers and Images cells of a pod template.
fn template_cells(obj: &Value) -> [Value; 2] {
    let containers = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

fn selector_cell(obj: &Value) -> Value {
    or_none(selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)))
}

/// Deployments.
pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            let strategy = spec.entry("strategy").or_insert(json!({}));
            if let Some(strategy) = strategy.as_object_mut() {
                strategy.entry("type").or_insert(json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let rolling = strategy.entry("rollingUpdate").or_insert(json!({}));
                    if let Some(rolling) = rolling.as_object_mut() {
                        rolling.entry("maxUnavailable").or_insert(json!("25%"));
                        rolling.entry("maxSurge").or_insert(json!("25%"));
                    }
                }
            }
        }
        default_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_selector_and_template(obj, old);
        let ty = obj.pointer("/spec/strategy/type");
        if ty.is_some_and(|t| t != "RollingUpdate" && t != "Recreate") {
            causes.push(Cause::not_supported(
                "spec.strategy.type",
                ty.unwrap_or(&Value::Null),
                &["Recreate", "RollingUpdate"],
            ));
        }
        if ty == Some(&json!("Recreate")) && obj.pointer("/spec/strategy/rollingUpdate").is_some() {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
                field: "spec.strategy.rollingUpdate".into(),
            });
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Ready"),
            col("Up-to-date"),
            col("Available"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let [containers, images] = template_cells(obj);
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                i(obj, "/status/readyReplicas"),
                i(obj, "/spec/replicas")
            )),
            json!(i(obj, "/status/updatedReplicas")),
            json!(i(obj, "/status/availableReplicas")),
            age_cell(obj),
            containers,
            images,
            selector_cell(obj),
        ]
    }
}

/// Replica sets.
pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            spec.entry("replicas").or_insert(json!(1));
        }
        default_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validate_selector_and_template(obj, old)
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Desired"),
            col("Current"),
            col("Ready"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let [containers, images] = template_cells(obj);
        vec![
            name_cell(obj),
            json!(i(obj, "/spec/replicas")),
            json!(i(obj, "/status/replicas")),
            json!(i(obj, "/status/readyReplicas")),
            age_cell(obj),
            containers,
            images,
            selector_cell(obj),
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

/// Stateful sets.
pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("podManagementPolicy").or_insert(json!("OrderedReady"));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        }
        default_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validate_selector_and_template(obj, old)
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Ready"), AGE, wide("Containers"), wide("Images")]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let [containers, images] = template_cells(obj);
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                i(obj, "/status/readyReplicas"),
                i(obj, "/spec/replicas")
            )),
            age_cell(obj),
            containers,
            images,
        ]
    }
}

/// Daemon sets.
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        }
        default_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validate_selector_and_template(obj, old)
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Desired"),
            col("Current"),
            col("Ready"),
            col("Up-to-date"),
            col("Available"),
            col("Node Selector"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let [containers, images] = template_cells(obj);
        vec![
            name_cell(obj),
            json!(i(obj, "/status/desiredNumberScheduled")),
            json!(i(obj, "/status/currentNumberScheduled")),
            json!(i(obj, "/status/numberReady")),
            json!(i(obj, "/status/updatedNumberScheduled")),
            json!(i(obj, "/status/numberAvailable")),
            or_none(super::table::labels_string(
                obj.pointer("/spec/template/spec/nodeSelector"),
            )),
            age_cell(obj),
            containers,
            images,
            selector_cell(obj),
        ]
    }
}

/// Controller revisions.
pub struct ControllerRevisionStrategy;

impl Strategy for ControllerRevisionStrategy {
    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Controller"), col("Revision"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let controller = arr(obj, "/metadata/ownerReferences")
            .iter()
            .find(|o| o["controller"] == json!(true))
            .map(|o| format!("{}/{}", s(o, "/kind").to_lowercase(), s(o, "/name")))
            .unwrap_or_default();
        vec![
            name_cell(obj),
            or_none(controller),
            json!(i(obj, "/revision")),
            age_cell(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn deployment_defaults() {
        let mut d = deployment();
        DeploymentStrategy.default(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(DeploymentStrategy.validate(&d, None).is_empty());
    }

    #[test]
    fn selector_must_match_template() {
        let mut d = deployment();
        d["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        let causes = DeploymentStrategy.validate(&d, None);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn selector_is_immutable() {
        let old = deployment();
        let mut d = deployment();
        d["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        d["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        assert_eq!(DeploymentStrategy.validate(&d, Some(&old))[0].field, "spec.selector");
    }
}
