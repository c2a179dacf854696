//! Server-side apply and managed-fields tracking, following the Kubernetes apiserver and
//! sigs.k8s.io/structured-merge-diff.
//!
//! Every write records who set which fields in `metadata.managedFields`. An apply merges the
//! configuration into the live object, refuses to change fields other managers own (unless
//! forced), and deletes the fields its manager applied before but has now dropped, as long as
//! nobody else owns them. Ordinary writes (create, update, non-apply patch) hand the fields they
//! change to their manager and take them from everyone else.

mod error;
mod fieldset;
mod managers;
mod merge;
mod shape;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::schema::SchemaNode;
pub use error::{ApplyError, Conflict};
use fieldset::{Element, FieldSet, render};
pub use managers::Operation;
use managers::{Entry, Requested, Writer};

/// Who applies, and how.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions<'a> {
    /// The field manager (`?fieldManager=`), required for apply.
    pub manager: &'a str,
    /// Take ownership of conflicting fields instead of failing (`?force=true`).
    pub force: bool,
    /// The API version of the request, recorded in the manager's entry.
    pub api_version: &'a str,
    /// The request time as RFC 3339 UTC (`2024-01-02T03:04:05Z`), recorded when the object changes.
    pub now: &'a str,
    /// The subresource applied to (`Some("status")`), or `None` for the main resource.
    pub subresource: Option<&'a str>,
    /// The kind serves a `status` subresource, so the main resource neither sets nor owns `status`.
    pub status_subresource: bool,
}

/// Who wrote, for [`record_update`].
#[derive(Clone, Copy, Debug)]
pub struct UpdateOptions<'a> {
    /// The field manager (`?fieldManager=`, or the apiserver's default from the user agent).
    pub manager: &'a str,
    /// The API version of the request, recorded in the manager's entry.
    pub api_version: &'a str,
    /// The request time as RFC 3339 UTC, recorded when the write changed fields.
    pub now: &'a str,
    /// The subresource written to (`Some("status")`), or `None` for the main resource.
    pub subresource: Option<&'a str>,
    /// The kind serves a `status` subresource, so the main resource neither sets nor owns `status`.
    pub status_subresource: bool,
}

/// Fields of `metadata` that upstream never tracks: the server sets them, or they name the object.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Which top-level fields a write may set and own, given the subresource it goes through
/// (upstream's "reset fields").
#[derive(Clone, Copy)]
struct Scope {
    status_only: bool,
    ignore_status: bool,
}

impl Scope {
    fn new(subresource: Option<&str>, status_subresource: bool) -> Self {
        Scope {
            status_only: subresource == Some("status"),
            ignore_status: subresource.is_none() && status_subresource,
        }
    }

    /// Whether the write may set the top-level field `name`; identity fields always pass so
    /// that an object created by apply keeps them.
    fn admits(self, name: &str) -> bool {
        match name {
            "apiVersion" | "kind" | "metadata" => true,
            "status" => self.status_only || !self.ignore_status,
            _ => !self.status_only,
        }
    }

    /// The fields a write records: not the identity fields, not the top-level fields it may
    /// not set, and not the metadata the server owns. Only the first two levels decide, so the
    /// rest of the set is not walked.
    fn track(self, mut fields: FieldSet) -> FieldSet {
        fields.retain_children(&[], |top| match top {
            Element::Field(top) => !matches!(top.as_str(), "apiVersion" | "kind") && self.admits(top),
            _ => false,
        });
        fields.retain_children(
            &[Element::Field("metadata".into())],
            |field| !matches!(field, Element::Field(name) if UNTRACKED_METADATA.contains(&name.as_str())),
        );
        fields
    }

    /// The applied configuration without the top-level fields this write may not set.
    fn restrict(self, applied: &Map<String, Value>) -> Value {
        let admitted = applied.iter().filter(|(name, _)| self.admits(name));
        Value::Object(admitted.map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// Server-side apply: merges `applied` into `live` (`None`: create) and returns the object to
/// store, with `metadata.managedFields` updated.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions<'_>,
    schema: Option<SchemaNode<'_>>,
) -> Result<Value, ApplyError> {
    let fields = check_applied(applied)?;
    shape::validate(applied, schema).map_err(ApplyError::Invalid)?;
    if live.is_some_and(|live| !live.is_object()) {
        return Err(ApplyError::Invalid("the live object is not a JSON object".to_owned()));
    }
    let scope = Scope::new(opts.subresource, opts.status_subresource);
    let config = scope.restrict(fields);
    // Upstream starts afresh when the stored entries cannot be decoded.
    let mut entries = live.and_then(|live| managers::read(live).ok()).unwrap_or_default();
    let me = Writer {
        manager: opts.manager,
        operation: Operation::Apply,
        api_version: opts.api_version,
        subresource: opts.subresource,
    };

    let owned = scope.track(shape::fields(&config, schema));
    let changing = scope.track(shape::changed(live, &config, schema));
    settle_conflicts(&mut entries, &me, &changing, opts.force)?;

    let base = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut merged = merge::merge(Some(base), &config, schema).unwrap_or_default();
    let previous = entries.iter().find(|e| e.belongs_to(&me)).map(|e| e.fields.clone());
    if let Some(previous) = previous {
        let mut keep = owned.clone();
        for entry in entries.iter().filter(|e| !e.belongs_to(&me)) {
            keep.extend(&entry.fields);
        }
        merge::prune(&mut merged, &previous.difference(&keep), &keep, schema);
    }
    if let Some(live) = live {
        for entry in entries.iter_mut().filter(|e| !e.belongs_to(&me)) {
            entry.fields.retain(|path| !removed(live, &merged, path, schema));
        }
    }

    // Like upstream, the time moves only when the object itself changed (or the entry is new,
    // which is the only way an entry can have no fields yet).
    let touched = live.is_none_or(|live| !same_content(live, &merged));
    let entry = managers::find_or_add(&mut entries, &me);
    if touched || entry.fields.is_empty() {
        entry.time = Some(opts.now.to_owned());
    }
    entry.fields = owned;
    entry.api_version = opts.api_version.to_owned();
    managers::write(&mut merged, entries);
    Ok(merged)
}

/// Refuses to change fields other managers own unless forced, in which case they lose them.
fn settle_conflicts(
    entries: &mut [Entry],
    me: &Writer<'_>,
    changing: &FieldSet,
    force: bool,
) -> Result<(), ApplyError> {
    if force {
        for entry in entries.iter_mut().filter(|e| !e.belongs_to(me)) {
            entry.fields.retain(|path| !changing.contains(path));
        }
        return Ok(());
    }
    let mut conflicts: Vec<Conflict> = entries
        .iter()
        .filter(|e| !e.belongs_to(me))
        .flat_map(|e| {
            let taken = e.fields.iter().filter(|path| changing.contains(path));
            taken.map(move |path| conflict(e, &path))
        })
        .collect();
    if conflicts.is_empty() {
        return Ok(());
    }
    // Grouped by owner for the message; the stable sort keeps each owner's fields in path order.
    conflicts.sort_by_cached_key(Conflict::owner);
    Err(ApplyError::Conflicts(conflicts))
}

/// Records a non-apply write (create when `old` is `None`, update, patch) in the
/// `metadata.managedFields` of `new`: the manager owns what it changed, others lose it.
pub fn record_update(old: Option<&Value>, new: &mut Value, opts: &UpdateOptions<'_>, schema: Option<SchemaNode<'_>>) {
    if !new.is_object() {
        return;
    }
    let stored = || old.and_then(|old| managers::read(old).ok()).unwrap_or_default();
    // A client may replace or reset managedFields through the main resource, never through a
    // subresource; one that does not send them at all keeps the stored ones.
    let mut entries = match (opts.subresource, managers::requested(new)) {
        (None, Requested::Reset) => Vec::new(),
        (None, Requested::Entries(entries)) => entries,
        _ => stored(),
    };
    let scope = Scope::new(opts.subresource, opts.status_subresource);
    let changed = scope.track(shape::changed(old, new, schema));
    let gone = |path: &[Element]| old.is_some_and(|old| removed(old, new, path, schema));
    for entry in &mut entries {
        entry.fields.retain(|path| !changed.contains(path) && !gone(path));
    }
    if !changed.is_empty() {
        let me = Writer {
            manager: opts.manager,
            operation: Operation::Update,
            api_version: opts.api_version,
            subresource: opts.subresource,
        };
        let entry = managers::find_or_add(&mut entries, &me);
        entry.fields.absorb(changed);
        entry.time = Some(opts.now.to_owned());
    }
    managers::write(new, entries);
}

/// Checks what upstream's apply handler checks before merging, returning the configuration's fields.
fn check_applied(applied: &Value) -> Result<&Map<String, Value>, ApplyError> {
    let invalid = |message: &str| Err(ApplyError::Invalid(message.to_owned()));
    let Value::Object(fields) = applied else {
        return invalid("the applied configuration must be a JSON object");
    };
    let named = |key: &str| fields.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !named("apiVersion") || !named("kind") {
        return invalid("the applied configuration must set apiVersion and kind");
    }
    match fields.get("metadata") {
        None => Ok(fields),
        Some(Value::Object(metadata)) if metadata.get("managedFields").is_some_and(|m| !m.is_null()) => {
            invalid("metadata.managedFields must be nil")
        }
        Some(Value::Object(_)) => Ok(fields),
        Some(_) => invalid("metadata must be an object"),
    }
}

fn conflict(owner: &Entry, path: &[Element]) -> Conflict {
    Conflict {
        manager: owner.manager.clone(),
        operation: owner.operation,
        api_version: owner.api_version.clone(),
        subresource: owner.subresource.clone(),
        field: render(path),
    }
}

/// Whether a write removed the field at `path`, so that nobody owns it any longer.
fn removed(before: &Value, after: &Value, path: &[Element], schema: Option<SchemaNode<'_>>) -> bool {
    shape::exists(before, path, schema) && !shape::exists(after, path, schema)
}

/// Whether two objects are equal apart from their managedFields.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            metadata.shift_remove("managedFields");
        }
        object
    };
    strip(a) == strip(b)
}
