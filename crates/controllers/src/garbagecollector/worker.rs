//! What a worker does with a queued item. The graph only says where to look: every decision to
//! delete an object or edit its ownerReferences rests on a live read of it and of its owners,
//! and every write is pinned to what was read (uid and resourceVersion preconditions) so that
//! a concurrent change makes it fail and be retried from a fresh read rather than act on stale
//! data.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::{Map, Value, json};

use super::Shared;
use super::graph::{FOREGROUND, Identity, Item, Node, ORPHAN};
use crate::Error;
use crate::events::Kind as EventKind;

/// How soon a step that needs the complete graph is retried while a watch is still listing.
const UNSYNCED_RECHECK: Duration = Duration::from_secs(1);
/// How many times a read-modify-write is retried when the object changed in between.
const CONFLICT_RETRIES: usize = 5;
/// How many owners confirmed absent are remembered.
const ABSENT_CAPACITY: usize = 1024;
/// How many dependents are orphaned at once.
const ORPHAN_CONCURRENCY: usize = 16;

/// What became of an item.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing more to do until the graph changes again.
    Done,
    /// Look again after this long.
    Later(Duration),
}

/// Owners confirmed absent, as (uid, namespace looked in): a uid is never reused, so one
/// lookup serves every dependent of a deleted owner.
#[derive(Debug, Default)]
pub struct AbsentOwners {
    known: HashSet<(String, Option<String>)>,
    order: VecDeque<(String, Option<String>)>,
}

impl AbsentOwners {
    fn contains(&self, key: &(String, Option<String>)) -> bool {
        self.known.contains(key)
    }

    fn insert(&mut self, key: (String, Option<String>)) {
        if self.known.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > ABSENT_CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.known.remove(&oldest);
            }
        }
    }
}

/// Works on one item.
pub async fn process(shared: &Shared, item: &Item) -> Result<Outcome, Error> {
    match item {
        Item::Delete(uid) => attempt_to_delete(shared, uid).await,
        Item::Orphan(uid) => orphan_dependents(shared, uid).await,
    }
}

/// How an object's owners stand, by uid.
#[derive(Debug, Default)]
struct Owners {
    /// Exist and are not waiting for their dependents to go.
    solid: Vec<String>,
    /// Do not exist (or not where the reference says).
    dangling: Vec<String>,
    /// Exist, being deleted in the foreground.
    waiting: Vec<String>,
}

/// Collects the object if its owners are gone or deleting it in the foreground, or finishes
/// its own foreground deletion once its blocking dependents are gone.
async fn attempt_to_delete(shared: &Shared, uid: &str) -> Result<Outcome, Error> {
    let Some(node) = shared.node(uid) else {
        return Ok(Outcome::Done);
    };
    if node.deleting_dependents() {
        return finish_foreground(shared, &node).await;
    }
    if node.deleting || node.owners.is_empty() || !shared.graph(|g| g.needs_check(&node)) {
        return Ok(Outcome::Done);
    }
    let id = &node.identity;
    let Some(latest) = get_live(shared, &id.resource, id.namespace.as_deref(), &id.name, &id.uid).await? else {
        return Ok(Outcome::Done);
    };
    if latest.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::Done);
    }
    let references = latest.metadata.owner_references.clone().unwrap_or_default();
    if references.is_empty() {
        return Ok(Outcome::Done);
    }
    let Some(owners) = classify(shared, id, &references).await? else {
        return Ok(Outcome::Done);
    };
    if !owners.solid.is_empty() {
        if owners.dangling.is_empty() && owners.waiting.is_empty() {
            return Ok(Outcome::Done);
        }
        // Some owner remains: the object stays, without the references that no longer hold it.
        let dropped: HashSet<&String> = owners.dangling.iter().chain(&owners.waiting).collect();
        let removed = update_meta(shared, id, |meta| {
            let refs = meta.owner_references.clone().unwrap_or_default();
            let kept: Vec<_> = refs.iter().filter(|r| !dropped.contains(&r.uid)).collect();
            (kept.len() != refs.len()).then(|| fields("ownerReferences", list_or_null(&kept)))
        })
        .await?;
        if removed {
            tracing::info!(
                namespace = id.namespace.as_deref().unwrap_or(""),
                name = %id.name,
                kind = %id.resource.kind,
                "removed ownerReferences to owners that are gone or going"
            );
        }
        return Ok(Outcome::Done);
    }
    let dependents = shared.graph(|g| g.dependents(uid).into_iter().cloned().collect::<Vec<Node>>());
    if !owners.waiting.is_empty() && !dependents.is_empty() {
        if dependents.iter().any(Node::deleting_dependents) {
            // A dependent of this object waits for its own dependents, which may include this
            // object's owners: blocking references could then wait on each other forever, so
            // this object stops blocking its owners before going.
            let waiting: HashSet<&String> = owners.waiting.iter().collect();
            let unblocked = update_meta(shared, id, |meta| {
                let mut refs = meta.owner_references.clone().unwrap_or_default();
                let mut changed = false;
                for r in refs.iter_mut().filter(|r| waiting.contains(&r.uid)) {
                    if r.block_owner_deletion == Some(true) {
                        r.block_owner_deletion = Some(false);
                        changed = true;
                    }
                }
                changed.then(|| fields("ownerReferences", json!(refs)))
            })
            .await?;
            if unblocked {
                // The deletion below is pinned to the version read; read the new one first.
                return Ok(Outcome::Later(Duration::ZERO));
            }
        }
        // Its owner waits for it, and it has dependents of its own: they go first.
        delete(shared, &latest, id, PropagationPolicy::Foreground).await?;
        return Ok(Outcome::Done);
    }
    let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    delete(shared, &latest, id, policy).await?;
    Ok(Outcome::Done)
}

/// Looks up every owner live. `None` when a reference can never be resolved (a cluster-scoped
/// object naming a namespaced owner): upstream leaves such objects alone.
async fn classify(shared: &Shared, id: &Identity, references: &[OwnerReference]) -> Result<Option<Owners>, Error> {
    let mut owners = Owners::default();
    for r in references {
        let kind = shared
            .resolve(&r.api_version, &r.kind)
            .ok_or_else(|| Error::Invalid(format!("owner kind {} {} is not served", r.api_version, r.kind)))?;
        if kind.namespaced && id.namespace.is_none() {
            let message = format!(
                "ownerRef [{}/{}, name: {}, uid: {}] names a namespaced kind, which a cluster-scoped object cannot have as owner",
                r.api_version, r.kind, r.name, r.uid
            );
            warn_invalid_namespace(shared, id, &message).await;
            tracing::warn!(name = %id.name, kind = %id.resource.kind, %message, "owner can never be resolved");
            return Ok(None);
        }
        let namespace = if kind.namespaced { id.namespace.clone() } else { None };
        let key = (r.uid.clone(), namespace.clone());
        if lock_absent(shared).contains(&key) {
            owners.dangling.push(r.uid.clone());
            continue;
        }
        match get_live(shared, &kind.resource, namespace.as_deref(), &r.name, &r.uid).await? {
            None => {
                lock_absent(shared).insert(key);
                report_elsewhere(shared, id, r).await;
                owners.dangling.push(r.uid.clone());
            }
            Some(owner)
                if owner.metadata.deletion_timestamp.is_some()
                    && owner
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| f.iter().any(|f| f == FOREGROUND)) =>
            {
                owners.waiting.push(r.uid.clone());
            }
            Some(_) => owners.solid.push(r.uid.clone()),
        }
    }
    Ok(Some(owners))
}

/// Warns when a dangling reference's uid belongs to an object in another namespace: the
/// dependent is collected all the same, since owners never cross namespaces.
async fn report_elsewhere(shared: &Shared, id: &Identity, r: &OwnerReference) {
    let elsewhere = shared.graph(|g| {
        g.get(&r.uid)
            .and_then(|o| o.identity.namespace.clone())
            .filter(|ns| Some(ns) != id.namespace.as_ref())
    });
    if let Some(ns) = elsewhere {
        let message = format!(
            "ownerRef [{}/{}, namespace: {ns}, name: {}, uid: {}] does not exist in namespace {:?}",
            r.api_version,
            r.kind,
            r.name,
            r.uid,
            id.namespace.as_deref().unwrap_or("")
        );
        warn_invalid_namespace(shared, id, &message).await;
    }
}

/// Records upstream's warning about an owner reference that can never resolve.
async fn warn_invalid_namespace(shared: &Shared, id: &Identity, message: &str) {
    shared
        .ctx
        .events
        .record(
            &object_reference(id),
            EventKind::Warning,
            "OwnerRefInvalidNamespace",
            message,
        )
        .await;
}

/// Removes the `foregroundDeletion` finalizer once no blocking dependent remains; until then
/// makes sure each of them is on its way out.
async fn finish_foreground(shared: &Shared, owner: &Node) -> Result<Outcome, Error> {
    // An unlisted resource could hold a blocking dependent the graph does not know yet.
    if !shared.all_synced() {
        return Ok(Outcome::Later(UNSYNCED_RECHECK));
    }
    let uid = &owner.identity.uid;
    let blocking = shared.graph(|g| {
        g.blocking_dependents(uid)
            .into_iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents()))
            .collect::<Vec<_>>()
    });
    if blocking.is_empty() {
        if remove_finalizer(shared, &owner.identity, FOREGROUND).await? {
            tracing::info!(
                namespace = owner.identity.namespace.as_deref().unwrap_or(""),
                name = %owner.identity.name,
                kind = %owner.identity.resource.kind,
                "foreground deletion finished"
            );
        }
        return Ok(Outcome::Done);
    }
    for (dependent, cascading) in blocking {
        // One deleting its own dependents already is on its way; its removal wakes us.
        if !cascading {
            shared.queue.add(Item::Delete(dependent));
        }
    }
    Ok(Outcome::Done)
}

/// Removes the owner from its dependents' ownerReferences, then its `orphan` finalizer.
async fn orphan_dependents(shared: &Shared, uid: &str) -> Result<Outcome, Error> {
    let Some(owner) = shared.node(uid) else {
        return Ok(Outcome::Done);
    };
    if !owner.orphaning() {
        return Ok(Outcome::Done);
    }
    // An unlisted resource could hold a dependent the graph does not know yet.
    if !shared.all_synced() {
        return Ok(Outcome::Later(UNSYNCED_RECHECK));
    }
    let dependents: Vec<Identity> =
        shared.graph(|g| g.dependents(uid).into_iter().map(|d| d.identity.clone()).collect());
    let count = dependents.len();
    futures::stream::iter(dependents)
        .map(Ok)
        .try_for_each_concurrent(ORPHAN_CONCURRENCY, |dependent| async move {
            update_meta(shared, &dependent, |meta| {
                let refs = meta.owner_references.clone().unwrap_or_default();
                let kept: Vec<_> = refs.iter().filter(|r| r.uid != uid).collect();
                (kept.len() != refs.len()).then(|| fields("ownerReferences", list_or_null(&kept)))
            })
            .await
            .map(drop)
        })
        .await?;
    if remove_finalizer(shared, &owner.identity, ORPHAN).await? {
        tracing::info!(
            namespace = owner.identity.namespace.as_deref().unwrap_or(""),
            name = %owner.identity.name,
            kind = %owner.identity.resource.kind,
            dependents = count,
            "orphaned dependents"
        );
    }
    Ok(Outcome::Done)
}

fn lock_absent(shared: &Shared) -> std::sync::MutexGuard<'_, AbsentOwners> {
    // Entries are facts that stay true (uids are never reused), so whatever a panic left in
    // the cache is still valid.
    shared.absent.lock().unwrap_or_else(|e| e.into_inner())
}

fn api(shared: &Shared, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    let client = shared.ctx.client.clone();
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, resource),
        None => Api::all_with(client, resource),
    }
}

/// The object with this name, provided it still is the one with this uid.
async fn get_live(
    shared: &Shared,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
) -> Result<Option<DynamicObject>, Error> {
    let found = api(shared, resource, namespace).get_opt(name).await?;
    Ok(found.filter(|o| o.metadata.uid.as_deref() == Some(uid)))
}

/// Deletes the object, provided it is still as `latest` was read: were its ownerReferences
/// changed meanwhile (an adoption, say), the deletion fails with a conflict and is retried
/// from a fresh read.
async fn delete(
    shared: &Shared,
    latest: &DynamicObject,
    id: &Identity,
    policy: PropagationPolicy,
) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(policy.clone()),
        preconditions: Some(Preconditions {
            uid: Some(id.uid.clone()),
            resource_version: latest.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api(shared, &id.resource, id.namespace.as_deref())
        .delete(&id.name, &params)
        .await
    {
        Ok(_) => {
            tracing::info!(
                namespace = id.namespace.as_deref().unwrap_or(""),
                name = %id.name,
                kind = %id.resource.kind,
                ?policy,
                "deleted an object whose owners are gone or going"
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes one finalizer from the object; returns whether it was there.
async fn remove_finalizer(shared: &Shared, id: &Identity, finalizer: &str) -> Result<bool, Error> {
    update_meta(shared, id, |meta| {
        let all = meta.finalizers.clone().unwrap_or_default();
        let kept: Vec<_> = all.iter().filter(|f| *f != finalizer).collect();
        (kept.len() != all.len()).then(|| fields("finalizers", list_or_null(&kept)))
    })
    .await
}

/// Reads the object and merge-patches the metadata fields `change` computes from it (none:
/// nothing to do), pinned to the resourceVersion read; re-reads and retries on conflict.
/// Returns whether it patched.
async fn update_meta(
    shared: &Shared,
    id: &Identity,
    change: impl Fn(&ObjectMeta) -> Option<Map<String, Value>>,
) -> Result<bool, Error> {
    let api = api(shared, &id.resource, id.namespace.as_deref());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(latest) = get_live(shared, &id.resource, id.namespace.as_deref(), &id.name, &id.uid).await? else {
            return Ok(false);
        };
        let Some(mut meta) = change(&latest.metadata) else {
            return Ok(false);
        };
        meta.insert("resourceVersion".into(), json!(latest.metadata.resource_version));
        let patch = json!({ "metadata": meta });
        match api
            .patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < CONFLICT_RETRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A metadata patch setting one field.
fn fields(name: &str, value: Value) -> Map<String, Value> {
    Map::from_iter([(name.to_string(), value)])
}

/// A list for a merge patch, `null` when empty so that the field goes away.
fn list_or_null<T: serde::Serialize>(items: &[T]) -> Value {
    if items.is_empty() { Value::Null } else { json!(items) }
}

fn object_reference(id: &Identity) -> ObjectReference {
    ObjectReference {
        api_version: Some(id.resource.api_version.clone()),
        kind: Some(id.resource.kind.clone()),
        name: Some(id.name.clone()),
        namespace: id.namespace.clone(),
        uid: Some(id.uid.clone()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_owners_are_bounded() {
        let mut absent = AbsentOwners::default();
        for i in 0..=ABSENT_CAPACITY {
            absent.insert((format!("u{i}"), None));
        }
        assert!(!absent.contains(&("u0".into(), None)), "the oldest is dropped");
        assert!(absent.contains(&(format!("u{ABSENT_CAPACITY}"), None)));
        assert!(
            !absent.contains(&("u1".into(), Some("ns".into()))),
            "keyed by namespace too"
        );
        assert_eq!(absent.known.len(), ABSENT_CAPACITY);
    }

    #[test]
    fn empty_lists_patch_to_null() {
        assert_eq!(list_or_null::<String>(&[]), Value::Null);
        assert_eq!(list_or_null(&["a"]), json!(["a"]));
    }
}
