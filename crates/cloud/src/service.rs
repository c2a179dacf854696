//! The service controller: load balancers for `type: LoadBalancer` Services.
//!
//! For a LoadBalancer Service without a `spec.loadBalancerClass` (one with a class belongs to
//! another implementation) it first puts the [`FINALIZER`] on the Service, so the balancer is
//! never forgotten, then asks the provider to ensure the balancer and writes the addresses it
//! answers to `status.loadBalancer.ingress` through the status subresource. When the Service is
//! deleted, or stops being a LoadBalancer, it deletes the balancer, clears the ingress and only
//! then releases the finalizer. A change in the set of nodes (added, removed, readiness,
//! addresses, excluded) re-syncs every balancer; the provider hears of it through
//! [`Provider::update_load_balancer`].
//!
//! [`decide`] is the whole policy and [`LoadBalancers`] the provider calls; [`run`] wires them to
//! the API.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, ObjectReference, Service};
use kate_controllers::events::{Kind, Recorder};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;

use crate::{Config, Error, Part, Provider, modify};

/// The finalizer that holds a Service until its load balancer is deleted.
pub const FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// Nodes with this label carry no load-balancer traffic.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The taint of nodes the cluster autoscaler is about to remove.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// How long after a failed sync it is retried.
const RETRY: Duration = Duration::from_secs(5);
/// How long a Service waits before asking again for a load balancer that is pending.
const PENDING_RETRY: Duration = Duration::from_secs(10);

/// What the controller does with one Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: no balancer is wanted and none is held (or another implementation owns it).
    Ignore,
    /// The Service wants a balancer; the finalizer goes on first when missing.
    Ensure {
        /// Whether the finalizer must be added before anything is created.
        add_finalizer: bool,
    },
    /// The balancer must go: delete it, clear the ingress (when asked), then drop the finalizer.
    Cleanup {
        /// Whether `status.loadBalancer.ingress` must be cleared too (not for a Service being
        /// deleted, nor for one whose status another implementation writes).
        clear_status: bool,
    },
}

/// Decides what `svc` needs, from the Service alone.
pub fn decide(svc: &Service) -> Decision {
    let spec = svc.spec.as_ref();
    let is_lb = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let other_class = spec.and_then(|s| s.load_balancer_class.as_deref()).is_some();
    let deleting = svc.metadata.deletion_timestamp.is_some();
    let has_finalizer = svc.finalizers().iter().any(|f| f == FINALIZER);
    if is_lb && !other_class && !deleting {
        return Decision::Ensure {
            add_finalizer: !has_finalizer,
        };
    }
    if !has_finalizer {
        return Decision::Ignore;
    }
    Decision::Cleanup {
        // Not for a Service being deleted, nor for one whose status another implementation writes.
        clear_status: !(deleting || (is_lb && other_class) || ingress_of(svc).is_empty()),
    }
}

/// Whether a node may carry load-balancer traffic: not being deleted, not excluded by label,
/// not about to be removed by the autoscaler. (Readiness is the provider's to judge.)
pub fn eligible(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_none()
        && !node.labels().contains_key(EXCLUDE_LABEL)
        && !node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .any(|t| t.key == TO_BE_DELETED_TAINT)
}

/// What of a node matters to load balancers; a change re-syncs them all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NodeSummary {
    eligible: bool,
    ready: bool,
    provider_id: Option<String>,
    addresses: Vec<(String, String)>,
}

impl NodeSummary {
    fn of(node: &Node) -> NodeSummary {
        NodeSummary {
            eligible: eligible(node),
            ready: crate::is_ready(node),
            provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
            addresses: node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .map(|a| (a.type_.clone(), a.address.clone()))
                .collect(),
        }
    }
}

/// The eligible nodes sorted by name, and a fingerprint of what matters of them.
pub fn balancer_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> (Vec<Node>, u64) {
    let mut chosen: Vec<Node> = nodes.into_iter().filter(|n| eligible(n)).cloned().collect();
    chosen.sort_by_key(|n| n.name_any());
    let mut h = DefaultHasher::new();
    for n in &chosen {
        n.name_any().hash(&mut h);
        NodeSummary::of(n).hash(&mut h);
    }
    (chosen, h.finish())
}

/// The ingress in a Service's status.
fn ingress_of(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

/// An ingress list as the API stores it: an IP without an `ipMode` is a `VIP`, and no ports is
/// no ports list; so that comparing with what was read back never shows a difference that is
/// not there (which would rewrite the status forever).
pub fn normalize(ingress: Vec<LoadBalancerIngress>) -> Vec<LoadBalancerIngress> {
    ingress
        .into_iter()
        .map(|mut i| {
            if i.ip.is_some() && i.ip_mode.is_none() {
                i.ip_mode = Some("VIP".into());
            }
            if i.ports.as_ref().is_some_and(Vec::is_empty) {
                i.ports = None;
            }
            i
        })
        .collect()
}

/// Which provider call a sync makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Provider::ensure_load_balancer`]: new, changed, or due for a resync.
    Ensure,
    /// [`Provider::update_load_balancer`]: only the nodes changed.
    Update,
    /// Nothing changed since the last successful call: its answer still holds.
    Skip,
}

/// The last successful call for a Service (memory only: after a restart everything is ensured).
#[derive(Debug, Clone)]
struct Applied {
    uid: String,
    spec: u64,
    nodes: u64,
    ingress: Vec<LoadBalancerIngress>,
    at: Instant,
}

/// A fingerprint of what a balancer is built from: the spec and the annotations (where clouds
/// take their options).
fn spec_fingerprint(svc: &Service) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(&svc.spec).unwrap_or_default().hash(&mut h);
    svc.annotations().hash(&mut h);
    h.finish()
}

/// `namespace/name`.
fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// The provider calls of the controller, remembering the last answer per Service so that an
/// unchanged Service is not sent to the cloud on every event.
pub struct LoadBalancers {
    provider: Arc<dyn Provider>,
    resync: Duration,
    applied: Mutex<HashMap<String, Applied>>,
}

impl LoadBalancers {
    /// Calls `provider`, ensuring each balancer again at least every `resync`.
    pub fn new(provider: Arc<dyn Provider>, resync: Duration) -> LoadBalancers {
        LoadBalancers {
            provider,
            resync,
            applied: Mutex::new(HashMap::new()),
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, HashMap<String, Applied>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The call a sync of `svc` over nodes with fingerprint `nodes` makes.
    pub fn plan(&self, svc: &Service, nodes: u64) -> Call {
        let applied = self.applied();
        let Some(last) = applied.get(&key(svc)) else {
            return Call::Ensure;
        };
        if last.uid != svc.uid().unwrap_or_default()
            || last.spec != spec_fingerprint(svc)
            || last.at.elapsed() >= self.resync
        {
            Call::Ensure
        } else if last.nodes != nodes {
            Call::Update
        } else {
            Call::Skip
        }
    }

    /// Brings the balancer of `svc` in line with it and with `nodes` (fingerprint `fingerprint`,
    /// see [`balancer_nodes`]); returns the call made and the ingress the status must show.
    pub async fn sync(
        &self,
        svc: &Service,
        nodes: &[Node],
        fingerprint: u64,
    ) -> Result<(Call, Vec<LoadBalancerIngress>), Error> {
        let call = match self.plan(svc, fingerprint) {
            Call::Skip => {
                if let Some(last) = self.applied().get(&key(svc)) {
                    return Ok((Call::Skip, last.ingress.clone()));
                }
                Call::Ensure
            }
            call => call,
        };
        let ingress = match call {
            Call::Update => self.provider.update_load_balancer(svc, nodes).await,
            Call::Ensure | Call::Skip => self.provider.ensure_load_balancer(svc, nodes).await,
        };
        let ingress = match ingress {
            Ok(ingress) => normalize(ingress),
            Err(e) => {
                self.forget(svc);
                return Err(e);
            }
        };
        self.applied().insert(
            key(svc),
            Applied {
                uid: svc.uid().unwrap_or_default(),
                spec: spec_fingerprint(svc),
                nodes: fingerprint,
                ingress: ingress.clone(),
                at: Instant::now(),
            },
        );
        Ok((call, ingress))
    }

    /// Deletes the balancer of `svc` and forgets it.
    pub async fn delete(&self, svc: &Service) -> Result<(), Error> {
        self.forget(svc);
        self.provider.delete_load_balancer(svc).await
    }

    /// Forgets the last answer for `svc`, so the next sync ensures.
    pub fn forget(&self, svc: &Service) {
        self.applied().remove(&key(svc));
    }
}

/// What the reconciler needs.
struct Ctx {
    client: kube::Client,
    balancers: LoadBalancers,
    nodes: Store<Node>,
    events: Recorder,
    resync: Duration,
    /// Services whose balancer is pending (say, for a port another Service holds).
    pending: Mutex<HashSet<String>>,
    /// Asks for every Service to be synced again: a balancer went or changed while others
    /// were pending, so what they wait for may be free now.
    retry_pending: mpsc::UnboundedSender<()>,
}

impl Ctx {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Has the pending balancers tried again at once, if there are any.
    fn wake_pending(&self) {
        if !self.pending().is_empty() {
            let _ = self.retry_pending.send(());
        }
    }
}

/// Runs the service controller until the process stops.
pub async fn run(client: kube::Client, provider: Arc<dyn Provider>, config: Config) -> Result<(), Error> {
    let (reader, writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let (retry_pending, retries) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        events: Recorder::new(client.clone(), "service-controller"),
        balancers: LoadBalancers::new(provider, config.resync),
        nodes: reader,
        client: client.clone(),
        resync: config.resync,
        pending: Mutex::new(HashSet::new()),
        retry_pending,
    });
    let retries = futures::stream::unfold(retries, |mut rx| async move { rx.recv().await.map(|()| ((), rx)) });
    Controller::new(Api::<Service>::all(client), watcher::Config::default())
        .reconcile_all_on(node_changes(node_events))
        .reconcile_all_on(retries)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "service reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// One item whenever something that matters to load balancers changes in the node watch.
fn node_changes(
    events: impl Stream<Item = Result<watcher::Event<Node>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    let mut seen: HashMap<String, NodeSummary> = HashMap::new();
    let mut relisting: Option<HashMap<String, NodeSummary>> = None;
    events.filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                relisting = Some(HashMap::new());
                false
            }
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(fresh) = relisting.as_mut() {
                    fresh.insert(node.name_any(), NodeSummary::of(&node));
                }
                false
            }
            Ok(watcher::Event::InitDone) => {
                let fresh = relisting.take().unwrap_or_default();
                let changed = fresh != seen;
                seen = fresh;
                changed
            }
            Ok(watcher::Event::Apply(node)) => {
                let summary = NodeSummary::of(&node);
                seen.insert(node.name_any(), summary.clone()) != Some(summary)
            }
            Ok(watcher::Event::Delete(node)) => seen.remove(&node.name_any()).is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "node watch failed; retrying");
                false
            }
        };
        futures::future::ready(changed.then_some(()))
    })
}

fn error_policy(svc: Arc<Service>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(namespace = svc.namespace().unwrap_or_default(), name = %svc.name_any(), %error, "load balancer sync failed; retrying");
    Action::requeue(RETRY)
}

/// A reference to `svc` for events.
fn reference(svc: &Service) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: svc.metadata.name.clone(),
        namespace: svc.metadata.namespace.clone(),
        uid: svc.metadata.uid.clone(),
        resource_version: svc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Sets the ingress of a Service's status; false when it already is that.
fn set_ingress(svc: &mut Service, ingress: &[LoadBalancerIngress]) -> bool {
    if normalize(ingress_of(svc)) == ingress {
        return false;
    }
    let status = svc.status.get_or_insert_with(Default::default);
    status.load_balancer = Some(LoadBalancerStatus {
        ingress: (!ingress.is_empty()).then(|| ingress.to_vec()),
    });
    true
}

/// Comma-separated addresses of an ingress list, for messages.
fn describe(ingress: &[LoadBalancerIngress]) -> String {
    let addrs: Vec<&str> = ingress
        .iter()
        .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
        .collect();
    if addrs.is_empty() {
        "no address".into()
    } else {
        addrs.join(", ")
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    match decide(&svc) {
        Decision::Ignore => {
            ctx.balancers.forget(&svc);
            ctx.pending().remove(&key(&svc));
            Ok(Action::await_change())
        }
        Decision::Ensure { add_finalizer } => {
            if add_finalizer {
                let added = modify(&api, &name, Part::Main, |s: &mut Service| {
                    if decide(s) != (Decision::Ensure { add_finalizer: true }) {
                        return false;
                    }
                    s.finalizers_mut().push(FINALIZER.into());
                    true
                })
                .await?;
                if added {
                    tracing::debug!(%namespace, %name, "added the load-balancer cleanup finalizer");
                }
            }
            ensure(&api, &svc, &ctx).await
        }
        Decision::Cleanup { clear_status } => cleanup(&api, &svc, &ctx, clear_status).await,
    }
}

/// Ensures the balancer and writes its ingress to the status.
async fn ensure(api: &Api<Service>, svc: &Service, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(|_| Error::NodesUnavailable)?;
    let state = ctx.nodes.state();
    let (nodes, fingerprint) = balancer_nodes(state.iter().map(|n| n.as_ref()));
    let object = reference(svc);
    let ingress = match ctx.balancers.sync(svc, &nodes, fingerprint).await {
        Ok((call, ingress)) => {
            ctx.pending().remove(&key(svc));
            match call {
                Call::Ensure => {
                    tracing::info!(%namespace, %name, ingress = %describe(&ingress), "ensured load balancer");
                    // It may have given up a port another Service waits for.
                    ctx.wake_pending();
                }
                Call::Update => {
                    tracing::info!(%namespace, %name, nodes = nodes.len(), "updated load balancer with new hosts");
                    ctx.events
                        .record(
                            &object,
                            Kind::Normal,
                            "UpdatedLoadBalancer",
                            "Updated load balancer with new hosts",
                        )
                        .await;
                }
                Call::Skip => {}
            }
            ingress
        }
        Err(Error::Pending(why)) => {
            ctx.pending().insert(key(svc));
            tracing::info!(%namespace, %name, reason = %why, "load balancer pending");
            ctx.events
                .record(
                    &object,
                    Kind::Warning,
                    "SyncLoadBalancerFailed",
                    &format!("Error syncing load balancer: {why}"),
                )
                .await;
            if write_ingress(api, &name, &[]).await? {
                // The addresses it had may be what another pending Service waits for.
                ctx.wake_pending();
            }
            return Ok(Action::requeue(PENDING_RETRY));
        }
        Err(e) => {
            tracing::warn!(%namespace, %name, error = %e, "syncing the load balancer failed");
            ctx.events
                .record(
                    &object,
                    Kind::Warning,
                    "SyncLoadBalancerFailed",
                    &format!("Error syncing load balancer: {e}"),
                )
                .await;
            return Err(e);
        }
    };
    if normalize(ingress_of(svc)) != ingress && write_ingress(api, &name, &ingress).await? {
        ctx.events
            .record(&object, Kind::Normal, "EnsuredLoadBalancer", "Ensured load balancer")
            .await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// Writes `ingress` to the status of the Service `name` while it still wants a balancer;
/// whether anything was written.
async fn write_ingress(api: &Api<Service>, name: &str, ingress: &[LoadBalancerIngress]) -> Result<bool, Error> {
    modify(api, name, Part::Status, |s: &mut Service| {
        matches!(decide(s), Decision::Ensure { .. }) && set_ingress(s, ingress)
    })
    .await
}

/// Deletes the balancer, clears the status if asked, and releases the finalizer.
async fn cleanup(api: &Api<Service>, svc: &Service, ctx: &Ctx, clear_status: bool) -> Result<Action, Error> {
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let object = reference(svc);
    ctx.events
        .record(&object, Kind::Normal, "DeletingLoadBalancer", "Deleting load balancer")
        .await;
    if let Err(e) = ctx.balancers.delete(svc).await {
        tracing::warn!(%namespace, %name, error = %e, "deleting the load balancer failed");
        ctx.events
            .record(
                &object,
                Kind::Warning,
                "SyncLoadBalancerFailed",
                &format!("Error deleting load balancer: {e}"),
            )
            .await;
        return Err(e);
    }
    if clear_status {
        modify(api, &name, Part::Status, |s: &mut Service| {
            matches!(decide(s), Decision::Cleanup { clear_status: true }) && set_ingress(s, &[])
        })
        .await?;
    }
    let released = modify(api, &name, Part::Main, |s: &mut Service| {
        if !matches!(decide(s), Decision::Cleanup { .. }) {
            return false;
        }
        s.finalizers_mut().retain(|f| f != FINALIZER);
        true
    })
    .await?;
    ctx.pending().remove(&key(svc));
    ctx.wake_pending();
    if released {
        tracing::info!(%namespace, %name, "deleted load balancer");
        ctx.events
            .record(&object, Kind::Normal, "DeletedLoadBalancer", "Deleted load balancer")
            .await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceMetadata;
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn svc(spec: serde_json::Value, meta: serde_json::Value, status: serde_json::Value) -> Service {
        let mut metadata = json!({"name": "web", "namespace": "default", "uid": "u1"});
        if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
            m.extend(extra.clone());
        }
        serde_json::from_value(json!({"metadata": metadata, "spec": spec, "status": status})).unwrap()
    }

    fn lb() -> Service {
        svc(
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            json!({}),
            json!({}),
        )
    }

    fn node(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "addresses": [{"type": "InternalIP", "address": ip}],
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_load_balancer_gets_the_finalizer_first() {
        assert_eq!(decide(&lb()), Decision::Ensure { add_finalizer: true });
        let with = svc(
            json!({"type": "LoadBalancer"}),
            json!({"finalizers": [FINALIZER]}),
            json!({}),
        );
        assert_eq!(decide(&with), Decision::Ensure { add_finalizer: false });
    }

    #[test]
    fn other_types_and_classes_are_left_alone() {
        assert_eq!(
            decide(&svc(json!({"type": "ClusterIP"}), json!({}), json!({}))),
            Decision::Ignore
        );
        assert_eq!(
            decide(&svc(json!({"type": "NodePort"}), json!({}), json!({}))),
            Decision::Ignore
        );
        let classed = svc(
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}),
            json!({}),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}),
        );
        assert_eq!(decide(&classed), Decision::Ignore);
        // A Service being deleted without our finalizer is not ours to hold.
        let deleting = svc(
            json!({"type": "LoadBalancer"}),
            json!({"deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["other"]}),
            json!({}),
        );
        assert_eq!(decide(&deleting), Decision::Ignore);
    }

    #[test]
    fn deletion_and_type_changes_clean_up() {
        let deleting = svc(
            json!({"type": "LoadBalancer"}),
            json!({"deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": [FINALIZER]}),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
        );
        assert_eq!(decide(&deleting), Decision::Cleanup { clear_status: false });
        let changed = svc(
            json!({"type": "ClusterIP"}),
            json!({"finalizers": [FINALIZER]}),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
        );
        assert_eq!(decide(&changed), Decision::Cleanup { clear_status: true });
        let cleared = svc(
            json!({"type": "ClusterIP"}),
            json!({"finalizers": [FINALIZER]}),
            json!({}),
        );
        assert_eq!(decide(&cleared), Decision::Cleanup { clear_status: false });
    }

    #[test]
    fn excluded_and_departing_nodes_carry_no_traffic() {
        let (nodes, _) = balancer_nodes(&[
            node("b", "192.0.2.2", true, json!({})),
            node("a", "192.0.2.1", false, json!({})),
            node("x", "192.0.2.3", true, json!({EXCLUDE_LABEL: ""})),
        ]);
        let names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
        assert_eq!(names, ["a", "b"], "sorted; readiness is the provider's to judge");
        let mut tainted = node("t", "192.0.2.4", true, json!({}));
        tainted.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}]})).unwrap(),
        );
        assert!(!eligible(&tainted));
    }

    #[test]
    fn node_fingerprints_follow_what_matters() {
        let a = node("a", "192.0.2.1", true, json!({}));
        let (_, base) = balancer_nodes([&a]);
        let mut relabelled = a.clone();
        relabelled.labels_mut().insert("team".into(), "x".into());
        assert_eq!(balancer_nodes([&relabelled]).1, base, "an unrelated label");
        assert_ne!(
            balancer_nodes([&node("a", "192.0.2.1", false, json!({}))]).1,
            base,
            "readiness"
        );
        assert_ne!(
            balancer_nodes([&node("a", "192.0.2.7", true, json!({}))]).1,
            base,
            "address"
        );
        assert_ne!(
            balancer_nodes([&a, &node("b", "192.0.2.2", true, json!({}))]).1,
            base,
            "a new node"
        );
    }

    #[test]
    fn ingress_compares_as_stored() {
        let bare = vec![LoadBalancerIngress {
            ip: Some("192.0.2.1".into()),
            ports: Some(vec![]),
            ..Default::default()
        }];
        let stored = vec![LoadBalancerIngress {
            ip: Some("192.0.2.1".into()),
            ip_mode: Some("VIP".into()),
            ..Default::default()
        }];
        assert_eq!(normalize(bare), stored);
        let mut s = svc(
            json!({"type": "LoadBalancer"}),
            json!({}),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
        );
        assert!(!set_ingress(&mut s, &stored), "already there");
        assert!(set_ingress(&mut s, &[]));
        assert_eq!(s.status.unwrap().load_balancer.unwrap().ingress, None);
    }

    /// A provider that records its load-balancer calls and can be told to fail.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        fail: AtomicBool,
        pending: AtomicBool,
    }

    #[crate::async_trait]
    impl Provider for Fake {
        fn name(&self) -> &str {
            "fake"
        }

        async fn instance_metadata(&self, _node: &Node) -> Result<Option<InstanceMetadata>, Error> {
            Ok(None)
        }

        async fn ensure_load_balancer(
            &self,
            service: &Service,
            nodes: &[Node],
        ) -> Result<Vec<LoadBalancerIngress>, Error> {
            self.call(format!("ensure {} {}", service.name_any(), nodes.len()))
        }

        async fn update_load_balancer(
            &self,
            service: &Service,
            nodes: &[Node],
        ) -> Result<Vec<LoadBalancerIngress>, Error> {
            self.call(format!("update {} {}", service.name_any(), nodes.len()))
        }

        async fn delete_load_balancer(&self, service: &Service) -> Result<(), Error> {
            self.call(format!("delete {}", service.name_any())).map(|_| ())
        }
    }

    impl Fake {
        fn call(&self, what: String) -> Result<Vec<LoadBalancerIngress>, Error> {
            self.calls.lock().unwrap().push(what);
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::provider("the cloud is down"));
            }
            if self.pending.load(Ordering::SeqCst) {
                return Err(Error::Pending("no capacity".into()));
            }
            Ok(vec![LoadBalancerIngress {
                ip: Some("203.0.113.1".into()),
                ..Default::default()
            }])
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn ensures_once_then_updates_only_for_node_changes() {
        let fake = Arc::new(Fake::default());
        let lbs = LoadBalancers::new(fake.clone(), Duration::from_secs(300));
        let one = [node("a", "192.0.2.1", true, json!({}))];
        let (nodes, fp) = balancer_nodes(&one);
        let (call, ingress) = lbs.sync(&lb(), &nodes, fp).await.unwrap();
        assert_eq!(call, Call::Ensure);
        assert_eq!(ingress[0].ip_mode.as_deref(), Some("VIP"), "normalized");
        assert_eq!(fake.take(), ["ensure web 1"]);

        // The same Service and nodes again: the last answer holds, the cloud is not asked.
        assert_eq!(
            lbs.sync(&lb(), &nodes, fp).await.unwrap(),
            (Call::Skip, ingress.clone())
        );
        assert!(fake.take().is_empty());

        // A node more: update.
        let two = [one[0].clone(), node("b", "192.0.2.2", true, json!({}))];
        let (nodes2, fp2) = balancer_nodes(&two);
        assert_eq!(lbs.sync(&lb(), &nodes2, fp2).await.unwrap().0, Call::Update);
        assert_eq!(fake.take(), ["update web 2"]);

        // A spec change, or a new Service under the same name: ensure.
        let mut changed = lb();
        changed.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 8080;
        assert_eq!(lbs.sync(&changed, &nodes2, fp2).await.unwrap().0, Call::Ensure);
        let mut recreated = changed.clone();
        recreated.metadata.uid = Some("u2".into());
        assert_eq!(lbs.sync(&recreated, &nodes2, fp2).await.unwrap().0, Call::Ensure);
        assert_eq!(fake.take(), ["ensure web 2", "ensure web 2"]);
    }

    #[tokio::test]
    async fn resyncs_ensure_again() {
        let fake = Arc::new(Fake::default());
        let lbs = LoadBalancers::new(fake.clone(), Duration::ZERO);
        lbs.sync(&lb(), &[], 0).await.unwrap();
        assert_eq!(lbs.sync(&lb(), &[], 0).await.unwrap().0, Call::Ensure);
        assert_eq!(fake.take().len(), 2);
    }

    #[tokio::test]
    async fn failures_are_not_remembered() {
        let fake = Arc::new(Fake::default());
        let lbs = LoadBalancers::new(fake.clone(), Duration::from_secs(300));
        fake.fail.store(true, Ordering::SeqCst);
        assert!(matches!(lbs.sync(&lb(), &[], 0).await, Err(Error::Provider(_))));
        fake.fail.store(false, Ordering::SeqCst);
        fake.pending.store(true, Ordering::SeqCst);
        assert!(matches!(lbs.sync(&lb(), &[], 0).await, Err(Error::Pending(_))));
        fake.pending.store(false, Ordering::SeqCst);
        assert_eq!(
            lbs.sync(&lb(), &[], 0).await.unwrap().0,
            Call::Ensure,
            "retried in full"
        );
        assert_eq!(fake.take().len(), 3);
    }

    #[tokio::test]
    async fn deleting_forgets_and_a_failed_delete_is_an_error() {
        let fake = Arc::new(Fake::default());
        let lbs = LoadBalancers::new(fake.clone(), Duration::from_secs(300));
        lbs.sync(&lb(), &[], 0).await.unwrap();
        lbs.delete(&lb()).await.unwrap();
        assert_eq!(lbs.plan(&lb(), 0), Call::Ensure);
        fake.fail.store(true, Ordering::SeqCst);
        assert!(lbs.delete(&lb()).await.is_err(), "the finalizer must stay");
        assert_eq!(fake.take(), ["ensure web 0", "delete web", "delete web"]);
    }

    #[tokio::test]
    async fn node_changes_fire_only_on_what_matters() {
        let a = node("a", "192.0.2.1", true, json!({}));
        let mut relabelled = a.clone();
        relabelled.labels_mut().insert("team".into(), "x".into());
        let events: Vec<Result<watcher::Event<Node>, watcher::Error>> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(a.clone())),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(relabelled)),
            Ok(watcher::Event::Apply(node("a", "192.0.2.1", false, json!({})))),
            Ok(watcher::Event::Delete(a.clone())),
            Ok(watcher::Event::Delete(a)),
        ];
        let fired = node_changes(futures::stream::iter(events)).count().await;
        assert_eq!(fired, 3, "the first list, readiness, and the deletion");
    }
}
