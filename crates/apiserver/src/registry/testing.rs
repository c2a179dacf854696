//! What the registry's tests share: a registry over a fresh SQLite store.

use std::sync::Arc;

use super::Registry;
use crate::catalog::Catalog;
use crate::watchcache::WatchCache;

/// A bootstrapped registry with its store in `dir`, and the runtime to drive it.
pub(super) fn registry(dir: &std::path::Path) -> (tokio::runtime::Runtime, Arc<Registry>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = rt.block_on(async {
        let store: Arc<dyn kate_store::Store> =
            Arc::new(kate_store::sqlite::SqliteStore::open(&dir.join(DB)).expect("store"));
        let cache = WatchCache::start(store.clone(), std::time::Duration::from_secs(60))
            .await
            .expect("cache");
        let catalog = Arc::new(Catalog::builtin());
        let openapi = Arc::new(kate_openapi::OpenApi::new(crate::api_resources(&catalog)));
        let registry = Arc::new(Registry::new(store, cache, catalog, openapi));
        crate::bootstrap::run(&registry, "127.0.0.1".parse().expect("ip"), 6443)
            .await
            .expect("bootstrap");
        registry
    });
    (rt, registry)
}

/// The store's file name in the directory.
pub(super) const DB: &str = "db";
