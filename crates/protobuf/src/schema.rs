//! The shape of the generated schema table (`schema_table.rs`) and lookups into it.

// Generated; rustfmt would spread each one-line field over eight lines.
#[rustfmt::skip]
#[path = "schema_table.rs"]
mod table;

/// One protobuf message type.
#[derive(Debug)]
pub(crate) struct Message {
    /// Dotted k8s-pb path, e.g. `api.core.v1.Pod`; only for error messages.
    pub(crate) name: &'static str,
    /// How the message turns into JSON.
    pub(crate) form: Form,
    /// Fields sorted by tag; empty for the forms that read their few fields themselves.
    pub(crate) fields: &'static [Field],
}

/// The JSON form of a message: a plain object, or one of the upstream custom encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A JSON object keyed by the fields' JSON names.
    Struct,
    /// meta/v1 Time: RFC 3339 with seconds precision, `null` when zero.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with six fractional digits, `null` when zero.
    MicroTime,
    /// meta/v1 Duration: Go's `time.Duration` string, e.g. `1h0m0s`.
    Duration,
    /// Embedded JSON bytes (RawExtension, FieldsV1, apiextensions JSON), parsed.
    RawJson,
    /// util/intstr IntOrString: a JSON number or string.
    IntOrString,
    /// api/resource Quantity: its canonical string.
    Quantity,
    /// A message wrapping `repeated string items`, whose JSON is the bare list (ExtraValue).
    StringList,
    /// JSONSchemaPropsOrArray: the schema, or the list of schemas when there is one.
    SchemaOrArray,
    /// JSONSchemaPropsOrBool: the schema when there is one, else the boolean.
    SchemaOrBool,
    /// JSONSchemaPropsOrStringArray: the property list when non-empty, else the schema.
    SchemaOrStringArray,
}

/// One field of a [`Form::Struct`] or union message.
#[derive(Debug)]
pub(crate) struct Field {
    /// Protobuf field number.
    pub(crate) tag: u32,
    /// JSON property name; empty for inline fields.
    pub(crate) json: &'static str,
    /// Single value, list or map.
    pub(crate) card: Card,
    /// The value type (the map value type for maps).
    pub(crate) kind: Kind,
    /// Drop the value when it is zero: a non-pointer `omitempty` Go field, which Go's protobuf
    /// marshaller writes even when zero but its JSON encoder leaves out.
    pub(crate) omit_zero: bool,
    /// An embedded Go struct (`json:",inline"`): its properties go into the parent object.
    pub(crate) inline: bool,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// proto2 `optional`: present or not; the last occurrence wins (messages merge).
    Optional,
    /// `repeated`: a JSON array, packed or not.
    Repeated,
    /// `map<string, V>`: repeated `{1: key, 2: value}` entries, a JSON object.
    Map,
}

/// A field's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `string`.
    Str,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `double`.
    F64,
    /// An embedded message: an index into [`messages`].
    Message(u16),
}

/// A kind accepted at the top level of a request body.
#[derive(Debug)]
pub(crate) struct Root {
    /// apiVersion as sent in the envelope; `*` matches any (DeleteOptions travels with the
    /// apiVersion of whichever group's client sent it).
    pub(crate) api_version: &'static str,
    /// kind as sent in the envelope.
    pub(crate) kind: &'static str,
    /// Index into [`messages`].
    pub(crate) message: u16,
}

/// The message at `index` of the table.
pub(crate) fn message(index: u16) -> &'static Message {
    // Indices come only from the generated table, which the generator keeps in range
    // (a unit test below checks every one).
    &table::MESSAGES[usize::from(index)]
}

/// The message that encodes `kind` of `api_version`, if the table has it.
pub(crate) fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    table::ROOTS
        .iter()
        .find(|r| r.kind == kind && (r.api_version == api_version || r.api_version == "*"))
        .map(|r| message(r.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_is_in_range_and_fields_are_sorted() {
        let len = table::MESSAGES.len();
        for m in table::MESSAGES {
            assert!(m.fields.windows(2).all(|w| w[0].tag < w[1].tag), "{}", m.name);
            for f in m.fields {
                if let Kind::Message(i) = f.kind {
                    assert!(usize::from(i) < len, "{}.{}", m.name, f.json);
                }
            }
        }
        assert!(table::ROOTS.iter().all(|r| usize::from(r.message) < len));
    }

    #[test]
    fn finds_roots() {
        assert_eq!(root("v1", "Namespace").map(|m| m.name), Some("api.core.v1.Namespace"));
        assert_eq!(
            root("apps/v1", "DeleteOptions").map(|m| m.name),
            Some("apimachinery.pkg.apis.meta.v1.DeleteOptions")
        );
        assert!(root("apps/v1", "Namespace").is_none());
    }
}
