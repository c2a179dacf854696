//! The smaller core/v1 kinds: nodes, config maps, secrets, service accounts, endpoints, events
//! and persistent volumes (claims).

use base64::Engine;
use serde_json::{Value, json};

use super::table::{AGE, Column, NAME, age_cell, arr, col, i, name_cell, or_none, s, wide};
use super::{NameRule, Strategy, validation};
use crate::error::Cause;

/// Nodes: status is written by the kubelet at registration, so a create keeps it.
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn reset_status_on_create(&self) -> bool {
        false
    }

    /// A node's pod CIDR may be set once (by the node IPAM controller), never changed.
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Some(old) = old else { return Vec::new() };
        let mut causes = Vec::new();
        for (pointer, field) in [("/spec/podCIDR", "spec.podCIDR"), ("/spec/podCIDRs", "spec.podCIDRs")] {
            let was_set = old
                .pointer(pointer)
                .is_some_and(|v| !v.is_null() && v != "" && v != &json!([]));
            if was_set && let Some(cause) = validation::immutable(obj, old, pointer, field) {
                causes.push(cause);
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Status"),
            col("Roles"),
            AGE,
            col("Version"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let ready = arr(obj, "/status/conditions").iter().find(|c| c["type"] == "Ready");
        let mut status = match ready.map(|c| s(c, "/status")) {
            Some("True") => "Ready".to_string(),
            Some("False") => "NotReady".to_string(),
            _ => "Unknown".to_string(),
        };
        if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<&str> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|l| {
                l.keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .collect()
            })
            .unwrap_or_default();
        let address = |ty: &str| {
            arr(obj, "/status/addresses")
                .iter()
                .find(|a| a["type"] == ty)
                .map(|a| s(a, "/address").to_string())
                .unwrap_or_default()
        };
        vec![
            name_cell(obj),
            json!(status),
            or_none(roles.join(",")),
            age_cell(obj),
            json!(s(obj, "/status/nodeInfo/kubeletVersion")),
            or_none(address("InternalIP")),
            or_none(address("ExternalIP")),
            json!(s(obj, "/status/nodeInfo/osImage")),
            json!(s(obj, "/status/nodeInfo/kernelVersion")),
            json!(s(obj, "/status/nodeInfo/containerRuntimeVersion")),
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}

/// Config maps.
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_data_keys(obj, &["data", "binaryData"]);
        causes.extend(immutable_data(obj, old, &["data", "binaryData"]));
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Data"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let count = ["data", "binaryData"]
            .iter()
            .map(|k| obj.get(*k).and_then(Value::as_object).map_or(0, |m| m.len()))
            .sum::<usize>();
        vec![name_cell(obj), json!(count), age_cell(obj)]
    }
}

/// Secrets: `stringData` is folded into `data`, as upstream does on every write.
pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        if !obj.get("type").is_some_and(Value::is_string) {
            obj["type"] = json!("Opaque");
        }
        let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
            return;
        };
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_data_keys(obj, &["data"]);
        causes.extend(immutable_data(obj, old, &["data"]));
        if old.is_some_and(|o| o.get("type") != obj.get("type")) {
            causes.push(Cause::immutable("type"));
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Type"), col("Data"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let count = obj.get("data").and_then(Value::as_object).map_or(0, |m| m.len());
        vec![name_cell(obj), json!(s(obj, "/type")), json!(count), age_cell(obj)]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["type"]
    }
}

fn validate_data_keys(obj: &Value, fields: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in fields {
        for key in obj
            .get(*field)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let ok = !key.is_empty()
                && key.len() <= 253
                && key
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                && key != "."
                && key != "..";
            if !ok {
                causes.push(Cause::invalid(
                    format!("{field}[{key}]"),
                    &Value::String(key.clone()),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                ));
            }
        }
    }
    causes
}

/// Objects marked `immutable: true` refuse changes to their data (and un-marking).
fn immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str]) -> Vec<Cause> {
    let Some(old) = old.filter(|o| o.get("immutable") == Some(&json!(true))) else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    if obj.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::immutable("immutable"));
    }
    for field in fields {
        if obj.get(*field) != old.get(*field) {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: field is immutable when `immutable` is set".into(),
                field: (*field).into(),
            });
        }
    }
    causes
}

/// Service accounts.
pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Secrets"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![name_cell(obj), json!(arr(obj, "/secrets").len()), age_cell(obj)]
    }
}

/// Endpoints.
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Endpoints"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let mut all = Vec::new();
        for subset in arr(obj, "/subsets") {
            for addr in arr(subset, "/addresses") {
                let ports = arr(subset, "/ports");
                if ports.is_empty() {
                    all.push(s(addr, "/ip").to_string());
                }
                all.extend(ports.iter().map(|p| format!("{}:{}", s(addr, "/ip"), i(p, "/port"))));
            }
        }
        let shown = if all.len() > 3 {
            format!("{} + {} more...", all[..3].join(","), all.len() - 3)
        } else {
            all.join(",")
        };
        vec![name_cell(obj), or_none(shown), age_cell(obj)]
    }
}

/// Core events: names embed dots and are not checked as DNS names.
pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Last Seen"),
            col("Type"),
            col("Reason"),
            col("Object"),
            wide("Subobject"),
            wide("Source"),
            col("Message"),
            wide("First Seen"),
            wide("Count"),
            Column { priority: 1, ..NAME },
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let last = [
            s(obj, "/lastTimestamp"),
            s(obj, "/eventTime"),
            s(obj, "/metadata/creationTimestamp"),
        ]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or("");
        let first = match s(obj, "/firstTimestamp") {
            "" => last,
            t => t,
        };
        let object = format!(
            "{}/{}",
            s(obj, "/involvedObject/kind").to_lowercase(),
            s(obj, "/involvedObject/name")
        );
        let source = match (s(obj, "/source/component"), s(obj, "/reportingComponent")) {
            ("", r) => r.to_string(),
            (c, _) => c.to_string(),
        };
        vec![
            json!(super::table::age_of(last)),
            json!(s(obj, "/type")),
            json!(s(obj, "/reason")),
            json!(object),
            json!(s(obj, "/involvedObject/fieldPath")),
            json!(source),
            json!(s(obj, "/message").trim()),
            json!(super::table::age_of(first)),
            json!(i(obj, "/count").max(1)),
            name_cell(obj),
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
}

/// Persistent volumes.
pub struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("persistentVolumeReclaimPolicy").or_insert(json!("Retain"));
            spec.entry("volumeMode").or_insert(json!("Filesystem"));
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Capacity"),
            col("Access Modes"),
            col("Reclaim Policy"),
            col("Status"),
            col("Claim"),
            col("StorageClass"),
            col("VolumeAttributesClass"),
            col("Reason"),
            AGE,
            wide("VolumeMode"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let claim = match s(obj, "/spec/claimRef/name") {
            "" => String::new(),
            n => format!("{}/{n}", s(obj, "/spec/claimRef/namespace")),
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/capacity/storage")),
            json!(access_modes(obj)),
            json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
            json!(s(obj, "/status/phase")),
            json!(claim),
            json!(s(obj, "/spec/storageClassName")),
            or_none(s(obj, "/spec/volumeAttributesClassName")),
            json!(s(obj, "/status/reason")),
            age_cell(obj),
            json!(s(obj, "/spec/volumeMode")),
        ]
    }
}

/// Persistent volume claims.
pub struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("volumeMode").or_insert(json!("Filesystem"));
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Status"),
            col("Volume"),
            col("Capacity"),
            col("Access Modes"),
            col("StorageClass"),
            col("VolumeAttributesClass"),
            AGE,
            wide("VolumeMode"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/status/phase")),
            json!(s(obj, "/spec/volumeName")),
            json!(s(obj, "/status/capacity/storage")),
            json!(access_modes(obj)),
            json!(s(obj, "/spec/storageClassName")),
            or_none(s(obj, "/spec/volumeAttributesClassName")),
            age_cell(obj),
            json!(s(obj, "/spec/volumeMode")),
        ]
    }
}

/// Access modes in kubectl's short form (`RWO,ROX`).
fn access_modes(obj: &Value) -> String {
    let short = |m: &str| match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        _ => "",
    };
    arr(obj, "/spec/accessModes")
        .iter()
        .filter_map(Value::as_str)
        .map(short)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut secret = json!({"stringData": {"pw": "hunter2"}});
        SecretStrategy.default(&mut secret);
        assert_eq!(secret["data"]["pw"], "aHVudGVyMg==");
        assert_eq!(secret["type"], "Opaque");
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn a_node_pod_cidr_is_set_once() {
        let unset = json!({"spec": {}});
        let set = json!({"spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}});
        let moved = json!({"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}});
        assert!(NodeStrategy.validate(&set, Some(&unset)).is_empty());
        assert!(NodeStrategy.validate(&set, Some(&set)).is_empty());
        assert_eq!(NodeStrategy.validate(&moved, Some(&set)).len(), 2);
    }

    #[test]
    fn immutable_config_map_refuses_changes() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(ConfigMapStrategy.validate(&new, Some(&old)).len(), 1);
    }

    #[test]
    fn node_row() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let cells = NodeStrategy.cells(&node);
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[4], "v1.33.0");
    }
}
