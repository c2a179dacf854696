//! Simulated nodes, like kwok: nodes with realistic capacity and labels that renew their
//! Leases and play the kubelet for the pods bound to them (Running and Ready at once, deleted
//! as soon as deletion starts), so that scheduling and controllers can be exercised at
//! thousands of nodes on one machine. Every simulated node carries the label
//! `kate.dev/simulated: "true"` and the instance type `kate-simulated`, so nobody mistakes
//! them for real ones.

mod kubelet;
mod lease;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// The label marking simulated nodes.
pub const SIMULATED_LABEL: &str = "kate.dev/simulated";
/// The instance type of simulated nodes.
pub const INSTANCE_TYPE: &str = "kate-simulated";
/// The zones simulated nodes are spread over.
pub const ZONES: [&str; 3] = ["kate-sim-a", "kate-sim-b", "kate-sim-c"];

/// Errors that stop the simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Registering a node failed.
    #[error("registering node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The API error.
        source: kube::Error,
    },
    /// A node object could not be built (a bug).
    #[error("building node {node}: {source}")]
    Build {
        /// The node.
        node: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Too many nodes for the simulated address plan.
    #[error("at most {max} simulated nodes are supported")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// How many nodes the address plan has room for (a /24 of pod IPs each in 10.64.0.0/10 —
/// fake addresses that only ever appear in objects).
pub const MAX_NODES: usize = 64 * 256;

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Node names are this prefix and a number.
    pub prefix: String,
    /// How often each node renews its Lease (the kubelet's default is 10 s).
    pub lease_renew: Duration,
    /// API writes (registrations, status updates, deletions) in flight at once.
    pub concurrency: usize,
    /// Whether pods bound to the nodes are started and removed; without it the nodes only
    /// exist and heartbeat, as in upstream's scheduler benchmarks.
    pub kubelet: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 3,
            prefix: "kate-sim-".into(),
            lease_renew: Duration::from_secs(10),
            concurrency: 32,
            kubelet: true,
        }
    }
}

impl SimConfig {
    /// The name of node `i`.
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }
}

/// Registers the nodes, then renews their leases and runs their pods until the process ends.
pub async fn run(client: kube::Client, config: SimConfig) -> Result<(), SimError> {
    if config.nodes > MAX_NODES {
        return Err(SimError::TooMany { max: MAX_NODES });
    }
    register(&client, &config).await?;
    tracing::info!(nodes = config.nodes, "simulated nodes registered");
    let leases = tokio::spawn(lease::renew_forever(client.clone(), config.clone()));
    if config.kubelet {
        kubelet::run(client, config).await;
        leases.abort();
    } else if let Err(e) = leases.await {
        tracing::error!(error = %e, "lease renewal stopped");
    }
    Ok(())
}

/// Creates the nodes that do not exist yet (an existing node is left as it is).
async fn register(client: &kube::Client, config: &SimConfig) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..config.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            let name = config.node_name(i);
            async move {
                let node: Node = serde_json::from_value(node_object(&name, i)).map_err(|source| SimError::Build {
                    node: name.clone(),
                    source,
                })?;
                match nodes.create(&PostParams::default(), &node).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(source) => Err(SimError::Register { node: name, source }),
                }
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    lease::create_all(client, config).await;
    Ok(())
}

/// The fake address of node `i`.
fn node_ip(i: usize) -> String {
    format!("10.{}.{}.1", 64 + i / 256, i % 256)
}

/// Node `i`: 4 cpu, 16Gi, 110 pods, in one of three zones, Ready.
fn node_object(name: &str, i: usize) -> Value {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": INSTANCE_TYPE,
                "topology.kubernetes.io/region": "kate-sim",
                "topology.kubernetes.io/zone": ZONES[i % ZONES.len()],
                SIMULATED_LABEL: "true",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
            "podCIDRs": [format!("10.{}.{}.0/24", 64 + i / 256, i % 256)],
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "phase": "Running",
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kate simulated kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node_ip(i)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "kate simulated node",
                "kernelVersion": "simulated",
                "containerRuntimeVersion": "kate-sim://1.0",
                "kubeletVersion": "v1.33.0-kate-sim",
                "kubeProxyVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_marked_and_spread_over_zones() {
        let node: Node = serde_json::from_value(node_object("kate-sim-4", 4)).unwrap();
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[SIMULATED_LABEL], "true");
        assert_eq!(labels["node.kubernetes.io/instance-type"], INSTANCE_TYPE);
        assert_eq!(labels["topology.kubernetes.io/zone"], "kate-sim-b");
        let alloc = node.status.unwrap().allocatable.unwrap();
        assert_eq!(alloc["pods"].0, "110");
        assert_eq!(node_ip(300), "10.65.44.1");
    }
}
