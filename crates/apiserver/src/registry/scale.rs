//! The `/scale` subresource: an `autoscaling/v1 Scale` view of `spec.replicas`.

use serde_json::{Value, json};

use super::Registry;
use super::patch::{PatchType, apply_patch};
use super::write::{WriteOptions, Written};
use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::strategy::table::selector_string;

/// The Scale view of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

impl Registry {
    /// Writes a new Scale: a full body (PUT, `patch = None`) or a patch of the current Scale.
    pub async fn write_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        patch: Option<PatchType>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (kv, current) = self.current(def, ns, name).await?;
            let scale = match patch {
                None => body.clone(),
                Some(ty) => apply_patch(&scale_of(&current), body, ty, None)?,
            };
            if let Some(rv) = scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty())
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::modified(def.group, def.plural, name));
            }
            let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
                return Err(ApiError::bad_request("Scale.spec.replicas must be an integer"));
            };
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![crate::error::Cause::invalid(
                        "spec.replicas",
                        &json!(replicas),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut next = current.clone();
            next["spec"]["replicas"] = json!(replicas);
            match self
                .replace(def, ns, name, next, kv.mod_revision, &current, None, opts)
                .await
            {
                Ok(Written { object, .. }) => return Ok(scale_of(&object)),
                Err(e) if e.code == 409 && patch.is_some() && attempts < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
