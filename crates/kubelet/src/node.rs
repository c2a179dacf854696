//! The Node object: registration, the status heartbeat, and waiting for a pod CIDR.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::pressure::Pressure;
use crate::sysinfo::HostInfo;
use crate::{Config, Error};

/// How often the node status is written even when nothing changed, so the node lifecycle
/// controller sees a fresh heartbeat in it too (the Lease is the frequent heartbeat).
pub const STATUS_REPORT_PERIOD: Duration = Duration::from_secs(60);

/// Keeps the node's conditions with their last transition times across reports.
pub struct NodeReporter {
    api: Api<Node>,
    config: Config,
    host: HostInfo,
    transitions: HashMap<String, (String, String)>,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl NodeReporter {
    /// A reporter for the node named in `config`.
    pub fn new(client: kube::Client, config: Config, host: HostInfo) -> NodeReporter {
        NodeReporter {
            api: Api::all(client),
            config,
            host,
            transitions: HashMap::new(),
        }
    }

    /// Creates the Node, or takes over the existing one of that name (a restarted kubelet),
    /// then reports its status.
    pub async fn register(&mut self) -> Result<Node, Error> {
        let name = self.config.node_name.clone();
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": self.labels()},
            "spec": {},
        }))?;
        match self.api.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node = %name, "registered the node"),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = self.api.get(&name).await?;
                self.remember(&existing);
                let patch = json!({"metadata": {"labels": self.labels()}});
                self.api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                tracing::info!(node = %name, "the node was registered before; taking it over");
            }
            Err(e) => return Err(e.into()),
        }
        self.report(true).await
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.config.node_name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), arch().to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
        ]);
        labels.extend(self.config.node_labels.clone());
        labels
    }

    /// Notes the conditions a node already has, so their transition times carry over.
    fn remember(&mut self, node: &Node) {
        for c in node.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
            let time = c
                .last_transition_time
                .as_ref()
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(now);
            self.transitions.insert(c.type_.clone(), (c.status.clone(), time));
        }
    }

    fn condition(&mut self, kind: &str, status: bool, reason: &str, message: &str) -> Value {
        let status = if status { "True" } else { "False" };
        let now = now();
        let entry = self
            .transitions
            .entry(kind.to_string())
            .or_insert_with(|| (status.to_string(), now.clone()));
        if entry.0 != status {
            *entry = (status.to_string(), now.clone());
        }
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": entry.1})
    }

    /// A pressure condition: `[reason, message]` for when `pressed`, and for when not.
    fn pressure_condition(&mut self, kind: &str, pressed: bool, on: [&str; 2], off: [&str; 2]) -> Value {
        let [reason, message] = if pressed { on } else { off };
        self.condition(kind, pressed, reason, message)
    }

    /// Writes the node's status: resources, addresses, software and conditions.
    pub async fn report(&mut self, ready: bool) -> Result<Node, Error> {
        let pressure = Pressure::observe(&self.config.data_dir);
        let conditions = [
            self.pressure_condition(
                "MemoryPressure",
                pressure.memory,
                [
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                ],
                ["KubeletHasSufficientMemory", "kubelet has sufficient memory available"],
            ),
            self.pressure_condition(
                "DiskPressure",
                pressure.disk,
                ["KubeletHasDiskPressure", "kubelet has disk pressure"],
                ["KubeletHasNoDiskPressure", "kubelet has no disk pressure"],
            ),
            self.pressure_condition(
                "PIDPressure",
                pressure.pid,
                ["KubeletHasInsufficientPID", "kubelet has insufficient PID available"],
                ["KubeletHasSufficientPID", "kubelet has sufficient PID available"],
            ),
            if ready {
                self.condition("Ready", true, "KubeletReady", "kubelet is posting ready status")
            } else {
                self.condition("Ready", false, "KubeletNotReady", "container runtime is not ready")
            },
        ];
        let host = &self.host;
        let status = json!({"status": {
            "capacity": host.capacity(),
            "allocatable": host.allocatable(),
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": host.ip.to_string()},
                {"type": "Hostname", "address": self.config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.port}},
            "nodeInfo": {
                "machineID": host.machine_id,
                "systemUUID": host.machine_id,
                "bootID": host.boot_id,
                "kernelVersion": host.kernel,
                "osImage": host.os_image,
                "containerRuntimeVersion": self.config.runtime_version,
                "kubeletVersion": self.config.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch(),
            },
        }});
        let name = self.config.node_name.clone();
        Ok(self
            .api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await?)
    }

    /// Waits until the node IPAM controller has given the node a pod CIDR.
    pub async fn wait_for_pod_cidr(&self) -> Result<String, Error> {
        loop {
            let node = self.api.get(&self.config.node_name).await?;
            if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
                return Ok(cidr);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The architecture as Kubernetes names it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
