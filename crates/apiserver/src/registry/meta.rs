//! Object metadata bookkeeping shared by every write: system fields, names, generations.

use serde_json::{Map, Value, json};

use crate::catalog::ResourceDef;
use crate::error::ApiError;

/// The current time as upstream's RFC 3339 seconds-precision timestamp.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata` of an object as a map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// A string field of metadata.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Checks the body's `apiVersion`/`kind` against the URL and fills them in when absent.
pub fn check_type(
    def: &ResourceDef,
    obj: &mut Value,
    expect_kind: &str,
    expect_api_version: &str,
) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    if map.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::bad_request("metadata must be a JSON object"));
    }
    if let Some(v) = map.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty())
        && v != expect_api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({expect_api_version})"
        )));
    }
    if let Some(k) = map.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty())
        && k != expect_kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({expect_kind}) for {}",
            def.qualified()
        )));
    }
    map.insert("apiVersion".into(), json!(expect_api_version));
    map.insert("kind".into(), json!(expect_kind));
    Ok(())
}

/// Puts the URL namespace into the object, refusing a body that names another one.
pub fn check_namespace(def: &ResourceDef, obj: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    let meta = meta_mut(obj);
    match (def.namespaced, ns) {
        (true, Some(ns)) => {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            meta.insert("namespace".into(), json!(ns));
        }
        (true, None) => {
            return Err(ApiError::bad_request("a namespace is required for this resource"));
        }
        (false, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// Resolves `generateName` into a name with five random characters, as upstream does.
pub fn generate_name(obj: &mut Value) {
    let meta = meta_mut(obj);
    let has_name = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let Some(base) = meta.get("generateName").and_then(Value::as_str).filter(|_| !has_name) else {
        return;
    };
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let prefix: String = base.chars().take(63 - 5).collect();
    meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
}

/// Sets the fields only the server may set on a new object.
pub fn init_system_fields(def: &ResourceDef, obj: &mut Value) {
    let meta = meta_mut(obj);
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    if def.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
}

/// Carries the server-owned metadata of `old` into `new` on an update, and bumps the
/// generation when anything outside metadata and status changed.
pub fn carry_system_fields(def: &ResourceDef, new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_default();
    let generation = if def.generation {
        let old_gen = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
        Some(if spec_view(new) != spec_view(old) {
            old_gen + 1
        } else {
            old_gen
        })
    } else {
        None
    };
    let meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("selfLink");
    if let Some(g) = generation {
        meta.insert("generation".into(), json!(g));
    }
}

/// The object without metadata and status: what the generation tracks.
fn spec_view(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// Equality ignoring resourceVersion, used to skip no-op writes (upstream does not bump the
/// revision for them).
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        c
    };
    strip(a) == strip(b)
}

/// The object as stored at `revision`: its resourceVersion set to it.
pub fn with_revision(mut obj: Value, revision: kate_store::Revision) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
    obj
}

/// The finalizers on an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Whether nothing holds the object any more: no finalizers (and, for namespaces, no
/// `spec.finalizers`, which the namespace controller clears once the namespace is empty).
pub fn finalized(def: &ResourceDef, obj: &Value) -> bool {
    let spec_finalizers = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    finalizers(obj).is_empty() && !(def.plural == "namespaces" && spec_finalizers)
}

/// Whether deletion of the object has begun.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn generation_tracks_spec_only() {
        let catalog = Catalog::builtin();
        let def = catalog.find("apps", "v1", "deployments").unwrap();
        let old =
            json!({"metadata": {"generation": 3, "uid": "u"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut status_only = json!({"metadata": {}, "spec": {"replicas": 1}, "status": {"replicas": 2}});
        carry_system_fields(def, &mut status_only, &old);
        assert_eq!(status_only["metadata"]["generation"], 3);
        assert_eq!(status_only["metadata"]["uid"], "u");
        let mut scaled = json!({"metadata": {}, "spec": {"replicas": 2}});
        carry_system_fields(def, &mut scaled, &old);
        assert_eq!(scaled["metadata"]["generation"], 4);
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        generate_name(&mut obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9);
    }
}
