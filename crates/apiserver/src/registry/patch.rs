//! PATCH: JSON patch, JSON merge patch, strategic merge patch and server-side apply, applied to
//! the stored object and written back with compare-and-swap (retried when the object moved and
//! the patch did not pin a resourceVersion).

use kate_openapi::SchemaRef;
use kate_patch::SchemaNode;
use serde_json::Value;

use super::Registry;
use super::meta::meta_str;
use super::write::{WriteOptions, Written};
use crate::catalog::{ResourceDef, Subresource};
use crate::error::ApiError;

/// The patch formats kubectl sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type named by a Content-Type, if any.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

const MAX_RETRIES: usize = 5;

impl Registry {
    /// Applies `patch` to the object (or its status) and stores the result.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        ty: PatchType,
        patch: &Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if ty == PatchType::Apply {
            return self.server_side_apply(def, ns, name, patch, sub, opts).await;
        }
        let schema = self.openapi.kind_schema(def.group, def.version, def.kind);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (kv, current) = self.current(def, ns, name).await?;
            let mut patched = apply_patch(&current, patch, ty, schema.as_ref())?;
            super::meta::check_type(def, &mut patched, def.kind, &def.api_version())?;
            // The stored object carries its own resourceVersion, so `patched` always has one; it
            // is a precondition only when the patch itself names one.
            let pinned = pins_resource_version(ty, patch);
            if meta_str(&patched, "resourceVersion")
                .is_some_and(|rv| !rv.is_empty() && rv != kv.mod_revision.to_string())
            {
                return Err(ApiError::modified(def.group, def.plural, name));
            }
            if meta_str(&patched, "name").is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&patched, "name").unwrap_or("")
                )));
            }
            match self.replace(def, ns, name, patched, &kv, &current, sub, opts).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned && attempt < MAX_RETRIES => {
                    continue;
                }
                other => return other,
            }
        }
    }
}

/// Whether a patch document sets `metadata.resourceVersion`, making it a precondition.
fn pins_resource_version(ty: PatchType, patch: &Value) -> bool {
    match ty {
        PatchType::Json => patch.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion"))
        }),
        _ => patch
            .pointer("/metadata/resourceVersion")
            .is_some_and(|rv| rv.as_str().is_some_and(|s| !s.is_empty())),
    }
}

/// The patch engines' view of a published schema.
pub fn schema_node(schema: &SchemaRef) -> SchemaNode<'_> {
    SchemaNode {
        node: schema.node(),
        defs: schema.defs(),
    }
}

/// Applies one patch document to `current`.
pub fn apply_patch(
    current: &Value,
    patch: &Value,
    ty: PatchType,
    schema: Option<&SchemaRef>,
) -> Result<Value, ApiError> {
    let result = match ty {
        PatchType::Json => kate_patch::json_patch(current, patch),
        PatchType::Merge => kate_patch::json_merge(current, patch),
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("the patch must be a JSON object"));
            }
            kate_patch::strategic_merge(current, patch, schema.map(schema_node))
        }
    };
    result.map_err(|e| match e.status_code() {
        422 => ApiError::unprocessable(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_patches_naming_a_resource_version_pin_it() {
        assert!(!pins_resource_version(
            PatchType::Merge,
            &json!({"status": {"phase": "Running"}})
        ));
        assert!(pins_resource_version(
            PatchType::Strategic,
            &json!({"metadata": {"resourceVersion": "7"}})
        ));
        assert!(!pins_resource_version(
            PatchType::Json,
            &json!([{"op": "add", "path": "/data/a", "value": "b"}])
        ));
        assert!(pins_resource_version(
            PatchType::Json,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "7"}])
        ));
    }
}
