//! kate's scheduler: assigns every pending pod to the best node, like kube-scheduler.
//!
//! Watches feed an in-memory [`cache`] of nodes and the pods on them (with running sums of
//! requested resources, host ports and label-set counts per node) and a scheduling [`queue`].
//! One loop thread takes pods from the queue by priority and runs upstream's default plugins
//! ([`plugins`], through the [`framework`]): filters on a rotating sample of nodes as large as
//! upstream's `percentageOfNodesToScore` asks, then weighted scores. The chosen node is
//! *assumed* in the cache at once and the binding written asynchronously, many at a time, so
//! throughput is not bound by API round trips. A pod that fits nowhere gets PodScheduled=False
//! with upstream's "0/N nodes are available" message and a FailedScheduling event, and may
//! [`preemption`] lower-priority pods. [`sim`] provides simulated nodes to test all this at
//! thousands of nodes on one machine.
//!
//! [`run`] schedules while this process holds the `kube-system/kube-scheduler` lease (or the
//! one configured).

mod bind;
pub mod cache;
pub mod framework;
pub mod hash;
mod informer;
pub mod labels;
pub mod node;
pub mod plugins;
pub mod pod;
pub mod preemption;
/// Resource quantities as integers, shared with the kubelet.
pub use kate_quantity as quantity;
pub mod queue;
pub mod resources;
pub mod schedule;
mod scheduler;
pub mod sim;

use std::sync::mpsc;

use k8s_openapi::api::core::v1::Pod;
use kate_controllers::informer::Shared;
use tokio::task::JoinSet;

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The default lease (in kube-system) whose holder schedules.
pub const LEASE_NAME: &str = "kube-scheduler";

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Leader election could not proceed.
    #[error("leader election: {0}")]
    Leader(#[from] kate_controllers::Error),
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// The scheduling thread could not be started.
    #[error("starting the scheduling thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who this process is in the leader election.
    pub identity: String,
    /// The lease in kube-system that decides which scheduler of this name runs.
    pub lease_name: String,
    /// Pods naming this `schedulerName` are scheduled; others are left alone.
    pub scheduler_name: String,
    /// Share of nodes (percent) to find feasible before scoring; 0 is upstream's adaptive rule.
    pub percentage_of_nodes_to_score: usize,
    /// Bindings written concurrently.
    pub max_in_flight_bindings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            identity: "kate".into(),
            lease_name: LEASE_NAME.into(),
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            percentage_of_nodes_to_score: 0,
            max_in_flight_bindings: 256,
        }
    }
}

/// Schedules while this process holds the scheduler lease; returns only if leader election
/// cannot go on.
/// Pods come from `pods`, which may be shared with other consumers in the process.
pub async fn run(client: kube::Client, config: Config, pods: Shared<Pod>) -> Result<(), Error> {
    let (identity, lease) = (config.identity.clone(), config.lease_name.clone());
    kate_controllers::leader::run_while_leader(client.clone(), "kube-system", &lease, &identity, move || {
        let (client, config, pods) = (client.clone(), config.clone(), pods.clone());
        async move {
            if let Err(e) = schedule(client, config, pods).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        }
    })
    .await?;
    Ok(())
}

/// Stops the loop thread when the scheduling future ends or is dropped (leadership lost).
struct StopOnDrop(mpsc::Sender<informer::Event>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(informer::Event::Stop);
    }
}

/// Runs the watches and the scheduling loop until the loop ends.
async fn schedule(client: kube::Client, config: Config, pods: Shared<Pod>) -> Result<(), Error> {
    let (tx, rx) = mpsc::channel();
    let writer = bind::Writer::new(
        client.clone(),
        tokio::runtime::Handle::current(),
        tx.clone(),
        config.max_in_flight_bindings,
        &config.scheduler_name,
    );
    let schedule_loop = scheduler::Loop::new(writer, &config.scheduler_name, config.percentage_of_nodes_to_score);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kate-scheduler".into())
        .spawn(move || {
            schedule_loop.run(rx);
            let _ = done_tx.send(());
        })?;
    let _stop = StopOnDrop(tx.clone());
    let mut watches = JoinSet::new();
    informer::spawn_all(&client, &pods, &tx, &mut watches);
    drop(tx);
    tracing::info!(scheduler = %config.scheduler_name, "scheduler started");
    let _ = done_rx.await;
    Ok(())
}
