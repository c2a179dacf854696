//! Reading and writing `metadata.managedFields`.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// How a manager wrote its fields: by applying a configuration, or with an ordinary write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One element of `metadata.managedFields`.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: Option<String>,
    pub time: Option<String>,
    pub fields: FieldSet,
}

/// Who writes: what tells one managedFields entry from another.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub operation: Operation,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
}

impl Entry {
    /// Whether the entry belongs to `writer`. Like upstream's manager identifiers, Update
    /// entries are also told apart by API version; an applier keeps one entry across versions.
    pub(crate) fn belongs_to(&self, writer: &Writer<'_>) -> bool {
        self.manager == writer.manager
            && self.operation == writer.operation
            && self.subresource.as_deref() == writer.subresource
            && (writer.operation == Operation::Apply || self.api_version == writer.api_version)
    }

    fn parse(value: &Value) -> Result<Self, String> {
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        let operation = match text("operation") {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(format!("unknown managedFields operation {other:?}")),
        };
        let fields = match (text("fieldsType"), value.get("fieldsV1")) {
            (_, None | Some(Value::Null)) => FieldSet::default(),
            (Some("FieldsV1"), Some(fields)) => FieldSet::from_fields_v1(fields)?,
            (other, _) => return Err(format!("unknown managedFields fieldsType {other:?}")),
        };
        Ok(Entry {
            manager: text("manager").unwrap_or_default().to_owned(),
            operation,
            api_version: text("apiVersion").unwrap_or_default().to_owned(),
            subresource: text("subresource").filter(|s| !s.is_empty()).map(str::to_owned),
            time: text("time").map(str::to_owned),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        // Keys in the order of upstream's ManagedFieldsEntry, so stored objects read the same.
        let mut entry = Map::new();
        entry.insert("manager".into(), self.manager.clone().into());
        entry.insert("operation".into(), self.operation.as_str().into());
        entry.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(time) = &self.time {
            entry.insert("time".into(), time.clone().into());
        }
        entry.insert("fieldsType".into(), "FieldsV1".into());
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), subresource.clone().into());
        }
        Value::Object(entry)
    }
}

/// The entry of `writer`, added without fields or time if it has none yet.
pub(crate) fn find_or_add<'e>(entries: &'e mut Vec<Entry>, writer: &Writer<'_>) -> &'e mut Entry {
    let index = match entries.iter().position(|e| e.belongs_to(writer)) {
        Some(index) => index,
        None => {
            entries.push(Entry {
                manager: writer.manager.to_owned(),
                operation: writer.operation,
                api_version: writer.api_version.to_owned(),
                subresource: writer.subresource.map(str::to_owned),
                time: None,
                fields: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    &mut entries[index]
}

fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields").filter(|v| !v.is_null())
}

/// The entries stored on `object`; an error when any of them cannot be decoded.
pub(crate) fn read(object: &Value) -> Result<Vec<Entry>, String> {
    match managed_fields(object) {
        None => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries.iter().map(Entry::parse).collect(),
        Some(_) => Err("metadata.managedFields is not a list".to_owned()),
    }
}

/// What a written object says about its own managedFields.
pub(crate) enum Requested {
    /// Nothing usable: keep tracking from the stored object's entries.
    Absent,
    /// `[]` or `[{}]`: the client asks to drop all tracking.
    Reset,
    /// Entries the client supplied, which replace the stored ones.
    Entries(Vec<Entry>),
}

/// Reads the managedFields of an object sent by a client, the way upstream decides whether the
/// client meant to set them: clients that do not know the field must not erase it by accident.
pub(crate) fn requested(object: &Value) -> Requested {
    match managed_fields(object) {
        Some(Value::Array(entries)) if is_reset(entries) => Requested::Reset,
        Some(field) => match read_list(field) {
            Some(entries) if !entries.is_empty() => Requested::Entries(entries),
            _ => Requested::Absent,
        },
        None => Requested::Absent,
    }
}

fn is_reset(entries: &[Value]) -> bool {
    match entries {
        [] => true,
        [Value::Object(only)] => only.is_empty(),
        _ => false,
    }
}

fn read_list(field: &Value) -> Option<Vec<Entry>> {
    field.as_array()?.iter().map(|e| Entry::parse(e).ok()).collect()
}

/// Stores the non-empty entries on `object`, sorted as upstream sorts them: Apply before Update,
/// then by time (RFC 3339 UTC strings sort chronologically), manager, API version, subresource.
pub(crate) fn write(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let Value::Object(root) = object else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
            metadata.shift_remove("managedFields");
        }
        return;
    }
    let metadata = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    // A non-object metadata is the caller's to reject; overwriting it would lose data.
    if let Value::Object(metadata) = metadata {
        let list = entries.iter().map(Entry::to_json).collect();
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}
