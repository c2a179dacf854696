//! The pod status the kubelet reports: phase, conditions, IPs and one status per container,
//! in upstream's shape.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use kate_runtime::{ContainerState, ContainerStatus};
use serde_json::{Value, json};

/// What the kubelet knows of one container of the pod.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The current runtime container: its ID, image ID and status.
    pub current: Option<(String, String, ContainerStatus)>,
    /// How the previous instance ended, for lastState.
    pub last: Option<Value>,
    /// Why it is not running, when it is not: (reason, message).
    pub waiting: Option<(String, String)>,
    /// Restarts so far.
    pub restarts: u32,
    /// Whether its readiness (and startup) probes pass.
    pub ready: bool,
    /// Whether its startup probe passed (or it has none) while running.
    pub started: bool,
    /// The termination message read when it ended.
    pub message: Option<String>,
}

/// RFC 3339 with seconds, as upstream's `metav1.Time`.
pub fn time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `state` object of a runtime container status.
pub fn terminated(id: &str, status: &ContainerStatus, message: Option<&str>) -> Value {
    let mut t = json!({
        "exitCode": status.exit_code.unwrap_or(-1),
        "reason": status.reason.clone().unwrap_or_else(|| "Error".into()),
        "startedAt": status.started_at.map(time),
        "finishedAt": status.finished_at.map(time),
        "containerID": container_id(id),
    });
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        t["message"] = json!(m);
    }
    json!({"terminated": t})
}

/// The containerID the API shows for a runtime container.
pub fn container_id(id: &str) -> String {
    format!("kate://{id}")
}

/// One entry of containerStatuses.
pub fn container_status(c: &Container, o: &Observed) -> Value {
    let image = c.image.clone().unwrap_or_default();
    let mut v = json!({
        "name": c.name,
        "image": image,
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": o.restarts,
        "lastState": o.last.clone().unwrap_or_else(|| json!({})),
    });
    let waiting = |reason: &str, message: &str| {
        let mut w = json!({"reason": reason});
        if !message.is_empty() {
            w["message"] = json!(message);
        }
        json!({"waiting": w})
    };
    match (&o.current, &o.waiting) {
        (_, Some((reason, message))) => {
            v["state"] = waiting(reason, message);
            if let Some((id, image_id, _)) = &o.current {
                v["containerID"] = json!(container_id(id));
                v["imageID"] = json!(image_id);
            }
        }
        (Some((id, image_id, status)), None) => {
            v["containerID"] = json!(container_id(id));
            v["imageID"] = json!(image_id);
            match status.state {
                ContainerState::Running => {
                    v["state"] = json!({"running": {"startedAt": status.started_at.map(time)}});
                    v["ready"] = json!(o.ready);
                    v["started"] = json!(o.started);
                }
                ContainerState::Exited => v["state"] = terminated(id, status, o.message.as_deref()),
                ContainerState::Created => v["state"] = waiting("ContainerCreating", ""),
            }
        }
        (None, None) => v["state"] = waiting("ContainerCreating", ""),
    }
    v
}

/// Keeps each condition's lastTransitionTime while its status stays the same.
#[derive(Debug, Default)]
pub struct Conditions {
    since: HashMap<String, (bool, String)>,
}

impl Conditions {
    /// Starts from the conditions the pod already reports (after a kubelet restart).
    pub fn from_pod(pod: &Pod) -> Conditions {
        let since = pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .map(|c| {
                let when = c.last_transition_time.as_ref().map(|t| time(t.0)).unwrap_or_default();
                (c.type_.clone(), (c.status == "True", when))
            })
            .collect();
        Conditions { since }
    }

    /// A condition, with reason `reason` when false.
    pub fn condition(&mut self, kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> Value {
        let now = time(jiff::Timestamp::now());
        let entry = self.since.entry(kind.to_string()).or_insert((ok, now.clone()));
        if entry.0 != ok {
            *entry = (ok, now);
        }
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
                            "lastTransitionTime": entry.1});
        // Explicit nulls, so the strategic merge patch drops a reason the condition had.
        c["reason"] = json!(reason.filter(|_| !ok));
        c["message"] = json!(message.filter(|_| !ok));
        c
    }
}

/// Whether a container that ended with `code` restarts under the pod's restartPolicy.
pub fn restarts(policy: &str, code: Option<i32>) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != Some(0),
        _ => true,
    }
}

/// The pod phase from its containers' states, as upstream's kubelet computes it.
pub fn phase(policy: &str, init_failed: bool, init_done: bool, containers: &[&Observed]) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
    for o in containers {
        match &o.current {
            Some((_, _, s)) if o.waiting.is_none() && s.state == ContainerState::Running => running += 1,
            Some((_, _, s)) if s.state == ContainerState::Exited => {
                if s.exit_code == Some(0) {
                    succeeded += 1
                } else {
                    failed += 1
                }
                if o.waiting.is_some() {
                    waiting += 1;
                }
            }
            _ => waiting += 1,
        }
    }
    let total = containers.len();
    if waiting > 0 && running == 0 && succeeded + failed < total {
        return "Pending";
    }
    if running > 0 || waiting > 0 {
        return "Running";
    }
    if succeeded + failed == total && total > 0 {
        if policy == "Always" {
            return "Running";
        }
        if failed > 0 && policy == "Never" {
            return "Failed";
        }
        if failed == 0 {
            return "Succeeded";
        }
        return "Running";
    }
    "Pending"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(state: ContainerState, code: Option<i32>) -> Observed {
        Observed {
            current: Some((
                "id".into(),
                "sha256:x".into(),
                ContainerStatus {
                    state,
                    pid: None,
                    exit_code: code,
                    reason: None,
                    created_at: jiff::Timestamp::UNIX_EPOCH,
                    started_at: None,
                    finished_at: None,
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        let running = observed(ContainerState::Running, None);
        let ok = observed(ContainerState::Exited, Some(0));
        let bad = observed(ContainerState::Exited, Some(1));
        let creating = Observed::default();
        assert_eq!(phase("Always", false, false, &[&running]), "Pending");
        assert_eq!(phase("Always", true, false, &[&running]), "Failed");
        assert_eq!(phase("Always", false, true, &[&creating]), "Pending");
        assert_eq!(phase("Always", false, true, &[&running, &creating]), "Running");
        assert_eq!(phase("Never", false, true, &[&ok]), "Succeeded");
        assert_eq!(phase("Never", false, true, &[&ok, &bad]), "Failed");
        assert_eq!(phase("OnFailure", false, true, &[&ok]), "Succeeded");
        assert_eq!(phase("Never", false, true, &[&running, &bad]), "Running");
    }

    #[test]
    fn restart_policies() {
        assert!(restarts("Always", Some(0)));
        assert!(!restarts("OnFailure", Some(0)));
        assert!(restarts("OnFailure", Some(2)));
        assert!(!restarts("Never", Some(2)));
    }

    #[test]
    fn transition_times_stay_while_the_status_does() {
        let mut c = Conditions::default();
        let first = c.condition("Ready", false, Some("ContainersNotReady"), None);
        assert_eq!(first["reason"], "ContainersNotReady");
        let again = c.condition("Ready", false, Some("ContainersNotReady"), None);
        assert_eq!(first["lastTransitionTime"], again["lastTransitionTime"]);
        let ready = c.condition("Ready", true, None, None);
        assert_eq!(ready["status"], "True");
        assert!(ready["reason"].is_null());
    }
}
