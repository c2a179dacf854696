//! Controller references: which objects a controller owns. A controller keeps the objects whose
//! controller reference names it and that its selector still matches, adopts matching orphans
//! and releases owned objects that stopped matching, the way upstream's ControllerRefManager
//! does; the Deployment controller claims ReplicaSets with it and the ReplicaSet controller pods.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Error;

/// The controller side of a claim.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    uid: String,
    deleting: bool,
}

impl Owner {
    /// The owner facts of `obj`; `None` until the API server has given it a uid.
    pub(crate) fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<Owner> {
        Some(Owner {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: obj.meta().name.clone()?,
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            uid: obj.meta().uid.clone()?,
            deleting: obj.meta().deletion_timestamp.is_some(),
        })
    }

    /// The owner's uid.
    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }

    /// The controller reference dependents of this owner carry; `blockOwnerDeletion` lets a
    /// foreground deletion of the owner wait for them.
    pub(crate) fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The controller reference of an object, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// What a claim does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Owned and matching: the controller manages it.
    Keep,
    /// A matching orphan: take it over.
    Adopt,
    /// Owned but no longer matching: let it go.
    Release,
    /// Someone else's, or an orphan that does not match.
    Skip,
}

/// Decides what to do with an object given whether the owner's selector matches it.
pub(crate) fn verdict(owner: &Owner, meta: &ObjectMeta, matches: bool) -> Verdict {
    match controller_of(meta) {
        Some(r) if r.uid != owner.uid => Verdict::Skip,
        Some(_) if matches => Verdict::Keep,
        // An owner being deleted releases nothing, so its dependents go with it.
        Some(_) if owner.deleting => Verdict::Skip,
        Some(_) => Verdict::Release,
        None if !matches || owner.deleting || meta.deletion_timestamp.is_some() => Verdict::Skip,
        None if meta.namespace.as_deref().unwrap_or_default() != owner.namespace => Verdict::Skip,
        None => Verdict::Adopt,
    }
}

/// Returns the candidates `owner` controls, after adopting matching orphans and releasing owned
/// objects that stopped matching. `recheck` runs before the first adoption: it must fail if the
/// owner was deleted or replaced since the cached copy was read, since adopting for a dead
/// owner would hand the object to the garbage collector.
pub(crate) async fn claim<K>(
    api: &Api<K>,
    owner: &Owner,
    candidates: Vec<Arc<K>>,
    matches: impl Fn(&K) -> bool,
    recheck: impl Future<Output = Result<(), Error>>,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut recheck = Some(recheck);
    let mut claimed = Vec::with_capacity(candidates.len());
    for obj in candidates {
        match verdict(owner, obj.meta(), matches(&obj)) {
            Verdict::Keep => claimed.push(obj),
            Verdict::Skip => {}
            Verdict::Adopt => {
                if let Some(check) = recheck.take() {
                    check.await?;
                }
                // The uid makes the patch fail rather than adopt a namesake created meanwhile.
                let patch = json!({"metadata": {
                    "ownerReferences": [owner.reference()],
                    "uid": obj.meta().uid,
                }});
                match api
                    .patch(&obj.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(adopted) => {
                        tracing::debug!(object = %obj.name_any(), "adopted");
                        claimed.push(Arc::new(adopted));
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Verdict::Release => {
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": owner.uid}],
                    "uid": obj.meta().uid,
                }});
                match api
                    .patch(&obj.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(_) => tracing::debug!(object = %obj.name_any(), "released"),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(claimed)
}

/// Fails unless the owner, read fresh from the API, is still the same object and not being
/// deleted: the check upstream runs before adopting.
pub(crate) async fn recheck_owner<K>(api: Api<K>, owner: Owner) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let fresh = api.get(&owner.name).await?;
    if fresh.meta().uid.as_deref() != Some(owner.uid.as_str()) {
        return Err(Error::Invalid(format!(
            "original {} {}/{} is gone: got uid {}, wanted {}",
            owner.kind,
            owner.namespace,
            owner.name,
            fresh.meta().uid.as_deref().unwrap_or_default(),
            owner.uid
        )));
    }
    if fresh.meta().deletion_timestamp.is_some() {
        return Err(Error::Invalid(format!(
            "{} {}/{} has just been deleted",
            owner.kind, owner.namespace, owner.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(deleting: bool) -> Owner {
        Owner {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            deleting,
        }
    }

    fn meta(controller_uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("default".into()),
            owner_references: controller_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts() {
        let o = owner(false);
        assert_eq!(verdict(&o, &meta(Some("u1")), true), Verdict::Keep);
        assert_eq!(verdict(&o, &meta(Some("u1")), false), Verdict::Release);
        assert_eq!(verdict(&o, &meta(Some("other")), true), Verdict::Skip);
        assert_eq!(verdict(&o, &meta(None), true), Verdict::Adopt);
        assert_eq!(verdict(&o, &meta(None), false), Verdict::Skip);
        let mut elsewhere = meta(None);
        elsewhere.namespace = Some("other".into());
        assert_eq!(verdict(&o, &elsewhere, true), Verdict::Skip);
    }

    #[test]
    fn a_deleting_owner_neither_adopts_nor_releases() {
        let o = owner(true);
        assert_eq!(verdict(&o, &meta(None), true), Verdict::Skip);
        assert_eq!(verdict(&o, &meta(Some("u1")), false), Verdict::Skip);
        assert_eq!(verdict(&o, &meta(Some("u1")), true), Verdict::Keep);
    }
}
