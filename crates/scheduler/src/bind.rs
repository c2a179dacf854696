//! The scheduler's writes, all asynchronous so that the scheduling loop never waits on the API:
//! bindings (many in flight), PodScheduled conditions and nominations, evictions of preemption
//! victims, and events. Events are best effort, as upstream's broadcaster: when the API falls
//! behind, they are dropped rather than slowing scheduling down.

use std::sync::Arc;
use std::sync::mpsc::Sender;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kate_controllers::events::{Kind as EventKind, Recorder};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::informer::Event;
use crate::pod::PodInfo;

/// How many events may wait to be written before new ones are dropped (upstream's queue size).
const EVENT_BACKLOG: usize = 1000;

/// Why a binding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is already bound or is being deleted: the watch will say how.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The pod is gone.
    #[error("pod not found")]
    Gone,
    /// Anything else (worth retrying).
    #[error("binding failed: {0}")]
    Failed(#[from] kube::Error),
}

/// The outcome of a binding, reported back to the loop.
pub struct Bound {
    /// The pod as it was scheduled (not yet marked bound).
    pub pod: Arc<PodInfo>,
    /// The node.
    pub node: Arc<str>,
    /// Whether it worked.
    pub result: Result<(), BindError>,
}

/// What to do with a pod's `status.nominatedNodeName`.
pub enum Nomination {
    /// Leave it.
    Keep,
    /// Set it to this node.
    Set(Arc<str>),
    /// Clear it.
    Clear,
}

struct EventJob {
    object: ObjectReference,
    kind: EventKind,
    reason: &'static str,
    message: String,
}

/// Issues the scheduler's API writes on the runtime.
pub struct Writer {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    results: Sender<Event>,
    bindings: Arc<Semaphore>,
    events: mpsc::Sender<EventJob>,
    scheduler_name: String,
}

/// How the API refers to a pod in events.
fn reference(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()),
        ..Default::default()
    }
}

/// The status patch of a pod that fits nowhere, pinned to the version the decision was made on:
/// a pod bound (or changed) in the meantime refuses it with a conflict instead of being marked
/// unschedulable after the fact.
fn unschedulable_patch(pod: &PodInfo, status: Value) -> Value {
    if pod.resource_version.is_empty() {
        return json!({ "status": status });
    }
    json!({"metadata": {"resourceVersion": pod.resource_version}, "status": status})
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Writer {
    /// A writer on `runtime` that reports binding outcomes to `results`; it starts the event
    /// writer, which stops when the writer is dropped. Events are written one at a time, as
    /// upstream's broadcaster does, so that under load they yield to bindings.
    pub fn new(
        client: kube::Client,
        runtime: tokio::runtime::Handle,
        results: Sender<Event>,
        max_bindings: usize,
        scheduler_name: &str,
    ) -> Writer {
        let (events, mut rx) = mpsc::channel::<EventJob>(EVENT_BACKLOG);
        let recorder = Recorder::new(client.clone(), scheduler_name);
        runtime.spawn(async move {
            while let Some(job) = rx.recv().await {
                recorder.record(&job.object, job.kind, job.reason, &job.message).await;
            }
        });
        Writer {
            client,
            runtime,
            results,
            bindings: Arc::new(Semaphore::new(max_bindings.max(1))),
            events,
            scheduler_name: scheduler_name.to_string(),
        }
    }

    fn event(&self, pod: &PodInfo, kind: EventKind, reason: &'static str, message: String) {
        let job = EventJob {
            object: reference(pod),
            kind,
            reason,
            message,
        };
        if self.events.try_send(job).is_err() {
            tracing::debug!(namespace = %pod.namespace, name = %pod.name, reason, "event dropped: backlog full");
        }
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Binds the pod to the node and reports the outcome to the loop.
    pub fn bind(&self, pod: Arc<PodInfo>, node: Arc<str>) {
        let api = self.pods(&pod.namespace);
        let (results, bindings, events) = (self.results.clone(), self.bindings.clone(), self.events.clone());
        self.runtime.spawn(async move {
            let Ok(_permit) = bindings.acquire_owned().await else { return };
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod.name, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": &*node},
            });
            let result = match api
                .create_subresource::<_, Value>("binding", &pod.name, &PostParams::default(), &binding)
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Err(BindError::Conflict(e.message)),
                Err(kube::Error::Api(e)) if e.code == 404 => Err(BindError::Gone),
                Err(e) => Err(BindError::Failed(e)),
            };
            match &result {
                Ok(()) => {
                    tracing::debug!(namespace = %pod.namespace, name = %pod.name, node = %node, "bound");
                    let job = EventJob {
                        object: reference(&pod),
                        kind: EventKind::Normal,
                        reason: "Scheduled",
                        message: format!("Successfully assigned {}/{} to {node}", pod.namespace, pod.name),
                    };
                    let _ = events.try_send(job);
                }
                Err(e) => tracing::info!(namespace = %pod.namespace, name = %pod.name, node = %node, error = %e, "binding failed"),
            }
            let _ = results.send(Event::Bound(Bound { pod, node, result }));
        });
    }

    /// Records that the pod fits nowhere: the PodScheduled=False condition (when it changed),
    /// the nomination, and a FailedScheduling event.
    pub fn unschedulable(&self, pod: &PodInfo, message: String, nomination: Nomination) {
        tracing::debug!(namespace = %pod.namespace, name = %pod.name, %message, "unschedulable");
        let same_condition = pod
            .scheduled_condition
            .as_ref()
            .is_some_and(|(status, reason, msg)| status == "False" && reason == "Unschedulable" && *msg == message);
        let nominated = match &nomination {
            Nomination::Keep => None,
            Nomination::Set(node) if pod.nominated_node.as_deref() == Some(&**node) => None,
            Nomination::Set(node) => Some(json!(&**node)),
            Nomination::Clear if pod.nominated_node.is_none() => None,
            Nomination::Clear => Some(Value::Null),
        };
        self.event(pod, EventKind::Warning, "FailedScheduling", message.clone());
        if same_condition && nominated.is_none() {
            return;
        }
        let mut status = json!({"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": now(),
        }]});
        if let Some(n) = nominated {
            status["nominatedNodeName"] = n;
        }
        self.patch_status(pod, unschedulable_patch(pod, status));
    }

    /// Clears a pod's nomination (preemption gave its node to a more important pod).
    pub fn clear_nomination(&self, pod: &PodInfo) {
        self.patch_status(pod, json!({"status": {"nominatedNodeName": null}}));
    }

    fn patch_status(&self, pod: &PodInfo, patch: Value) {
        let api = self.pods(&pod.namespace);
        let (namespace, name) = (pod.namespace.clone(), pod.name.clone());
        self.runtime.spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(%namespace, %name, error = %e, "status update failed");
            }
        });
    }

    /// Evicts a preemption victim: marks it with the DisruptionTarget condition, deletes it
    /// and records a Preempted event.
    pub fn evict(&self, victim: Arc<PodInfo>, preemptor: &PodInfo, node: &str) {
        let api = self.pods(&victim.namespace);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", self.scheduler_name),
            "lastTransitionTime": now(),
        }]}});
        self.event(
            &victim,
            EventKind::Normal,
            "Preempted",
            format!("Preempted by pod {} on node {node}", preemptor.uid),
        );
        tracing::info!(namespace = %victim.namespace, name = %victim.name, preemptor = %preemptor.key, node, "preempting");
        self.runtime.spawn(async move {
            let (namespace, name) = (&victim.namespace, &victim.name);
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
                .await
            {
                tracing::debug!(%namespace, %name, error = %e, "could not mark the victim");
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(victim.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api.delete(name, &params).await {
                tracing::warn!(%namespace, %name, error = %e, "could not delete the victim");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unschedulable_patches_are_pinned_to_the_pod_version_seen() {
        let mut pod = crate::pod::tests::pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}));
        pod.resource_version = "42".into();
        let patch = unschedulable_patch(&pod, json!({"conditions": []}));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["status"], json!({"conditions": []}));
        pod.resource_version.clear();
        assert!(unschedulable_patch(&pod, json!({})).get("metadata").is_none());
    }
}
