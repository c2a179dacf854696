//! Starting one container of a pod: the image (pulled as its policy says, with back-off), the
//! configuration, create and start in the runtime, and the postStart hook.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod};
use kate_controllers::events::Kind as EventKind;
use kate_runtime::{ImageRef, PullOptions, PullPolicy};

use crate::env::{self, Sources};
use crate::probe;
use crate::pullsecrets;
use crate::spec::{self, Inputs};
use crate::status;
use crate::worker::{Instance, Worker};

/// How long a postStart hook may take before the container counts as failed to start.
const POST_START_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Worker {
    /// Starts the container (a restart when `restart`); on failure leaves a waiting reason in
    /// its status. Returns when it should be looked at again, if sooner than the next pass.
    pub(crate) async fn start(&mut self, pod: &Pod, c: &Container, restart: bool) -> Option<Instant> {
        let now = Instant::now();
        let slot = self.slots.entry(c.name.clone()).or_default();
        if restart && slot.restart_backoff.waiting(now) {
            let delay = slot.restart_backoff.delay().as_secs();
            let message = format!(
                "back-off {delay}s restarting failed container={} pod={}_{}({})",
                c.name,
                pod.metadata.name.as_deref().unwrap_or(""),
                pod.metadata.namespace.as_deref().unwrap_or(""),
                self.uid
            );
            let first = slot
                .observed
                .waiting
                .as_ref()
                .is_none_or(|(r, _)| r != "CrashLoopBackOff");
            slot.observed.waiting = Some(("CrashLoopBackOff".into(), message.clone()));
            let until = slot.restart_backoff.until();
            if first {
                self.event(
                    pod,
                    EventKind::Warning,
                    "BackOff",
                    "Back-off restarting failed container",
                )
                .await;
            }
            return until;
        }
        let image_name = c.image.clone().unwrap_or_default();
        let image_ref = match ImageRef::parse(&image_name) {
            Ok(r) => r,
            Err(e) => {
                self.wait(
                    c,
                    "InvalidImageName",
                    &format!("Failed to apply default image tag {image_name:?}: {e}"),
                );
                return None;
            }
        };
        let mut sources = Sources::new(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let image = match self.pull(pod, c, &image_ref, &mut sources).await {
            Ok(image) => image,
            Err(at) => return at,
        };
        let attempt = match self.slots.get(&c.name).and_then(|s| s.current.as_ref()) {
            Some(inst) => inst.attempt + 1,
            None => 0,
        };
        let env = match env::build(pod, c, &self.shared.host, &mut sources).await {
            Ok(env) => env,
            Err(e) => {
                self.config_error(pod, c, &e.to_string()).await;
                return None;
            }
        };
        let id = format!("{}-{}-{attempt}", self.uid, c.name);
        let log_path = self.shared.log_path(pod, &c.name, attempt);
        if let Some(parent) = log_path.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            self.config_error(pod, c, &format!("creating {}: {e}", parent.display()))
                .await;
            return None;
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let config = spec::container_config(Inputs {
            pod,
            container: c,
            image: &image.config,
            image_ref,
            env,
            volumes: &volumes,
            id: id.clone(),
            attempt,
            log_path: &log_path,
        });
        let config = match config {
            Ok(config) => config,
            Err(e) => {
                self.config_error(pod, c, &e.to_string()).await;
                return None;
            }
        };
        let sandbox = self.sandbox.clone()?;
        let runtime = self.shared.runtime.clone();
        // A leftover of an attempt that failed half-way would block the ID.
        let _ = runtime.remove_container(&id).await;
        if let Err(e) = runtime.create_container(&sandbox, &config).await {
            return self.runtime_failure(pod, c, "CreateContainerError", e).await;
        }
        self.event(
            pod,
            EventKind::Normal,
            "Created",
            &format!("Created container {}", c.name),
        )
        .await;
        if let Err(e) = runtime.start_container(&id).await {
            return self.runtime_failure(pod, c, "RunContainerError", e).await;
        }
        self.event(
            pod,
            EventKind::Normal,
            "Started",
            &format!("Started container {}", c.name),
        )
        .await;
        let slot = self.slots.entry(c.name.clone()).or_default();
        let old = slot.current.replace(Instance {
            id: id.clone(),
            attempt,
            image_id: image.id.to_string(),
            started: Instant::now(),
            probes: Vec::new(),
            exit_noted: false,
        });
        let message = slot.observed.message.take();
        slot.observed.waiting = None;
        slot.observed.restarts = attempt;
        slot.observed.ready = false;
        slot.observed.started = false;
        if let Some(old) = old {
            if let Ok(s) = runtime.container_status(&old.id) {
                slot.observed.last = Some(status::terminated(&old.id, &s, message.as_deref()));
            }
            if let Some(older) = slot.previous.replace(old.id) {
                let _ = runtime.remove_container(&older).await;
            }
        }
        if let Ok(s) = runtime.container_status(&id) {
            slot.observed.current = Some((id.clone(), image.id.to_string(), s));
        }
        let hook = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
        let pod_ip = sandbox.ip.or(Some(self.shared.host.ip));
        if let Some(handler) = hook
            && let Err(message) = probe::hook(handler, &runtime, &id, c, pod_ip, POST_START_LIMIT).await
        {
            let text = format!("PostStartHook failed: {message}");
            self.event(pod, EventKind::Warning, "FailedPostStartHook", &text).await;
            let _ = runtime.stop_container(&id, std::time::Duration::from_secs(2)).await;
        }
        None
    }

    /// Makes the image available; on failure sets ErrImagePull / ImagePullBackOff and returns
    /// when to try again.
    async fn pull(
        &mut self,
        pod: &Pod,
        c: &Container,
        image_ref: &ImageRef,
        sources: &mut Sources,
    ) -> Result<kate_runtime::Image, Option<Instant>> {
        let now = Instant::now();
        let name = c.image.clone().unwrap_or_default();
        let slot = self.slots.entry(c.name.clone()).or_default();
        if slot.pull_backoff.waiting(now) {
            slot.observed.waiting = Some(("ImagePullBackOff".into(), format!("Back-off pulling image {name:?}")));
            return Err(slot.pull_backoff.until());
        }
        let policy = match c.image_pull_policy.as_deref() {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some(_) => PullPolicy::IfNotPresent,
            None => PullPolicy::default_for(image_ref),
        };
        let present = self.shared.runtime.images().contains(image_ref).unwrap_or(false);
        if policy == PullPolicy::Never || (present && policy == PullPolicy::IfNotPresent) {
            return match self.shared.runtime.images().image(image_ref) {
                Ok(image) => {
                    if let Some(slot) = self.slots.get(&c.name)
                        && slot.current.is_none()
                    {
                        let text = format!("Container image {name:?} already present on machine");
                        self.event(pod, EventKind::Normal, "Pulled", &text).await;
                    }
                    Ok(image)
                }
                Err(_) => {
                    let message = format!("Container image {name:?} is not present with pull policy of Never");
                    self.wait(c, "ErrImageNeverPull", &message);
                    self.event(pod, EventKind::Warning, "ErrImageNeverPull", &message).await;
                    Err(None)
                }
            };
        }
        let secrets: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect();
        let credentials = pullsecrets::credentials(&secrets, image_ref.registry(), sources)
            .await
            .unwrap_or(None);
        let options = PullOptions {
            insecure_registries: self.shared.config.insecure_registries.clone(),
            credentials,
        };
        self.event(pod, EventKind::Normal, "Pulling", &format!("Pulling image {name:?}"))
            .await;
        let started = Instant::now();
        match self.shared.runtime.images().ensure(image_ref, policy, &options).await {
            Ok(image) => {
                let text = format!(
                    "Successfully pulled image {name:?} in {:.3}s. Image size: {} bytes.",
                    started.elapsed().as_secs_f64(),
                    image.size
                );
                self.event(pod, EventKind::Normal, "Pulled", &text).await;
                if let Some(slot) = self.slots.get_mut(&c.name) {
                    slot.pull_backoff.reset();
                }
                Ok(image)
            }
            Err(e) => {
                let message = format!("Failed to pull image {name:?}: {e}");
                self.event(pod, EventKind::Warning, "Failed", &message).await;
                self.event(pod, EventKind::Warning, "Failed", "Error: ErrImagePull")
                    .await;
                let slot = self.slots.entry(c.name.clone()).or_default();
                slot.pull_backoff.failed_and_wait(Instant::now());
                slot.observed.waiting = Some(("ErrImagePull".into(), message));
                Err(slot.pull_backoff.until())
            }
        }
    }

    /// The runtime refused to create or start the container: it waits with `reason`, and is
    /// tried again shortly.
    async fn runtime_failure(
        &mut self,
        pod: &Pod,
        c: &Container,
        reason: &str,
        error: kate_runtime::Error,
    ) -> Option<Instant> {
        self.wait(c, reason, &error.to_string());
        self.event(pod, EventKind::Warning, "Failed", &format!("Error: {error}"))
            .await;
        Some(Instant::now() + std::time::Duration::from_secs(2))
    }

    fn wait(&mut self, c: &Container, reason: &str, message: &str) {
        let slot = self.slots.entry(c.name.clone()).or_default();
        slot.observed.waiting = Some((reason.into(), message.into()));
    }

    async fn config_error(&mut self, pod: &Pod, c: &Container, message: &str) {
        self.wait(c, "CreateContainerConfigError", message);
        self.event(pod, EventKind::Warning, "Failed", &format!("Error: {message}"))
            .await;
    }
}
