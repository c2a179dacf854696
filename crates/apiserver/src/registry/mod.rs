//! The generic registry: one implementation of get, list, create, update, patch and delete for
//! every kind, with the per-kind differences supplied by its [`Strategy`](crate::strategy::Strategy).

pub mod allocate;
mod apply;
mod binding;
mod list;
pub mod meta;
mod patch;
#[cfg(test)]
mod proptests;
mod scale;
#[cfg(test)]
mod testing;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kate_openapi::OpenApi;
use kate_store::{KeyValue, Revision, Store};
use serde_json::Value;

use crate::catalog::{Catalog, ResourceDef};
use crate::error::ApiError;
use crate::watchcache::{Cached, Stored, WatchCache};
pub use list::{ListOptions, ListResult};
pub use patch::PatchType;
pub use scale::scale_of;
pub use write::{DeleteOptions, FieldValidation, WriteOptions, Written};

/// The registry shared by all request handlers.
pub struct Registry {
    /// The persistent store.
    pub store: Arc<dyn Store>,
    /// The watch cache over the store.
    pub cache: Arc<WatchCache>,
    /// The served resources.
    pub catalog: Arc<Catalog>,
    /// The published schemas (patching and unknown-field checks use them too).
    pub openapi: Arc<OpenApi>,
    /// Service cluster IPs and node ports.
    services: allocate::ServiceAllocator,
    /// Held from allocation until the write lands, so two services never get one address.
    allocation: tokio::sync::Mutex<()>,
    /// The newest revision this server wrote: reads wait for the cache to reach it, so a client
    /// always reads its own writes.
    last_write: AtomicI64,
}

impl Registry {
    /// A registry over `store` and its watch cache.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<WatchCache>,
        catalog: Arc<Catalog>,
        openapi: Arc<OpenApi>,
    ) -> Registry {
        let last_write = AtomicI64::new(cache.revision());
        let (network, prefix) = allocate::DEFAULT_SERVICE_CIDR;
        Registry {
            store,
            cache,
            catalog,
            openapi,
            services: allocate::ServiceAllocator::new(network, prefix),
            allocation: tokio::sync::Mutex::new(()),
            last_write,
        }
    }

    fn wrote(&self, revision: Revision) {
        self.last_write.fetch_max(revision, Ordering::SeqCst);
    }

    /// The watch cache's copy of the object under `key` and the revision it is at, for a write
    /// that tries it before reading the store: the copy may be behind, which the write's
    /// compare-and-swap detects. None when the stored form is not the one served.
    fn cached(&self, def: &ResourceDef, key: &str) -> Option<(Revision, Arc<Cached>)> {
        if def.view.is_some() {
            return None;
        }
        let obj = self.cache.get(key)?;
        let revision = obj.revision()?;
        Some((revision, obj))
    }

    /// [`Registry::cached`], copied for a write to change.
    fn cached_copy(&self, def: &ResourceDef, key: &str) -> Option<(Revision, Value)> {
        self.cached(def, key).map(|(revision, obj)| (revision, obj.to_value()))
    }

    /// Stores `obj` under `key`: a new key with `expected` None, else in place of the value at
    /// revision `expected`; returns what was stored and the object as served. The object is
    /// serialized once: the watch cache is handed those bytes, to spare it parsing them back,
    /// and the served JSON is the same bytes with the resourceVersion spliced in, when the
    /// stored form is the one served.
    async fn put(
        &self,
        def: &ResourceDef,
        key: &str,
        mut obj: Value,
        expected: Option<Revision>,
    ) -> Result<Result<(KeyValue, Arc<Cached>), kate_store::Error>, ApiError> {
        let stored = write::encode(def, &mut obj)?;
        // A resource with a view serves the object as written, not its stored form.
        let served = def.view.is_some().then_some(obj);
        self.put_stored(def, key, stored, served, expected).await
    }

    /// [`Registry::put`] of an object already encoded as `stored`; `served` is the object as
    /// served when that is not the stored form. The cache keeps the object as JSON and parses
    /// it only when someone needs its value.
    async fn put_stored(
        &self,
        def: &ResourceDef,
        key: &str,
        stored: Stored,
        served: Option<Value>,
        expected: Option<Revision>,
    ) -> Result<Result<(KeyValue, Arc<Cached>), kate_store::Error>, ApiError> {
        let bytes = stored.bytes().to_vec();
        if def.view.is_none() {
            self.cache.offer(key, stored.clone());
        }
        let written = match expected {
            None => self.store.create(key, bytes).await,
            Some(revision) => self.store.update(key, bytes, revision).await,
        };
        match written {
            Ok(kv) => {
                self.wrote(kv.mod_revision);
                let object = match served {
                    Some(obj) => Cached::new(meta::with_revision(obj, kv.mod_revision)),
                    None => def.shown(Cached::stamped(&stored, kv.mod_revision)),
                };
                Ok(Ok((kv, object)))
            }
            Err(e) => {
                self.cache.withdraw(key);
                Ok(Err(e))
            }
        }
    }

    /// Waits until the cache holds every write this server has acknowledged.
    pub async fn sync(&self) -> Revision {
        let target = self.last_write.load(Ordering::SeqCst);
        self.cache.wait_for(target).await;
        self.cache.revision()
    }

    /// Reads one object (from the cache, after catching up with this server's writes).
    pub async fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Result<Arc<Cached>, ApiError> {
        self.sync().await;
        self.cache
            .get(&def.key(ns, name))
            .map(|obj| def.shown(obj))
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))
    }

    /// The address the `kubernetes` service gets.
    pub fn apiserver_service_ip(&self) -> std::net::Ipv4Addr {
        self.services.first()
    }

    /// Assigns service addresses; the returned guard must be held until the write is stored.
    async fn allocate(
        &self,
        def: &ResourceDef,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, ApiError> {
        if !(def.group.is_empty() && def.plural == "services") {
            return Ok(None);
        }
        let guard = self.allocation.lock().await;
        self.sync().await;
        let (existing, _) = self.cache.list(&def.key_prefix());
        let name = meta::meta_str(obj, "name").unwrap_or("").to_string();
        self.services
            .assign(obj, old, &existing)
            .map_err(|causes| allocate::invalid(&name, causes))?;
        Ok(Some(guard))
    }

    /// Whether the namespace exists and is not terminating, as creates in it require.
    async fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let key = format!("/registry/namespaces/{ns}");
        // The common case (an open namespace already in the cache) needs no wait; only a miss
        // or a terminating namespace is worth catching up on this server's own writes for.
        let cached = match self.cache.get(&key) {
            Some(obj) if !meta::is_deleting(&obj) => Some(obj),
            _ => {
                self.sync().await;
                self.cache.get(&key)
            }
        };
        match cached {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(obj)
                if meta::is_deleting(&obj) || obj.pointer("/status/phase") == Some(&Value::from("Terminating")) =>
            {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }
}
