//! Pod priority, as upstream's Priority admission plugin: the built-in classes
//! `system-node-critical` and `system-cluster-critical` always exist, and a pod being created
//! gets `spec.priority` and `spec.preemptionPolicy` from its `priorityClassName` (or from the
//! global default class, or 0), so that schedulers read a number rather than a name.

use serde_json::{Value, json};

use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};

/// The built-in priority classes: name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

fn classes(registry: &Registry) -> Result<std::sync::Arc<ResourceDef>, ApiError> {
    registry
        .catalog
        .find("scheduling.k8s.io", "v1", "priorityclasses")
        .cloned()
        .ok_or_else(|| ApiError::internal("priorityclasses are not served"))
}

/// Creates the built-in priority classes that are missing.
pub async fn bootstrap(registry: &Registry) -> Result<(), ApiError> {
    let def = classes(registry)?;
    for (name, value, description) in SYSTEM_CLASSES {
        if registry.get(&def, None, name).await.is_ok() {
            continue;
        }
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        match registry.create(&def, None, class, &WriteOptions::default()).await {
            Err(e) if e.code != 409 => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Resolves a new pod's priority; other kinds pass untouched.
pub async fn admit(registry: &Registry, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if !(def.group.is_empty() && def.plural == "pods") {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let forbidden = |why: String| ApiError::forbidden(format!("pods \"{name}\" is forbidden: {why}"));
    let pc_def = classes(registry)?;
    let class_name = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class: Option<Value> = match &class_name {
        Some(class_name) => match registry.get(&pc_def, None, class_name).await {
            Ok(found) => Some((*found).clone()),
            Err(e) if e.code == 404 => {
                return Err(forbidden(format!("no PriorityClass with name {class_name} was found")));
            }
            Err(e) => return Err(e),
        },
        None => {
            registry.sync().await;
            let (all, _) = registry.cache.list(&pc_def.key_prefix());
            all.iter()
                .filter(|c| c.get("globalDefault") == Some(&Value::Bool(true)))
                .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
                .map(|c| (**c).clone())
        }
    };
    let priority = class
        .as_ref()
        .and_then(|c| c.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; \
             priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
             priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if class_name.is_none()
        && let Some(default) = class.as_ref().and_then(|c| c.pointer("/metadata/name")).cloned()
    {
        spec.insert("priorityClassName".into(), default);
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}
