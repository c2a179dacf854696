//! The `pods/binding` subresource: how a scheduler assigns a pod to a node. It sets
//! `spec.nodeName` (which no other write may change) and the PodScheduled condition, once.

use serde_json::{Value, json};

use super::Registry;
use super::meta;
use crate::catalog::ResourceDef;
use crate::error::{ApiError, Cause};
use crate::watchcache::{Cached, Stored};

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
        // The cache's copy saves a read of the store. It may be behind: a write it missed makes
        // the swap fail, and a refusal it seems to call for is checked again on the store's copy.
        let key = def.key(ns, name);
        let mut cached = (!dry_run).then(|| self.cached(def, &key)).flatten();
        let node = Value::from(node);
        loop {
            let (revision, current, fresh) = match cached.take() {
                Some((revision, copy)) => (revision, copy, false),
                None => {
                    let (kv, current) = self.current(def, ns, name).await?;
                    (kv.mod_revision, Cached::new(current), true)
                }
            };
            let current = current.read();
            if let Err(refusal) = refusal(def, name, binding, &current) {
                if fresh {
                    return Err(refusal);
                }
                continue;
            }
            if dry_run {
                return Ok(());
            }
            // Written as the pod with two fields set, without copying the pod.
            let status = scheduled(current.get("status"));
            let stored = Stored::encode_with(&current, &[(&["spec", "nodeName"], &node), (&["status"], &status)]);
            match self.put_stored(def, &key, stored, None, Some(revision)).await? {
                Ok(_) => return Ok(()),
                Err(kate_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.cas_error(def, name, e)),
            }
        }
    }
}

/// Why `binding` cannot apply to the pod as it is in `current`, if it cannot.
fn refusal(def: &ResourceDef, name: &str, binding: &Value, current: &Value) -> Result<(), ApiError> {
    if let Some(uid) = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && meta::meta_str(current, "uid") != Some(uid)
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
    if meta::is_deleting(current) {
        return Err(ApiError::conflict(
            def.group,
            def.plural,
            name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    Ok(())
}

/// `status` with PodScheduled=True, keeping the other conditions.
fn scheduled(status: Option<&Value>) -> Value {
    let mut status = status.filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
    let condition =
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()});
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter(|c| c["type"] != "PodScheduled").cloned().collect())
        .unwrap_or_default();
    conditions.push(condition);
    status["conditions"] = Value::Array(conditions);
    status
}
