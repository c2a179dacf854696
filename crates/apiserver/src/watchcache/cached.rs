//! An object as the cache holds it: parsed, and serialized to JSON once, on first need, for
//! every response and watcher that sends it as it is.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// A cached object.
#[derive(Debug)]
pub struct Cached {
    value: Value,
    json: OnceLock<Json>,
}

/// The object's JSON, and where `metadata.managedFields` sits in it (with one adjoining comma),
/// so that the object without them is two slices of the same bytes.
#[derive(Debug, Default)]
struct Json {
    bytes: Vec<u8>,
    managed_fields: Range<usize>,
}

impl Cached {
    /// Wraps a parsed object.
    pub fn new(value: Value) -> Arc<Cached> {
        Arc::new(Cached {
            value,
            json: OnceLock::new(),
        })
    }

    /// The object's JSON.
    pub fn json(&self) -> &[u8] {
        &self.serialized().bytes
    }

    /// The object's JSON without `metadata.managedFields`, as the two parts to send one after
    /// the other.
    pub fn json_without_managed_fields(&self) -> [&[u8]; 2] {
        let json = self.serialized();
        [
            &json.bytes[..json.managed_fields.start],
            &json.bytes[json.managed_fields.end..],
        ]
    }

    fn serialized(&self) -> &Json {
        self.json.get_or_init(|| serialize(&self.value))
    }
}

impl std::ops::Deref for Cached {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// Serializes `value` exactly as `serde_json::to_vec` does, noting where its managedFields are.
fn serialize(value: &Value) -> Json {
    let Value::Object(fields) = value else {
        return Json {
            bytes: serde_json::to_vec(value).unwrap_or_default(),
            managed_fields: 0..0,
        };
    };
    let mut out = Json::default();
    out.bytes.push(b'{');
    for (i, (name, field)) in fields.iter().enumerate() {
        if i > 0 {
            out.bytes.push(b',');
        }
        entry(&mut out.bytes, name);
        match (name.as_str(), field) {
            ("metadata", Value::Object(meta)) => metadata(&mut out, meta),
            _ => write(&mut out.bytes, field),
        }
    }
    out.bytes.push(b'}');
    out
}

fn metadata(out: &mut Json, meta: &Map<String, Value>) {
    out.bytes.push(b'{');
    for (i, (name, field)) in meta.iter().enumerate() {
        let start = out.bytes.len();
        if i > 0 {
            out.bytes.push(b',');
        }
        entry(&mut out.bytes, name);
        write(&mut out.bytes, field);
        if name == "managedFields" {
            // The first entry takes the comma that the next one starts with.
            let comma = usize::from(i == 0 && meta.len() > 1);
            out.managed_fields = start..out.bytes.len() + comma;
        }
    }
    out.bytes.push(b'}');
}

/// Writes `"name":`.
fn entry(out: &mut Vec<u8>, name: &str) {
    write(out, name);
    out.push(b':');
}

fn write(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing JSON into a Vec fails only for non-string map keys, which a Value cannot have.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn without_managed_fields(value: &Value) -> Value {
        let mut value = value.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
        }
        value
    }

    #[test]
    fn json_matches_serde_with_and_without_managed_fields() {
        let managed = json!([{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]);
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "a", "managedFields": managed, "uid": "u"}, "spec": {}}),
            json!({"metadata": {"managedFields": managed, "name": "a"}}),
            json!({"metadata": {"name": "a", "managedFields": managed}}),
            json!({"metadata": {"managedFields": managed}}),
            json!({"metadata": {"name": "a"}, "data": {"metadata": {"managedFields": 1}}}),
            json!({"kind": "List", "items": [], "metadata": 3}),
            json!([1, {"metadata": {}}]),
            json!("text \"quoted\" \u{1}"),
        ];
        for object in objects {
            let cached = Cached::new(object.clone());
            assert_eq!(cached.json(), serde_json::to_vec(&object).unwrap(), "{object}");
            let trimmed = cached.json_without_managed_fields().concat();
            let expected = serde_json::to_vec(&without_managed_fields(&object)).unwrap();
            assert_eq!(
                String::from_utf8(trimmed).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
