//! The garbage collector against a real `kate server`: background, foreground and orphan
//! cascades through the real kubectl, owners that never existed or live elsewhere, several
//! owners, and a `kill -9` in the middle of cascades. Owners and dependents are ConfigMaps,
//! Secrets and PriorityClasses wired together by hand with ownerReferences.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kate_e2e::{Cluster, eventually};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

/// A finalizer no controller knows, to hold an object while the test looks.
const HOLD: &str = "example.com/hold";

/// An ownerReference to `owner`.
fn owned_by<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": owner.name_any(),
        "uid": owner.uid(),
        "blockOwnerDeletion": block,
    })
}

/// An ownerReference to a ConfigMap that never existed.
fn ghost(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": "00000000-0000-0000-0000-00000000dead"})
}

/// Creates an object with these owners and finalizers.
async fn create<K>(api: &Api<K>, name: &str, owners: Vec<Value>, finalizers: &[&str]) -> anyhow::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    create_with(api, name, owners, finalizers, json!({})).await
}

/// Creates an object with these owners and finalizers and the fields of `body`.
async fn create_with<K>(
    api: &Api<K>,
    name: &str,
    owners: Vec<Value>,
    finalizers: &[&str],
    mut body: Value,
) -> anyhow::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut metadata = json!({"name": name});
    if !owners.is_empty() {
        metadata["ownerReferences"] = json!(owners);
    }
    if !finalizers.is_empty() {
        metadata["finalizers"] = json!(finalizers);
    }
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    body["metadata"] = metadata;
    let obj: K = serde_json::from_value(body)?;
    Ok(api.create(&PostParams::default(), &obj).await?)
}

async fn gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.is_none())
}

/// The uids an object's ownerReferences name.
async fn owner_uids<K>(api: &Api<K>, name: &str) -> anyhow::Result<Vec<String>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let obj = api.get(name).await?;
    Ok(obj.owner_references().iter().map(|r| r.uid.clone()).collect())
}

async fn release<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"finalizers": null}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

#[tokio::test]
async fn background_deletion_collects_dependents_and_theirs() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let owner = create(&cms, "owner", vec![], &[]).await?;
    let child = create(&cms, "child", vec![owned_by(&owner, false)], &[]).await?;
    create(&secrets, "child", vec![owned_by(&owner, true)], &[]).await?;
    create(&cms, "grandchild", vec![owned_by(&child, false)], &[]).await?;
    create(&cms, "bystander", vec![], &[]).await?;

    c.kubectl(&["delete", "cm", "owner"])?;
    let (cms, secrets) = (&cms, &secrets);
    eventually("the dependents to go", async || {
        Ok(gone(cms, "child").await? && gone(secrets, "child").await? && gone(cms, "grandchild").await?)
    })
    .await?;
    assert!(!gone(cms, "bystander").await?, "objects without owners stay");
    Ok(())
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let owner = create(&cms, "owner", vec![], &[]).await?;
    let middle = create(&cms, "middle", vec![owned_by(&owner, true)], &[]).await?;
    create(&cms, "leaf", vec![owned_by(&middle, true)], &[HOLD]).await?;
    create(&secrets, "loose", vec![owned_by(&owner, false)], &[HOLD]).await?;

    c.kubectl(&["delete", "cm", "owner", "--cascade=foreground", "--wait=false"])?;
    let (cms, secrets) = (&cms, &secrets);
    eventually("the cascade to reach the leaf", async || {
        let leaf = cms.get("leaf").await?;
        let loose = secrets.get("loose").await?;
        Ok(leaf.metadata.deletion_timestamp.is_some() && loose.metadata.deletion_timestamp.is_some())
    })
    .await?;
    let middle = cms.get("middle").await?;
    assert!(
        middle.metadata.deletion_timestamp.is_some() && has_finalizer(&middle, "foregroundDeletion"),
        "a dependent with dependents is itself deleted in the foreground: {:?}",
        middle.metadata
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let owner = cms.get("owner").await?;
    assert!(
        owner.metadata.deletion_timestamp.is_some() && has_finalizer(&owner, "foregroundDeletion"),
        "the owner waits for its blocking dependents: {:?}",
        owner.metadata
    );

    release(cms, "leaf").await?;
    eventually("the owner to go once its blocking dependents are gone", async || {
        Ok(gone(cms, "leaf").await? && gone(cms, "middle").await? && gone(cms, "owner").await?)
    })
    .await?;
    assert!(
        !gone(secrets, "loose").await?,
        "a non-blocking dependent does not hold its owner"
    );
    release(secrets, "loose").await?;

    // Through kubectl's own wait, as users run it.
    let owner = create(cms, "owner2", vec![], &[]).await?;
    create(cms, "child2", vec![owned_by(&owner, true)], &[]).await?;
    c.kubectl(&["delete", "cm", "owner2", "--cascade=foreground", "--timeout=30s"])?;
    assert!(gone(cms, "child2").await? && gone(cms, "owner2").await?);
    Ok(())
}

#[tokio::test]
async fn orphan_deletion_leaves_dependents_without_the_owner() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let owner = create(&cms, "owner", vec![], &[]).await?;
    let keeper = create(&cms, "keeper", vec![], &[]).await?;
    create(
        &cms,
        "shared",
        vec![owned_by(&owner, true), owned_by(&keeper, false)],
        &[],
    )
    .await?;
    create(&secrets, "only", vec![owned_by(&owner, true)], &[]).await?;

    let out = c.kubectl(&["delete", "cm", "owner", "--cascade=orphan", "--timeout=30s"])?;
    assert_eq!(out.trim(), "configmap \"owner\" deleted");
    assert!(gone(&cms, "owner").await?);
    assert_eq!(owner_uids(&cms, "shared").await?, [keeper.uid().unwrap_or_default()]);
    let only = secrets.get("only").await?;
    assert!(only.metadata.owner_references.is_none(), "{:?}", only.metadata);
    // Orphans are not collected later either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!gone(&secrets, "only").await? && !gone(&cms, "shared").await?);
    Ok(())
}

#[tokio::test]
async fn owners_that_do_not_exist_where_named() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let classes: Api<PriorityClass> = Api::all(client.clone());
    c.kubectl(&["create", "namespace", "other"])?;
    let other: Api<ConfigMap> = Api::namespaced(client, "other");

    create(&cms, "orphan-from-birth", vec![ghost("never")], &[]).await?;
    // An owner in another namespace does not count: owners never cross namespaces.
    let owner = create(&cms, "owner", vec![], &[]).await?;
    create(&other, "elsewhere", vec![owned_by(&owner, false)], &[]).await?;
    // A cluster-scoped owner is looked up by name alone; the dangling reference beside it goes.
    let value = json!({"value": 1000});
    let class = create_with(&classes, "gc-owner", vec![], &[], value.clone()).await?;
    create(
        &cms,
        "class-child",
        vec![owned_by(&class, false), ghost("gone-too")],
        &[],
    )
    .await?;
    // A cluster-scoped object cannot have a namespaced owner: it is left alone.
    create_with(&classes, "bad-child", vec![owned_by(&owner, false)], &[], value).await?;

    let (cms, other, classes) = (&cms, &other, &classes);
    eventually("objects with missing owners to go", async || {
        Ok(gone(cms, "orphan-from-birth").await? && gone(other, "elsewhere").await?)
    })
    .await?;
    eventually("the dangling reference to go", async || {
        Ok(owner_uids(cms, "class-child").await? == [class.uid().unwrap_or_default()])
    })
    .await?;
    eventually("warnings about invalid owner references", async || {
        let events = c.kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector=reason=OwnerRefInvalidNamespace",
        ])?;
        Ok(events.contains("elsewhere") && events.contains("bad-child"))
    })
    .await?;
    assert!(
        !gone(classes, "bad-child").await?,
        "an unresolvable reference keeps the object"
    );
    assert!(!gone(cms, "owner").await?);

    c.kubectl(&["delete", "priorityclass", "gc-owner"])?;
    eventually("the cluster-scoped owner's dependent to go", async || {
        gone(cms, "class-child").await
    })
    .await
}

#[tokio::test]
async fn a_dependent_with_two_owners_outlives_one() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    let first = create(&cms, "first", vec![], &[]).await?;
    let second = create(&cms, "second", vec![], &[]).await?;
    create(
        &cms,
        "child",
        vec![owned_by(&first, true), owned_by(&second, true)],
        &[],
    )
    .await?;

    c.kubectl(&["delete", "cm", "first"])?;
    let cms = &cms;
    let second_uid = second.uid().unwrap_or_default();
    eventually("the reference to the deleted owner to go", async || {
        Ok(owner_uids(cms, "child").await? == [second_uid.clone()])
    })
    .await?;

    // Foreground deletion of the other owner also takes the dependent, now that it is the last.
    c.kubectl(&["delete", "cm", "second", "--cascade=foreground", "--timeout=30s"])?;
    assert!(gone(cms, "child").await?);
    Ok(())
}

#[tokio::test]
async fn cascades_survive_kill_9() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let held = create(&cms, "held", vec![], &[]).await?;
    create(&cms, "held-child", vec![owned_by(&held, true)], &[HOLD]).await?;
    let dropped = create(&cms, "dropped", vec![], &[]).await?;
    for i in 0..20 {
        create(&cms, &format!("dropped-{i}"), vec![owned_by(&dropped, false)], &[]).await?;
    }
    c.kubectl(&["delete", "cm", "held", "--cascade=foreground", "--wait=false"])?;
    let cms_ref = &cms;
    eventually("the foreground cascade to start", async || {
        Ok(cms_ref.get("held-child").await?.metadata.deletion_timestamp.is_some())
    })
    .await?;

    // Take the controller-manager lease away so that the collector stops, then delete an
    // owner: only a collector rebuilt from lists after the restart can find its dependents.
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let steal = json!({"spec": {
        "holderIdentity": "a-test",
        "leaseDurationSeconds": 10,
        "renewTime": MicroTime(Timestamp::now()),
    }});
    leases
        .patch(
            "kate-controller-manager",
            &PatchParams::default(),
            &Patch::Merge(&steal),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.kubectl(&["delete", "cm", "dropped"])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!gone(&cms, "dropped-0").await?, "the collector is stopped");
    let dir = c.kill();

    let c = Cluster::start_in(dir)?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    let cms = &cms;
    eventually("the background cascade after the restart", async || {
        for i in 0..20 {
            if !gone(cms, &format!("dropped-{i}")).await? {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let held = cms.get("held").await?;
    assert!(
        has_finalizer(&held, "foregroundDeletion"),
        "still waiting: {:?}",
        held.metadata
    );
    release(cms, "held-child").await?;
    eventually("the foreground cascade to finish after the restart", async || {
        Ok(gone(cms, "held-child").await? && gone(cms, "held").await?)
    })
    .await
}
