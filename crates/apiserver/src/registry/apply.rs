//! Server-side apply: merges a manager's applied configuration into the live object, tracking
//! field ownership in managedFields and refusing to take fields other managers own (409) unless
//! forced.

use serde_json::Value;

use super::Registry;
use super::meta::{self, meta_str};
use super::patch::schema_node;
use super::write::{WriteOptions, Written};
use crate::catalog::{ResourceDef, Subresource};
use crate::error::{ApiError, Cause};

const MAX_RETRIES: usize = 5;

impl Registry {
    /// Applies `applied` as `opts.field_manager`, creating the object if it does not exist.
    pub(super) async fn server_side_apply(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        applied: &Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let manager = opts.field_manager.as_deref().filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::bad_request("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
        })?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("the applied configuration must be a JSON object"));
        }
        if meta_str(applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(applied, "name").unwrap_or("")
            )));
        }
        let schema = self.openapi.kind_schema(def.group, def.version, def.kind);
        let api_version = def.api_version();
        let tracked = WriteOptions {
            fields_precomputed: true,
            ..opts.clone()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = match self.current(def, ns, name).await {
                Ok(found) => Some(found),
                Err(e) if e.code == 404 && sub.is_none() => None,
                Err(e) => return Err(e),
            };
            let options = kate_patch::ApplyOptions {
                manager,
                force: opts.force,
                api_version: &api_version,
                now: &meta::now(),
                subresource: sub.map(Subresource::name),
                status_subresource: def.has(Subresource::Status),
            };
            let mut merged = kate_patch::apply(
                live.as_ref().map(|(_, obj)| obj),
                applied,
                &options,
                schema.as_ref().map(schema_node),
            )
            .map_err(|e| apply_error(def, name, e))?;
            let result = match live {
                None => {
                    meta::meta_mut(&mut merged)
                        .entry("name")
                        .or_insert_with(|| Value::String(name.into()));
                    self.create(def, ns, merged, &tracked).await
                }
                Some((kv, current)) => {
                    meta::check_type(def, &mut merged, def.kind, &api_version)?;
                    self.replace(def, ns, name, merged, kv.mod_revision, &current, sub, &tracked)
                        .await
                }
            };
            // A 409 here means the object moved (or appeared) since it was read: apply again.
            match result {
                Err(e) if e.code == 409 && attempt < MAX_RETRIES => continue,
                other => return other,
            }
        }
    }
}

/// Turns an apply failure into upstream's answer: 409 with one cause per conflicting field.
fn apply_error(def: &ResourceDef, name: &str, e: kate_patch::ApplyError) -> ApiError {
    match &e {
        kate_patch::ApplyError::Conflicts(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict",
                    message: c.message(),
                    field: c.field.clone(),
                })
                .collect();
            let mut err = ApiError::invalid(def.group, def.kind, name, causes);
            err.code = 409;
            err.reason = "Conflict";
            err.message = e.to_string();
            err
        }
        kate_patch::ApplyError::Invalid(why) => ApiError::bad_request(why.clone()),
    }
}
