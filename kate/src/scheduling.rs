//! `kate scheduler` and `kate sim`, and the scheduler and simulated nodes `kate server` runs
//! in-process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Options of `kate scheduler`.
#[derive(Args)]
pub struct SchedulerArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Schedule the pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = kate_scheduler::DEFAULT_SCHEDULER_NAME)]
    scheduler_name: String,
    /// The leader election lease in kube-system.
    #[arg(long, default_value = kate_scheduler::LEASE_NAME)]
    lease_name: String,
    /// Share of nodes (percent) found feasible before scoring; 0 is upstream's adaptive rule.
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: usize,
}

/// Options of `kate sim`.
#[derive(Args)]
pub struct SimArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// How many simulated nodes to register.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Node names are this prefix and a number.
    #[arg(long, default_value = "kate-sim-")]
    prefix: String,
    /// How often each node renews its lease.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    lease_renew_seconds: u64,
    /// Only register the nodes and renew their leases: leave bound pods as they are.
    #[arg(long)]
    no_kubelet: bool,
}

/// A client from a kubeconfig file, or the usual defaults.
async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file =
                kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .context("loading the kubeconfig")?
        }
        None => kube::Config::infer().await.context("finding a kubeconfig")?,
    };
    kube::Client::try_from(config).context("building the API client")
}

/// A leader-election identity: host name and process id.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "kate".into());
    format!("{}_{}", host.trim(), std::process::id())
}

/// `kate scheduler`: schedules until interrupted.
pub fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    crate::init_logging();
    crate::async_runtime()?.block_on(async move {
        let client = client(args.kubeconfig).await?;
        let config = kate_scheduler::Config {
            identity: identity(),
            lease_name: args.lease_name,
            scheduler_name: args.scheduler_name,
            percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
            ..Default::default()
        };
        tokio::select! {
            result = kate_scheduler::run(client.clone(), config, kate_controllers::Informers::new(&client).pods) => {
                result.context("scheduler")
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// `kate sim`: registers simulated nodes and runs them until interrupted.
pub fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    crate::init_logging();
    crate::async_runtime()?.block_on(async move {
        let client = client(args.kubeconfig).await?;
        let config = kate_scheduler::sim::SimConfig {
            nodes: args.nodes,
            prefix: args.prefix,
            lease_renew: Duration::from_secs(args.lease_renew_seconds),
            kubelet: !args.no_kubelet,
            ..Default::default()
        };
        eprintln!("kate: registering {} simulated nodes", config.nodes);
        tokio::select! {
            result = kate_scheduler::sim::run(client, config) => result.context("simulated nodes"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// Starts the scheduler (and `sim_nodes` simulated nodes, if any) inside `kate server`, with
/// the server's shared informers.
pub fn start_in_server(
    client: kube::Client,
    identity: String,
    informers: &kate_controllers::Informers,
    sim_nodes: usize,
) {
    let config = kate_scheduler::Config {
        identity,
        ..Default::default()
    };
    tokio::spawn({
        let (client, pods) = (client.clone(), informers.pods.clone());
        async move {
            if let Err(e) = kate_scheduler::run(client, config, pods).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        }
    });
    if sim_nodes > 0 {
        let config = kate_scheduler::sim::SimConfig {
            nodes: sim_nodes,
            ..Default::default()
        };
        tokio::spawn(async move {
            if let Err(e) = kate_scheduler::sim::run(client, config).await {
                tracing::error!(error = %e, "simulated nodes stopped");
            }
        });
    }
}
