//! The namespace controller: empties a terminating namespace, then releases its `kubernetes`
//! finalizer so the API server removes it; while content remains, the namespace's conditions
//! say what is left.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::{Context, Error};

/// The finalizer the API server puts in every namespace's spec.
const FINALIZER: &str = "kubernetes";
/// How often a terminating namespace is re-examined while content remains.
const RECHECK: Duration = Duration::from_secs(2);

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(RECHECK), ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "namespace reconcile failed");
            }
        })
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let holds_finalizer = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    if !holds_finalizer {
        return Ok(Action::await_change());
    }
    let remaining = delete_content(&ctx.client, &name).await?;
    if remaining.is_empty() {
        finalize(&ctx.client, &ns).await?;
        tracing::info!(namespace = %name, "namespace emptied and finalized");
        return Ok(Action::await_change());
    }
    report_remaining(&ctx.client, &ns, &remaining).await?;
    Ok(Action::requeue(RECHECK))
}

/// Deletes everything in the namespace; returns what is still there, as `resource: count`.
async fn delete_content(client: &kube::Client, ns: &str) -> Result<Vec<String>, Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut remaining = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let left = delete_all(client, ns, &resource).await?;
            if left > 0 {
                remaining.push(format!("{}: {left}", qualified(&resource)));
            }
        }
    }
    Ok(remaining)
}

async fn delete_all(client: &kube::Client, ns: &str, resource: &ApiResource) -> Result<usize, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let objects = api.list(&ListParams::default()).await?;
    let mut left = 0;
    for obj in objects.items {
        left += 1;
        if obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&obj.name_any(), &DeleteParams::background()).await {
            Ok(either) if either.is_right() => left -= 1,
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => left -= 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(left)
}

fn qualified(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// Removes the `kubernetes` finalizer through the finalize subresource.
async fn finalize(client: &kube::Client, ns: &Namespace) -> Result<(), Error> {
    let mut done = ns.clone();
    if let Some(spec) = done.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect(),
        );
    }
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .replace_subresource("finalize", &ns.name_any(), &PostParams::default(), &done)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets the `NamespaceContentRemaining` condition to what is left.
async fn report_remaining(client: &kube::Client, ns: &Namespace, remaining: &[String]) -> Result<(), Error> {
    let message = format!("Some resources are remaining: {}", remaining.join(", "));
    let current = ns.status.as_ref().and_then(|s| s.conditions.as_ref());
    if current.is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "NamespaceContentRemaining" && c.message.as_deref() == Some(&message))
    }) {
        return Ok(());
    }
    let mut status = ns.status.clone().unwrap_or_else(|| NamespaceStatus {
        phase: Some("Terminating".into()),
        ..Default::default()
    });
    let mut conditions: Vec<NamespaceCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "NamespaceContentRemaining")
        .collect();
    conditions.push(NamespaceCondition {
        type_: "NamespaceContentRemaining".into(),
        status: "True".into(),
        reason: Some("SomeResourcesRemain".into()),
        message: Some(message),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
    });
    status.conditions = Some(conditions);
    let mut updated = ns.clone();
    updated.status = Some(status);
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .replace_status(&ns.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
