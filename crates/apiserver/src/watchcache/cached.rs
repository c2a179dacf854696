//! An object as the cache holds it: parsed, and serialized to JSON once, on first need, for
//! every response and watcher that sends it as it is. An object this server writes is
//! serialized once for the store ([`Stored`]); its served JSON is those bytes with the
//! resourceVersion spliced in, and it is parsed only if someone needs the value.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use kate_store::Revision;
use serde_json::{Map, Value};

/// A cached object: its value, its JSON, or both; whichever is missing is made from the other
/// on first need.
#[derive(Debug)]
pub struct Cached {
    value: OnceLock<Value>,
    json: OnceLock<Json>,
}

/// The object's JSON, and where `metadata.managedFields` sits in it (with one adjoining comma),
/// so that the object without them is two slices of the same bytes.
#[derive(Debug, Default, Clone)]
struct Json {
    bytes: Vec<u8>,
    managed_fields: Range<usize>,
    /// Where the metadata object's closing brace is, if the object has metadata.
    metadata_end: Option<usize>,
}

/// An object serialized as the store keeps it, without a resourceVersion.
#[derive(Debug, Clone)]
pub struct Stored(Json);

impl Stored {
    /// Serializes `value`, which must hold no resourceVersion.
    pub fn encode(value: &Value) -> Stored {
        Stored(serialize(value))
    }

    /// The bytes to store.
    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The JSON served at `revision`: the resourceVersion goes last in the metadata, where
    /// [`super::stamp`] puts it in the value.
    fn served(&self, revision: Revision) -> Json {
        let json = &self.0;
        let Some(end) = json.metadata_end else {
            return json.clone();
        };
        let mut bytes = Vec::with_capacity(json.bytes.len() + 40);
        bytes.extend_from_slice(&json.bytes[..end]);
        if json.bytes[end - 1] != b'{' {
            bytes.push(b',');
        }
        bytes.extend_from_slice(b"\"resourceVersion\":\"");
        bytes.extend_from_slice(revision.to_string().as_bytes());
        bytes.push(b'"');
        let metadata_end = bytes.len();
        bytes.extend_from_slice(&json.bytes[end..]);
        let mut managed_fields = json.managed_fields.clone();
        if !managed_fields.is_empty() && managed_fields.end == end && json.bytes[managed_fields.start - 1] == b'{' {
            // They were the only entry; now they take the comma before the resourceVersion.
            managed_fields.end += 1;
        }
        Json {
            bytes,
            managed_fields,
            metadata_end: Some(metadata_end),
        }
    }
}

impl Cached {
    /// Wraps a parsed object.
    pub fn new(value: Value) -> Arc<Cached> {
        Arc::new(Cached {
            value: OnceLock::from(value),
            json: OnceLock::new(),
        })
    }

    /// The object stored as `stored` at `revision`, with its value as written (without a
    /// resourceVersion) if the caller still has it.
    pub fn stamped(value: Option<Value>, stored: &Stored, revision: Revision) -> Arc<Cached> {
        Arc::new(Cached {
            value: value
                .map(|v| super::stamp(v, revision))
                .map_or_else(OnceLock::new, OnceLock::from),
            json: OnceLock::from(stored.served(revision)),
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
        // Every constructor sets the value or the JSON, so one of the two is always there.
        self.json.get_or_init(|| serialize(self))
    }
}

impl std::ops::Deref for Cached {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value.get_or_init(|| {
            let json = self.json.get().map_or(&[][..], |j| &j.bytes[..]);
            serde_json::from_slice(json).unwrap_or(Value::Null)
        })
    }
}

/// Serializes `value` exactly as `serde_json::to_vec` does, noting where its managedFields are.
fn serialize(value: &Value) -> Json {
    let Value::Object(fields) = value else {
        return Json {
            bytes: serde_json::to_vec(value).unwrap_or_default(),
            managed_fields: 0..0,
            metadata_end: None,
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
    out.metadata_end = Some(out.bytes.len());
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

    #[test]
    fn served_json_is_the_stored_bytes_with_the_resource_version_spliced_in() {
        let managed = json!([{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]);
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "a", "managedFields": managed, "uid": "u"}, "spec": {}}),
            json!({"metadata": {"managedFields": managed}}),
            json!({"metadata": {}, "data": {"metadata": {}}}),
            json!({"kind": "List", "items": [], "metadata": 3}),
            json!({"data": 1}),
        ];
        for object in objects {
            let stored = Stored::encode(&object);
            assert_eq!(stored.bytes(), serde_json::to_vec(&object).unwrap(), "{object}");
            let served = Cached::stamped(None, &stored, 42);
            let expected = crate::watchcache::stamp(object.clone(), 42);
            assert_eq!(
                String::from_utf8_lossy(served.json()),
                String::from_utf8_lossy(&serde_json::to_vec(&expected).unwrap()),
            );
            assert_eq!(**served, expected, "the value is parsed back from the JSON");
            let trimmed = served.json_without_managed_fields().concat();
            let expected = serde_json::to_vec(&without_managed_fields(&expected)).unwrap();
            assert_eq!(
                String::from_utf8(trimmed).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
