//! A Deployment's status: replica counts summed over its ReplicaSets, and the Available and
//! Progressing conditions, including the progress deadline after which a stalled rollout is
//! reported as failed.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{desired, math, replicas};

/// The condition saying whether enough replicas are available.
pub(super) const AVAILABLE: &str = "Available";
/// The condition saying how the rollout goes.
pub(super) const PROGRESSING: &str = "Progressing";
/// The condition relaying a ReplicaSet's failure to create or delete pods.
pub(super) const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Reasons of the Progressing condition, as upstream words them.
pub(super) mod reason {
    /// A new ReplicaSet was created for the template.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// The ReplicaSet of the template already existed.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout moved forward.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// The rollout did not move within progressDeadlineSeconds.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Creating the new ReplicaSet failed.
    pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";
    /// The Deployment is paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// The Deployment was resumed.
    pub const RESUMED: &str = "DeploymentResumed";
}

/// The condition of type `type_`, if present.
pub(super) fn condition<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_deref()?.iter().find(|c| c.type_ == type_)
}

/// A condition that changed at `now`.
pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Sets a condition; one with the same status and reason is kept as it is, and a status that
/// did not change keeps its transition time.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != cond.type_);
    conditions.push(cond);
}

/// Removes the condition of type `type_`.
pub(super) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Whether the Deployment reports progress against a deadline.
pub(super) fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

fn deadline(d: &Deployment) -> SignedDuration {
    SignedDuration::from_secs(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(0)
            .into(),
    )
}

fn actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// Available replicas of a ReplicaSet.
pub(super) fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// The counts and the Available condition, with the other conditions carried over.
pub(super) fn calculate(all: &[&ReplicaSet], new: Option<&ReplicaSet>, d: &Deployment, now: &Time) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| available(rs)).sum();
    let wanted: i32 = all.iter().map(|rs| replicas(rs)).sum();
    let current = d.status.as_ref();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| actual(rs)).sum()),
        updated_replicas: Some(new.map_or(0, actual)),
        ready_replicas: Some(all.iter().map(|rs| ready(rs)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)),
        collision_count: current.and_then(|s| s.collision_count),
        conditions: current.and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    let cond = if available >= desired(d) - math::max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Whether every desired replica is updated and available and the latest spec was seen.
pub(super) fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = desired(d);
    count(status.updated_replicas) == want
        && count(status.replicas) == want
        && count(status.available_replicas) == want
        && status.observed_generation >= d.metadata.generation
}

/// Whether `new` shows progress over the Deployment's current status: more updated, ready or
/// available replicas, or fewer old ones.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_outdated = count(old.replicas) - count(old.updated_replicas);
    let new_outdated = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_outdated < old_outdated
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Whether the rollout has gone without progress for longer than its deadline.
fn timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = condition(Some(status), PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => cond.last_update_time.as_ref().is_some_and(|t| t.0 + deadline(d) < now),
    }
}

/// The status after a rollout step: the counts, and the Progressing condition saying whether
/// the rollout completed, moved forward or ran out of time; a ReplicaSet's ReplicaFailure is
/// relayed, the new ReplicaSet's first.
pub(super) fn rollout(all: &[&ReplicaSet], new: Option<&ReplicaSet>, d: &Deployment, now: &Time) -> DeploymentStatus {
    let mut status = calculate(all, new, d, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = condition(d.status.as_ref(), PROGRESSING);
    let already_complete = status.replicas == status.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
    if has_progress_deadline(d) && !already_complete {
        let subject = match new {
            Some(rs) => format!("ReplicaSet {:?}", rs.metadata.name.as_deref().unwrap_or_default()),
            None => format!("Deployment {:?}", d.metadata.name.as_deref().unwrap_or_default()),
        };
        if complete(d, &status) {
            let message = format!("{subject} has successfully progressed.");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", reason::NEW_RS_AVAILABLE, message, now),
            );
        } else if progressing(d, &status) {
            let message = format!("{subject} is progressing.");
            let mut cond = new_condition(PROGRESSING, "True", reason::RS_UPDATED, message, now);
            // Progress refreshes the update time even when the reason stays, which
            // set_condition would not do; the transition time stays while the status does.
            if let Some(current) = current {
                if current.status == "True" {
                    cond.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, cond);
        } else if timed_out(d, &status, now.0) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "False", reason::TIMED_OUT, message, now),
            );
        }
    }
    match replica_failure(all, new) {
        Some(cond) => set_condition(&mut status, cond),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// The first ReplicaFailure condition among the ReplicaSets, as a Deployment condition.
fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    new.into_iter()
        .chain(all.iter().copied())
        .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref())
        .flatten()
        .find(|c| c.type_ == REPLICA_FAILURE)
        .map(|c| DeploymentCondition {
            type_: REPLICA_FAILURE.into(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
}

/// When to look at a rollout again to see whether it ran out of time, since nothing else
/// happens when it stalls; `None` when it is complete, already failed or has no deadline.
pub(super) fn deadline_check_in(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let current = condition(d.status.as_ref(), PROGRESSING)?;
    if !has_progress_deadline(d) || complete(d, new) || current.reason.as_deref() == Some(reason::TIMED_OUT) {
        return None;
    }
    let since = current.last_update_time.as_ref()?.0;
    let left = (since + deadline(d)).duration_since(now);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    fn deployment(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn reason_of(status: &DeploymentStatus, type_: &str) -> Option<String> {
        condition(Some(status), type_).and_then(|c| c.reason.clone())
    }

    #[test]
    fn counts_and_availability() {
        let (old, new) = (rs("old", 2, 2), rs("new", 2, 1));
        let d = deployment(4, None);
        let s = calculate(&[&old, &new], Some(&new), &d, &at(0));
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(4), Some(2), Some(3), Some(1))
        );
        assert_eq!(s.observed_generation, Some(2));
        // Default strategy fields are absent here, so maxUnavailable resolves to 1 of 4.
        assert_eq!(reason_of(&s, AVAILABLE).as_deref(), Some("MinimumReplicasAvailable"));
        let short = rs("new", 4, 2);
        let s = calculate(&[&short], Some(&short), &d, &at(0));
        assert_eq!(reason_of(&s, AVAILABLE).as_deref(), Some("MinimumReplicasUnavailable"));
    }

    #[test]
    fn progress_then_completion() {
        let started = DeploymentStatus {
            conditions: Some(vec![new_condition(
                PROGRESSING,
                "True",
                reason::NEW_RS_CREATED,
                "Created".into(),
                &at(0),
            )]),
            ..Default::default()
        };
        let d = deployment(2, Some(started));
        let new = rs("new", 2, 1);
        let s = rollout(&[&new], Some(&new), &d, &at(5));
        let cond = condition(Some(&s), PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(cond.reason.as_deref(), Some(reason::RS_UPDATED));
        assert_eq!(cond.message.as_deref(), Some("ReplicaSet \"new\" is progressing."));
        assert_eq!(cond.last_transition_time, Some(at(0)));
        assert_eq!(cond.last_update_time, Some(at(5)));

        let done = rs("new", 2, 2);
        let s = rollout(&[&done], Some(&done), &d, &at(6));
        assert_eq!(reason_of(&s, PROGRESSING).as_deref(), Some(reason::NEW_RS_AVAILABLE));
        assert!(complete(&d, &s));
    }

    #[test]
    fn a_stalled_rollout_times_out() {
        let stalled = DeploymentStatus {
            replicas: Some(2),
            updated_replicas: Some(2),
            conditions: Some(vec![new_condition(
                PROGRESSING,
                "True",
                reason::RS_UPDATED,
                "moving".into(),
                &at(0),
            )]),
            ..Default::default()
        };
        let d = deployment(2, Some(stalled));
        let new = rs("new", 2, 0);
        assert_eq!(
            deadline_check_in(&d, &calculate(&[&new], Some(&new), &d, &at(100)), at(100).0),
            Some(Duration::from_secs(501))
        );
        let s = rollout(&[&new], Some(&new), &d, &at(100));
        assert_eq!(reason_of(&s, PROGRESSING).as_deref(), Some(reason::RS_UPDATED));
        let s = rollout(&[&new], Some(&new), &d, &at(601));
        let cond = condition(Some(&s), PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("False", Some(reason::TIMED_OUT))
        );
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"new\" has timed out progressing.")
        );
    }

    #[test]
    fn replica_failures_are_relayed() {
        let mut failing = rs("new", 2, 0);
        if let Some(s) = failing.status.as_mut() {
            s.conditions = Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("forbidden".into()),
                last_transition_time: Some(at(0)),
            }]);
        }
        let d = deployment(2, None);
        let s = rollout(&[&failing], Some(&failing), &d, &at(1));
        assert_eq!(reason_of(&s, REPLICA_FAILURE).as_deref(), Some("FailedCreate"));
        let healed = rs("new", 2, 0);
        let d = deployment(2, Some(s));
        let s = rollout(&[&healed], Some(&healed), &d, &at(2));
        assert_eq!(reason_of(&s, REPLICA_FAILURE), None);
    }
}
