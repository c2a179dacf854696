//! Picks one value out of an object's JSON by its path of keys, skipping everything else
//! without building it: a selector asks this of every watched change, and an object that
//! nobody else reads is then never parsed whole.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The value at `path` in `json`, if every step is an object holding the next key.
pub fn pick<S: AsRef<str>>(json: &[u8], path: &[S]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    At(path).deserialize(&mut de).ok().flatten()
}

/// Reads the value at a path below the current one.
struct At<'p, S>(&'p [S]);

impl<'de, S: AsRef<str>> DeserializeSeed<'de> for At<'_, S> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<Value>, D::Error> {
        match self.0.split_first() {
            None => serde::Deserialize::deserialize(de).map(Some),
            Some((first, rest)) => de.deserialize_any(Step {
                key: first.as_ref(),
                rest,
            }),
        }
    }
}

/// Looks for `key` in an object and reads `rest` below it; anything else holds nothing.
struct Step<'p, S> {
    key: &'p str,
    rest: &'p [S],
}

impl<'de, S: AsRef<str>> Visitor<'de> for Step<'_, S> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let mut found = None;
        while let Some(here) = map.next_key_seed(KeyIs(self.key))? {
            if here && found.is_none() {
                found = map.next_value_seed(At(self.rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// Compares an object key with the wanted one where it lies, unescaped only if it must be.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picks_what_a_pointer_would_find() {
        let object = json!({
            "metadata": {"name": "p", "labels": {"app": "web", "a\"b": "q"}},
            "spec": {"nodeName": "n1", "list": [1, {"spec": 2}], "none": null, "on": true, "n": -1.5},
            "status": {"phase": "Running"},
            "tab\tkey": {"x": 1}
        });
        let json = serde_json::to_vec(&object).unwrap();
        let paths: &[&[&str]] = &[
            &["metadata", "labels"],
            &["metadata", "labels", "a\"b"],
            &["spec", "nodeName"],
            &["spec", "list"],
            &["spec", "list", "1"],
            &["spec", "none"],
            &["spec", "on"],
            &["spec", "n"],
            &["spec", "nodeName", "deeper"],
            &["status", "phase"],
            &["status", "missing"],
            &["tab\tkey", "x"],
            &["missing"],
            &[],
        ];
        for path in paths {
            let pointer: String = path
                .iter()
                .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
                .collect();
            let expected = if path.contains(&"1") {
                None
            } else {
                object.pointer(&pointer).cloned()
            };
            assert_eq!(pick(&json, path), expected, "{path:?}");
        }
    }

    #[test]
    fn bad_json_holds_nothing() {
        assert_eq!(pick(b"{\"spec\": {\"nodeName\": ", &["spec", "nodeName"]), None);
        assert_eq!(pick(b"[1, 2]", &["spec"]), None);
    }
}
