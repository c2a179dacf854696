//! `kate server`: the control plane on an embedded store.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use kate_store::Store;
use kate_store::sqlite::SqliteStore;

/// Options of `kate server`.
#[derive(Args)]
pub struct ServerArgs {
    /// Directory for all state (store, certificates, kubeconfig).
    #[arg(long, env = "KATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    /// Extra DNS names or IPs for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// How long the store keeps history for watches and paged lists.
    #[arg(long, default_value = "300", value_name = "SECONDS")]
    history_seconds: u64,
    /// Simulated nodes to register and run in-process (see `kate sim`).
    #[arg(long, default_value_t = 0, value_name = "N")]
    sim_nodes: usize,
    /// How long a node may go without a heartbeat before it is marked unreachable.
    #[arg(long = "node-monitor-grace-period", default_value = "40", value_name = "SECONDS")]
    node_monitor_grace_period: u64,
    /// The pod network; each node gets a /24 of it as its pod CIDR.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    cluster_cidr: String,
    /// Run only the control plane, without this machine's node (kubelet).
    #[arg(long)]
    disable_agent: bool,
    /// The cloud provider of the cloud-controller-manager (`local`: LoadBalancer Services get
    /// the Ready nodes' addresses); `none` runs no cloud controllers.
    #[arg(long, default_value = crate::cloud::DEFAULT_PROVIDER, value_parser = crate::cloud::PROVIDERS)]
    cloud_provider: String,
    #[command(flatten)]
    agent: crate::agent::AgentArgs,
}

/// Runs the server until killed.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::init_logging();
    let data_dir = crate::data_dir_or_default(args.data_dir.clone())?;
    let runtime = crate::async_runtime()?;
    runtime.block_on(async move {
        let progress = |step: &str| eprintln!("kate: {step}...");
        progress(&format!("opening the store in {}", data_dir.display()));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&data_dir.join("state.db")).context("opening the store")?);
        let history = Duration::from_secs(args.history_seconds);
        kate_store::compactor::spawn_compactor(store.clone(), history, (history / 5).max(Duration::from_secs(1)));
        let config = kate_apiserver::Config {
            data_dir: data_dir.clone(),
            bind_address: args.bind_address,
            port: args.https_port,
            extra_sans: args.tls_san.clone(),
            history,
        };
        let server = kate_apiserver::Server::start(&config, store, &progress)
            .await
            .context("starting the API server")?;
        eprintln!(
            "kate: ready in {:.2}s: API server at {}, kubeconfig at {}",
            started.elapsed().as_secs_f64(),
            server.url,
            server.kubeconfig.display()
        );
        eprintln!(
            "kate: try `KUBECONFIG={} kubectl get namespaces`",
            server.kubeconfig.display()
        );
        // The scheduler and the controllers share one pod watch, made as the controller manager.
        let client = local_client(&server, "system:kube-controller-manager", "kube-controller-manager");
        let informers = kate_controllers::Informers::new(&client);
        let scheduler = local_client(&server, "system:kube-scheduler", "kube-scheduler");
        crate::scheduling::start_in_server(scheduler, identity(&data_dir), &informers, args.sim_nodes);
        let controllers = kate_controllers::Config {
            identity: identity(&data_dir),
            node_monitor_grace: Duration::from_secs(args.node_monitor_grace_period),
            cluster_cidr: args.cluster_cidr.clone(),
            ..Default::default()
        };
        if !args.disable_agent {
            let kubelet = local_client(&server, &format!("system:node:{}", args.agent.node_name()), "kubelet");
            let node_name = args.agent.node_name();
            let node_ip = kate_kubelet::sysinfo::primary_ip();
            let pki = server.pki();
            let (cert_pem, key_pem) = pki
                .issue_kubelet_serving_cert(node_ip, &node_name)
                .context("issuing the kubelet's serving certificate")?;
            let tls = kate_kubelet::ServingTls {
                ca_pem: pki.ca_cert_pem.clone(),
                cert_pem,
                key_pem,
            };
            crate::agent::start_kubelet(kubelet, &args.agent, &data_dir, Some(tls), true)?;
            crate::proxy::start(
                local_client(&server, "system:kube-proxy", "kube-proxy"),
                &args.agent,
                &args.cluster_cidr,
                true,
            );
        }
        tokio::spawn(async move {
            if let Err(e) = kate_controllers::run(client, controllers, informers).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });
        crate::cloud::start(
            local_client(&server, "system:cloud-controller-manager", "cloud-controller-manager"),
            &args.cloud_provider,
            identity(&data_dir),
        );
        tokio::select! {
            _ = server.serve() => {}
            _ = crate::stop_requested() => eprintln!("kate: stopping"),
        }
        if !args.disable_agent {
            crate::proxy::stop(&args.agent);
        }
        Ok(())
    })
}

/// A client of this server for a component running in this process: it uses the API like any
/// other client, but through the loopback transport instead of a TLS connection per watch.
fn local_client(server: &kate_apiserver::Server, user: &str, component: &str) -> kube::Client {
    let agent = format!(
        "{component}/{} (linux/{}) kate",
        kate_apiserver::http::KUBE_GIT_VERSION,
        std::env::consts::ARCH
    );
    kube::Client::new(server.loopback(user, &agent), "default")
}

/// This server's name in leader elections: the host name plus a hash of its data directory, so
/// two servers on one host differ while a restarted server is still the holder of its leases
/// (and takes them back at once instead of waiting for them to expire).
fn identity(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kate".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = dir.to_string_lossy().bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{host}_{:08x}", hash as u32)
}
