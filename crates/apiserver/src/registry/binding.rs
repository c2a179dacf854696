//! The `pods/binding` subresource: how a scheduler assigns a pod to a node. It sets
//! `spec.nodeName` (which no other write may change) and the PodScheduled condition, once.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Registry;
use super::meta;
use crate::catalog::ResourceDef;
use crate::error::{ApiError, Cause};
use crate::watchcache::{Cached, RawObject, Stored};

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
        // Either copy is read and rewritten as JSON: only the fields the binding reads or sets
        // are parsed.
        let key = def.key(ns, name);
        let mut cached = (!dry_run).then(|| self.cached(def, &key)).flatten();
        let node = Value::from(node);
        loop {
            let (revision, held, fresh) = match cached.take() {
                Some((revision, copy)) => (revision, Held::Cached(copy), false),
                None => {
                    let kv = self
                        .store
                        .get(&key)
                        .await?
                        .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))?;
                    (kv.mod_revision, Held::Stored(kv.value), true)
                }
            };
            let Some(pod) = RawObject::parse(held.json()) else {
                return Err(ApiError::internal(format!(
                    "the stored pod {name} is not a JSON object"
                )));
            };
            if let Err(refusal) = refusal(def, name, binding, &pod) {
                if fresh {
                    return Err(refusal);
                }
                continue;
            }
            if dry_run {
                return Ok(());
            }
            let status = scheduled(pod.value("status").as_ref());
            let stored = Stored::splice(&pod, &[(&["spec", "nodeName"], &node), (&["status"], &status)]);
            match self.put_stored(def, &key, stored, None, Some(revision)).await? {
                Ok(_) => return Ok(()),
                Err(kate_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.cas_error(def, name, e)),
            }
        }
    }
}

/// The pod's JSON as the binding found it: the cache's, or the store's.
enum Held {
    Cached(Arc<Cached>),
    Stored(Vec<u8>),
}

impl Held {
    fn json(&self) -> &[u8] {
        match self {
            Held::Cached(cached) => cached.json(),
            Held::Stored(bytes) => bytes,
        }
    }
}

/// Why `binding` cannot apply to `pod`, if it cannot.
fn refusal(def: &ResourceDef, name: &str, binding: &Value, pod: &RawObject<'_>) -> Result<(), ApiError> {
    let meta = pod.object("metadata");
    if let Some(uid) = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && meta.and_then(|m| m.value("uid")).as_ref().and_then(Value::as_str) != Some(uid)
    {
        return Err(ApiError::conflict(
            def.group,
            def.plural,
            name,
            "the UID in the binding does not match the pod",
        ));
    }
    if let Some(assigned) = pod
        .object("spec")
        .and_then(|spec| spec.value("nodeName"))
        .as_ref()
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
    if meta.is_some_and(|m| m.holds("deletionTimestamp")) {
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
