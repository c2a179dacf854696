//! The pod worker: one task per pod bound to this node. Each pass compares the pod's spec with
//! what runs (sandbox, init containers in order, then the containers), starts, restarts or kills
//! containers as the restart policy, back-off and probes say, and reports the status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kate_controllers::events::Kind as EventKind;
use kate_runtime::{ContainerState, Sandbox};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Shared;
use crate::backoff::Backoff;
use crate::probe::{self, Kind, ProbeState};
use crate::sandbox;
use crate::spec::labels;
use crate::status::{self, Conditions, Observed};
use crate::volumes::Prepared;

/// How often a pod is looked at when nothing announces a change (a container exiting is
/// noticed by this poll).
const RESYNC: Duration = Duration::from_secs(1);
/// How long after an error a pass is retried.
const RETRY: Duration = Duration::from_secs(2);

/// A container instance the worker started (or adopted).
#[derive(Debug)]
pub(crate) struct Instance {
    pub id: String,
    pub attempt: u32,
    pub image_id: String,
    pub started: Instant,
    pub probes: Vec<ProbeState>,
    pub exit_noted: bool,
}

/// What the worker tracks per container name.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub current: Option<Instance>,
    /// The instance before the current one, kept for `kubectl logs --previous`.
    pub previous: Option<String>,
    pub observed: Observed,
    pub restart_backoff: Backoff,
    pub pull_backoff: Backoff,
}

/// The state of one pod on this node.
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub uid: String,
    pub sandbox: Option<Sandbox>,
    pub volumes: Option<BTreeMap<String, Prepared>>,
    pub slots: HashMap<String, Slot>,
    conditions: Conditions,
    start_time: Option<String>,
    reported: Option<Value>,
    /// Why the sandbox or volumes are not ready, when they are not.
    pub setup_error: Option<String>,
    init_failed: bool,
}

/// Runs the worker of pod `uid` until the pod is gone; `pods` carries its latest version
/// (`None` once it was deleted from the API).
pub(crate) async fn run(shared: Arc<Shared>, uid: String, mut pods: watch::Receiver<Option<Arc<Pod>>>) {
    let mut worker: Option<Worker> = None;
    loop {
        let pod = pods.borrow_and_update().clone();
        let Some(pod) = pod else {
            let mut w = worker.unwrap_or_else(|| Worker::adopt(shared.clone(), &uid, None));
            w.terminate(None, Duration::from_secs(2)).await;
            return;
        };
        let w = worker.get_or_insert_with(|| Worker::adopt(shared.clone(), &uid, Some(&pod)));
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            w.terminate(Some(&pod), Duration::from_secs(grace.max(0) as u64)).await;
            return;
        }
        let wake = w.sync(&pod).await;
        tokio::select! {
            changed = pods.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

impl Worker {
    /// A worker for the pod, taking over the sandbox and containers a previous run of the
    /// kubelet left (the newest instance of each container is current, the one before it the
    /// previous; older ones are removed).
    fn adopt(shared: Arc<Shared>, uid: &str, pod: Option<&Pod>) -> Worker {
        let mut slots: HashMap<String, Slot> = HashMap::new();
        let mut found: HashMap<String, Vec<(u32, kate_runtime::Container)>> = HashMap::new();
        for c in shared.runtime.list_containers().unwrap_or_default() {
            if c.labels.get(labels::POD_UID).map(String::as_str) != Some(uid) {
                continue;
            }
            let name = c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
            let attempt = c.labels.get(labels::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
            found.entry(name).or_default().push((attempt, c));
        }
        for (name, mut instances) in found {
            instances.sort_by_key(|(a, _)| std::cmp::Reverse(*a));
            let mut slot = Slot::default();
            let mut iter = instances.into_iter();
            if let Some((attempt, c)) = iter.next() {
                slot.observed.restarts = attempt;
                let exited = shared
                    .runtime
                    .container_status(&c.id)
                    .is_ok_and(|s| s.state == ContainerState::Exited);
                slot.current = Some(Instance {
                    id: c.id.clone(),
                    attempt,
                    image_id: c.image_id.clone(),
                    started: Instant::now(),
                    probes: Vec::new(),
                    exit_noted: exited,
                });
            }
            if let Some((_, c)) = iter.next() {
                if let Ok(s) = shared.runtime.container_status(&c.id) {
                    slot.observed.last = Some(status::terminated(&c.id, &s, None));
                }
                slot.previous = Some(c.id);
            }
            for (_, stale) in iter {
                let runtime = shared.runtime.clone();
                tokio::spawn(async move { runtime.remove_container(&stale.id).await });
            }
            slots.insert(name, slot);
        }
        let sandbox = shared.runtime.sandbox(uid).ok().filter(|s| s.ready);
        let status = pod.and_then(|p| p.status.as_ref());
        Worker {
            uid: uid.to_string(),
            sandbox,
            volumes: None,
            slots,
            conditions: pod.map(Conditions::from_pod).unwrap_or_default(),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| status::time(t.0)),
            reported: None,
            setup_error: None,
            init_failed: false,
            shared,
        }
    }

    /// One pass over the pod; returns when the next pass is due at the latest.
    async fn sync(&mut self, pod: &Pod) -> Instant {
        let now = Instant::now();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) && self.reported.is_none() {
            // Finished before this kubelet started: nothing runs again.
            return now + Duration::from_secs(3600);
        }
        if self.start_time.is_none() {
            self.start_time = Some(status::time(jiff::Timestamp::now()));
        }
        let mut wake = now + RESYNC;
        if !self.ensure_setup(pod).await {
            self.report(pod, false, false).await;
            return now + RETRY;
        }
        self.refresh(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let mut init_done = !self.init_failed;
        if init_done {
            for c in spec.init_containers.iter().flatten() {
                match self.state_of(&c.name) {
                    Some((ContainerState::Exited, Some(0))) => continue,
                    Some((ContainerState::Exited, _)) if policy == "Never" => {
                        self.init_failed = true;
                    }
                    Some((ContainerState::Exited, _)) | None => {
                        let restart = self.state_of(&c.name).is_some();
                        if let Some(at) = self.start(pod, c, restart).await {
                            wake = wake.min(at);
                        }
                    }
                    Some(_) => {}
                }
                init_done = false;
                break;
            }
        }
        if init_done {
            for c in &spec.containers {
                match self.state_of(&c.name) {
                    None => {
                        if let Some(at) = self.start(pod, c, false).await {
                            wake = wake.min(at);
                        }
                    }
                    Some((ContainerState::Exited, code)) if status::restarts(&policy, code) => {
                        if let Some(at) = self.start(pod, c, true).await {
                            wake = wake.min(at);
                        }
                    }
                    Some((ContainerState::Running, _)) => {
                        if let Some(at) = self.probe(pod, c).await {
                            wake = wake.min(at);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        self.report(pod, init_done, true).await;
        wake.max(now + Duration::from_millis(50))
    }

    /// The state and exit code of a container's current instance.
    fn state_of(&self, name: &str) -> Option<(ContainerState, Option<i32>)> {
        let slot = self.slots.get(name)?;
        let (_, _, s) = slot.observed.current.as_ref()?;
        Some((s.state, s.exit_code))
    }

    /// Reads every current container's status from the runtime, noting exits once.
    fn refresh(&mut self, pod: &Pod) {
        let now = Instant::now();
        for (name, slot) in self.slots.iter_mut() {
            let Some(inst) = slot.current.as_mut() else { continue };
            let Ok(s) = self.shared.runtime.container_status(&inst.id) else {
                continue;
            };
            if s.state == ContainerState::Exited && !inst.exit_noted {
                inst.exit_noted = true;
                let ran = match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => b.duration_since(a).unsigned_abs(),
                    _ => Duration::ZERO,
                };
                slot.restart_backoff.failed(now, ran);
                let fallback = pod
                    .spec
                    .iter()
                    .flat_map(|spec| spec.containers.iter().chain(spec.init_containers.iter().flatten()))
                    .find(|c| &c.name == name)
                    .is_some_and(|c| c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"));
                let from_logs = fallback && s.exit_code != Some(0);
                slot.observed.message = self.shared.termination_message(&inst.id, from_logs);
            }
            slot.observed.current = Some((inst.id.clone(), inst.image_id.clone(), s));
        }
    }

    /// Makes sure the sandbox and volumes exist; false (with `setup_error` set) when not yet.
    async fn ensure_setup(&mut self, pod: &Pod) -> bool {
        if self.sandbox.is_none() {
            match sandbox::create(&self.shared, pod).await {
                Ok(s) => self.sandbox = Some(s),
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: {e}");
                    self.event(pod, EventKind::Warning, "FailedCreatePodSandBox", &message)
                        .await;
                    self.setup_error = Some(message);
                    return false;
                }
            }
        }
        if self.volumes.is_none() {
            match sandbox::volumes(&self.shared, pod).await {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    let message = format!("MountVolume.SetUp failed: {e}");
                    self.event(pod, EventKind::Warning, "FailedMount", &message).await;
                    self.setup_error = Some(message);
                    return false;
                }
            }
        }
        self.setup_error = None;
        true
    }

    /// Runs the due probes of a running container; kills it when liveness or startup fails.
    /// Returns when a probe is due next.
    async fn probe(&mut self, pod: &Pod, c: &Container) -> Option<Instant> {
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ip).or(Some(self.shared.host.ip));
        let runtime = self.shared.runtime.clone();
        let slot = self.slots.get_mut(&c.name)?;
        let inst = slot.current.as_mut()?;
        if inst.probes.is_empty() {
            inst.probes = [Kind::Startup, Kind::Liveness, Kind::Readiness]
                .into_iter()
                .filter_map(|k| k.of(c).map(|p| ProbeState::new(k, p, inst.started)))
                .collect();
        }
        let now = Instant::now();
        let started = inst.probes.iter().all(|p| p.kind != Kind::Startup || p.passing);
        let mut failures: Vec<(Kind, String)> = Vec::new();
        let mut kill: Option<Kind> = None;
        for state in inst.probes.iter_mut() {
            let gated = state.kind != Kind::Startup && !started;
            if gated || !state.due(now) || (state.kind == Kind::Startup && state.passing) {
                continue;
            }
            let Some(p) = state.kind.of(c) else { continue };
            let result = probe::run(p, &runtime, &inst.id, c, pod_ip).await;
            if let Err(message) = &result {
                failures.push((state.kind, message.clone()));
            }
            state.record(p, result.is_ok(), Instant::now());
            if state.tripped && matches!(state.kind, Kind::Liveness | Kind::Startup) {
                kill = Some(state.kind);
            }
        }
        let started = inst.probes.iter().all(|p| p.kind != Kind::Startup || p.passing);
        slot.observed.started = started;
        slot.observed.ready = started && inst.probes.iter().all(|p| p.kind != Kind::Readiness || p.passing);
        let next = inst.probes.iter().map(ProbeState::next).min();
        let id = inst.id.clone();
        for (kind, message) in failures {
            let text = format!("{} probe failed: {message}", kind.name());
            self.event(pod, EventKind::Warning, "Unhealthy", &text).await;
        }
        if let Some(kind) = kill {
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let message = format!(
                "Container {} failed {} probe, will be restarted",
                c.name,
                kind.name().to_lowercase()
            );
            self.event(pod, EventKind::Normal, "Killing", &message).await;
            if let Err(e) = self
                .shared
                .runtime
                .stop_container(&id, Duration::from_secs(grace.max(0) as u64))
                .await
            {
                tracing::warn!(container = %id, error = %e, "could not stop an unhealthy container");
            }
            return Some(Instant::now());
        }
        next
    }

    /// Records an event about the pod.
    pub async fn event(&self, pod: &Pod, kind: EventKind, reason: &str, message: &str) {
        self.shared
            .events
            .record(&pod.object_ref(&()), kind, reason, message)
            .await;
    }

    /// Writes the pod's status when it changed.
    async fn report(&mut self, pod: &Pod, init_done: bool, setup_ok: bool) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let observed = |name: &str| self.slots.get(name).map(|s| s.observed.clone()).unwrap_or_default();
        let containers: Vec<Observed> = spec.containers.iter().map(|c| observed(&c.name)).collect();
        let init: Vec<Observed> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| observed(&c.name))
            .collect();
        let phase = status::phase(
            &policy,
            self.init_failed,
            init_done,
            &containers.iter().collect::<Vec<_>>(),
        );
        let unready: Vec<&str> = spec
            .containers
            .iter()
            .zip(&containers)
            .filter(|(_, o)| !(o.ready && o.waiting.is_none() && is_running(o)))
            .map(|(c, _)| c.name.as_str())
            .collect();
        let uninit: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .zip(&init)
            .filter(|(_, o)| {
                !matches!(
                    o.current.as_ref().map(|(_, _, s)| (s.state, s.exit_code)),
                    Some((ContainerState::Exited, Some(0)))
                )
            })
            .map(|(c, _)| c.name.as_str())
            .collect();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let list = |names: &[&str]| format!("[{}]", names.join(" "));
        let ready_reason = if terminal { "PodCompleted" } else { "ContainersNotReady" };
        let conditions = vec![
            self.conditions.condition(
                "PodReadyToStartContainers",
                setup_ok && self.sandbox.is_some(),
                None,
                None,
            ),
            self.conditions.condition(
                "Initialized",
                uninit.is_empty() || init_done,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: {}", list(&uninit))),
            ),
            self.conditions.condition(
                "ContainersReady",
                unready.is_empty() && !terminal,
                Some(ready_reason),
                (!terminal).then(|| format!("containers with unready status: {}", list(&unready))),
            ),
            self.conditions.condition(
                "Ready",
                unready.is_empty() && !terminal,
                Some(ready_reason),
                (!terminal).then(|| format!("containers with unready status: {}", list(&unready))),
            ),
        ];
        let host_ip = self.shared.host.ip.to_string();
        let pod_ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.map(|ip| ip.to_string()).unwrap_or_else(|| host_ip.clone()));
        let mut body = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": spec.containers.iter().zip(&containers).map(|(c, o)| status::container_status(c, o)).collect::<Vec<_>>(),
        });
        if let Some(ip) = pod_ip {
            body["podIP"] = json!(ip);
            body["podIPs"] = json!([{"ip": ip}]);
        }
        if !init.is_empty() {
            body["initContainerStatuses"] = json!(
                spec.init_containers
                    .iter()
                    .flatten()
                    .zip(&init)
                    .map(|(c, o)| status::container_status(c, o))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(message) = &self.setup_error {
            body["message"] = json!(message);
        }
        if self.reported.as_ref() == Some(&body) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        match pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": body.clone()})),
            )
            .await
        {
            Ok(_) => self.reported = Some(body),
            Err(e) => tracing::debug!(pod = %name, error = %e, "could not report the pod status"),
        }
    }

    /// Stops every container within the grace period, removes the pod's containers, sandbox
    /// and files, then (for a pod still in the API) completes its graceful deletion.
    async fn terminate(&mut self, pod: Option<&Pod>, grace: Duration) {
        if let Some(pod) = pod {
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                if matches!(self.state_of_live(&c.name), Some(ContainerState::Running)) {
                    self.event(
                        pod,
                        EventKind::Normal,
                        "Killing",
                        &format!("Stopping container {}", c.name),
                    )
                    .await;
                }
            }
        }
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ip).or(Some(self.shared.host.ip));
        let stops = self
            .slots
            .iter()
            .filter_map(|(name, s)| Some((name, s.current.as_ref()?)))
            .map(|(name, inst)| {
                let runtime = self.shared.runtime.clone();
                let container = pod
                    .and_then(|p| p.spec.as_ref()?.containers.iter().find(|c| &c.name == name))
                    .cloned();
                let id = inst.id.clone();
                async move {
                    let started = Instant::now();
                    let hook = container.as_ref().and_then(|c| c.lifecycle.as_ref()?.pre_stop.clone());
                    if let (Some(handler), Some(c)) = (hook, &container)
                        && let Err(message) = probe::hook(&handler, &runtime, &id, c, pod_ip, grace).await
                    {
                        tracing::debug!(container = %id, %message, "the preStop hook failed");
                    }
                    let left = grace.saturating_sub(started.elapsed());
                    if let Err(e) = runtime.stop_container(&id, left).await {
                        tracing::debug!(container = %id, error = %e, "could not stop a container");
                    }
                }
            });
        futures::future::join_all(stops).await;
        sandbox::remove_all(&self.shared, &self.uid, pod).await;
        let Some(pod) = pod else { return };
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        loop {
            match pods.delete(&name, &params).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "could not complete the pod's deletion; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    fn state_of_live(&self, name: &str) -> Option<ContainerState> {
        let inst = self.slots.get(name)?.current.as_ref()?;
        self.shared.runtime.container_status(&inst.id).ok().map(|s| s.state)
    }
}

fn is_running(o: &Observed) -> bool {
    o.current
        .as_ref()
        .is_some_and(|(_, _, s)| s.state == ContainerState::Running)
}
