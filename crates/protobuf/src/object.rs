//! Schema-driven decoding: one message's records, looked up by tag in the generated table,
//! become one JSON value.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::schema::{self, Card, Field, Form, Kind, Message};
use crate::wire::{self, Reader, Value as Wire};
use crate::{DecodeError, forms};

/// How deeply messages may nest. JSONSchemaProps is recursive, and hostile input must get an
/// error rather than exhaust the stack; real CRD schemas stay far below this.
const MAX_DEPTH: usize = 100;

/// Decodes `msg` from `chunks`, the payloads of every occurrence of it: protobuf merges
/// repeated occurrences of a singular message field, which reading them in order achieves.
pub(crate) fn decode(msg: &Message, chunks: &[&[u8]], depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::malformed("messages nest too deeply"));
    }
    match msg.form {
        Form::Struct => {
            let slots = collect(msg, chunks, depth)?;
            render_struct(msg, slots, depth)
        }
        Form::SchemaOrArray | Form::SchemaOrBool | Form::SchemaOrStringArray => {
            let slots = collect(msg, chunks, depth)?;
            render_union(msg, slots, depth)
        }
        form => forms::decode(form, chunks),
    }
}

/// What the records of one field add up to before rendering.
enum Slot<'a> {
    /// Not on the wire.
    Empty,
    /// A singular scalar; the last occurrence wins.
    Scalar(Value),
    /// A singular message: all its occurrences, decoded together later.
    Chunks(Vec<&'a [u8]>),
    /// A repeated field's elements, already decoded.
    List(Vec<Value>),
    /// A map's entries, already decoded; sorted, as Go's JSON encoder sorts map keys.
    Map(BTreeMap<String, Value>),
}

fn collect<'a>(msg: &Message, chunks: &[&'a [u8]], depth: usize) -> Result<Vec<Slot<'a>>, DecodeError> {
    let mut slots: Vec<Slot> = msg.fields.iter().map(|_| Slot::Empty).collect();
    for chunk in chunks {
        for record in Reader::new(chunk) {
            let (tag, value) = record?;
            // Unknown fields are skipped, as Go's generated unmarshallers do.
            let Ok(i) = msg.fields.binary_search_by_key(&tag, |f| f.tag) else {
                continue;
            };
            let field = &msg.fields[i];
            let slot = &mut slots[i];
            match (field.card, field.kind) {
                (Card::Optional, Kind::Message(_)) => {
                    let bytes = len(msg, field, value)?;
                    match slot {
                        Slot::Chunks(all) => all.push(bytes),
                        _ => *slot = Slot::Chunks(vec![bytes]),
                    }
                }
                (Card::Optional, kind) => *slot = Slot::Scalar(scalar(msg, field, kind, value)?),
                (Card::Repeated, kind) => {
                    if !matches!(slot, Slot::List(_)) {
                        *slot = Slot::List(Vec::new());
                    }
                    if let Slot::List(list) = slot {
                        repeated(msg, field, kind, value, depth, list)?;
                    }
                }
                (Card::Map, kind) => {
                    if !matches!(slot, Slot::Map(_)) {
                        *slot = Slot::Map(BTreeMap::new());
                    }
                    if let Slot::Map(map) = slot {
                        let (key, value) = entry(msg, field, kind, len(msg, field, value)?, depth)?;
                        map.insert(key, value);
                    }
                }
            }
        }
    }
    Ok(slots)
}

fn render_struct(msg: &Message, slots: Vec<Slot>, depth: usize) -> Result<Value, DecodeError> {
    let mut object = Map::new();
    for (field, slot) in msg.fields.iter().zip(slots) {
        let value = match slot {
            Slot::Empty => continue,
            Slot::Scalar(v) if field.omit_zero && is_zero(&v) => continue,
            Slot::Scalar(v) => v,
            Slot::Chunks(chunks) => message_value(field, &chunks, depth)?,
            Slot::List(list) => Value::Array(list),
            Slot::Map(map) => Value::Object(map.into_iter().collect()),
        };
        match value {
            Value::Object(inner) if field.inline => object.extend(inner),
            value => {
                object.insert(field.json.to_string(), value);
            }
        }
    }
    Ok(Value::Object(object))
}

/// The JSONSchemaProps unions, whose upstream MarshalJSON picks one of their two fields: each
/// pairs a singular schema message with an alternative (a list, or the `allows` boolean).
fn render_union(msg: &Message, slots: Vec<Slot>, depth: usize) -> Result<Value, DecodeError> {
    let mut schema = None;
    let mut other = Slot::Empty;
    for (field, slot) in msg.fields.iter().zip(slots) {
        match slot {
            Slot::Chunks(chunks) => schema = Some(message_value(field, &chunks, depth)?),
            Slot::Empty => {}
            slot => other = slot,
        }
    }
    Ok(match (msg.form, other, schema) {
        (Form::SchemaOrBool, _, Some(schema)) => schema,
        (Form::SchemaOrBool, Slot::Scalar(allows), None) => allows,
        (Form::SchemaOrBool, _, None) => Value::Bool(false),
        (_, Slot::List(list), _) if !list.is_empty() => Value::Array(list),
        (_, _, schema) => schema.unwrap_or(Value::Null),
    })
}

fn message_value(field: &Field, chunks: &[&[u8]], depth: usize) -> Result<Value, DecodeError> {
    match field.kind {
        Kind::Message(index) => decode(schema::message(index), chunks, depth + 1),
        _ => Err(DecodeError::malformed(
            "schema table: message chunks for a scalar field",
        )),
    }
}

fn repeated(
    msg: &Message,
    field: &Field,
    kind: Kind,
    value: Wire,
    depth: usize,
    list: &mut Vec<Value>,
) -> Result<(), DecodeError> {
    match (kind, value) {
        (Kind::Message(index), value) => {
            list.push(decode(schema::message(index), &[len(msg, field, value)?], depth + 1)?);
        }
        // Packed encoding: one length-delimited record holding the numbers back to back.
        (Kind::Bool | Kind::I32 | Kind::I64, Wire::Len(mut packed)) => {
            while !packed.is_empty() {
                let n = wire::varint(&mut packed)?;
                list.push(scalar(msg, field, kind, Wire::Varint(n))?);
            }
        }
        (Kind::F64, Wire::Len(packed)) => {
            if packed.len() % 8 != 0 {
                return Err(DecodeError::malformed(format!(
                    "{}: packed doubles of {} bytes",
                    msg.name,
                    packed.len()
                )));
            }
            for bits in packed.chunks_exact(8) {
                let bits = bits.try_into().map(u64::from_le_bytes).unwrap_or_default();
                list.push(scalar(msg, field, kind, Wire::Fixed64(bits))?);
            }
        }
        (kind, value) => list.push(scalar(msg, field, kind, value)?),
    }
    Ok(())
}

/// A map entry `{1: key, 2: value}`; a missing value is the value type's zero, as in Go.
fn entry(msg: &Message, field: &Field, kind: Kind, bytes: &[u8], depth: usize) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value = None;
    for record in Reader::new(bytes) {
        match record? {
            (1, Wire::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (1, other) => return Err(wrong_wire(msg, field, other)),
            (2, v) => value = Some(v),
            _ => {}
        }
    }
    let value = match (kind, value) {
        (Kind::Message(index), v) => {
            let chunk = match v {
                Some(v) => len(msg, field, v)?,
                None => &[],
            };
            decode(schema::message(index), &[chunk], depth + 1)?
        }
        (kind, Some(v)) => scalar(msg, field, kind, v)?,
        (Kind::Bool, None) => Value::Bool(false),
        (Kind::I32 | Kind::I64 | Kind::F64, None) => Value::from(0),
        (Kind::Str | Kind::Bytes, None) => Value::String(String::new()),
    };
    Ok((key, value))
}

fn scalar(msg: &Message, field: &Field, kind: Kind, value: Wire) -> Result<Value, DecodeError> {
    Ok(match (kind, value) {
        // Go's JSON encoder replaces invalid UTF-8 with U+FFFD rather than failing; so do we.
        (Kind::Str, Wire::Len(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Kind::Bytes, Wire::Len(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // Truncation is the protobuf rule for int32 (negative values arrive sign-extended).
        (Kind::I32, Wire::Varint(v)) => Value::from(v as i32),
        (Kind::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::F64, Wire::Fixed64(bits)) => Number::from_f64(f64::from_bits(bits))
            .map(Value::Number)
            .ok_or_else(|| DecodeError::malformed(format!("{}.{}: NaN or infinity", msg.name, field.json)))?,
        (_, other) => return Err(wrong_wire(msg, field, other)),
    })
}

fn len<'a>(msg: &Message, field: &Field, value: Wire<'a>) -> Result<&'a [u8], DecodeError> {
    match value {
        Wire::Len(bytes) => Ok(bytes),
        other => Err(wrong_wire(msg, field, other)),
    }
}

fn wrong_wire(msg: &Message, field: &Field, value: Wire) -> DecodeError {
    DecodeError::malformed(format!(
        "{} field {}: unexpected {} value",
        msg.name,
        field.tag,
        value.wire_name()
    ))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}
