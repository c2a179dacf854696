//! What a ReplicaSet's status reports: counts of its pods (all, fully labelled, ready,
//! available after minReadySeconds), the generation seen, and the ReplicaFailure condition
//! while creating or deleting pods fails.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::{api_message, pods};
use crate::Error;

/// The condition reporting failed creates or deletes.
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status a pass reports: counts of the owned pods, the observed generation, and the
/// ReplicaFailure condition while creating or deleting fails.
pub(super) fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    error: Option<&Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = owned
        .iter()
        .filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .count();
    let ready = owned.iter().filter(|p| pods::is_ready(p)).count();
    let available = owned.iter().filter(|p| pods::is_available(p, min_ready, now)).count();

    let mut status = rs.status.clone().unwrap_or_default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let failing = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match error {
        Some(e) if !failing => {
            let want = spec.and_then(|s| s.replicas).unwrap_or(1);
            let reason = match (owned.len() as i64).cmp(&want.into()) {
                std::cmp::Ordering::Less => "FailedCreate",
                std::cmp::Ordering::Greater => "FailedDelete",
                std::cmp::Ordering::Equal => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(error_message(e)),
                last_transition_time: Some(Time(now)),
            });
        }
        None if failing => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status.replicas = count(owned.len());
    status.fully_labeled_replicas = Some(count(fully_labeled));
    status.ready_replicas = Some(count(ready));
    status.available_replicas = Some(count(available));
    status.observed_generation = rs.metadata.generation;
    status
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Writes `status` unless it is what the ReplicaSet already says. A conflict or a vanished
/// ReplicaSet is left to the pass the newer version triggers.
pub(super) async fn update_status(
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
    api: &Api<ReplicaSet>,
) -> Result<(), Error> {
    if rs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = rs.clone();
    updated.status = Some(status);
    match api
        .replace_status(&rs.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long until the next ready pod has been ready for `min_ready` seconds, if one is waiting.
pub(super) fn next_available_in(owned: &[Arc<Pod>], min_ready: i32, now: Timestamp) -> Option<Duration> {
    if min_ready <= 0 {
        return None;
    }
    owned
        .iter()
        .filter(|p| pods::is_ready(p) && !pods::is_available(p, min_ready, now))
        .filter_map(|p| {
            let since = p
                .status
                .as_ref()?
                .conditions
                .as_deref()?
                .iter()
                .find(|c| c.type_ == "Ready")?
                .last_transition_time
                .as_ref()?
                .0;
            let at = since + jiff::SignedDuration::from_secs(min_ready.into());
            // Availability is judged in whole seconds, strictly after the deadline.
            Duration::try_from(at.duration_since(now)).ok()
        })
        .min()
        .map(|d| d + Duration::from_secs(1))
}

fn error_message(e: &Error) -> String {
    match e {
        Error::Api(api) => api_message(api),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn replica_set(replicas: i32, failing: bool) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                conditions: failing.then(|| {
                    vec![ReplicaSetCondition {
                        type_: REPLICA_FAILURE.into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn replica_failure_comes_and_goes() {
        let now = crate::replicaset::now().0;
        let failed = calculate_status(
            &replica_set(2, false),
            &[],
            Some(&Error::Invalid("forbidden".into())),
            now,
        );
        let condition = failed
            .conditions
            .as_deref()
            .and_then(|c| c.first())
            .cloned()
            .unwrap_or_default();
        assert_eq!(condition.type_, REPLICA_FAILURE);
        assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(condition.message.as_deref(), Some("forbidden"));
        assert_eq!(failed.observed_generation, Some(3));
        let recovered = calculate_status(&replica_set(2, true), &[], None, now);
        assert_eq!(recovered.conditions, None);
    }
}
