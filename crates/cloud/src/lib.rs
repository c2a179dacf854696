//! kate's cloud-controller-manager: where the cluster meets whoever rents it its machines.
//!
//! Two controllers talk to a cloud through one [`Provider`]:
//!
//! - the [`service`] controller gives every `type: LoadBalancer` Service (without a
//!   `spec.loadBalancerClass`) a load balancer: it puts the `service.kubernetes.io/load-balancer-cleanup`
//!   finalizer on the Service, asks the provider to ensure the balancer, writes the addresses it
//!   answers into `status.loadBalancer.ingress`, re-ensures when the set of nodes changes, and
//!   deletes the balancer (then releases the finalizer) when the Service is deleted or stops being
//!   a LoadBalancer;
//! - the [`node`] controller initializes nodes: `spec.providerID`, the
//!   `topology.kubernetes.io/zone` / `region` and `node.kubernetes.io/instance-type` labels, the
//!   node's addresses, and the removal of the `node.cloudprovider.kubernetes.io/uninitialized`
//!   taint.
//!
//! Both are level-triggered API clients like every other controller: they remember nothing that
//! cannot be re-read, write with optimistic concurrency (re-read and retry on a conflict) and run
//! only while this process holds the `kube-system/cloud-controller-manager` lease ([`run`]).
//!
//! The built-in provider is [`local::Local`], kate's default: like k3s' ServiceLB it answers a
//! LoadBalancer Service with the addresses of the Ready nodes, where kate's service proxy already
//! forwards traffic sent to a load-balancer ingress address.
//!
//! # Writing another provider
//!
//! Implement [`Provider`] (nothing else is needed) and hand it to [`run`]. Every method gets
//! plain Kubernetes objects; the controllers do all the API work. A provider that only knows
//! about machines can answer the load-balancer methods with [`Error::provider`].
//!
//! ```
//! use std::sync::Arc;
//!
//! use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
//! use kate_cloud::{Error, InstanceMetadata, Provider, async_trait};
//!
//! /// Every node is a machine of the "acme" cloud; every balancer gets one fixed address.
//! struct Acme;
//!
//! #[async_trait]
//! impl Provider for Acme {
//!     fn name(&self) -> &str {
//!         "acme"
//!     }
//!
//!     async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, Error> {
//!         let name = node.metadata.name.clone().unwrap_or_default();
//!         // Ask the cloud's API about the machine here.
//!         Ok(Some(InstanceMetadata {
//!             provider_id: format!("acme://{name}"),
//!             instance_type: Some("acme.small".into()),
//!             zone: Some("acme-1a".into()),
//!             region: Some("acme-1".into()),
//!             addresses: Vec::new(), // empty: keep what the kubelet reports
//!         }))
//!     }
//!
//!     async fn ensure_load_balancer(&self, service: &Service, nodes: &[Node]) -> Result<Vec<LoadBalancerIngress>, Error> {
//!         // Create or update the balancer for the Service's ports, forwarding to the nodes
//!         // (typically to each port's nodePort), then report its address.
//!         let _ = (service, nodes);
//!         Ok(vec![LoadBalancerIngress {
//!             ip: Some("203.0.113.7".into()),
//!             ip_mode: Some("VIP".into()),
//!             ..Default::default()
//!         }])
//!     }
//!
//!     async fn delete_load_balancer(&self, _service: &Service) -> Result<(), Error> {
//!         // Remove the balancer; succeed if it is already gone.
//!         Ok(())
//!     }
//! }
//!
//! # async fn start(client: kube::Client) -> Result<(), Error> {
//! // `kate server` does this for the built-in providers.
//! kate_cloud::run(client, Arc::new(Acme), kate_cloud::Config::default()).await
//! # }
//! ```
//!
//! [`Provider::update_load_balancer`] (only the nodes changed) defaults to ensuring again;
//! override it when a cheaper update exists. Return [`Error::Pending`] from the load-balancer
//! methods when no balancer can be given for now (the Service's status is cleared and the call
//! retried); any other error keeps the status as it was and is retried with a warning event.

pub mod local;
pub mod node;
pub mod service;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

pub use async_trait::async_trait;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, NodeAddress, Service};
use kube::Api;
use kube::api::PostParams;
use tokio::task::JoinSet;

/// The lease (in kube-system) whose holder runs the cloud controllers.
pub const LEASE_NAME: &str = "cloud-controller-manager";
/// The taint a kubelet started for an external cloud provider puts on its node until the node
/// controller has initialized it.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// The node label naming the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The node label naming the node's region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// The node label naming the node's machine type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// A boxed error of a provider's own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the cloud controllers and of providers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// The provider failed; the controller retries later and keeps what was written before.
    #[error("cloud provider: {0}")]
    Provider(BoxError),
    /// The provider cannot provide a load balancer for now (say, its port is taken): the
    /// Service's ingress is cleared and the call retried later.
    #[error("{0}")]
    Pending(String),
    /// An object kept changing under a write.
    #[error("{0} kept changing; will retry")]
    Conflict(String),
    /// The node watch feeding the service controller stopped.
    #[error("the node watch stopped")]
    NodesUnavailable,
    /// Leader election could not proceed.
    #[error("leader election: {0}")]
    Leader(#[from] kate_controllers::Error),
}

impl Error {
    /// A provider error from anything error-like (a message, an I/O error, a client error…).
    pub fn provider(e: impl Into<BoxError>) -> Error {
        Error::Provider(e.into())
    }
}

/// What a cloud knows about the machine behind a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceMetadata {
    /// The node's `spec.providerID`, `<provider>://<id>`; empty to leave it unset.
    pub provider_id: String,
    /// The machine type (the `node.kubernetes.io/instance-type` label), if known.
    pub instance_type: Option<String>,
    /// The zone (the `topology.kubernetes.io/zone` label), if known.
    pub zone: Option<String>,
    /// The region (the `topology.kubernetes.io/region` label), if known.
    pub region: Option<String>,
    /// The node's addresses as the cloud sees them; empty to keep those the kubelet reports.
    pub addresses: Vec<NodeAddress>,
}

/// A cloud: machines and load balancers. Implementations must be cheap to call repeatedly with
/// the same arguments (every method is idempotent: the controllers call again after restarts,
/// conflicts and resyncs).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and events, e.g. `local`.
    fn name(&self) -> &str;

    /// The machine behind `node`, or `None` when it is not one of this cloud's machines (the
    /// node is then left alone).
    async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, Error>;

    /// Creates or updates the load balancer of `service` to send its ports to `nodes` (the nodes
    /// that may carry load-balancer traffic; they may include unready ones); returns the
    /// addresses it is reached at, for `status.loadBalancer.ingress`.
    async fn ensure_load_balancer(&self, service: &Service, nodes: &[Node]) -> Result<Vec<LoadBalancerIngress>, Error>;

    /// Like [`Provider::ensure_load_balancer`] when only the set of nodes changed since the last
    /// successful ensure; by default it ensures again.
    async fn update_load_balancer(&self, service: &Service, nodes: &[Node]) -> Result<Vec<LoadBalancerIngress>, Error> {
        self.ensure_load_balancer(service, nodes).await
    }

    /// Deletes the load balancer of `service`; succeeds when there is none.
    async fn delete_load_balancer(&self, service: &Service) -> Result<(), Error>;
}

/// Settings of the cloud controllers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who this process is in the leader election.
    pub identity: String,
    /// The lease in kube-system that decides which process runs the controllers.
    pub lease_name: String,
    /// How often load balancers are ensured and node metadata re-read even without a change.
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            identity: "kate".into(),
            lease_name: LEASE_NAME.into(),
            resync: Duration::from_secs(300),
        }
    }
}

/// The built-in provider called `name` (`local`), or `None` for an unknown name.
pub fn builtin(name: &str, client: &kube::Client) -> Option<Arc<dyn Provider>> {
    match name {
        local::NAME => Some(Arc::new(local::Local::new(client.clone()))),
        _ => None,
    }
}

/// Runs the service and node controllers with `provider` while this process holds the
/// cloud-controller-manager lease; returns only if leader election cannot go on.
pub async fn run(client: kube::Client, provider: Arc<dyn Provider>, config: Config) -> Result<(), Error> {
    let (identity, lease) = (config.identity.clone(), config.lease_name.clone());
    kate_controllers::leader::run_while_leader(client.clone(), "kube-system", &lease, &identity, move || {
        let (client, provider, config) = (client.clone(), provider.clone(), config.clone());
        async move { run_controllers(client, provider, config).await }
    })
    .await?;
    Ok(())
}

/// Runs both controllers at once, without leader election, until one of them stops (which only
/// happens on a bug) or the future is dropped.
pub async fn run_controllers(client: kube::Client, provider: Arc<dyn Provider>, config: Config) {
    tracing::info!(provider = provider.name(), "cloud controllers started");
    let mut set = JoinSet::new();
    set.spawn(service::run(client.clone(), provider.clone(), config.clone()));
    set.spawn(node::run(client, provider, config));
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok(())) => tracing::warn!("a cloud controller stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "a cloud controller failed"),
            Err(e) => tracing::error!(error = %e, "a cloud controller panicked"),
        }
    }
}

/// Whether the node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Which part of an object a write replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The object itself (metadata and spec).
    Main,
    /// The status subresource.
    Status,
}

/// How often a write is retried after conflicts before the controller requeues.
const WRITE_ATTEMPTS: usize = 5;

/// Reads the object `name` afresh, lets `change` edit it (returning whether it changed
/// anything) and writes it back with its resourceVersion, re-reading and retrying on a conflict.
/// Returns whether anything was written; an object that is gone is left alone.
async fn modify<K>(api: &Api<K>, name: &str, part: Part, mut change: impl FnMut(&mut K) -> bool) -> Result<bool, Error>
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut obj) = api.get_opt(name).await? else {
            return Ok(false);
        };
        if !change(&mut obj) {
            return Ok(false);
        }
        let written = match part {
            Part::Main => api.replace(name, &PostParams::default(), &obj).await,
            Part::Status => api.replace_status(name, &PostParams::default(), &obj).await,
        };
        match written {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(name.to_string()))
}
