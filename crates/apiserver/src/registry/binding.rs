//! The `pods/binding` subresource: how a scheduler assigns a pod to a node. It sets
//! `spec.nodeName` (which no other write may change) and the PodScheduled condition, once.

use serde_json::{Value, json};

use super::Registry;
use super::meta;
use super::write::encode;
use crate::catalog::ResourceDef;
use crate::error::{ApiError, Cause};

impl Registry {
    /// Binds pod `name` to the node named in `binding.target`.
    pub async fn bind(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let Some(node) = node else {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![Cause::required("target.name")],
            ));
        };
        if binding
            .pointer("/target/kind")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty() && k != "Node")
        {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![Cause::not_supported(
                    "target.kind",
                    &binding["target"]["kind"],
                    &["Node"],
                )],
            ));
        }
        loop {
            let (kv, current) = self.current(def, ns, name).await?;
            if let Some(uid) = binding
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                && meta::meta_str(&current, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    name,
                    "the UID in the binding does not match the pod",
                ));
            }
            if let Some(assigned) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    name,
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            if meta::is_deleting(&current) {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            set_scheduled(&mut next);
            if dry_run {
                return Ok(());
            }
            match self.store.update(&kv.key, encode(def, &next)?, kv.mod_revision).await {
                Ok(stored) => {
                    self.wrote(stored.mod_revision);
                    return Ok(());
                }
                Err(kate_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.cas_error(def, name, e)),
            }
        }
    }
}

/// Sets PodScheduled=True, keeping the other conditions.
fn set_scheduled(pod: &mut Value) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let condition =
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()});
    let mut conditions: Vec<Value> = pod["status"]
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter(|c| c["type"] != "PodScheduled").cloned().collect())
        .unwrap_or_default();
    conditions.push(condition);
    pod["status"]["conditions"] = Value::Array(conditions);
}
