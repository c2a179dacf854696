//! The node agent: the kubelet of this machine, run inside `kate server` (and, later, by
//! `kate agent` on machines that join a cluster).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// Options of the node agent.
#[derive(Args, Clone)]
pub struct AgentArgs {
    /// The node's name; default the host name.
    #[arg(long)]
    node_name: Option<String>,
    /// The port of the kubelet's HTTPS server (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The host bridge pods are attached to (and the name of the pod network).
    #[arg(long, default_value = "kate0")]
    pod_bridge: String,
    /// A registry (`host:port`) to pull images from over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// The cluster DNS service IP, the nameserver of ClusterFirst pods.
    #[arg(long, value_name = "IP", default_value = "10.43.0.10")]
    cluster_dns: std::net::IpAddr,
}

impl AgentArgs {
    /// The node's name: the flag, else the host name in lower case.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_else(|_| "kate".into())
        })
    }

    /// The host bridge pods are attached to.
    pub fn pod_bridge(&self) -> &str {
        &self.pod_bridge
    }
}

/// Starts the kubelet on the runtime's tasks; it needs root (namespaces, mounts, cgroups), so
/// without root it is skipped with a notice. `tls` is its HTTPS server's certificates (none: no
/// logs, exec or port-forward); `control_plane` labels the node as a control-plane node.
pub fn start_kubelet(
    client: kube::Client,
    args: &AgentArgs,
    data_dir: &Path,
    tls: Option<kate_kubelet::ServingTls>,
    control_plane: bool,
) -> anyhow::Result<()> {
    if !crate::is_root() {
        eprintln!("kate: not running as root, so this machine runs no pods (the kubelet needs root)");
        return Ok(());
    }
    let images = kate_runtime::ImageStore::open(data_dir.join("images")).context("opening the image store")?;
    let mut runtime = kate_runtime::RuntimeOptions::new(data_dir.join("runtime"));
    runtime.runc = args.runtime.clone();
    runtime.cni_conf.bridge = args.pod_bridge.clone();
    runtime.cni_conf.network = args.pod_bridge.clone();
    let config = kate_kubelet::Config {
        node_name: args.node_name(),
        data_dir: data_dir.join("kubelet"),
        port: args.kubelet_port,
        kubelet_version: kate_apiserver::http::KUBE_GIT_VERSION.to_string(),
        runtime_version: format!("kate://{}", env!("CARGO_PKG_VERSION")),
        node_labels: if control_plane {
            [("node-role.kubernetes.io/control-plane".to_string(), "true".to_string())].into()
        } else {
            Default::default()
        },
        insecure_registries: args.insecure_registries.clone(),
        cluster_dns: Some(args.cluster_dns),
        tls,
    };
    tokio::spawn(async move {
        if let Err(e) = kate_kubelet::run(client, config, runtime, images).await {
            tracing::error!(error = %e, "the kubelet stopped");
            eprintln!("kate: the kubelet stopped: {e}");
        }
    });
    Ok(())
}

/// Options of `kate reset`.
#[derive(Args)]
pub struct ResetArgs {
    /// The data directory of the node.
    #[arg(long, env = "KATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The pod bridge the node's sandboxes are attached to.
    #[arg(long, default_value = "kate0")]
    pod_bridge: String,
}

/// Stops and removes every container and sandbox of the node, its proxy rules and its pod
/// bridge.
pub fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(crate::default_data_dir);
    let images = kate_runtime::ImageStore::open(data_dir.join("images")).context("opening the image store")?;
    let mut options = kate_runtime::RuntimeOptions::new(data_dir.join("runtime"));
    options.cni_conf.bridge = args.pod_bridge.clone();
    options.cni_conf.network = args.pod_bridge.clone();
    let runtime = kate_runtime::Runtime::new(options, images).context("opening the runtime")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let containers = runtime.list_containers().context("listing containers")?;
        for c in &containers {
            runtime
                .stop_container(&c.id, std::time::Duration::ZERO)
                .await
                .with_context(|| format!("stopping container {}", c.id))?;
            runtime
                .remove_container(&c.id)
                .await
                .with_context(|| format!("removing container {}", c.id))?;
        }
        let sandboxes = runtime.list_sandboxes().context("listing sandboxes")?;
        for s in &sandboxes {
            runtime
                .remove_sandbox(&s.id)
                .await
                .with_context(|| format!("removing sandbox {}", s.id))?;
        }
        kate_proxy::cleanup(&kate_proxy::table_name(&args.pod_bridge))
            .context("removing the proxy's nftables table")?;
        runtime.remove_network().context("removing the pod bridge")?;
        eprintln!(
            "kate: removed {} containers and {} pod sandboxes",
            containers.len(),
            sandboxes.len()
        );
        Ok(())
    })
}
