//! PATCH: JSON patch, JSON merge patch, strategic merge patch and server-side apply, applied to
//! the stored object and written back with compare-and-swap (retried when the object moved and
//! the patch did not pin a resourceVersion).

use kate_openapi::SchemaRef;
use kate_patch::SchemaNode;
use kate_store::Revision;
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
        let pinned = pins_resource_version(ty, patch);
        // The first attempt patches the cache's copy, saving a read of the store. A write from
        // it stands only if it stored a new revision, which the compare-and-swap allows only
        // over the current object; any other outcome (a refusal, or no change) may come from a
        // copy that is behind, and is worked out again on the store's.
        let usable = !pinned && !opts.dry_run;
        let mut cached = usable.then(|| self.cached_copy(def, &def.key(ns, name))).flatten();
        // Attempts on the store's copy; the trial on the cache's does not count.
        let mut attempt = 0;
        loop {
            let from_cache = cached.take();
            let trial = from_cache.is_some();
            let (revision, current) = match from_cache {
                Some(copy) => copy,
                None => {
                    attempt += 1;
                    let (kv, current) = self.current(def, ns, name).await?;
                    (kv.mod_revision, current)
                }
            };
            let result = match patched(def, name, ty, patch, revision, &current, schema.as_ref()) {
                Ok(patched) => {
                    self.replace(def, ns, name, patched, revision, &current, sub, opts)
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(written) if trial && !written.stored => continue,
                Err(_) if trial => continue,
                Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned && attempt < MAX_RETRIES => {
                    continue;
                }
                other => return other,
            }
        }
    }
}

/// `current` (read at `revision`) with `patch` applied, checked against it.
fn patched(
    def: &ResourceDef,
    name: &str,
    ty: PatchType,
    patch: &Value,
    revision: Revision,
    current: &Value,
    schema: Option<&SchemaRef>,
) -> Result<Value, ApiError> {
    let mut patched = apply_patch(current, patch, ty, schema)?;
    super::meta::check_type(def, &mut patched, def.kind, &def.api_version())?;
    // The stored object carries its own resourceVersion, so `patched` always has one; it is a
    // precondition only when the patch itself names one.
    if meta_str(&patched, "resourceVersion").is_some_and(|rv| !rv.is_empty() && rv != revision.to_string()) {
        return Err(ApiError::modified(def.group, def.plural, name));
    }
    if meta_str(&patched, "name").is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&patched, "name").unwrap_or("")
        )));
    }
    Ok(patched)
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
    use std::sync::Arc;

    use serde_json::json;

    use super::super::testing::registry;
    use super::*;

    fn data(written: &Written) -> &Value {
        &written.object["data"]
    }

    #[test]
    fn a_patch_is_worked_out_on_the_stored_object_when_the_cache_is_behind() {
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (rt, stored) = registry(dir_a.path());
        let (rt_b, behind) = registry(dir_b.path());
        // Writes go to the first store, while the cache follows the second, which only ever
        // sees the ConfigMap's first version: a cache that has fallen behind.
        let registry = Registry::new(
            stored.store.clone(),
            behind.cache.clone(),
            stored.catalog.clone(),
            stored.openapi.clone(),
        );
        let cms = stored.catalog.find("", "v1", "configmaps").cloned().expect("served");
        let opts = WriteOptions::default();
        let ns = Some("default");
        let patch = |registry: Arc<Registry>, ty, body: Value| {
            let cms = cms.clone();
            let opts = opts.clone();
            async move { registry.patch(&cms, ns, "a", ty, &body, None, &opts).await }
        };
        let registry = Arc::new(registry);
        let first = json!({"metadata": {"name": "a"}, "data": {"k": "1"}});
        rt_b.block_on(async {
            behind.create(&cms, ns, first.clone(), &opts).await.expect("create");
            behind.sync().await;
        });
        rt.block_on(async {
            stored.create(&cms, ns, first, &opts).await.expect("create");
            patch(stored.clone(), PatchType::Merge, json!({"data": {"k": "2"}}))
                .await
                .expect("patch");
            // Against the cache's copy this patch changes nothing; against the stored object
            // it sets k back, and that must be stored.
            let written = patch(registry.clone(), PatchType::Merge, json!({"data": {"k": "1"}}))
                .await
                .expect("patch");
            assert_eq!(data(&written), &json!({"k": "1"}));
            let kv = stored
                .store
                .get(&cms.key(ns, "a"))
                .await
                .expect("read")
                .expect("exists");
            let now: Value = serde_json::from_slice(&kv.value).expect("stored JSON");
            assert_eq!(now["data"], json!({"k": "1"}));
            let rv = kv.mod_revision.to_string();
            assert_eq!(written.object["metadata"]["resourceVersion"], json!(rv));
            // A patch that the cache's copy fails and the stored object passes.
            patch(stored.clone(), PatchType::Merge, json!({"data": {"k": "3"}}))
                .await
                .expect("patch");
            let test_then_set = json!([
                {"op": "test", "path": "/data/k", "value": "3"},
                {"op": "replace", "path": "/data/k", "value": "4"},
            ]);
            let written = patch(registry.clone(), PatchType::Json, test_then_set)
                .await
                .expect("patch");
            assert_eq!(data(&written), &json!({"k": "4"}));
        });
    }

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
