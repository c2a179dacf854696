//! Create, update and delete: defaulting, validation, optimistic concurrency, status/spec split,
//! finalizers and graceful deletion.

use std::sync::Arc;

use kate_store::{KeyValue, Revision};
use serde_json::{Value, json};

use super::Registry;
use super::meta::{self, meta_str};
use crate::catalog::{ResourceDef, Subresource};
use crate::error::{ApiError, Cause};
use crate::strategy::validation;
use crate::watchcache::{Cached, Stored, decode};

/// The manager of writes the server makes itself.
const DEFAULT_MANAGER: &str = "kube-apiserver";

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the server default).
    #[default]
    Warn,
    /// Refuse the request with 400.
    Strict,
}

/// Options common to every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: do everything but persist.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `fieldManager` (for requests without one, the client's user-agent name).
    pub field_manager: Option<String>,
    /// `force`: server-side apply takes fields other managers own.
    pub force: bool,
    /// Set by server-side apply, which computes managedFields itself.
    pub(crate) fields_precomputed: bool,
}

/// The outcome of a write.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, on a dry run).
    pub object: Arc<Cached>,
    /// Whether the write created the object (201 rather than 200).
    pub created: bool,
    /// Whether it stored a new revision: not a dry run, nor a write that changed nothing.
    pub stored: bool,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
}

/// `DeleteOptions` that affect the server.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl Registry {
    /// Checks shape, unknown fields and kind validation; returns warnings for dropped fields.
    fn admit(
        &self,
        def: &ResourceDef,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        def.strategy
            .decode_check(obj)
            .map_err(|e| ApiError::bad_request(format!("error decoding {}: {e}", def.kind)))?;
        let mut warnings = Vec::new();
        if opts.field_validation != FieldValidation::Ignore
            && let Some(schema) = self.openapi.kind_schema(def.group, def.version, def.kind)
        {
            let unknown = kate_openapi::unknown_fields(&schema, obj);
            if !unknown.is_empty() && opts.field_validation == FieldValidation::Strict {
                let listed: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    listed.join(", ")
                )));
            }
            warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
        }
        def.strategy.default(obj);
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let mut causes: Vec<Cause> = validation::validate_name(&name, def.strategy.name_rule());
        causes.extend(validation::validate_labels(obj));
        causes.extend(def.strategy.validate(obj, old));
        if !causes.is_empty() {
            return Err(ApiError::invalid(def.group, def.kind, &name, causes));
        }
        Ok(warnings)
    }

    /// Creates an object from a request body.
    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        meta::check_type(def, &mut obj, def.kind, &def.api_version())?;
        meta::check_namespace(def, &mut obj, ns)?;
        meta::generate_name(&mut obj);
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                def.group,
                def.kind,
                "",
                vec![Cause::required("metadata.name")],
            ));
        }
        if let Some(ns) = ns.filter(|_| def.namespaced) {
            self.check_namespace_open(ns).await?;
        }
        meta::init_system_fields(def, &mut obj);
        crate::priority::admit(self, def, &mut obj).await?;
        if def.has(Subresource::Status)
            && def.strategy.reset_status_on_create()
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        let _allocation = self.allocate(def, &mut obj, None).await?;
        let warnings = self.admit(def, &mut obj, None, opts)?;
        def.strategy.prepare_create(&mut obj);
        self.track(def, None, &mut obj, None, opts);
        if opts.dry_run {
            if self.cache.get(&def.key(ns, &name)).is_some() {
                return Err(ApiError::already_exists(def.group, def.plural, &name));
            }
            return Ok(Written {
                object: Cached::new(obj),
                created: true,
                stored: false,
                warnings,
            });
        }
        let key = def.key(ns, &name);
        let (_, object) = self.put(def, &key, obj, None).await?.map_err(|e| match e {
            kate_store::Error::AlreadyExists(_) => ApiError::already_exists(def.group, def.plural, &name),
            other => other.into(),
        })?;
        Ok(Written {
            object,
            created: true,
            stored: true,
            warnings,
        })
    }

    /// Reads the authoritative current value of an object from the store.
    pub(super) async fn current(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(KeyValue, Value), ApiError> {
        let kv = self
            .store
            .get(&def.key(ns, name))
            .await?
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))?;
        let obj = decode(&kv.value, kv.mod_revision);
        let obj = match &def.view {
            Some(view) => (view.read)(&obj),
            None => obj,
        };
        Ok((kv, obj))
    }

    /// Replaces an object (PUT), or its status with `sub = Some(Status)`.
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        meta::check_type(def, &mut obj, def.kind, &def.api_version())?;
        meta::check_namespace(def, &mut obj, ns)?;
        let body_name = meta_str(&obj, "name").unwrap_or("");
        if body_name.is_empty() {
            meta::meta_mut(&mut obj).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let (kv, current) = self.current(def, ns, name).await?;
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty())
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::modified(def.group, def.plural, name));
        }
        self.replace(def, ns, name, obj, kv.mod_revision, &current, sub, opts)
            .await
    }

    /// Writes `obj` over `current` (read at `revision`), with compare-and-swap on that revision.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn replace(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        revision: Revision,
        current: &Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        match sub {
            Some(Subresource::Finalize) => {
                let mut merged = current.clone();
                merged["spec"]["finalizers"] = obj.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
                obj = merged;
            }
            Some(Subresource::Status) => {
                let status = obj.get("status").cloned();
                let mut merged = current.clone();
                match status {
                    Some(s) => merged["status"] = s,
                    None => {
                        if let Some(m) = merged.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                obj = merged;
            }
            _ if def.has(Subresource::Status) => match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            _ => {}
        }
        meta::carry_system_fields(def, &mut obj, current);
        let _allocation = self.allocate(def, &mut obj, Some(current)).await?;
        let warnings = self.admit(def, &mut obj, Some(current), opts)?;
        self.track(def, Some(current), &mut obj, sub, opts);
        if meta::same_content(&obj, current) {
            return Ok(Written {
                object: Cached::new(current.clone()),
                created: false,
                stored: false,
                warnings,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: Cached::new(obj),
                created: false,
                stored: false,
                warnings,
            });
        }
        let key = def.key(ns, name);
        if meta::is_deleting(&obj) && meta::finalized(def, &obj) {
            let gone = self
                .store
                .delete(&key, revision)
                .await
                .map_err(|e| self.cas_error(def, name, e))?;
            self.wrote(gone.mod_revision);
            return Ok(Written {
                object: Cached::new(meta::with_revision(obj, gone.mod_revision)),
                created: false,
                stored: true,
                warnings,
            });
        }
        let (_, object) = self
            .put(def, &key, obj, Some(revision))
            .await?
            .map_err(|e| self.cas_error(def, name, e))?;
        Ok(Written {
            object,
            created: false,
            stored: true,
            warnings,
        })
    }

    /// Records in managedFields which fields this write's manager now owns.
    fn track(
        &self,
        def: &ResourceDef,
        old: Option<&Value>,
        obj: &mut Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) {
        if opts.fields_precomputed {
            return;
        }
        let schema = self.openapi.kind_schema(def.group, def.version, def.kind);
        let options = kate_patch::UpdateOptions {
            manager: opts.field_manager.as_deref().unwrap_or(DEFAULT_MANAGER),
            api_version: &def.api_version(),
            now: &meta::now(),
            subresource: sub.map(Subresource::name),
            status_subresource: def.has(Subresource::Status),
        };
        kate_patch::record_update(old, obj, &options, schema.as_ref().map(super::patch::schema_node));
    }

    pub(super) fn cas_error(&self, def: &ResourceDef, name: &str, e: kate_store::Error) -> ApiError {
        match e {
            kate_store::Error::Conflict { .. } => ApiError::modified(def.group, def.plural, name),
            kate_store::Error::NotFound(_) => ApiError::not_found(def.group, def.plural, name),
            other => other.into(),
        }
    }

    /// Deletes an object, or marks it for deletion when finalizers or a grace period hold it.
    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        loop {
            let (kv, current) = self.current(def, ns, name).await?;
            if let Some(uid) = &opts.precondition_uid
                && meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let mut next = current.clone();
            let mut finalizers = meta::finalizers(&current);
            let policy_finalizer = match opts.propagation.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Background") | None => None,
                Some(other) => {
                    return Err(ApiError::invalid(
                        def.group,
                        def.kind,
                        name,
                        vec![Cause::not_supported(
                            "propagationPolicy",
                            &json!(other),
                            &["Foreground", "Background", "Orphan"],
                        )],
                    ));
                }
            };
            if let Some(f) = policy_finalizer.filter(|f| !finalizers.iter().any(|x| x == f)) {
                finalizers.push(f.to_string());
            }
            let grace = self.grace_period(def, &current, opts);
            let hold = !finalizers.is_empty() || grace > 0 || !meta::finalized(def, &current);
            if !hold {
                if opts.dry_run {
                    return Ok(current);
                }
                match self.store.delete(&kv.key, kv.mod_revision).await {
                    Ok(gone) => {
                        self.wrote(gone.mod_revision);
                        return Ok(current);
                    }
                    Err(kate_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(self.cas_error(def, name, e)),
                }
            }
            let meta = meta::meta_mut(&mut next);
            if !meta::is_deleting(&current) {
                let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else if grace
                < meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            {
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
            if def.plural == "namespaces" {
                next["status"] = json!({"phase": "Terminating"});
            }
            if next == current || opts.dry_run {
                return Ok(next);
            }
            match self.put(def, &kv.key, next.clone(), Some(kv.mod_revision)).await? {
                Ok((stored, _)) => return Ok(meta::with_revision(next, stored.mod_revision)),
                Err(kate_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.cas_error(def, name, e)),
            }
        }
    }

    /// The grace period a deletion waits: only pods bound to a node get one, since only a
    /// kubelet can confirm their containers stopped.
    fn grace_period(&self, def: &ResourceDef, obj: &Value, opts: &DeleteOptions) -> i64 {
        if def.plural != "pods"
            || obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return 0;
        }
        if obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            return 0;
        }
        opts.grace_period
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0)
    }
}

/// Serializes an object for the store, first dropping its resourceVersion (the store's revision
/// is it).
pub(super) fn encode(def: &ResourceDef, obj: &mut Value) -> Result<Stored, ApiError> {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Ok(Stored::encode(&def.stored_form(obj)))
}
