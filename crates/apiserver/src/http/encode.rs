//! Response bodies: objects, lists and server-side Tables, chosen by the Accept header.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::bytes_response;
use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::registry::ListResult;
use crate::strategy::table::column_definitions;
use crate::watchcache::Cached;

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain objects and lists.
    Object,
    /// `meta.k8s.io/v1` Tables.
    Table,
    /// `PartialObjectMetadata` (lists: `PartialObjectMetadataList`): metadata only.
    Metadata,
}

/// What a Table row carries in `object` (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object (`kubectl get --sort-by`).
    Object,
}

impl Include {
    /// Parses `includeObject`.
    pub fn parse(v: Option<&str>) -> Include {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Picks the output format from Accept, refusing media types we cannot produce.
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut json_ok = accept.trim().is_empty();
    for offer in accept.split(',').map(str::trim) {
        let media = offer.split(';').next().unwrap_or("").trim();
        if media == "application/json" && offer.contains("g=meta.k8s.io") {
            if offer.contains("as=Table") {
                return Ok(Format::Table);
            }
            if offer.contains("as=PartialObjectMetadata") {
                return Ok(Format::Metadata);
            }
        }
        if matches!(media, "application/json" | "*/*" | "application/*" | "application/yaml") && !offer.contains("as=")
        {
            json_ok = true;
        }
    }
    if json_ok {
        Ok(Format::Object)
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json (asked for {accept:?})"
        )))
    }
}

/// A JSON response with `Warning` headers.
pub fn object_response(code: StatusCode, obj: &impl Serialize, warnings: &[String]) -> Response {
    with_warnings(
        bytes_response(code, "application/json", serde_json::to_vec(obj).unwrap_or_default()),
        warnings,
    )
}

/// Adds a `Warning` header per warning.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn list_metadata(result: &ListResult) -> Value {
    let mut meta = json!({"resourceVersion": result.revision.to_string()});
    if let Some(token) = &result.continue_token {
        meta["continue"] = json!(token);
        if let Some(remaining) = result.remaining {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    meta
}

/// The `XList` body of a list, assembled from each object's cached JSON.
pub fn list_bytes(def: &ResourceDef, result: &ListResult) -> Vec<u8> {
    let head = json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": list_metadata(result)});
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.pop();
    let size: usize = result.items.iter().map(|o| o.json().len() + 1).sum();
    out.reserve(size + 16);
    out.extend_from_slice(b",\"items\":[");
    for (n, obj) in result.items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(obj.json());
    }
    out.extend_from_slice(b"]}");
    out
}

/// A Table row, serialized straight from the object it describes (no copies of its metadata).
#[derive(Serialize)]
struct Row<'a> {
    cells: Vec<Value>,
    object: Option<RowObject<'a>>,
}

/// An object's `PartialObjectMetadata`: its metadata only, serialized without copying it.
pub struct Partial<'a> {
    metadata: Option<&'a Map<String, Value>>,
    managed_fields: bool,
}

impl<'a> Partial<'a> {
    /// The metadata of `object`, without its managedFields unless `managed_fields`.
    pub fn new(object: &'a Value, managed_fields: bool) -> Partial<'a> {
        Partial::of_metadata(object.get("metadata"), managed_fields)
    }

    /// [`Partial::new`] given the object's metadata alone.
    pub fn of_metadata(metadata: Option<&'a Value>, managed_fields: bool) -> Partial<'a> {
        Partial {
            metadata: metadata.and_then(Value::as_object),
            managed_fields,
        }
    }

    /// The whole metadata of `object`.
    pub fn of(object: &'a Value) -> Partial<'a> {
        Partial::new(object, true)
    }
}

impl Serialize for Partial<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("kind", "PartialObjectMetadata")?;
        map.serialize_entry("apiVersion", "meta.k8s.io/v1")?;
        match self.metadata {
            Some(meta) if self.managed_fields => map.serialize_entry("metadata", meta)?,
            Some(meta) => map.serialize_entry("metadata", &WithoutManagedFields(meta))?,
            None => map.serialize_entry("metadata", &Map::new())?,
        }
        map.end()
    }
}

/// Metadata serialized without its managedFields.
struct WithoutManagedFields<'a>(&'a Map<String, Value>);

impl Serialize for WithoutManagedFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().filter(|(name, _)| *name != "managedFields"))
    }
}

/// What a row carries in `object` (null with `includeObject=None`).
#[derive(Serialize)]
#[serde(untagged)]
enum RowObject<'a> {
    Metadata(Partial<'a>),
    Object(&'a Value),
}

/// A `meta.k8s.io/v1` Table of objects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Value,
    column_definitions: Value,
    rows: Vec<Row<'a>>,
}

/// A Table of `objects`; `headers: false` leaves out the column definitions (watch events after
/// the first).
pub fn table<'a>(
    def: &ResourceDef,
    objects: impl Iterator<Item = &'a Value>,
    metadata: Value,
    headers: bool,
    include: Include,
) -> Table<'a> {
    let rows = objects
        .map(|obj| Row {
            cells: def.strategy.cells(obj),
            object: match include {
                Include::None => None,
                Include::Metadata => Some(RowObject::Metadata(Partial::of(obj))),
                Include::Object => Some(RowObject::Object(obj)),
            },
        })
        .collect();
    let column_definitions = if headers {
        column_definitions(&def.strategy.columns())
    } else {
        Value::Null
    };
    Table {
        kind: "Table",
        api_version: "meta.k8s.io/v1",
        metadata,
        column_definitions,
        rows,
    }
}

/// A list rendered in the requested format.
pub fn list_response(def: &ResourceDef, result: &ListResult, format: Format, include: Include) -> Response {
    match format {
        Format::Object => bytes_response(StatusCode::OK, "application/json", list_bytes(def, result)),
        Format::Metadata => {
            let items: Vec<Partial> = result.items.iter().map(|o| Partial::of(o)).collect();
            let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(result)});
            let mut out = serde_json::to_vec(&body).unwrap_or_default();
            out.pop();
            out.extend_from_slice(b",\"items\":");
            out.extend(serde_json::to_vec(&items).unwrap_or_default());
            out.push(b'}');
            bytes_response(StatusCode::OK, "application/json", out)
        }
        Format::Table => {
            let body = table(
                def,
                result.items.iter().map(|o| &***o),
                list_metadata(result),
                true,
                include,
            );
            bytes_response(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
    }
}

/// A single object rendered in the requested format.
pub fn single_response(
    def: &ResourceDef,
    obj: &Cached,
    format: Format,
    include: Include,
    code: StatusCode,
    warnings: &[String],
) -> Response {
    match format {
        Format::Object => with_warnings(bytes_response(code, "application/json", obj.json().to_vec()), warnings),
        Format::Metadata => object_response(code, &Partial::of(obj), warnings),
        Format::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            let body = table(
                def,
                std::iter::once(&**obj),
                json!({"resourceVersion": rv}),
                true,
                include,
            );
            object_response(code, &body, warnings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn negotiation() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(&headers(table)).unwrap(), Format::Table);
        assert_eq!(
            negotiate(&headers("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Format::Object
        );
        assert_eq!(negotiate(&headers("application/json, */*")).unwrap(), Format::Object);
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Format::Object);
        assert_eq!(
            negotiate(&headers("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            406
        );
    }
}
