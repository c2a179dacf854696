//! The simulated kubelet: pods bound to simulated nodes become Running and Ready with a pod IP
//! from the node's range, and pods being deleted are removed at once (their "containers" stop
//! instantly), which completes graceful deletion.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{SimConfig, node_ip};

/// Hands out pod IPs within each node's /24.
#[derive(Default)]
struct Addresses {
    used: HashMap<usize, HashSet<u8>>,
    next: HashMap<usize, u8>,
    by_pod: HashMap<String, (usize, u8)>,
}

impl Addresses {
    fn prefix(node: usize) -> String {
        format!("10.{}.{}", 64 + node / 256, node % 256)
    }

    /// Notes an address a pod already has (after a restart of the simulation).
    fn note(&mut self, uid: &str, node: usize, ip: &str) {
        let host = ip
            .strip_prefix(&format!("{}.", Self::prefix(node)))
            .and_then(|h| h.parse::<u8>().ok());
        if let Some(host) = host {
            self.used.entry(node).or_default().insert(host);
            self.by_pod.insert(uid.to_string(), (node, host));
        }
    }

    /// The pod's address, allocating one if needed (.1 is the node, .255 broadcast).
    fn assign(&mut self, uid: &str, node: usize) -> String {
        if let Some((n, host)) = self.by_pod.get(uid) {
            return format!("{}.{host}", Self::prefix(*n));
        }
        let used = self.used.entry(node).or_default();
        let next = self.next.entry(node).or_insert(2);
        let mut host = *next;
        for _ in 0..253 {
            if !used.contains(&host) {
                break;
            }
            host = if host >= 254 { 2 } else { host + 1 };
        }
        *next = if host >= 254 { 2 } else { host + 1 };
        used.insert(host);
        self.by_pod.insert(uid.to_string(), (node, host));
        format!("{}.{host}", Self::prefix(node))
    }

    fn release(&mut self, uid: &str) {
        if let Some((node, host)) = self.by_pod.remove(uid)
            && let Some(used) = self.used.get_mut(&node)
        {
            used.remove(&host);
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether the pod already looks started (Running and Ready).
fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The status a running pod reports.
fn running_status(pod: &Pod, host_ip: &str, pod_ip: &str) -> Value {
    let now = now();
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let spec = pod.spec.as_ref();
    let condition =
        |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let container = |c: &Container, state: Value, ready: bool| {
        let image = c.image.clone().unwrap_or_default();
        json!({
            "name": c.name,
            "image": image,
            "imageID": format!("kate-sim://{image}"),
            "containerID": format!("kate-sim://{uid}-{}", c.name),
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        })
    };
    let containers: Vec<Value> = spec
        .map(|s| &s.containers)
        .into_iter()
        .flatten()
        .map(|c| container(c, json!({"running": {"startedAt": now}}), true))
        .collect();
    let init: Vec<Value> = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            let done =
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}});
            container(c, done, false)
        })
        .collect();
    let conditions = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"].map(condition);
    json!({"status": {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        // A running pod no longer waits for a nominated node.
        "nominatedNodeName": null,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": containers,
        "initContainerStatuses": init,
    }})
}

/// Watches bound pods and plays the kubelet for those on simulated nodes, forever.
pub async fn run(client: kube::Client, config: SimConfig) {
    let nodes: HashMap<String, usize> = (0..config.nodes).map(|i| (config.node_name(i), i)).collect();
    let writes = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut addresses = Addresses::default();
    // Pods whose start or removal is already under way, by uid.
    let mut started: HashSet<String> = HashSet::new();
    let mut removing: HashSet<String> = HashSet::new();
    let api: Api<Pod> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default().fields("spec.nodeName!=")).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.uid().unwrap_or_default();
                addresses.release(&uid);
                started.remove(&uid);
                removing.remove(&uid);
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "simulated kubelet watch failed; retrying");
                continue;
            }
        };
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let Some(&node) = nodes.get(&node_name) else { continue };
        let (uid, namespace, name) = (
            pod.uid().unwrap_or_default(),
            pod.namespace().unwrap_or_default(),
            pod.name_any(),
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            if removing.insert(uid.clone()) {
                let writes = writes.clone();
                tokio::spawn(async move {
                    let Ok(_permit) = writes.acquire_owned().await else {
                        return;
                    };
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    if let Err(e) = pods.delete(&name, &params).await {
                        tracing::debug!(%namespace, %name, error = %e, "simulated kubelet could not remove the pod");
                    }
                });
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if is_running(&pod) {
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
                addresses.note(&uid, node, ip);
            }
            started.insert(uid);
            continue;
        }
        if !started.insert(uid.clone()) {
            continue;
        }
        let status = running_status(&pod, &node_ip(node), &addresses.assign(&uid, node));
        let writes = writes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            match pods
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
                .await
            {
                Ok(_) => tracing::debug!(%namespace, %name, "simulated pod started"),
                Err(e) => tracing::debug!(%namespace, %name, error = %e, "simulated kubelet could not start the pod"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_the_node_range_and_are_reused() {
        let mut a = Addresses::default();
        assert_eq!(a.assign("p1", 3), "10.64.3.2");
        assert_eq!(a.assign("p1", 3), "10.64.3.2");
        assert_eq!(a.assign("p2", 3), "10.64.3.3");
        a.note("old", 3, "10.64.3.4");
        assert_eq!(a.assign("p3", 3), "10.64.3.5");
        a.release("p2");
        for i in 0..250 {
            a.assign(&format!("x{i}"), 3);
        }
        assert!(a.used[&3].len() <= 253);
    }

    #[test]
    fn running_status_is_ready() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "initContainers": [{"name": "i", "image": "busybox"}]}
        }))
        .unwrap();
        let status = running_status(&pod, "10.64.0.1", "10.64.0.2");
        let parsed: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status["status"]})).unwrap();
        assert!(is_running(&parsed));
        assert_eq!(
            status["status"]["containerStatuses"][0]["containerID"],
            "kate-sim://u-c"
        );
        assert_eq!(
            status["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }
}
