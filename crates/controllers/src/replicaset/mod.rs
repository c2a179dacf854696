//! The ReplicaSet controller: keeps `spec.replicas` pods from a ReplicaSet's template.
//!
//! Pods come from the process's shared pod informer, whose changes also wake the owning
//! ReplicaSet (or, for an orphan, every ReplicaSet whose selector matches it). A pass
//! claims the pods (adopting matching orphans, releasing owned pods that stopped matching),
//! creates or deletes the difference and writes the status. Creations go out in slow-start
//! batches (1, 2, 4, …) with many requests in flight, so a broken template costs one failed
//! request while a healthy one gets its pods fast. Because the store lags the API, every
//! create and delete is recorded as an expectation, and a ReplicaSet is not acted on again
//! until the store has shown them: otherwise it would count too few pods and create twice.
//! Events (SuccessfulCreate, …) are kept within a per-ReplicaSet budget, as upstream's spam
//! filter does.

mod budget;
mod expectations;
pub(crate) mod ownership;
mod pods;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::Instrument;

use self::budget::EventBudget;
use self::expectations::Expectations;
use self::ownership::Owner;
use crate::events::Kind;
use crate::informer::{Event, Shared};
use crate::{Context, Error};

/// Most pods created or deleted in one pass; the rest wait for the next, as upstream's burst.
const BURST: usize = 500;
/// Requests in flight at once within a batch: enough to keep the API server busy, few enough
/// to bound the connections they need (one each over HTTP/1.1).
const IN_FLIGHT: usize = 64;
/// How long a pass waits for the pod store's first list before trying again later.
const STORE_WAIT: Duration = Duration::from_secs(5);
/// When to retry a pass that failed.
const RETRY: Duration = Duration::from_secs(2);

/// What the passes share.
struct State {
    ctx: Arc<Context>,
    pods: Shared<Pod>,
    sets: Store<ReplicaSet>,
    expectations: Arc<Expectations>,
    budget: EventBudget,
}

impl State {
    /// Records an event about a ReplicaSet, within its budget.
    async fn record(&self, reference: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        if self.budget.allow(reference.uid.as_deref().unwrap_or_default()) {
            self.ctx.events.record(reference, kind, reason, message).await;
        }
    }
}

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let expectations = Arc::new(Expectations::default());
    let pods = ctx.informers.pods.clone();
    let mut observer = Observer {
        expectations: expectations.clone(),
        relisted: Vec::new(),
    };
    let pod_events = pods.subscribe().filter_map(move |event| {
        observer.apply(&event);
        std::future::ready(event.object().cloned())
    });
    let controller = Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default());
    let sets = controller.store();
    let state = Arc::new(State {
        ctx,
        pods,
        sets: sets.clone(),
        expectations,
        budget: EventBudget::default(),
    });
    controller
        .watches_shared_stream(pod_events, move |pod| owners_of(&sets, &pod))
        .run(reconcile, |_, _, _| Action::requeue(RETRY), state)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "replicaset reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// Marks the expectations that pod changes meet; the shared store holds a change before its
/// event is heard.
struct Observer {
    expectations: Arc<Expectations>,
    /// Owners of pods that a re-list found new; counted once the re-list is complete.
    relisted: Vec<String>,
}

impl Observer {
    fn apply(&mut self, event: &Event<Pod>) {
        match event {
            Event::Applied { object: pod, new } => {
                if let Some(uid) = owner_uid(pod) {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(uid, &pod.name_any());
                    } else if *new {
                        self.expectations.creation_observed(uid);
                    }
                }
            }
            Event::Deleted(pod) => {
                if let Some(uid) = owner_uid(pod) {
                    self.expectations.deletion_observed(uid, &pod.name_any());
                }
            }
            Event::Relisting => self.relisted.clear(),
            Event::Listed { object: pod, new } => {
                if let Some(uid) = owner_uid(pod)
                    && pod.metadata.deletion_timestamp.is_none()
                    && *new
                {
                    self.relisted.push(uid.to_string());
                }
            }
            Event::Synced => {
                for uid in self.relisted.drain(..) {
                    self.expectations.creation_observed(&uid);
                }
            }
        }
    }
}

/// The uid of the ReplicaSet controlling `pod`, if one does.
fn owner_uid(pod: &Pod) -> Option<&str> {
    ownership::controller_of(&pod.metadata)
        .filter(|r| r.kind == "ReplicaSet")
        .map(|r| r.uid.as_str())
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet in
/// its namespace that could adopt it.
fn owners_of(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let Some(ns) = pod.namespace() else {
        return Vec::new();
    };
    if let Some(r) = ownership::controller_of(&pod.metadata) {
        return match r.kind.as_str() {
            "ReplicaSet" => vec![ObjectRef::new(&r.name).within(&ns)],
            _ => Vec::new(),
        };
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| Selector::try_from(s.selector.clone()).ok())
                .is_some_and(|sel| sel.matches(pod.labels()))
        })
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

async fn reconcile(rs: Arc<ReplicaSet>, st: Arc<State>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "replicaset",
        namespace = %rs.namespace().unwrap_or_default(),
        name = %rs.name_any()
    );
    sync(&rs, &st).instrument(span).await
}

/// One pass over a ReplicaSet.
async fn sync(rs: &ReplicaSet, st: &State) -> Result<Action, Error> {
    // Acting before the first pod list arrived would create every replica again.
    if tokio::time::timeout(STORE_WAIT, st.pods.wait_synced()).await.is_err() {
        return Ok(Action::requeue(RETRY));
    }
    let ns = rs.namespace().unwrap_or_default();
    let owner = Owner::of(rs).ok_or_else(|| Error::Invalid("a ReplicaSet without a name or uid".into()))?;
    let spec = rs
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid("a ReplicaSet without a spec".into()))?;
    let selector = match Selector::try_from(spec.selector.clone()) {
        Ok(selector) => selector,
        Err(e) => {
            // Retrying cannot fix a selector; a change to the object will bring it back.
            tracing::warn!(error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let needs_sync = st.expectations.satisfied(owner.uid(), |name| {
        st.pods
            .get(&ns, name)
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    });
    let candidates = st
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && pods::is_active(p));
    let client = &st.ctx.client;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let recheck = ownership::recheck_owner(Api::<ReplicaSet>::namespaced(client.clone(), &ns), owner.clone());
    let owned = ownership::claim(&pod_api, &owner, candidates, |p| selector.matches(p.labels()), recheck).await?;

    let managed = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage(rs, spec, &owner, &owned, st, &pod_api).await
    } else {
        Ok(())
    };
    let now = now().0;
    let new_status = status::calculate_status(rs, &owned, managed.as_ref().err(), now);
    status::update_status(rs, new_status, &Api::namespaced(client.clone(), &ns)).await?;
    managed?;
    // No event marks the moment a ready pod has been ready for minReadySeconds: look again then.
    Ok(
        match status::next_available_in(&owned, spec.min_ready_seconds.unwrap_or(0), now) {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        },
    )
}

/// Creates or deletes pods so that `owned` approaches `spec.replicas`.
async fn manage(
    rs: &ReplicaSet,
    spec: &ReplicaSetSpec,
    owner: &Owner,
    owned: &[Arc<Pod>],
    st: &State,
    api: &Api<Pod>,
) -> Result<(), Error> {
    let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let reference = rs.object_ref(&());
    if owned.len() < want {
        let count = (want - owned.len()).min(BURST);
        let template = spec
            .template
            .as_ref()
            .ok_or_else(|| Error::Invalid("a ReplicaSet without a pod template".into()))?;
        let pod = new_pod(rs, template, owner)?;
        tracing::debug!(count, "creating pods");
        st.expectations.expect_creations(owner.uid(), count);
        let (created, result) = slow_start(count, || create_pod(api, &pod, &reference, st)).await;
        // Pods never attempted, or whose create failed, will never be observed.
        for _ in created..count {
            st.expectations.creation_observed(owner.uid());
        }
        return result;
    }
    if owned.len() > want {
        let count = (owned.len() - want).min(BURST);
        let related = related_pods(rs, st);
        let victims = pods::to_delete(owned, &related, count, now().0);
        tracing::debug!(count, "deleting pods");
        st.expectations
            .expect_deletions(owner.uid(), victims.iter().map(|p| p.name_any()));
        let results: Vec<Result<(), Error>> = stream::iter(victims)
            .map(|pod| delete_pod(api, pod, owner, &reference, st))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        return results.into_iter().collect();
    }
    Ok(())
}

/// The pod a ReplicaSet creates: its template, named after the ReplicaSet by the server, and
/// controlled by it.
fn new_pod(rs: &ReplicaSet, template: &PodTemplateSpec, owner: &Owner) -> Result<Pod, Error> {
    let meta = template.metadata.clone().unwrap_or_default();
    if meta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(Error::Invalid("unable to create pods, no labels".into()));
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner.reference()]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// Runs `op` `count` times in batches of 1, 2, 4, … (each batch concurrently, at most
/// [`IN_FLIGHT`] at once), stopping after the first batch with a failure, as upstream does so
/// that a doomed template costs one request rather than hundreds. Returns how many succeeded
/// and the first error.
async fn slow_start<F, Fut>(count: usize, op: F) -> (usize, Result<(), Error>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let (mut done, mut succeeded) = (0, 0);
    let mut batch = count.min(1);
    while batch > 0 {
        let results: Vec<Result<(), Error>> = stream::iter(0..batch)
            .map(|_| op())
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        done += batch;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => succeeded += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return (succeeded, Err(e));
        }
        batch = (2 * batch).min(count - done);
    }
    (succeeded, Ok(()))
}

async fn create_pod(api: &Api<Pod>, pod: &Pod, reference: &ObjectReference, st: &State) -> Result<(), Error> {
    match api.create(&PostParams::default(), pod).await {
        Ok(created) => {
            let message = format!("Created pod: {}", created.name_any());
            st.record(reference, Kind::Normal, "SuccessfulCreate", &message).await;
            Ok(())
        }
        // Nothing can be created in a namespace being deleted, and nothing needs to be.
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => Ok(()),
        Err(e) => {
            let message = format!("Error creating: {}", api_message(&e));
            st.record(reference, Kind::Warning, "FailedCreate", &message).await;
            Err(e.into())
        }
    }
}

async fn delete_pod(
    api: &Api<Pod>,
    pod: Arc<Pod>,
    owner: &Owner,
    reference: &ObjectReference,
    st: &State,
) -> Result<(), Error> {
    let name = pod.name_any();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            let message = format!("Deleted pod: {name}");
            st.record(reference, Kind::Normal, "SuccessfulDelete", &message).await;
            Ok(())
        }
        Err(e) => {
            // A failed delete will never be observed.
            st.expectations.deletion_observed(owner.uid(), &name);
            if matches!(&e, kube::Error::Api(a) if a.code == 404) {
                return Ok(());
            }
            let message = format!("Error deleting: {}", api_message(&e));
            st.record(reference, Kind::Warning, "FailedDelete", &message).await;
            Err(e.into())
        }
    }
}

/// The active pods of every ReplicaSet under the same controller as `rs` (its siblings under
/// one Deployment), which decide which nodes are crowded.
fn related_pods(rs: &ReplicaSet, st: &State) -> Vec<Arc<Pod>> {
    let Some(controller) = ownership::controller_of(&rs.metadata) else {
        return Vec::new();
    };
    let ns = rs.namespace();
    let siblings: Vec<String> = st
        .sets
        .state()
        .iter()
        .filter(|s| s.namespace() == ns)
        .filter(|s| ownership::controller_of(&s.metadata).is_some_and(|c| c.uid == controller.uid))
        .filter_map(|s| s.metadata.uid.clone())
        .collect();
    st.pods.state_filter(|p| {
        p.namespace() == ns && pods::is_active(p) && owner_uid(p).is_some_and(|uid| siblings.iter().any(|s| s == uid))
    })
}

/// The current time in whole seconds, the precision the API stores times with, so that
/// comparing a computed status with a stored one does not see a change where there is none.
pub(crate) fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// The message of an API error as the API server worded it.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_a_failure() {
        let calls = Mutex::new(0usize);
        let (ok, result) = slow_start(10, || async {
            *calls.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            Ok(())
        })
        .await;
        assert_eq!((ok, result.is_ok()), (10, true));
        assert_eq!(*calls.lock().unwrap_or_else(|e| e.into_inner()), 10);

        // Batches 1, 2, 4: the 5th call fails, so the batch of 4 is the last one run.
        let calls = Mutex::new(0usize);
        let (ok, result) = slow_start(100, || async {
            let mut n = calls.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            if *n == 5 {
                Err(Error::Invalid("quota".into()))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(ok, 6);
        assert!(result.is_err());
        assert_eq!(*calls.lock().unwrap_or_else(|e| e.into_inner()), 7);
    }
}
