//! An object's JSON split into its fields without parsing their values: a write that reads a
//! few fields of a cached object and changes a few others (a binding) copies the rest as it
//! lies, instead of parsing the whole object and serializing it again.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The fields of a JSON object in their order, each value still JSON.
#[derive(Debug)]
pub struct RawObject<'a>(pub(super) Vec<RawField<'a>>);

/// One field of a [`RawObject`]: its name, its JSON, and its own fields once someone has
/// split it, so that a reader and a writer of the same object split it once.
#[derive(Debug)]
pub struct RawField<'a> {
    pub(super) name: Cow<'a, str>,
    pub(super) raw: &'a RawValue,
    split: OnceCell<Option<RawObject<'a>>>,
}

impl<'a> RawField<'a> {
    /// The field's value split in turn, if it is an object.
    pub(super) fn object(&self) -> Option<&RawObject<'a>> {
        self.split
            .get_or_init(|| RawObject::parse(self.raw.get().as_bytes()))
            .as_ref()
    }
}

impl<'a> RawObject<'a> {
    /// Splits `json` if it is an object.
    pub fn parse(json: &'a [u8]) -> Option<RawObject<'a>> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let object = de.deserialize_map(Fields).ok()?;
        de.end().ok()?;
        Some(object)
    }

    fn field(&self, key: &str) -> Option<&RawField<'a>> {
        self.0.iter().find(|field| field.name == key)
    }

    /// The JSON of field `key`.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.field(key).map(|field| field.raw)
    }

    /// Field `key`, split in turn, if it is an object.
    pub fn object(&self, key: &str) -> Option<&RawObject<'a>> {
        self.field(key).and_then(RawField::object)
    }

    /// Field `key`, parsed.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.get(key).and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// Whether field `key` is there and not null.
    pub fn holds(&self, key: &str) -> bool {
        self.get(key).is_some_and(|raw| raw.get() != "null")
    }
}

/// Collects an object's fields, keys borrowed from the input unless they hold escapes.
struct Fields;

impl<'de> Visitor<'de> for Fields {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key_seed(Key)? {
            fields.push(RawField {
                name: key,
                raw: map.next_value::<&RawValue>()?,
                split: OnceCell::new(),
            });
        }
        Ok(RawObject(fields))
    }
}

/// An object key, borrowed where it can be.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Cow<'de, str>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splits_an_object_into_its_fields_as_they_lie() {
        let json = br#"{"metadata":{"name":"p","uid":"u"},"a\"b":[1, 2],"status":null}"#;
        let object = RawObject::parse(json).unwrap();
        let keys: Vec<&str> = object.0.iter().map(|field| field.name.as_ref()).collect();
        assert_eq!(keys, ["metadata", "a\"b", "status"]);
        assert_eq!(object.get("a\"b").unwrap().get(), "[1, 2]");
        assert_eq!(object.object("metadata").unwrap().value("uid"), Some(json!("u")));
        assert!(object.object("a\"b").is_none(), "an array is not an object");
        assert!(!object.holds("status") && !object.holds("spec"));
        assert!(object.holds("metadata"));
    }

    #[test]
    fn anything_but_one_whole_object_splits_into_nothing() {
        for json in [&b"[1]"[..], b"3", b"{\"a\":", b"{\"a\":1} x", b""] {
            assert!(RawObject::parse(json).is_none(), "{}", String::from_utf8_lossy(json));
        }
    }
}
