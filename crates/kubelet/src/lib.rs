//! kate's kubelet: the node agent that runs the pods bound to its node as real containers.
//!
//! It registers a Node (capacity, addresses, software, conditions), renews the node's Lease
//! every 10 seconds, waits for the node IPAM controller to give the node a pod CIDR, then runs
//! every pod bound to the node through [`kate_runtime::Runtime`]: a sandbox with its own network
//! namespace, init containers in order, then the containers, restarted as the pod's
//! restartPolicy says with upstream's back-off, checked by their probes, and reported in the
//! pod's status. Like every other component it only talks to the API server; a restarted
//! kubelet takes over the containers that kept running and removes those of deleted pods.
//! The one way in is its HTTPS port, which only the API server uses: it proxies `kubectl logs`,
//! `exec`, `attach` and `port-forward` there (see `server`).

mod backoff;
pub mod env;
mod lease;
mod manager;
pub mod node;
mod pressure;
mod probe;
mod pullsecrets;
mod sandbox;
mod server;
pub mod spec;
mod start;
pub mod status;
pub mod sysinfo;
pub mod volumes;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kate_controllers::events::Recorder;
use kate_runtime::{ImageStore, Runtime, RuntimeOptions};

use crate::node::{NodeReporter, STATUS_REPORT_PERIOD};
pub use crate::server::{ServerError, ServingTls};
use crate::sysinfo::HostInfo;

/// Errors that stop the kubelet from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// An object could not be built.
    #[error("building an object: {0}")]
    Json(#[from] serde_json::Error),
    /// The kubelet's directory could not be created.
    #[error("creating {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The container runtime could not be set up.
    #[error("container runtime: {0}")]
    Runtime(#[from] kate_runtime::Error),
    /// The kubelet's HTTPS server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// How the kubelet runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's name.
    pub node_name: String,
    /// The kubelet's own directory (pod volumes, container logs).
    pub data_dir: PathBuf,
    /// The port of the kubelet's HTTPS server (logs, exec, port-forward).
    pub port: u16,
    /// The version reported in nodeInfo.kubeletVersion.
    pub kubelet_version: String,
    /// The version reported in nodeInfo.containerRuntimeVersion.
    pub runtime_version: String,
    /// Extra labels of the Node.
    pub node_labels: BTreeMap<String, String>,
    /// Registries pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The cluster DNS service's IP, the nameserver of ClusterFirst pods (none: the node's).
    pub cluster_dns: Option<std::net::IpAddr>,
    /// The HTTPS server's certificates; without them the server (logs, exec, attach,
    /// port-forward) does not run.
    pub tls: Option<ServingTls>,
}

/// What every pod worker shares.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub runtime: Runtime,
    pub config: Config,
    pub host: HostInfo,
    pub events: Recorder,
}

impl Shared {
    /// Where the pod's volumes live.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid)
    }

    /// Where the pod's container logs live, as upstream's `/var/log/pods` layout.
    pub fn pod_log_dir(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.config.data_dir.join("logs").join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or("")
        ))
    }

    /// The log file of one instance of a container.
    pub fn log_path(&self, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
        self.pod_log_dir(pod).join(container).join(format!("{attempt}.log"))
    }

    /// The message a container left in its terminationMessagePath file; when that is empty and
    /// `from_logs` (FallbackToLogsOnError on a failure), the end of its log, as upstream: at
    /// most 80 lines and 2 KiB.
    pub fn termination_message(&self, container_id: &str, from_logs: bool) -> Option<String> {
        let log = self.runtime.log_path(container_id).ok()?;
        let text = std::fs::read(log.with_extension("termination-log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[..text.len().min(4096)])
            .trim_end()
            .to_string();
        if !text.is_empty() {
            return Some(text);
        }
        if !from_logs {
            return None;
        }
        let log = std::fs::read_to_string(&log).ok()?;
        let lines: Vec<&str> = log.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect();
        let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
        if tail.len() > 2048 {
            let cut = tail.len() - 2048;
            let cut = (cut..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(tail.len());
            tail = tail[cut..].to_string();
        }
        (!tail.is_empty()).then_some(tail)
    }
}

/// Runs the kubelet until the process stops: registers the node, then heartbeats and runs its
/// pods. `runtime` says where the runtime keeps its state; its pod network is set to the
/// node's pod CIDR once assigned.
pub async fn run(
    client: kube::Client,
    config: Config,
    mut runtime: RuntimeOptions,
    images: ImageStore,
) -> Result<(), Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::DataDir(config.data_dir.clone(), e))?;
    let host = HostInfo::read(&config.data_dir);
    let mut reporter = NodeReporter::new(client.clone(), config.clone(), host.clone());
    let node = reporter.register().await?;
    let node_uid = node.metadata.uid.clone().unwrap_or_default();
    lease::renew(&client, &config.node_name, &node_uid).await?;
    tokio::spawn({
        let (client, name) = (client.clone(), config.node_name.clone());
        async move {
            let mut tick = tokio::time::interval(lease::RENEW_PERIOD);
            loop {
                tick.tick().await;
                if let Err(e) = lease::renew(&client, &name, &node_uid).await {
                    tracing::warn!(node = %name, error = %e, "could not renew the node lease");
                }
            }
        }
    });
    runtime.cni_conf.subnet = reporter.wait_for_pod_cidr().await?;
    tracing::info!(node = %config.node_name, subnet = %runtime.cni_conf.subnet, "the node's pod network");
    let runtime = Runtime::new(runtime, images)?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATUS_REPORT_PERIOD);
        loop {
            tick.tick().await;
            if let Err(e) = reporter.report(true).await {
                tracing::warn!(error = %e, "could not report the node status");
            }
        }
    });
    let shared = Arc::new(Shared {
        events: Recorder::new(client.clone(), "kubelet"),
        client,
        runtime,
        host,
        config,
    });
    match shared.config.tls.clone() {
        Some(tls) => server::start(shared.clone(), &tls).await?,
        None => tracing::warn!(
            "the kubelet has no serving certificate: logs, exec, attach and port-forward are unavailable"
        ),
    }
    manager::run(shared).await;
    Ok(())
}
