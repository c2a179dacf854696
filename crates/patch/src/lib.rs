//! Server-side write engines for kate's apiserver: RFC 7386 JSON merge patch, RFC 6902 JSON
//! patch, Kubernetes strategic merge patch and server-side apply, each turning a stored object
//! plus a request body into the new object, and the managed-fields bookkeeping
//! (`metadata.managedFields`) that every write updates. They exist as a separate crate because
//! kubectl (`apply`, `apply --server-side`, `edit`, `patch`, `set image`, `rollout restart`)
//! relies on the exact upstream semantics — list merging by key, `$patch`/`$setElementOrder`/
//! `$retainKeys`/`$deleteFromPrimitiveList` directives, field ownership and apply conflicts —
//! and those rules are easiest to get right, and to test, away from HTTP handling. Everything
//! works on `serde_json::Value`; the list and map metadata comes from the OpenAPI v3 schema the
//! apiserver already publishes.

mod apply;
mod error;
mod json;
mod schema;
mod strategic;

#[cfg(test)]
mod proptests;

pub use apply::{ApplyError, ApplyOptions, Conflict, Operation, UpdateOptions, apply, record_update};
pub use error::PatchError;
pub use json::{json_merge, json_patch};
pub use schema::SchemaNode;
pub use strategic::strategic_merge;
