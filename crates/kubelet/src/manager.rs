//! The pod manager: watches the pods bound to this node and hands each to its own worker;
//! after every (re)list it removes what runs on the node for pods that no longer exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::spec::labels;
use crate::{Shared, sandbox, worker};

/// Runs until the process stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.config.node_name);
    let stream = watcher(pods, watcher::Config::default().fields(&selector)).default_backoff();
    futures::pin_mut!(stream);
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                listed.insert(uid.clone());
                dispatch(&shared, &mut workers, uid, pod);
            }
            Ok(watcher::Event::Apply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                dispatch(&shared, &mut workers, uid, pod);
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = workers.remove(&uid) {
                    let _ = tx.send(None);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<String> = workers.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                for uid in gone {
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(None);
                    }
                }
                remove_orphans(&shared, &listed).await;
            }
            Err(e) => tracing::debug!(error = %e, "pod watch failed; retrying"),
        }
    }
}

/// Sends the pod to its worker, starting one for a pod seen for the first time (or whose
/// previous worker finished).
fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    uid: String,
    pod: Pod,
) {
    let pod = Arc::new(pod);
    if let Some(tx) = workers.get(&uid)
        && tx.send(Some(pod.clone())).is_ok()
    {
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let span = tracing::info_span!("pod", uid = %uid);
    tokio::spawn(tracing::Instrument::instrument(
        worker::run(shared.clone(), uid.clone(), rx),
        span,
    ));
    workers.insert(uid, tx);
}

/// Removes sandboxes and containers whose pods are not among `listed` (deleted while the
/// kubelet was down).
async fn remove_orphans(shared: &Shared, listed: &HashSet<String>) {
    let mut uids: HashSet<String> = HashSet::new();
    for s in shared.runtime.list_sandboxes().unwrap_or_default() {
        uids.insert(s.labels.get(labels::POD_UID).cloned().unwrap_or(s.id));
    }
    for c in shared.runtime.list_containers().unwrap_or_default() {
        if let Some(uid) = c.labels.get(labels::POD_UID) {
            uids.insert(uid.clone());
        }
    }
    for uid in uids.difference(listed) {
        tracing::info!(pod = %uid, "removing the containers of a pod that no longer exists");
        sandbox::remove_all(shared, uid, None).await;
    }
}
