//! Pods: defaults, the spec fields that may change after creation, and the `kubectl get pods` row.

use serde_json::{Value, json};

use super::table::{AGE, Column, NAME, age_cell, arr, col, i, name_cell, or_none, s, wide};
use super::{Strategy, validation};
use crate::error::Cause;

/// The pod strategy.
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        default_pod_spec(spec);
        default_toleration_seconds(spec);
    }

    fn prepare_create(&self, obj: &mut Value) {
        let qos = qos_class(obj);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec");
        if let Some(old) = old
            && mutable_view(obj.get("spec")) != mutable_view(old.get("spec"))
        {
            causes.push(Cause {
                    reason: "FieldValueForbidden",
                    message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
                    field: "spec".into(),
                });
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Ready"),
            col("Status"),
            col("Restarts"),
            AGE,
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let statuses = arr(obj, "/status/containerStatuses");
        let total = arr(obj, "/spec/containers").len();
        let ready = statuses.iter().filter(|c| c["ready"] == json!(true)).count();
        let restarts: i64 = statuses.iter().map(|c| i(c, "/restartCount")).sum();
        let gates = arr(obj, "/spec/readinessGates");
        let gates_cell = if gates.is_empty() {
            or_none("")
        } else {
            let conditions = arr(obj, "/status/conditions");
            let met = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                })
                .count();
            json!(format!("{met}/{}", gates.len()))
        };
        vec![
            name_cell(obj),
            json!(format!("{ready}/{total}")),
            json!(display_status(obj)),
            json!(restarts.to_string()),
            age_cell(obj),
            or_none(s(obj, "/status/podIP")),
            or_none(s(obj, "/spec/nodeName")),
            or_none(s(obj, "/status/nominatedNodeName")),
            gates_cell,
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }
}

/// Applies upstream's pod spec defaults; shared with the pod templates of workload kinds.
pub fn default_pod_spec(spec: &mut serde_json::Map<String, Value>) {
    let mut set = |k: &str, v: Value| {
        spec.entry(k.to_string()).or_insert(v);
    };
    set("restartPolicy", json!("Always"));
    set("terminationGracePeriodSeconds", json!(30));
    set("dnsPolicy", json!("ClusterFirst"));
    set("securityContext", json!({}));
    set("schedulerName", json!("default-scheduler"));
    set("enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            default_container(c);
        }
    }
}

/// How long pods tolerate a not-ready or unreachable node by default (upstream's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds admission: a pod that does not already tolerate the
/// `NoExecute` taints of a not-ready or unreachable node tolerates them for five minutes, so the
/// node lifecycle controller evicts it then. Pods only: workload templates are left as written,
/// as upstream's admission plugin never sees them.
fn default_toleration_seconds(spec: &mut serde_json::Map<String, Value>) {
    let tolerates =
        |t: &Value, key: &str| matches!(t.get("key").and_then(Value::as_str), None | Some("")) || s(t, "/key") == key;
    let tolerates_no_execute =
        |t: &Value| matches!(t.get("effect").and_then(Value::as_str), None | Some("" | "NoExecute"));
    let Some(tolerations) = spec.entry("tolerations").or_insert_with(|| json!([])).as_array_mut() else {
        return;
    };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerations.iter().any(|t| tolerates(t, key) && tolerates_no_execute(t)) {
            tolerations.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(map) = c.as_object_mut() else { return };
    let image = map.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_tag(image).is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    map.entry("imagePullPolicy").or_insert(json!(policy));
    map.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    map.entry("terminationMessagePolicy").or_insert(json!("File"));
    map.entry("resources").or_insert(json!({}));
    for port in map.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(p) = port.as_object_mut() {
            p.entry("protocol").or_insert(json!("TCP"));
        }
    }
}

/// The tag of an image reference (`None` when untagged; digests count as tagged).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("digest");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

/// Validates a pod spec at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = arr(spec, "/containers");
    if containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut seen = Vec::new();
    for (list, items) in [
        ("containers", containers),
        ("initContainers", arr(spec, "/initContainers")),
    ] {
        for (n, c) in items.iter().enumerate() {
            let at = format!("{path}.{list}[{n}]");
            let name = s(c, "/name");
            if name.is_empty() {
                causes.push(Cause::required(format!("{at}.name")));
            } else if !validation::is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{at}.name"), &c["name"], "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
            } else if seen.contains(&name) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    message: format!("Duplicate value: {name:?}"),
                    field: format!("{at}.name"),
                });
            }
            seen.push(name);
            if s(c, "/image").trim().is_empty() {
                causes.push(Cause::required(format!("{at}.image")));
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy")
        && !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never"))
    {
        causes.push(Cause::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    causes
}

/// The spec with the fields that may change blanked out, for the immutability check.
fn mutable_view(spec: Option<&Value>) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for key in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
            map.remove(key);
        }
        for list in ["containers", "initContainers"] {
            for c in map.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    spec
}

/// The QoS class upstream derives from container requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .flat_map(|p| arr(pod, p))
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The STATUS column: upstream shows the most telling container reason, not just the phase.
fn display_status(pod: &Value) -> String {
    let mut reason = match s(pod, "/status/reason") {
        "" => s(pod, "/status/phase").to_string(),
        r => r.to_string(),
    };
    let init = arr(pod, "/status/initContainerStatuses");
    let init_total = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (n, c) in init.iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated") {
            if i(t, "/exitCode") == 0 {
                continue;
            }
            reason = match s(t, "/reason") {
                "" => format!("Init:ExitCode:{}", i(t, "/exitCode")),
                r => format!("Init:{r}"),
            };
        } else if let Some(w) = c
            .pointer("/state/waiting")
            .filter(|w| !s(w, "/reason").is_empty() && s(w, "/reason") != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, "/reason"));
        } else {
            reason = format!("Init:{n}/{init_total}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            if let Some(w) = c.pointer("/state/waiting").filter(|w| !s(w, "/reason").is_empty()) {
                reason = s(w, "/reason").to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match s(t, "/reason") {
                    "" if i(t, "/signal") != 0 => format!("Signal:{}", i(t, "/signal")),
                    "" => format!("ExitCode:{}", i(t, "/exitCode")),
                    r => r.to_string(),
                };
            }
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        reason = "Terminating".into();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_upstream() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}});
        PodStrategy.default(&mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["spec"]["containers"][1]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn pods_tolerate_unready_nodes_for_five_minutes() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}});
        PodStrategy.default(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        PodStrategy.default(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"].as_array().map(Vec::len),
            Some(2),
            "defaulting twice adds nothing"
        );

        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2});
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "nginx"}], "tolerations": [own]}});
        PodStrategy.default(&mut pod);
        assert_eq!(pod["spec"]["tolerations"][0], own, "an existing toleration is kept");
        assert_eq!(pod["spec"]["tolerations"][1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));

        let mut everything = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        PodStrategy.default(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"].as_array().map(Vec::len),
            Some(1),
            "a wildcard tolerates both"
        );

        let mut template = serde_json::Map::new();
        default_pod_spec(&mut template);
        assert!(template.get("tolerations").is_none(), "templates are not admitted");
    }

    #[test]
    fn validation_requires_image_and_unique_names() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}});
        let fields: Vec<String> = PodStrategy.validate(&pod, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["spec.containers[0].image", "spec.containers[1].name"]);
    }

    #[test]
    fn only_images_may_change() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let image = json!({"spec": {"containers": [{"name": "a", "image": "y"}]}});
        let cmd = json!({"spec": {"containers": [{"name": "a", "image": "x", "command": ["sh"]}]}});
        assert!(PodStrategy.validate(&image, Some(&old)).is_empty());
        assert_eq!(PodStrategy.validate(&cmd, Some(&old))[0].reason, "FieldValueForbidden");
    }

    #[test]
    fn status_column_prefers_container_reasons() {
        let pod = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}]}});
        assert_eq!(display_status(&pod), "ErrImagePull");
        assert_eq!(PodStrategy.cells(&pod)[1], "0/1");
    }

    #[test]
    fn qos() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
    }
}
