//! The new ReplicaSet: finding the one that runs the current template, or creating it (named
//! and labelled with the template's hash, sized as the strategy allows), and keeping its
//! revision and annotations, and the Deployment's revision, up to date.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::PostParams;

use super::status::{self, PROGRESSING, reason};
use super::{Pass, history, math};
use crate::Error;
use crate::events::Kind;
use crate::replicaset::ownership::{self, Owner};
use crate::replicaset::{api_message, now};

impl Pass<'_> {
    /// Finds (and with `create`, creates) the new ReplicaSet, brings its revision and
    /// annotations up to date and copies the revision to the Deployment; returns it with the
    /// old ReplicaSets.
    pub(super) async fn all_sets_and_sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let existing = history::find_new(&self.d, &self.sets).cloned();
        let (_, old) = self.split(existing.as_ref().and_then(|rs| rs.metadata.uid.as_deref()));
        let new_revision = history::max_revision(&old) + 1;
        let new = match existing {
            Some(rs) => self.sync_new_replica_set(rs, new_revision).await?,
            None if create => self.create_new_replica_set(&old, new_revision).await?,
            None => return Ok((None, old)),
        };
        Ok((Some(new), old))
    }

    /// Updates an existing new ReplicaSet's annotations and minReadySeconds, and the
    /// Deployment's revision.
    async fn sync_new_replica_set(&mut self, rs: ReplicaSet, new_revision: i64) -> Result<ReplicaSet, Error> {
        let mut copy = rs.clone();
        let annotations_changed = history::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
        let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
        let rs = if annotations_changed || min_ready_changed {
            spec.min_ready_seconds = min_ready;
            let updated = self
                .rs_api
                .replace(&copy.name_any(), &PostParams::default(), &copy)
                .await?;
            self.remember(updated.clone());
            updated
        } else {
            rs
        };
        let revision = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(history::REVISION))
            .cloned()
            .unwrap_or_default();
        self.set_revision(&revision).await?;
        if status::has_progress_deadline(&self.d) && status::condition(self.d.status.as_ref(), PROGRESSING).is_none() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let message = format!("Found new replica set {:?}", rs.name_any());
            status::set_condition(
                &mut status,
                status::new_condition(PROGRESSING, "True", reason::FOUND_NEW_RS, message, &now()),
            );
            self.write_status(status).await?;
        }
        Ok(rs)
    }

    /// Creates the ReplicaSet for the current template, sized as the strategy allows.
    async fn create_new_replica_set(&mut self, old: &[ReplicaSet], new_revision: i64) -> Result<ReplicaSet, Error> {
        let owner = Owner::of(&self.d).ok_or_else(|| Error::Invalid("a Deployment without a name or uid".into()))?;
        let spec = self
            .d
            .spec
            .clone()
            .ok_or_else(|| Error::Invalid("a Deployment without a spec".into()))?;
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = history::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_default()
            .insert(history::HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(history::HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![owner.reference()]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
        let size = math::new_rs_new_replicas(&self.d, &all, &rs)?;
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(size);
        }
        history::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);

        let (created, already_existed) = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                // Ours from an earlier pass the store has not shown yet, or a hash collision.
                let found = self.rs_api.get(&name).await?;
                let ours = ownership::controller_of(&found.metadata).is_some_and(|r| r.uid == owner.uid());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| history::equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collisions.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::Invalid(format!(
                        "hash collision for ReplicaSet {name}: counting it and trying another name"
                    )));
                }
                (found, true)
            }
            Err(e) => {
                let message = format!("Failed to create new replica set {name:?}: {}", api_message(&e));
                if status::has_progress_deadline(&self.d) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status::set_condition(
                        &mut status,
                        status::new_condition(PROGRESSING, "False", reason::RS_CREATE_ERROR, message.clone(), &now()),
                    );
                    // The creation error matters more than whether this write works.
                    if let Err(write) = self.write_status(status).await {
                        tracing::debug!(error = %write, "could not report the creation error");
                    }
                }
                self.event(Kind::Warning, reason::RS_CREATE_ERROR, &message).await;
                return Err(e.into());
            }
        };
        if !already_existed && size > 0 {
            let message = format!("Scaled up replica set {name} from 0 to {size}");
            self.event(Kind::Normal, "ScalingReplicaSet", &message).await;
        }
        self.remember(created.clone());
        self.set_revision(&new_revision.to_string()).await?;
        if !already_existed && status::has_progress_deadline(&self.d) {
            let mut status = self.d.status.clone().unwrap_or_default();
            let message = format!("Created new replica set {name:?}");
            status::set_condition(
                &mut status,
                status::new_condition(PROGRESSING, "True", reason::NEW_RS_CREATED, message, &now()),
            );
            self.write_status(status).await?;
        }
        Ok(created)
    }
}
