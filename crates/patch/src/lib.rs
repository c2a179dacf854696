//! Server-side patch engines for kate's apiserver: RFC 7386 JSON merge patch, RFC 6902 JSON
//! patch and Kubernetes strategic merge patch, each turning a stored object plus a PATCH body
//! into the new object. They exist as a separate crate because kubectl (`apply`, `edit`,
//! `patch`, `set image`, `rollout restart`) relies on the exact upstream semantics — list
//! merging by key, `$patch`/`$setElementOrder`/`$retainKeys`/`$deleteFromPrimitiveList`
//! directives and the resulting element order — and those rules are easiest to get right, and
//! to test, away from HTTP handling. Everything works on `serde_json::Value`; the patch metadata
//! for strategic merge comes from the OpenAPI v3 schema the apiserver already publishes.

mod error;
mod json;
mod strategic;

#[cfg(test)]
mod proptests;

pub use error::PatchError;
pub use json::{json_merge, json_patch};
pub use strategic::{SchemaNode, strategic_merge};
