//! An object as the cache holds it: parsed, and serialized to JSON once, on first need, for
//! every response and watcher that sends it as it is. An object this server writes is
//! serialized once for the store ([`Stored`]); its served JSON is those bytes with the
//! resourceVersion spliced in, and it is parsed only if someone needs the value. A write that
//! sets a few fields of a cached object (a binding) copies the rest of its JSON as it lies.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use kate_store::Revision;
use serde_json::{Map, Value};

use super::raw::{RawField, RawObject};

/// A cached object: its value, its JSON, or both; whichever is missing is made from the other
/// on first need.
#[derive(Debug)]
pub struct Cached {
    value: OnceLock<Value>,
    json: OnceLock<Json>,
}

/// The object's JSON, and where `metadata.managedFields` sits in it (with one adjoining comma),
/// so that the object without them is two slices of the same bytes.
#[derive(Debug, Clone)]
struct Json {
    bytes: Vec<u8>,
    managed_fields: Range<usize>,
    /// Where the metadata object's closing brace is, if the object has metadata.
    metadata_end: Option<usize>,
    /// The resourceVersion spliced into the metadata, if these bytes were served that way.
    revision: Option<Revision>,
}

/// An object serialized as the store keeps it, without a resourceVersion.
#[derive(Debug, Clone)]
pub struct Stored(Json);

/// A field to set while serializing: its path of object keys and its new value.
pub type Set<'a> = (&'a [&'a str], &'a Value);

impl Stored {
    /// Serializes `value`, which must hold no resourceVersion.
    pub fn encode(value: &Value) -> Stored {
        Stored(serialize(value))
    }

    /// Writes `object` as if each of `sets` had been written into it first (a path of object
    /// keys, created where missing and then appended last, as indexing a `Value` would; no path
    /// may lie within another, nor in the metadata, whose layout the cache keeps track of) and
    /// its resourceVersion removed: a write that changes a few fields of a cached object
    /// copies the rest of its JSON as it lies, without parsing it.
    pub fn splice<'a>(object: &'a RawObject<'a>, sets: &[Set<'_>]) -> Stored {
        Stored(serialize_fields(&raw(object), sets, true))
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
            revision: Some(revision),
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

    /// The object stored as `stored` at `revision`, as JSON only: a write's value is dropped
    /// once it is stored, as most objects are only ever sent on, never read again.
    pub fn stamped(stored: &Stored, revision: Revision) -> Arc<Cached> {
        Arc::new(Cached {
            value: OnceLock::new(),
            json: OnceLock::from(stored.served(revision)),
        })
    }

    /// The value at `path` (object keys only): borrowed from the parsed object if there is
    /// one, else picked out of the JSON without parsing the whole object.
    pub fn at<S: AsRef<str>>(&self, path: &[S]) -> Option<Cow<'_, Value>> {
        match self.value.get() {
            Some(value) => path
                .iter()
                .try_fold(value, |v, step| v.get(step.as_ref()))
                .map(Cow::Borrowed),
            None => super::pick::pick(self.json(), path).map(Cow::Owned),
        }
    }

    /// The object's resourceVersion, known without reading the object when the cache spliced
    /// it in.
    pub fn revision(&self) -> Option<Revision> {
        if let Some(revision) = self.json.get().and_then(|json| json.revision) {
            return Some(revision);
        }
        self.at(&["metadata", "resourceVersion"])?.as_str()?.parse().ok()
    }

    /// The object for a write to read: borrowed if it is parsed, else parsed for the caller
    /// alone, so that the cache does not keep a parsed copy beside the JSON.
    pub fn read(&self) -> Cow<'_, Value> {
        match self.value.get() {
            Some(value) => Cow::Borrowed(value),
            None => Cow::Owned(self.parse()),
        }
    }

    /// An owned copy of the object, for a write to change (see [`Cached::read`]).
    pub fn to_value(&self) -> Value {
        self.read().into_owned()
    }

    /// Whether the object has been parsed.
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        self.value.get().is_some()
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

    /// Parses the JSON, which is there whenever the value is not.
    fn parse(&self) -> Value {
        let json = self.json.get().map_or(&[][..], |j| &j.bytes[..]);
        serde_json::from_slice(json).unwrap_or(Value::Null)
    }

    fn serialized(&self) -> &Json {
        // Every constructor sets the value or the JSON, so one of the two is always there.
        self.json.get_or_init(|| serialize(self))
    }
}

impl std::ops::Deref for Cached {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value.get_or_init(|| self.parse())
    }
}

/// Serializes `value` exactly as `serde_json::to_vec` does, noting where its managedFields are.
fn serialize(value: &Value) -> Json {
    match value {
        Value::Object(fields) => serialize_fields(&parsed(fields), &[], false),
        other => Json {
            bytes: serde_json::to_vec(other).unwrap_or_default(),
            managed_fields: 0..0,
            metadata_end: None,
            revision: None,
        },
    }
}

/// A field's value as it is written: parsed, or JSON copied as it lies.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Parsed(&'a Value),
    Raw(&'a RawField<'a>),
}

/// An object's fields in their order.
type Fields<'a> = Vec<(Cow<'a, str>, Field<'a>)>;

impl<'a> Field<'a> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Field::Parsed(value) => write(out, value),
            Field::Raw(field) => out.extend_from_slice(field.raw.get().as_bytes()),
        }
    }

    /// The fields of the value, if it is an object.
    fn fields(self) -> Option<Fields<'a>> {
        match self {
            Field::Parsed(Value::Object(fields)) => Some(parsed(fields)),
            Field::Parsed(_) => None,
            Field::Raw(field) => field.object().map(raw),
        }
    }
}

/// The fields of a split object, to write.
fn raw<'a>(object: &'a RawObject<'a>) -> Fields<'a> {
    object
        .0
        .iter()
        .map(|field| (Cow::Borrowed(field.name.as_ref()), Field::Raw(field)))
        .collect()
}

/// The fields of a parsed object, to write.
fn parsed(fields: &Map<String, Value>) -> Fields<'_> {
    fields
        .iter()
        .map(|(name, value)| (Cow::Borrowed(name.as_str()), Field::Parsed(value)))
        .collect()
}

/// Writes an object of `fields` with `sets` written into it and, if `unversioned`, without
/// its resourceVersion.
fn serialize_fields(fields: &[(Cow<'_, str>, Field<'_>)], sets: &[Set<'_>], unversioned: bool) -> Json {
    debug_assert!(sets.iter().all(|(path, _)| path.first() != Some(&"metadata")));
    let mut bytes = Vec::new();
    let (mut managed_fields, mut metadata_end) = (0..0, None);
    write_object(&mut bytes, fields, sets, |out, name, field, below| {
        if name == "metadata"
            && let Some(meta) = field.fields()
        {
            (managed_fields, metadata_end) = metadata(out, &meta, unversioned);
        } else {
            write_set(out, field, below);
        }
    });
    Json {
        bytes,
        managed_fields,
        metadata_end,
        revision: None,
    }
}

/// Writes the metadata object, noting where its managedFields are and where it ends.
fn metadata(out: &mut Vec<u8>, meta: &[(Cow<'_, str>, Field<'_>)], unversioned: bool) -> (Range<usize>, Option<usize>) {
    let kept: Vec<&(Cow<'_, str>, Field<'_>)> = meta
        .iter()
        .filter(|(name, _)| !(unversioned && name == "resourceVersion"))
        .collect();
    let mut managed_fields = 0..0;
    out.push(b'{');
    for (i, (name, field)) in kept.iter().enumerate() {
        let start = out.len();
        if i > 0 {
            out.push(b',');
        }
        entry(out, name);
        field.write(out);
        if name == "managedFields" {
            // The first entry takes the comma that the next one starts with.
            let comma = usize::from(i == 0 && kept.len() > 1);
            managed_fields = start..out.len() + comma;
        }
    }
    let end = out.len();
    out.push(b'}');
    (managed_fields, Some(end))
}

/// The sets under key `name`, with that key taken off their paths.
fn below<'a>(sets: &[Set<'a>], name: &str) -> Vec<Set<'a>> {
    sets.iter()
        .filter_map(|(path, value)| match path.split_first() {
            Some((first, rest)) if *first == name => Some((rest, *value)),
            _ => None,
        })
        .collect()
}

/// Writes `field` with `sets` written into it: a set with an empty path replaces it, deeper
/// ones go into it (a field that is not an object becomes one).
fn write_set(out: &mut Vec<u8>, field: Field<'_>, sets: &[Set<'_>]) {
    if let Some((_, value)) = sets.iter().rev().find(|(path, _)| path.is_empty()) {
        return write(out, *value);
    }
    if sets.is_empty() {
        return field.write(out);
    }
    let fields = field.fields().unwrap_or_default();
    write_object(out, &fields, sets, |out, _, value, below| write_set(out, value, below));
}

/// Writes an object of `fields` with `sets` written into it: each field by `each`, given the
/// sets below it, then the sets for fields it lacks.
fn write_object(
    out: &mut Vec<u8>,
    fields: &[(Cow<'_, str>, Field<'_>)],
    sets: &[Set<'_>],
    mut each: impl FnMut(&mut Vec<u8>, &str, Field<'_>, &[Set<'_>]),
) {
    out.push(b'{');
    for (i, (name, field)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        entry(out, name);
        each(out, name, *field, &below(sets, name));
    }
    append_missing(out, fields, sets, !fields.is_empty());
    out.push(b'}');
}

/// Writes the sets whose first key `fields` lacks, in order of first mention, as new entries.
fn append_missing(out: &mut Vec<u8>, fields: &[(Cow<'_, str>, Field<'_>)], sets: &[Set<'_>], mut comma: bool) {
    let mut written: Vec<&str> = Vec::new();
    for (path, _) in sets {
        let Some(first) = path.first() else { continue };
        if fields.iter().any(|(name, _)| name == first) || written.contains(first) {
            continue;
        }
        written.push(first);
        if comma {
            out.push(b',');
        }
        comma = true;
        entry(out, first);
        write_set(out, Field::Parsed(&Value::Null), &below(sets, first));
    }
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
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    /// `value` without `metadata.managedFields`.
    pub(in crate::watchcache) fn without_managed_fields(value: &Value) -> Value {
        let mut value = value.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
        }
        value
    }

    /// Asserts that the cached object's JSON without managedFields is serde's for `value`
    /// without them.
    fn assert_trims(cached: &Cached, value: &Value) {
        let trimmed = cached.json_without_managed_fields().concat();
        let expected = serde_json::to_vec(&without_managed_fields(value)).unwrap();
        assert_eq!(
            String::from_utf8(trimmed).unwrap(),
            String::from_utf8(expected).unwrap()
        );
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
            assert_trims(&cached, &object);
        }
    }

    #[test]
    fn splicing_sets_is_encoding_the_changed_copy() {
        let managed = json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]);
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "a", "managedFields": managed, "resourceVersion": "7"}, "spec": {"containers": []}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"managedFields": managed, "resourceVersion": "7"}, "spec": {"nodeName": "", "x": 1}}),
            json!({"metadata": {"resourceVersion": "7", "managedFields": managed}, "spec": 3}),
            json!({"metadata": {"resourceVersion": "7"}}),
            json!({"spec": {}}),
            json!({}),
        ];
        let node = json!("n1");
        let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled"}]});
        let sets: [Set<'_>; 3] = [
            (&["spec", "nodeName"], &node),
            (&["status"], &status),
            (&["kind"], &node),
        ];
        for object in objects {
            let mut expected = object.clone();
            if let Some(meta) = expected.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.shift_remove("resourceVersion");
            }
            if !expected["spec"].is_object() {
                expected["spec"] = json!({});
            }
            expected["spec"]["nodeName"] = node.clone();
            expected["status"] = status.clone();
            expected["kind"] = node.clone();
            let json = serde_json::to_vec(&object).unwrap();
            let stored = Stored::splice(&RawObject::parse(&json).unwrap(), &sets);
            assert_eq!(
                String::from_utf8_lossy(stored.bytes()),
                String::from_utf8_lossy(&serde_json::to_vec(&expected).unwrap()),
                "{object}"
            );
            let served = Cached::stamped(&stored, 42);
            let expected = crate::watchcache::stamp(expected, 42);
            assert_eq!(served.json(), serde_json::to_vec(&expected).unwrap(), "{object}");
            assert_trims(&served, &expected);
        }
    }

    #[test]
    fn fields_are_read_from_the_value_or_the_json_alike() {
        let object = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        let parsed = Cached::new(object.clone());
        let unparsed = Cached::stamped(&Stored::encode(&object), 3);
        for path in [
            &["metadata", "labels"][..],
            &["spec", "nodeName"],
            &["spec", "nodeName", "x"],
            &["status"],
        ] {
            assert_eq!(parsed.at(path), unparsed.at(path), "{path:?}");
        }
        assert!(
            unparsed.value.get().is_none(),
            "reading fields does not parse the object"
        );
        assert_eq!(unparsed.to_value()["spec"]["nodeName"], "n1");
        assert!(!unparsed.is_parsed(), "nor does copying it");
    }

    #[test]
    fn the_revision_is_known_from_the_splice_or_read_from_the_value() {
        let object = json!({"metadata": {"name": "a"}});
        assert_eq!(Cached::stamped(&Stored::encode(&object), 42).revision(), Some(42));
        assert_eq!(
            Cached::new(crate::watchcache::stamp(object.clone(), 7)).revision(),
            Some(7)
        );
        assert_eq!(Cached::new(object).revision(), None);
        assert_eq!(
            Cached::stamped(&Stored::encode(&json!({"data": 1})), 42).revision(),
            None
        );
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
            let served = Cached::stamped(&stored, 42);
            let expected = crate::watchcache::stamp(object.clone(), 42);
            assert_eq!(
                String::from_utf8_lossy(served.json()),
                String::from_utf8_lossy(&serde_json::to_vec(&expected).unwrap()),
            );
            assert_eq!(**served, expected, "the value is parsed back from the JSON");
            assert_trims(&served, &expected);
        }
    }
}
