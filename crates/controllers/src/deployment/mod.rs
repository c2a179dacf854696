//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.
//!
//! Each template gets its own ReplicaSet, named and labelled with the template's
//! pod-template-hash; the one running the current template is the "new" ReplicaSet, the
//! others are "old". A pass claims the ReplicaSets (adopting and releasing like the ReplicaSet
//! controller does pods), then either scales proportionally (on a resize, or while paused) or
//! takes one rollout step: RollingUpdate grows the new ReplicaSet within maxSurge and shrinks
//! old ones within maxUnavailable; Recreate scales old ones to zero, waits for their pods to
//! go, then scales the new one up. Revisions are kept in annotations so that `kubectl rollout
//! history` and `undo` work, and old ReplicaSets beyond revisionHistoryLimit are deleted.
//! ReplicaSets come from a reflector store whose watch also wakes their Deployment.

mod history;
mod math;
mod newrs;
mod rollout;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use self::status::{PROGRESSING, reason};
use crate::events::Kind;
use crate::replicaset::now;
use crate::replicaset::ownership::{self, Owner};
use crate::{Context, Error};

/// How long a pass waits for the ReplicaSet store's first list before trying again later.
const STORE_WAIT: Duration = Duration::from_secs(5);
/// When to retry a pass that failed.
const RETRY: Duration = Duration::from_secs(2);
/// When to retry a pass that lost a write race: soon, the newer object is already there.
const RACE_RETRY: Duration = Duration::from_millis(500);
/// How often a Recreate rollout looks again for old pods still running (pods are not watched).
const OLD_PODS_RECHECK: Duration = Duration::from_secs(1);

/// What the passes share.
struct State {
    ctx: Arc<Context>,
    sets: Store<ReplicaSet>,
    written: Written,
}

/// The resource versions this controller last wrote, per uid, until the stores show them: a
/// pass over an older copy would only lose its writes to conflicts, so it waits for the watch
/// to bring the newer one. kate's resource versions are store revisions, which only grow.
#[derive(Default)]
struct Written(Mutex<HashMap<String, u64>>);

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, meta: &ObjectMeta) {
        if let (Some(uid), Some(rv)) = (&meta.uid, meta.resource_version.as_deref().and_then(|v| v.parse().ok())) {
            self.lock().insert(uid.clone(), rv);
        }
    }

    /// Whether `meta` is older than what was written; forgets entries the store caught up with.
    fn is_stale(&self, meta: &ObjectMeta) -> bool {
        let (Some(uid), Some(rv)) = (
            &meta.uid,
            meta.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()),
        ) else {
            return false;
        };
        let mut written = self.lock();
        match written.get(uid) {
            Some(&w) if rv < w => true,
            Some(_) => {
                written.remove(uid);
                false
            }
            None => false,
        }
    }
}

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let rs_events = reflector::reflector(
        writer,
        watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(Api::<Deployment>::all(client), watcher::Config::default());
    let deployments = controller.store();
    let state = Arc::new(State {
        ctx,
        sets,
        written: Written::default(),
    });
    controller
        .watches_stream(rs_events, move |rs| owners_of(&deployments, &rs))
        .run(reconcile, |_, _, _| Action::requeue(RETRY), state)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "deployment reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment in its namespace that could adopt it.
fn owners_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let Some(ns) = rs.namespace() else {
        return Vec::new();
    };
    if let Some(r) = ownership::controller_of(&rs.metadata) {
        return match r.kind.as_str() {
            "Deployment" => vec![ObjectRef::new(&r.name).within(&ns)],
            _ => Vec::new(),
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| Selector::try_from(s.selector.clone()).ok())
                .is_some_and(|sel| !sel.selects_all() && sel.matches(rs.labels()))
        })
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

async fn reconcile(d: Arc<Deployment>, st: Arc<State>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "deployment",
        namespace = %d.namespace().unwrap_or_default(),
        name = %d.name_any()
    );
    async {
        // Acting before the first ReplicaSet list arrived would create the new one again.
        if !matches!(
            tokio::time::timeout(STORE_WAIT, st.sets.wait_until_ready()).await,
            Ok(Ok(()))
        ) {
            return Ok(Action::requeue(RETRY));
        }
        if is_behind(&d, &st) {
            return Ok(Action::requeue(RETRY));
        }
        let mut pass = Pass::new(&st, (*d).clone())?;
        match pass.run().await {
            Ok(()) => Ok(pass.requeue.map_or_else(Action::await_change, Action::requeue)),
            Err(Error::Api(kube::Error::Api(e))) if e.code == 409 => {
                tracing::debug!(message = %e.message, "lost a write race");
                Ok(Action::requeue(RACE_RETRY))
            }
            Err(e) => Err(e),
        }
    }
    .instrument(span)
    .await
}

/// Whether the store still shows an older version of the Deployment or of one of its
/// ReplicaSets than this controller wrote; the watch event of the write will start a new pass.
fn is_behind(d: &Deployment, st: &State) -> bool {
    let stale_sets = st.sets.state().iter().any(|rs| {
        ownership::controller_of(&rs.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref())
            && st.written.is_stale(&rs.metadata)
    });
    stale_sets || st.written.is_stale(&d.metadata)
}

/// The replicas a Deployment asks for.
fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The replicas a ReplicaSet is asked for.
fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// One pass over a Deployment, holding the latest known versions of what it writes.
struct Pass<'a> {
    st: &'a State,
    d: Deployment,
    /// The claimed ReplicaSets.
    sets: Vec<ReplicaSet>,
    api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    reference: ObjectReference,
    /// When to look again although nothing changed.
    requeue: Option<Duration>,
}

impl<'a> Pass<'a> {
    fn new(st: &'a State, d: Deployment) -> Result<Pass<'a>, Error> {
        let ns = d
            .namespace()
            .ok_or_else(|| Error::Invalid("a Deployment without a namespace".into()))?;
        Ok(Pass {
            api: Api::namespaced(st.ctx.client.clone(), &ns),
            rs_api: Api::namespaced(st.ctx.client.clone(), &ns),
            reference: d.object_ref(&()),
            st,
            d,
            sets: Vec::new(),
            requeue: None,
        })
    }

    async fn run(&mut self) -> Result<(), Error> {
        let spec = self
            .d
            .spec
            .clone()
            .ok_or_else(|| Error::Invalid("a Deployment without a spec".into()))?;
        let selector = match Selector::try_from(spec.selector.clone()) {
            Ok(s) if s.selects_all() => {
                let message = "This deployment is selecting all pods. A non-empty selector is required.";
                self.event(Kind::Warning, "SelectingAll", message).await;
                return Ok(());
            }
            Ok(s) => s,
            Err(e) => {
                // Retrying cannot fix a selector; a change to the object will bring it back.
                tracing::warn!(error = %e, "invalid selector");
                return Ok(());
            }
        };
        self.claim(&selector).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, old) = self.all_sets_and_sync_revision(false).await?;
            return self.sync_status(new.as_ref(), &old).await;
        }
        self.check_paused_conditions().await?;
        if paused(&self.d) || self.is_scaling_event().await? {
            return self.sync().await;
        }
        if math::is_rolling(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate(&selector).await
        }
    }

    async fn event(&self, kind: Kind, reason: &str, message: &str) {
        self.st.ctx.events.record(&self.reference, kind, reason, message).await;
    }

    fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// Claims the ReplicaSets of the namespace that the selector matches.
    async fn claim(&mut self, selector: &Selector) -> Result<(), Error> {
        let owner = Owner::of(&self.d).ok_or_else(|| Error::Invalid("a Deployment without a name or uid".into()))?;
        let ns = self.d.namespace();
        let candidates = self.st.sets.state_filter(|rs| rs.namespace() == ns);
        let recheck = ownership::recheck_owner(self.api.clone(), owner.clone());
        let claimed = ownership::claim(
            &self.rs_api,
            &owner,
            candidates,
            |rs| selector.matches(rs.labels()),
            recheck,
        )
        .await?;
        self.sets = claimed.iter().map(|rs| (**rs).clone()).collect();
        Ok(())
    }

    /// Replaces a claimed ReplicaSet by its newer version (or adds a created one).
    fn remember(&mut self, rs: ReplicaSet) {
        self.st.written.record(&rs.metadata);
        match self.sets.iter_mut().find(|s| s.metadata.uid == rs.metadata.uid) {
            Some(slot) => *slot = rs,
            None => self.sets.push(rs),
        }
    }

    /// The new ReplicaSet (by uid, if there is one) and all the others, in their latest versions.
    fn split(&self, new_uid: Option<&str>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let is_new = |rs: &ReplicaSet| new_uid.is_some() && rs.metadata.uid.as_deref() == new_uid;
        (
            self.sets.iter().find(|rs| is_new(rs)).cloned(),
            self.sets.iter().filter(|rs| !is_new(rs)).cloned().collect(),
        )
    }

    /// Sets the Deployment's revision annotation. Status writes ignore metadata, so this goes
    /// through the object itself.
    async fn set_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(history::REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {history::REVISION: revision}}});
        let patched = self
            .api
            .patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // A spec changed meanwhile must not be reported as observed by this pass.
        if patched.metadata.generation != self.d.metadata.generation {
            return Err(Error::Invalid("the Deployment changed during the pass".into()));
        }
        self.st.written.record(&patched.metadata);
        self.d = patched;
        Ok(())
    }

    /// Writes the Deployment's status unless it already says that.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = self.d.clone();
        updated.status = Some(status);
        self.d = self
            .api
            .replace_status(&self.d.name_any(), &PostParams::default(), &updated)
            .await?;
        self.st.written.record(&self.d.metadata);
        Ok(())
    }

    /// Records in the Progressing condition that the Deployment was paused or resumed, so the
    /// time spent paused does not count against the progress deadline.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !status::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let current = status::condition(self.d.status.as_ref(), PROGRESSING).and_then(|c| c.reason.clone());
        if current.as_deref() == Some(reason::TIMED_OUT) {
            return Ok(());
        }
        let paused_cond = current.as_deref() == Some(reason::PAUSED);
        let (why, message) = match (paused(&self.d), paused_cond) {
            (true, false) => (reason::PAUSED, "Deployment is paused"),
            (false, true) => (reason::RESUMED, "Deployment is resumed"),
            _ => return Ok(()),
        };
        let mut status = self.d.status.clone().unwrap_or_default();
        status::set_condition(
            &mut status,
            status::new_condition(PROGRESSING, "Unknown", why, message.into(), &now()),
        );
        self.write_status(status).await
    }

    /// Whether the Deployment was resized since its active ReplicaSets were sized.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, old) = self.all_sets_and_sync_revision(false).await?;
        let want = desired(&self.d);
        Ok(new
            .iter()
            .chain(&old)
            .filter(|rs| replicas(rs) > 0)
            .any(|rs| history::int_annotation(rs, history::DESIRED_REPLICAS).is_some_and(|d| d != want)))
    }

    /// Resizes without rolling out: on a resize, or while paused.
    async fn sync(&mut self) -> Result<(), Error> {
        let (new, old) = self.all_sets_and_sync_revision(false).await?;
        self.scale(new.as_ref(), &old).await?;
        let (new, old) = self.split(new.as_ref().and_then(|rs| rs.metadata.uid.as_deref()));
        if paused(&self.d) {
            self.clean_up(&old).await?;
        }
        self.sync_status(new.as_ref(), &old).await
    }

    /// Writes the counts and the Available condition.
    async fn sync_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let status = status::calculate(&all, new, &self.d, &now());
        self.write_status(status).await
    }

    /// Writes the status after a rollout step, and schedules a look at the progress deadline
    /// when nothing changed.
    async fn sync_rollout_status(&mut self, new_uid: Option<&str>) -> Result<(), Error> {
        let (new, old) = self.split(new_uid);
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        let now = now();
        let status = status::rollout(&all, new.as_ref(), &self.d, &now);
        if self.d.status.as_ref() == Some(&status) {
            if let Some(after) = status::deadline_check_in(&self.d, &status, now.0) {
                self.requeue_after(after);
            }
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Sets a ReplicaSet's size (and size annotations); returns whether the size changed and
    /// the ReplicaSet's latest version.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
        direction: &str,
    ) -> Result<(bool, ReplicaSet), Error> {
        let resize = replicas(rs) != size;
        let want = desired(&self.d);
        let max = want + math::max_surge(&self.d);
        if !resize && !history::replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(size);
        history::set_replicas_annotations(&mut copy, want, max);
        let updated = self
            .rs_api
            .replace(&rs.name_any(), &PostParams::default(), &copy)
            .await?;
        if resize {
            let message = format!(
                "Scaled {direction} replica set {} from {} to {size}",
                rs.name_any(),
                replicas(rs)
            );
            self.event(Kind::Normal, "ScalingReplicaSet", &message).await;
        }
        self.remember(updated.clone());
        Ok((resize, updated))
    }

    /// Sets a ReplicaSet's size if it differs; see [`Pass::scale_replica_set`].
    async fn scale_and_record(&mut self, rs: &ReplicaSet, size: i32) -> Result<(bool, ReplicaSet), Error> {
        if replicas(rs) == size {
            return Ok((false, rs.clone()));
        }
        let direction = if replicas(rs) < size { "up" } else { "down" };
        self.scale_replica_set(rs, size, direction).await
    }

    /// Deletes the old ReplicaSets beyond revisionHistoryLimit that are done with.
    async fn clean_up(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        if limit == i32::MAX {
            return Ok(());
        }
        for rs in history::to_clean_up(old, limit) {
            tracing::debug!(replicaset = %rs.name_any(), "deleting an old replica set");
            match self.rs_api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            self.sets.retain(|s| s.metadata.uid != rs.metadata.uid);
        }
        Ok(())
    }
}
