//! The node lifecycle controller against a real `kate server` with a 3 s grace period. There is
//! no kubelet: the test creates Nodes and their Leases and plays the kubelet of each node (renew
//! the lease every second, post Ready=True when it is not), then falls silent for some of them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kate_e2e::{Cluster, eventually};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The kubelet conditions of a healthy node, heartbeating at `at`.
fn healthy_conditions(at: Timestamp) -> serde_json::Value {
    let now = Time(at);
    let condition = |ty: &str, status: &str, reason: &str| json!({"type": ty, "status": status, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!([
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        condition("Ready", "True", "KubeletReady"),
    ])
}

/// Plays the kubelet of the nodes in `alive` until dropped: renews their leases every second and
/// posts Ready=True whenever the node does not say so (as a kubelet does after the controller
/// marked it Unknown).
struct Kubelets {
    alive: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelets {
    fn start(client: kube::Client, names: &[&str]) -> Kubelets {
        let alive = Arc::new(Mutex::new(names.iter().map(|n| n.to_string()).collect::<HashSet<_>>()));
        let shared = alive.clone();
        let task = tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(client.clone());
            let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
            loop {
                let names: Vec<String> = shared.lock().expect("lock").iter().cloned().collect();
                for name in names {
                    let renew = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
                    let _ = leases.patch(&name, &PatchParams::default(), &Patch::Merge(renew)).await;
                    if let Ok(node) = nodes.get(&name).await
                        && ready_status(&node) != "True"
                    {
                        let status = json!({"status": {"conditions": healthy_conditions(Timestamp::now())}});
                        let _ = nodes
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Kubelets { alive, task }
    }

    fn set(&self, name: &str, alive: bool) {
        let mut set = self.alive.lock().expect("lock");
        if alive {
            set.insert(name.into());
        } else {
            set.remove(name);
        }
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A healthy node whose kubelet last heartbeat at `at`, with its lease.
async fn create_node(client: &kube::Client, name: &str, at: Timestamp) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"conditions": healthy_conditions(at)},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(at)},
    }))?;
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await?;
    Ok(())
}

/// A running pod bound to `node`, Ready as its kubelet would report it.
async fn create_pod(
    client: &kube::Client,
    name: &str,
    node: &str,
    tolerations: serde_json::Value,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}], "tolerations": tolerations},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "10.244.0.9",
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    Ok(pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?)
}

fn ready_status(node: &Node) -> String {
    condition(node, "Ready").map(|c| c.0).unwrap_or_default()
}

/// A node condition's (status, reason, message).
fn condition(node: &Node, ty: &str) -> Option<(String, String, String)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node).iter().any(|t| t.key == key && t.effect == effect)
}

fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn silent_nodes_are_tainted_and_their_pods_evicted() -> anyhow::Result<()> {
    let c = Cluster::start_with(tempfile::tempdir()?, &["--node-monitor-grace-period", "3"])?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["alive", "lost"] {
        create_node(&client, name, Timestamp::now()).await?;
    }
    let kubelets = Kubelets::start(client.clone(), &["alive", "lost"]);

    // DefaultTolerationSeconds: pods tolerate unready nodes for five minutes unless they say.
    let patient = create_pod(&client, "patient", "lost", json!([])).await?;
    let defaults: Vec<(String, Option<i64>)> = patient
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        defaults,
        [
            ("node.kubernetes.io/not-ready".to_string(), Some(300)),
            (UNREACHABLE.to_string(), Some(300))
        ]
    );
    let quick = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]);
    create_pod(&client, "quick", "lost", quick).await?;
    create_pod(&client, "bystander", "alive", json!([])).await?;

    // Both nodes stay healthy while their kubelets renew the leases, long past the grace period
    // of the Ready heartbeat posted at creation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in ["alive", "lost"] {
        let node = nodes.get(name).await?;
        assert_eq!(ready_status(&node), "True", "{name} renews its lease");
        assert!(taints(&node).is_empty(), "{name}: {:?}", taints(&node));
    }

    // The kubelet of "lost" falls silent.
    kubelets.set("lost", false);
    let silent = Instant::now();
    eventually("the silent node to be unreachable", async || {
        let node = nodes.get("lost").await?;
        Ok(has_taint(&node, UNREACHABLE, "NoExecute"))
    })
    .await?;
    let noticed = silent.elapsed();
    assert!(
        noticed >= Duration::from_secs(2),
        "tainted after {noticed:?}, before the grace period"
    );
    // The pod tolerating it for 2 s is still there when the taint appears.
    let quick_pod = pods.get("quick").await?;
    assert!(
        quick_pod.metadata.deletion_timestamp.is_none(),
        "evicted before its toleration ran out"
    );

    let node = nodes.get("lost").await?;
    for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(
            condition(&node, ty),
            Some((
                "Unknown".into(),
                "NodeStatusUnknown".into(),
                "Kubelet stopped posting node status.".into()
            )),
            "{ty}"
        );
    }
    let taint = taints(&node)
        .into_iter()
        .find(|t| t.key == UNREACHABLE && t.effect == "NoExecute");
    assert!(
        taint.and_then(|t| t.time_added).is_some(),
        "the NoExecute taint records when it was added"
    );
    assert!(has_taint(&node, UNREACHABLE, "NoSchedule"));
    let alive = nodes.get("alive").await?;
    assert_eq!(ready_status(&alive), "True");
    assert!(taints(&alive).is_empty());

    // tolerationSeconds: 2 → deleted about 2 s after the taint (bound pods wait for a kubelet to
    // finish the deletion, so the pod shows as Terminating).
    let tainted = Instant::now();
    eventually("the quick pod to be evicted", async || {
        Ok(pods.get("quick").await?.metadata.deletion_timestamp.is_some())
    })
    .await?;
    assert!(
        tainted.elapsed() < Duration::from_secs(5),
        "evicted after {:?}",
        tainted.elapsed()
    );
    let evicted = pods.get("quick").await?;
    let disruption = evicted
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget"))
        .and_then(|c| c.reason.clone());
    assert_eq!(disruption.as_deref(), Some("DeletionByTaintManager"));

    // The patient pod (300 s) stays, but is no longer Ready; the pod on the healthy node is untouched.
    eventually("the patient pod to be marked not ready", async || {
        Ok(pod_ready(&pods.get("patient").await?).as_deref() == Some("False"))
    })
    .await?;
    assert!(pods.get("patient").await?.metadata.deletion_timestamp.is_none());
    let bystander = pods.get("bystander").await?;
    assert_eq!(pod_ready(&bystander).as_deref(), Some("True"));
    assert!(bystander.metadata.deletion_timestamp.is_none());

    let described = c.kubectl(&["describe", "node", "lost"])?;
    assert!(
        described.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{described}"
    );
    let events = c.kubectl(&["get", "events", "-A"])?;
    assert!(events.contains("TaintManagerEviction"), "{events}");
    assert!(events.contains("NodeNotReady"), "{events}");

    // The kubelet comes back: the taints go.
    kubelets.set("lost", true);
    eventually("the returning node to be untainted", async || {
        let node = nodes.get("lost").await?;
        Ok(ready_status(&node) == "True" && taints(&node).is_empty())
    })
    .await?;
    assert!(pods.get("patient").await?.metadata.deletion_timestamp.is_none());
    Ok(())
}

#[tokio::test]
async fn any_untolerated_no_execute_taint_evicts_at_once() -> anyhow::Result<()> {
    let c = Cluster::start_with(tempfile::tempdir()?, &["--node-monitor-grace-period", "3"])?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_node(&client, "worker", Timestamp::now()).await?;
    let _kubelets = Kubelets::start(client.clone(), &["worker"]);
    create_pod(&client, "intolerant", "worker", json!([])).await?;
    let forever = json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]);
    create_pod(&client, "tolerant", "worker", forever).await?;

    c.kubectl(&["taint", "nodes", "worker", "dedicated=batch:NoExecute"])?;
    eventually("the intolerant pod to be evicted", async || {
        Ok(pods.get("intolerant").await?.metadata.deletion_timestamp.is_some())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pods.get("tolerant").await?.metadata.deletion_timestamp.is_none());
    Ok(())
}

#[tokio::test]
async fn when_every_node_is_silent_nothing_is_evicted() -> anyhow::Result<()> {
    let c = Cluster::start_with(tempfile::tempdir()?, &["--node-monitor-grace-period", "3"])?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The same heartbeat for both, so that they go silent in the same pass.
    let at = Timestamp::now();
    for name in ["a", "b"] {
        create_node(&client, name, at).await?;
    }
    let quick = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}]);
    create_pod(&client, "quick", "a", quick).await?;

    // Both kubelets are silent from the start: most likely the control plane lost the network,
    // not every node at once (upstream's "master disruption mode").
    eventually("both nodes to be Unknown", async || {
        let a = nodes.get("a").await?;
        let b = nodes.get("b").await?;
        Ok(ready_status(&a) == "Unknown" && ready_status(&b) == "Unknown")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["a", "b"] {
        let node = nodes.get(name).await?;
        assert!(
            !has_taint(&node, UNREACHABLE, "NoExecute"),
            "{name}: {:?}",
            taints(&node)
        );
        assert!(
            has_taint(&node, UNREACHABLE, "NoSchedule"),
            "{name}: {:?}",
            taints(&node)
        );
    }
    let pod = pods.get("quick").await?;
    assert!(pod.metadata.deletion_timestamp.is_none());
    assert_eq!(pod_ready(&pod).as_deref(), Some("False"));
    Ok(())
}
