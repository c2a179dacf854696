//! Decodes Kubernetes protobuf request bodies into the JSON objects kate stores.
//!
//! Why: client-go's typed clients, and so the real kubectl for `create namespace|configmap|
//! secret|deployment|service|job|cronjob|role|...`, `auth can-i` and `create token`, send
//! `Content-Type: application/vnd.kubernetes.protobuf`. Such a body is the magic `k8s\0`
//! followed by a `runtime.Unknown` envelope `{1: TypeMeta{1: apiVersion, 2: kind}, 2: raw,
//! 3: contentEncoding, 4: contentType}` whose `raw` is the upstream generated.proto message of
//! that kind. [`decode`] turns it into exactly the JSON kubectl would have sent had it used
//! JSON: camelCase names, `apiVersion`/`kind` filled in, upstream's custom encodings for Time,
//! MicroTime, Duration, IntOrString, Quantity, RawExtension/FieldsV1/JSON and the JSONSchemaProps
//! unions, base64 for bytes, and zero values of non-pointer `omitempty` fields left out (Go's
//! protobuf marshaller writes them, its JSON encoder does not).
//!
//! How: a generic protobuf wire-format reader driven by a static table of every message
//! reachable from the supported kinds (`src/schema_table.rs`, 323 messages). The table is
//! generated, not hand-written, by `generate/generate_schema.py` (Python 3, standard library
//! only) from the k8s-pb 0.9 crate (messages, tags, wire types; Kubernetes 1.35 protos), the
//! k8s-openapi 0.29 crate, feature `v1_35` (JSON names, required fields), and
//! `generate/go_pointer_scalars.txt` (which scalars are Go pointers, a fact neither crate
//! records). To add a kind or move to newer crates: edit `ROOTS` or the version constants in
//! the script (and the pins in `generate/Cargo.toml`), run
//! `cargo fetch --manifest-path crates/protobuf/generate/Cargo.toml` to unpack both crates, then
//! `python3 crates/protobuf/generate/generate_schema.py` and `cargo test -p kate-protobuf`. The
//! runtime depends on neither crate.
//!
//! Unknown kinds give [`DecodeError::UnknownKind`] (answer 415, the client retries with JSON);
//! bad bytes give [`DecodeError::Malformed`] (answer 400). No input panics.

mod error;
mod forms;
mod object;
mod schema;
mod wire;

use serde_json::{Map, Value};

pub use error::DecodeError;
use wire::{Reader, Value as Wire};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The envelope's apiVersion, e.g. `apps/v1`.
    pub api_version: String,
    /// The envelope's kind, e.g. `Deployment`.
    pub kind: String,
    /// The object as kubectl's JSON would have it, `kind` and `apiVersion` first.
    pub object: Value,
}

/// Decodes a `application/vnd.kubernetes.protobuf` request body.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| DecodeError::malformed("body does not start with the k8s\\0 magic"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for record in Reader::new(envelope) {
        match record? {
            (1, Wire::Len(type_meta)) => {
                for record in Reader::new(type_meta) {
                    match record? {
                        (1, Wire::Len(s)) => api_version = String::from_utf8_lossy(s).into_owned(),
                        (2, Wire::Len(s)) => kind = String::from_utf8_lossy(s).into_owned(),
                        (1 | 2, _) => return Err(DecodeError::malformed("TypeMeta field is not a string")),
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(bytes)) => raw = bytes,
            // Upstream defines the field but never fills it; a compressed raw is not ours to guess.
            (3, Wire::Len(encoding)) if !encoding.is_empty() => {
                return Err(DecodeError::malformed(format!(
                    "unsupported contentEncoding {:?}",
                    String::from_utf8_lossy(encoding)
                )));
            }
            (1..=4, Wire::Len(_)) => {}
            (1..=4, other) => {
                return Err(DecodeError::malformed(format!(
                    "envelope field is a {} value",
                    other.wire_name()
                )));
            }
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err(DecodeError::malformed("envelope names no kind"));
    }
    let Some(message) = schema::root(&api_version, &kind) else {
        return Err(DecodeError::UnknownKind { api_version, kind });
    };
    let fields = match object::decode(message, &[raw], 0)? {
        Value::Object(fields) => fields,
        _ => return Err(DecodeError::malformed("schema table: root kind is not an object")),
    };
    // Go's JSON puts TypeMeta (kind, then apiVersion) before the object's own fields.
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind.clone()));
    object.insert("apiVersion".into(), Value::String(api_version.clone()));
    object.extend(fields);
    Ok(Decoded {
        api_version,
        kind,
        object: Value::Object(object),
    })
}
