//! Rollout steps: the RollingUpdate and Recreate strategies, and the proportional resize of
//! ReplicaSets when a Deployment is scaled in the middle of a rollout.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::core::Selector;
use kube::{Api, ResourceExt};

use super::history::{self, by_creation};
use super::status::{self, available};
use super::{OLD_PODS_RECHECK, Pass, desired, math, replicas};
use crate::Error;
use crate::replicaset::ownership;

fn uid(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata.uid.as_deref()
}

impl Pass<'_> {
    /// One RollingUpdate step: grow the new ReplicaSet if the surge allows, else shrink old
    /// ones as far as availability allows; once complete, clean up old ReplicaSets.
    pub(super) async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new, _) = self.all_sets_and_sync_revision(true).await?;
        let new = new.ok_or_else(|| Error::Invalid("no new replica set after creating it".into()))?;
        let new_uid = new.metadata.uid.clone();
        if self.reconcile_new(&new).await? {
            return self.sync_rollout_status(new_uid.as_deref()).await;
        }
        let (new, old) = self.split(new_uid.as_deref());
        if let Some(new) = new
            && self.reconcile_old(&new, &old).await?
        {
            return self.sync_rollout_status(new_uid.as_deref()).await;
        }
        if self.d.status.as_ref().is_some_and(|s| status::complete(&self.d, s)) {
            let (_, old) = self.split(new_uid.as_deref());
            self.clean_up(&old).await?;
        }
        self.sync_rollout_status(new_uid.as_deref()).await
    }

    /// Grows (or, above the desired count, shrinks) the new ReplicaSet; returns whether it did.
    async fn reconcile_new(&mut self, new: &ReplicaSet) -> Result<bool, Error> {
        let want = desired(&self.d);
        if replicas(new) == want {
            return Ok(false);
        }
        if replicas(new) > want {
            return Ok(self.scale_and_record(new, want).await?.0);
        }
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let size = math::new_rs_new_replicas(&self.d, &all, new)?;
        Ok(self.scale_and_record(new, size).await?.0)
    }

    /// Shrinks old ReplicaSets as far as maxUnavailable allows, unhealthy pods first; returns
    /// whether it did.
    async fn reconcile_old(&mut self, new: &ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let mut active: Vec<ReplicaSet> = old.iter().filter(|rs| replicas(rs) > 0).cloned().collect();
        if active.is_empty() {
            return Ok(false);
        }
        let all_pods: i32 = self.sets.iter().map(replicas).sum();
        let min_available = desired(&self.d) - math::max_unavailable(&self.d);
        let new_unavailable = replicas(new) - available(new);
        // Pods that are not available anyway (in old sets) may go first, but never so many
        // that fewer than minAvailable remain once the new ones come up.
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.clean_up_unhealthy(&mut active, max_scaled_down).await?;
        let scaled = self.scale_down_old(&active).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Removes up to `max` unavailable pods from old ReplicaSets, oldest set first.
    async fn clean_up_unhealthy(&mut self, old: &mut [ReplicaSet], max: i32) -> Result<i32, Error> {
        old.sort_by(by_creation);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max {
                break;
            }
            let unhealthy = replicas(rs) - available(rs);
            if replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max - total).min(unhealthy);
            let (_, updated) = self.scale_and_record(rs, replicas(rs) - down).await?;
            *rs = updated;
            total += down;
        }
        Ok(total)
    }

    /// Shrinks old ReplicaSets, oldest first, by as many available pods as may go while
    /// minAvailable pods stay available.
    async fn scale_down_old(&mut self, old: &[ReplicaSet]) -> Result<i32, Error> {
        let min_available = desired(&self.d) - math::max_unavailable(&self.d);
        let available_now: i32 = self.sets.iter().map(available).sum();
        if available_now <= min_available {
            return Ok(0);
        }
        let total = available_now - min_available;
        let mut old = old.to_vec();
        old.sort_by(by_creation);
        let mut done = 0;
        for rs in &old {
            if done >= total {
                break;
            }
            if replicas(rs) == 0 {
                continue;
            }
            let down = replicas(rs).min(total - done);
            self.scale_and_record(rs, replicas(rs) - down).await?;
            done += down;
        }
        Ok(done)
    }

    /// One Recreate step: scale every old ReplicaSet to zero, wait until their pods are gone,
    /// then scale the new one to the desired count.
    pub(super) async fn rollout_recreate(&mut self, selector: &Selector) -> Result<(), Error> {
        let (new, old) = self.all_sets_and_sync_revision(false).await?;
        let new_uid = new.as_ref().and_then(|rs| rs.metadata.uid.clone());
        let mut scaled = false;
        for rs in old.iter().filter(|rs| replicas(rs) > 0) {
            scaled |= self.scale_and_record(rs, 0).await?.0;
        }
        if scaled {
            return self.sync_rollout_status(new_uid.as_deref()).await;
        }
        if self.old_pods_running(new_uid.as_deref(), selector).await? {
            // Pods are not watched here: look again shortly.
            self.requeue_after(OLD_PODS_RECHECK);
            return self.sync_rollout_status(new_uid.as_deref()).await;
        }
        let new = match new {
            Some(new) => new,
            None => self
                .all_sets_and_sync_revision(true)
                .await?
                .0
                .ok_or_else(|| Error::Invalid("no new replica set after creating it".into()))?,
        };
        let new_uid = new.metadata.uid.clone();
        self.scale_and_record(&new, desired(&self.d)).await?;
        if self.d.status.as_ref().is_some_and(|s| status::complete(&self.d, s)) {
            let (_, old) = self.split(new_uid.as_deref());
            self.clean_up(&old).await?;
        }
        self.sync_rollout_status(new_uid.as_deref()).await
    }

    /// Whether pods of old ReplicaSets still run (or are still terminating).
    async fn old_pods_running(&self, new_uid: Option<&str>, selector: &Selector) -> Result<bool, Error> {
        let (_, old) = self.split(new_uid);
        if old
            .iter()
            .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
            .sum::<i32>()
            > 0
        {
            return Ok(true);
        }
        let old_uids: HashSet<&str> = old.iter().filter_map(uid).collect();
        let ns = self.d.namespace().unwrap_or_default();
        let pods = Api::<Pod>::namespaced(self.st.ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector.to_string()))
            .await?;
        Ok(pods.items.iter().any(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            ownership::controller_of(&pod.metadata).is_some_and(|r| old_uids.contains(r.uid.as_str()))
                && !matches!(phase, Some("Succeeded" | "Failed"))
        }))
    }

    /// Resizes the ReplicaSets to the Deployment's size: the only active one (or the newest)
    /// takes all; otherwise, during a rolling update, the change is shared in proportion to
    /// their sizes, so that a resize neither speeds up nor slows down the rollout.
    pub(super) async fn scale(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let want = desired(&self.d);
        if let Some(rs) = active_or_latest(new, old) {
            if replicas(&rs) != want {
                self.scale_and_record(&rs, want).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new) {
            for rs in old.iter().filter(|rs| replicas(rs) > 0) {
                self.scale_and_record(rs, 0).await?;
            }
            return Ok(());
        }
        if !math::is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<ReplicaSet> = old.iter().chain(new).filter(|rs| replicas(rs) > 0).cloned().collect();
        let current: i32 = active.iter().map(replicas).sum();
        let allowed = if want > 0 { want + math::max_surge(&self.d) } else { 0 };
        let to_add = allowed - current;
        // Growing favours the bigger and newer sets, shrinking the bigger and older ones.
        active.sort_by(|a, b| {
            replicas(b).cmp(&replicas(a)).then_with(|| {
                if to_add > 0 {
                    by_creation(b, a)
                } else {
                    by_creation(a, b)
                }
            })
        });
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for rs in &active {
            let share = if to_add != 0 {
                math::proportion(rs, &self.d, to_add, added)
            } else {
                0
            };
            sizes.push(replicas(rs) + share);
            added += share;
        }
        // Rounding leftovers go to the first (biggest) set.
        if to_add != added
            && let Some(first) = sizes.first_mut()
        {
            *first = (*first + to_add - added).max(0);
        }
        let direction = if to_add > 0 { "up" } else { "down" };
        for (rs, size) in active.iter().zip(sizes) {
            self.scale_replica_set(rs, size, direction).await?;
        }
        Ok(())
    }
}

/// The ReplicaSet that should take the whole size: the only active one, or without any active
/// the new one, or else the newest old one; `None` when several are active.
fn active_or_latest(new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    let mut newest_first: Vec<&ReplicaSet> = old.iter().collect();
    newest_first.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> = newest_first
        .iter()
        .copied()
        .chain(new)
        .filter(|rs| replicas(rs) > 0)
        .collect();
    match active.as_slice() {
        [] => new.or(newest_first.first().copied()).cloned(),
        [only] => Some((*only).clone()),
        _ => None,
    }
}

/// Whether the new ReplicaSet runs the whole Deployment, all of it available.
fn is_saturated(d: &Deployment, new: Option<&ReplicaSet>) -> bool {
    let want = desired(d);
    new.is_some_and(|rs| {
        replicas(rs) == want
            && history::int_annotation(rs, history::DESIRED_REPLICAS) == Some(want)
            && available(rs) == want
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn rs(name: &str, replicas: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: jiff::Timestamp::from_second(created).ok().map(Time),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn name(rs: Option<ReplicaSet>) -> Option<String> {
        rs.and_then(|rs| rs.metadata.name)
    }

    #[test]
    fn the_only_active_set_takes_the_whole_size() {
        let old = [rs("a", 0, 1), rs("b", 3, 2)];
        assert_eq!(
            name(active_or_latest(Some(&rs("new", 0, 3)), &old)).as_deref(),
            Some("b")
        );
        assert_eq!(name(active_or_latest(Some(&rs("new", 2, 3)), &old)), None);
        let idle = [rs("a", 0, 1), rs("b", 0, 2)];
        assert_eq!(
            name(active_or_latest(Some(&rs("new", 0, 3)), &idle)).as_deref(),
            Some("new")
        );
        assert_eq!(name(active_or_latest(None, &idle)).as_deref(), Some("b"));
    }
}
