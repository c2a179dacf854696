//! kate's controllers: the loops that make the cluster match what was declared.
//!
//! Each controller is a level-triggered loop written against the Kubernetes API with kube-rs,
//! like any other client: it lists and watches what it cares about, compares desired with
//! observed state and acts on the difference. Nothing is remembered between runs that cannot be
//! re-read from the API, so every controller survives a restart by re-listing, and a conflict on
//! write by re-reading and retrying. One module per controller; [`run`] starts them all once this
//! process holds the controller-manager [`leader`] lease, so two servers never act at once.
//! Kinds that several consumers in the process follow (pods, for the scheduler too) come from
//! one shared [`informer`] each, parsed once.

pub mod deployment;
pub mod endpoints;
mod endpointslice;
pub mod events;
pub mod garbagecollector;
pub mod informer;
pub mod leader;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use tokio::task::JoinSet;

/// Errors a controller reports to its loop (which logs them and retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// An object the controller needs is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Settings shared by the controllers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who this process is, for the leader lease and event sources.
    pub identity: String,
    /// How long a node may go without a heartbeat before it is marked unreachable.
    pub node_monitor_grace: Duration,
    /// The pod network that node pod CIDRs are taken from.
    pub cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    pub node_cidr_prefix: u8,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            identity: "kate".into(),
            node_monitor_grace: Duration::from_secs(40),
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_prefix: 24,
        }
    }
}

/// What every controller gets: an API client, the settings and an event recorder.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// The settings.
    pub config: Config,
    /// Records events shown by `kubectl describe` and `kubectl get events`.
    pub events: events::Recorder,
    /// The watches shared with the other consumers in this process.
    pub informers: Informers,
}

/// The informers that the controllers share with each other and with the scheduler.
#[derive(Clone)]
pub struct Informers {
    /// Every pod.
    pub pods: informer::Shared<Pod>,
}

impl Informers {
    /// Informers that watch through `client`.
    pub fn new(client: &kube::Client) -> Informers {
        Informers {
            pods: informer::Shared::new(kube::Api::all(client.clone()), watcher::Config::default()),
        }
    }
}

/// Runs every controller while this process holds the controller-manager lease; returns only
/// if leadership cannot be pursued any more.
pub async fn run(client: kube::Client, config: Config, informers: Informers) -> Result<(), Error> {
    let ctx = Arc::new(Context {
        informers,
        events: events::Recorder::new(client.clone(), "kate-controller-manager"),
        client: client.clone(),
        config: config.clone(),
    });
    leader::run_while_leader(
        client,
        "kube-system",
        "kate-controller-manager",
        &config.identity,
        move || {
            let ctx = ctx.clone();
            async move { start_all(ctx).await }
        },
    )
    .await
}

/// Starts every controller and waits until one of them stops (which only happens on a bug or
/// when the runtime shuts down).
async fn start_all(ctx: Arc<Context>) {
    let mut set = JoinSet::new();
    set.spawn(deployment::run(ctx.clone()));
    set.spawn(garbagecollector::run(ctx.clone()));
    set.spawn(endpoints::run(ctx.clone()));
    set.spawn(namespace::run(ctx.clone()));
    set.spawn(nodeipam::run(ctx.clone()));
    set.spawn(nodelifecycle::run(ctx.clone()));
    set.spawn(replicaset::run(ctx.clone()));
    set.spawn(serviceaccount::run(ctx.clone()));
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok(())) => tracing::warn!("a controller stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "a controller failed"),
            Err(e) => tracing::error!(error = %e, "a controller panicked"),
        }
    }
}
