//! Pod facts the ReplicaSet controller counts and sorts by: readiness, availability after
//! `minReadySeconds`, and which pods to delete first when scaling down.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// Pods whose deletion upstream prefers least carry a higher cost here.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The time the pod's Ready condition became True, if it is ready.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is True.
pub(super) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now`.
pub(super) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + jiff::SignedDuration::from_secs(min_ready_seconds.into()) < now,
    }
}

/// Whether the pod still counts: not finished and not being deleted.
pub(super) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The order in which upstream gives up pods: Pending, then Unknown, then Running.
fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

/// A time as its power-of-two age bucket at `now` (-1 for the future), so that pods of about
/// the same age count as equal and a random pick among them spreads deletions; a missing time
/// sorts first.
fn age_bucket(time: Option<Timestamp>, now: Timestamp) -> (bool, i64) {
    match time {
        None => (false, 0),
        Some(t) => {
            let nanos = now.duration_since(t).as_nanos();
            (true, if nanos > 0 { (nanos as f64).log2() as i64 } else { -1 })
        }
    }
}

/// The sort key of one pod: smaller keys are deleted first. Following upstream: unassigned
/// before assigned; Pending before Unknown before Running; not ready before ready; lower
/// deletion cost first; pods sharing a node with more related pods first; ready for less time
/// first; more restarts first; newer first; then by uid. Upstream compares the last criteria
/// pairwise; as a key they form the total order Rust's sort needs.
type Key = (
    bool,
    u8,
    bool,
    i32,
    Reverse<usize>,
    (bool, i64),
    Reverse<i32>,
    (bool, i64),
    String,
);

fn key(pod: &Pod, colocated: usize, now: Timestamp) -> Key {
    let ready = ready_since(pod);
    let cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    (
        !node.is_empty(),
        phase_rank(pod),
        ready.is_some(),
        cost,
        Reverse(colocated),
        age_bucket(ready.flatten(), now),
        Reverse(restarts),
        age_bucket(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// Picks `count` of `pods` to delete. `related` are the active pods of the same owner family
/// (this ReplicaSet's and its siblings' under one Deployment): a pod on a node crowded with
/// them goes first.
pub(super) fn to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], count: usize, now: Timestamp) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        *per_node.entry(node).or_default() += 1;
    }
    let mut keyed: Vec<(Key, &Arc<Pod>)> = pods
        .iter()
        .map(|pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default();
            (key(pod, per_node.get(node).copied().unwrap_or(0), now), pod)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().take(count).map(|(_, pod)| pod.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn ago(secs: i64) -> Time {
        Time(now() - jiff::SignedDuration::from_secs(secs))
    }

    fn pod(name: &str, node: &str, phase: &str, ready_for: Option<i64>, age: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(ago(age)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_for.map(|secs| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(ago(secs)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn deletion_order_follows_upstream() {
        let pods = vec![
            pod("ready-old", "n1", "Running", Some(5000), 6000),
            pod("ready-new", "n1", "Running", Some(10), 20),
            pod("running-not-ready", "n1", "Running", None, 6000),
            pod("unknown", "n1", "Unknown", None, 6000),
            pod("pending", "n1", "Pending", None, 6000),
            pod("unassigned", "", "Pending", None, 6000),
        ];
        let order = to_delete(&pods, &pods, pods.len(), now());
        assert_eq!(
            names(&order),
            [
                "unassigned",
                "pending",
                "unknown",
                "running-not-ready",
                "ready-new",
                "ready-old"
            ]
        );
        assert_eq!(names(&to_delete(&pods, &pods, 2, now())), ["unassigned", "pending"]);
    }

    #[test]
    fn newer_pods_go_first_and_crowded_nodes_first() {
        let old = pod("old", "n1", "Pending", None, 5000);
        let new = pod("new", "n1", "Pending", None, 10);
        assert_eq!(names(&to_delete(&[old.clone(), new.clone()], &[], 1, now())), ["new"]);
        let crowded = pod("crowded", "n2", "Pending", None, 5000);
        let related = vec![crowded.clone(), pod("sibling", "n2", "Running", None, 1)];
        assert_eq!(names(&to_delete(&[new, crowded], &related, 1, now())), ["crowded"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "n1", "Running", Some(5), 10);
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, now()));
        assert!(is_available(&p, 4, now()));
        assert!(!is_available(&p, 10, now()));
        let not_ready = pod("q", "n1", "Running", None, 10);
        assert!(!is_available(&not_ready, 0, now()));
    }
}
