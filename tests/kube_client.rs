//! kube-rs (kube 5) against a real `kate server`: paging, watch, bookmarks, 410 and re-list,
//! optimistic concurrency and every patch type.

use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kate_e2e::Cluster;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"suite": "kube"}}, "data": {"k": "v"}}))
        .expect("valid config map")
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    for n in 0..25 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{n:02}")))
            .await?;
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    let mut revisions = Vec::new();
    loop {
        let page = api.list(&params).await?;
        pages += 1;
        revisions.push(page.metadata.resource_version.clone());
        names.extend(page.items.iter().filter_map(|cm| cm.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert_eq!(names[0], "cm-00");
    assert_eq!(names[24], "cm-24");
    assert!(
        revisions.windows(2).all(|w| w[0] == w[1]),
        "every page belongs to one snapshot: {revisions:?}"
    );
    Ok(())
}

#[tokio::test]
async fn watch_from_a_resource_version_with_bookmarks() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    api.create(&PostParams::default(), &config_map("before")).await?;
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    api.create(&PostParams::default(), &config_map("after")).await?;
    api.delete("before", &Default::default()).await?;
    let params = WatchParams::default().timeout(2);
    let events: Vec<_> = api.watch(&params, &rv).await?.try_collect().await?;
    let mut seen = Vec::new();
    for ev in &events {
        match ev {
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.as_deref().unwrap_or(""))),
            WatchEvent::Deleted(cm) => seen.push(format!("DELETED {}", cm.metadata.name.as_deref().unwrap_or(""))),
            WatchEvent::Bookmark(b) => seen.push(format!("BOOKMARK {}", !b.metadata.resource_version.is_empty())),
            other => seen.push(format!("{other:?}")),
        }
    }
    assert_eq!(seen, ["ADDED after", "DELETED before", "BOOKMARK true"]);
    Ok(())
}

#[tokio::test]
async fn expired_resource_version_gives_410_then_relist_works() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = Cluster::start_with(dir, &["--history-seconds", "1"])?;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    api.create(&PostParams::default(), &config_map("old")).await?;
    let old_rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    api.create(&PostParams::default(), &config_map("mid")).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    api.create(&PostParams::default(), &config_map("new")).await?;
    let mut stream = api.watch(&WatchParams::default().timeout(5), &old_rv).await?.boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        Some(Err(kube::Error::Api(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410, got {other:?}"),
    }
    let relisted = api.list(&ListParams::default()).await?;
    assert_eq!(relisted.items.len(), 3);
    Ok(())
}

#[tokio::test]
async fn stale_resource_version_conflicts() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    let created = api.create(&PostParams::default(), &config_map("occ")).await?;
    let mut first = created.clone();
    first.data.get_or_insert_default().insert("k".into(), "first".into());
    let replaced = api.replace("occ", &PostParams::default(), &first).await?;
    assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);
    let mut stale = created.clone();
    stale.data.get_or_insert_default().insert("k".into(), "stale".into());
    match api.replace("occ", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(api.get("occ").await?.data.unwrap_or_default()["k"], "first");
    Ok(())
}

#[tokio::test]
async fn every_patch_type() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let api: Api<Deployment> = Api::namespaced(c.client().await?, "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}
            ]}}
        }
    }))?;
    api.create(&PostParams::default(), &deploy).await?;
    let pp = PatchParams::default();
    let merged = api
        .patch("web", &pp, &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})))
        .await?;
    assert_eq!(merged.metadata.labels.unwrap_or_default()["m"], "1");
    let strategic = api
        .patch(
            "web",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}}),
            ),
        )
        .await?;
    let containers = strategic
        .spec
        .unwrap_or_default()
        .template
        .spec
        .unwrap_or_default()
        .containers;
    assert_eq!(containers.len(), 2, "strategic merge keeps the other container");
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.28"));
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))?;
    let jsonp = api.patch("web", &pp, &Patch::Json::<()>(patch)).await?;
    assert_eq!(jsonp.spec.unwrap_or_default().replicas, Some(3));
    let applied = api
        .patch(
            "web",
            &PatchParams::apply("kube-test").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"applied": "yes"}}})),
        )
        .await?;
    assert_eq!(applied.metadata.annotations.unwrap_or_default()["applied"], "yes");
    Ok(())
}

#[tokio::test]
async fn namespace_lifecycle_and_finalize() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let c = Cluster::start()?;
    let client = c.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // A finalizer of the test's own holds the namespace once the namespace controller has
    // emptied it and removed its own, so that the finalize call below does not race it.
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": ["example.com/hold"]}}))?;
    let created = namespaces.create(&PostParams::default(), &ns).await?;
    assert_eq!(
        created.spec.and_then(|s| s.finalizers),
        Some(vec!["example.com/hold".to_string(), "kubernetes".to_string()])
    );
    namespaces.delete("doomed", &Default::default()).await?;
    let terminating = namespaces.get("doomed").await?;
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    match cms.create(&PostParams::default(), &config_map("late")).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden")),
        other => panic!("creates in a terminating namespace must be refused: {other:?}"),
    }
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "never-made");
    match missing.create(&PostParams::default(), &config_map("x")).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("creates in a missing namespace must be refused: {other:?}"),
    }
    let mut finalized = namespaces.get("doomed").await?;
    finalized.spec = Some(Default::default());
    // Unconditional: the namespace controller may take its own finalizer off meanwhile.
    finalized.metadata.resource_version = None;
    let body = serde_json::to_vec(&finalized)?;
    let req = http::Request::put("/api/v1/namespaces/doomed/finalize")
        .header("content-type", "application/json")
        .body(body)?;
    client.request::<Namespace>(req).await?;
    match namespaces.get("doomed").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("a finalized terminating namespace is removed: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn status_subresource_generate_name_and_propagation() -> anyhow::Result<()> {
    use kube::api::{DeleteParams, PostParams};
    let c = Cluster::start()?;
    let client = c.client().await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"generateName": "web-"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
        },
        "status": {"replicas": 99}
    }))?;
    let created = api.create(&PostParams::default(), &deploy).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(
        created.status.as_ref().and_then(|s| s.replicas),
        None,
        "status is not settable on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let status = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2}})),
        )
        .await?;
    assert_eq!(status.status.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status writes leave the generation alone"
    );
    let spec = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}})),
        )
        .await?;
    assert_eq!(
        spec.status.as_ref().and_then(|s| s.replicas),
        Some(2),
        "spec writes keep the status"
    );
    assert_eq!(spec.metadata.generation, Some(2));

    // The delete answers with the object as written: reading it back would race the garbage
    // collector, which finishes the deletion as soon as it sees the finalizer.
    let orphaning = api
        .delete(&name, &DeleteParams::orphan())
        .await?
        .left()
        .context("an orphaning delete returns the object")?;
    assert!(orphaning.metadata.deletion_timestamp.is_some());
    assert_eq!(orphaning.metadata.finalizers, Some(vec!["orphan".to_string()]));

    let other = api.create(&PostParams::default(), &deploy).await?;
    let other_name = other.metadata.name.unwrap_or_default();
    let foreground = api
        .delete(&other_name, &DeleteParams::foreground())
        .await?
        .left()
        .context("a foreground delete returns the object")?;
    assert_eq!(
        foreground.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    Ok(())
}

#[tokio::test]
async fn binding_assigns_a_pod_once() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Binding, Pod};
    let c = Cluster::start()?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "default");
    // Another scheduler's pod: the server's own scheduler would race the binding below with a
    // PodScheduled=False of its own, as it finds no node.
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
        "schedulerName": "by-hand", "containers": [{"name": "c", "image": "busybox"}]}}))?;
    pods.create(&PostParams::default(), &pod).await?;
    let binding: Binding =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}}))?;
    pods.create_subresource::<Binding, serde_json::Value>("binding", "p", &PostParams::default(), &binding)
        .await?;
    let bound = pods.get("p").await?;
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("node-1"));
    let scheduled = bound
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled");
    assert_eq!(scheduled.map(|c| c.status).as_deref(), Some("True"));
    match pods
        .create_subresource::<Binding, serde_json::Value>("binding", "p", &PostParams::default(), &binding)
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("a second binding must conflict: {other:?}"),
    }
    // A pod recreated under the same name is a new pod: binding it by its new UID works at
    // once, even if the server's cache still holds the bound one.
    pods.delete("p", &kube::api::DeleteParams::default().grace_period(0))
        .await?;
    let again = pods.create(&PostParams::default(), &pod).await?;
    let mut rebinding = binding.clone();
    rebinding.metadata.uid = again.metadata.uid.clone();
    pods.create_subresource::<Binding, serde_json::Value>("binding", "p", &PostParams::default(), &rebinding)
        .await?;
    let rebound = pods.get("p").await?;
    assert_eq!(rebound.metadata.uid, again.metadata.uid);
    assert_eq!(rebound.spec.and_then(|s| s.node_name).as_deref(), Some("node-1"));
    let mut stale = binding;
    stale.metadata.uid = bound.metadata.uid;
    match pods
        .create_subresource::<Binding, serde_json::Value>("binding", "p", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("a binding for the deleted pod must conflict: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn events_api_and_core_events_are_the_same_events() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let c = Cluster::start()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms.create(&PostParams::default(), &config_map("watched")).await?;
    let uid = cm.metadata.uid.clone().unwrap_or_default();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "watched.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/operator",
        "reportingInstance": "operator-0",
        "action": "Reconcile",
        "reason": "Reconciled",
        "note": "all good",
        "type": "Normal",
        "regarding": {"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "watched", "uid": uid}
    }))?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events.create(&PostParams::default(), &event).await?;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let seen = core.get("watched.1").await?;
    assert_eq!(seen.message.as_deref(), Some("all good"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("watched"));
    assert_eq!(events.get("watched.1").await?.note.as_deref(), Some("all good"));
    let described = c.kubectl(&["describe", "cm", "watched"])?;
    assert!(
        described.contains("Reconciled") && described.contains("all good"),
        "{described}"
    );
    let listed = c.kubectl(&["get", "events", "-o", "name"])?;
    assert!(listed.contains("event/watched.1"), "{listed}");
    Ok(())
}

#[tokio::test]
async fn metadata_only_get_list_and_watch() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    api.create(&PostParams::default(), &config_map("meta")).await?;
    let meta = api.get_metadata("meta").await?;
    assert_eq!(meta.metadata.name.as_deref(), Some("meta"));
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let list = api.list_metadata(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 1);
    let rv = list.metadata.resource_version.unwrap_or_default();
    api.create(&PostParams::default(), &config_map("meta-2")).await?;
    let events: Vec<_> = api
        .watch_metadata(&WatchParams::default().timeout(1), &rv)
        .await?
        .try_collect()
        .await?;
    let added: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Added(m) => m.metadata.name.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(added, ["meta-2"]);
    Ok(())
}
