//! The endpoints controllers: for every Service with a selector, the addresses and ports of the
//! pods it selects, published both as a core/v1 Endpoints object named after the Service (upstream's
//! endpoints controller) and as `discovery.k8s.io/v1` EndpointSlices (upstream's endpointslice
//! controller, see the `endpointslice` module).
//!
//! One loop serves both, since they read the same Services and Pods: a work queue of Service
//! keys, fed by watches of Services, Pods (mapped to the Services selecting them, before and
//! after a change), Endpoints deletions and EndpointSlice changes. A sync derives everything from
//! the watch caches and the current objects, so it can run any number of times. Services without
//! a selector (like `default/kubernetes`, which the API server maintains) and ExternalName
//! Services are left alone; when a Service goes, so do its Endpoints and slices.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;

use crate::endpointslice;
use crate::{Context, Error};

/// Upstream caps an Endpoints object at this many addresses and says so in an annotation.
const MAX_ADDRESSES: usize = 1000;
/// The annotation on truncated Endpoints.
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The label marking the Endpoints (and slices) of a headless Service.
pub(crate) const HEADLESS: &str = "service.kubernetes.io/headless";
/// Endpoints used as a leader-election lock carry this annotation and have no Service.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// The longest wait before retrying a failed sync.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A Service, by namespace and name.
type Key = (String, String);

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (services, service_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (queue, rx) = Queue::new();
    let client = ctx.client.clone();

    let service_feed = {
        let queue = queue.clone();
        let mut known: HashSet<Key> = HashSet::new();
        let mut listed: HashSet<Key> = HashSet::new();
        watched(reflector::reflector(
            service_writer,
            watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
        ))
        .for_each(move |event| {
            match event {
                Event::Apply(svc) | Event::Delete(svc) => {
                    known.insert(key_of(&svc));
                    queue.add(key_of(&svc));
                }
                Event::Init => listed.clear(),
                Event::InitApply(svc) => {
                    listed.insert(key_of(&svc));
                    queue.add(key_of(&svc));
                }
                // Services deleted while the watch was down left no Delete event behind.
                Event::InitDone => {
                    for gone in known.difference(&listed) {
                        queue.add(gone.clone());
                    }
                    known = std::mem::take(&mut listed);
                }
            }
            std::future::ready(())
        })
    };

    let pod_feed = {
        let queue = queue.clone();
        let services = services.clone();
        let mut index = PodIndex::default();
        // Only pods with an address can be published (see `publishable`); a pod that loses
        // its address leaves the watch as deleted.
        watched(reflector::reflector(
            pod_writer,
            watcher(
                Api::<Pod>::all(client.clone()),
                watcher::Config::default().fields("status.podIP!="),
            ),
        ))
        .for_each(move |event| {
            index.handle(event, &services, &queue);
            std::future::ready(())
        })
    };

    let endpoints_feed = {
        let queue = queue.clone();
        let mut first_list = true;
        watched(watcher(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
        ))
        .for_each(move |event| {
            match event {
                // A deleted Endpoints object is recreated if its Service still wants one.
                Event::Delete(ep) => queue.add(key_of(&ep)),
                // At startup, every Endpoints object is checked once for a vanished Service.
                Event::InitApply(ep) if first_list && !ep.annotations().contains_key(LEADER_ANNOTATION) => {
                    queue.add(key_of(&ep))
                }
                Event::InitDone => first_list = false,
                _ => {}
            }
            std::future::ready(())
        })
    };

    let slice_feed = {
        let queue = queue.clone();
        let config = watcher::Config::default().labels(&format!(
            "{}={}",
            endpointslice::MANAGED_BY,
            endpointslice::CONTROLLER_NAME
        ));
        watched(watcher(Api::<EndpointSlice>::all(client.clone()), config)).for_each(move |event| {
            if let Event::Apply(slice) | Event::Delete(slice) | Event::InitApply(slice) = event
                && let (Some(ns), Some(service)) = (slice.namespace(), slice.labels().get(endpointslice::SERVICE_NAME))
            {
                queue.add((ns, service.clone()));
            }
            std::future::ready(())
        })
    };

    let worker = work(ctx, services, pods, queue, rx);
    tokio::select! {
        _ = service_feed => {}
        _ = pod_feed => {}
        _ = endpoints_feed => {}
        _ = slice_feed => {}
        _ = worker => {}
    }
    Ok(())
}

/// A watch stream with backoff, its errors logged and dropped.
fn watched<K, S>(stream: S) -> impl Stream<Item = Event<K>> + Send
where
    K: Send,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    stream.default_backoff().filter_map(|event| async move {
        match event {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::debug!(error = %e, "endpoints watch failed; retrying");
                None
            }
        }
    })
}

fn key_of<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Service keys waiting for a sync, each queued at most once.
#[derive(Clone)]
struct Queue {
    pending: Arc<Mutex<HashSet<Key>>>,
    tx: mpsc::UnboundedSender<Key>,
}

impl Queue {
    fn new() -> (Queue, mpsc::UnboundedReceiver<Key>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Queue {
            pending: Arc::new(Mutex::new(HashSet::new())),
            tx,
        };
        (queue, rx)
    }

    fn add(&self, key: Key) {
        if self.lock().insert(key.clone()) {
            // The receiver lives as long as the controller; a send can only fail on shutdown.
            let _ = self.tx.send(key);
        }
    }

    /// Takes a key out of the pending set just before its sync, so that a change arriving
    /// during the sync queues it again.
    fn start(&self, key: &Key) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which Services each pod was last seen to match, so that a pod that stops matching (or goes)
/// still triggers the Services that listed it.
#[derive(Default)]
struct PodIndex {
    matched: HashMap<Key, Vec<String>>,
    /// The matches seen during a re-list, which replace `matched` when it is complete.
    relisted: HashMap<Key, Vec<String>>,
}

impl PodIndex {
    fn handle(&mut self, event: Event<Pod>, services: &Store<Service>, queue: &Queue) {
        match event {
            Event::Apply(pod) => {
                let now = matching_services(&pod, services);
                let before = self.matched.insert(key_of(&pod), now.clone()).unwrap_or_default();
                enqueue(queue, &pod, before.into_iter().chain(now));
            }
            Event::Delete(pod) => {
                let before = self.matched.remove(&key_of(&pod)).unwrap_or_default();
                enqueue(queue, &pod, before.into_iter().chain(matching_services(&pod, services)));
            }
            Event::Init => self.relisted.clear(),
            Event::InitApply(pod) => {
                let now = matching_services(&pod, services);
                let before = self.matched.get(&key_of(&pod)).cloned().unwrap_or_default();
                self.relisted.insert(key_of(&pod), now.clone());
                enqueue(queue, &pod, before.into_iter().chain(now));
            }
            // Pods deleted while the watch was down left no event: resync every Service.
            Event::InitDone => {
                self.matched = std::mem::take(&mut self.relisted);
                for svc in services.state() {
                    queue.add(key_of(svc.as_ref()));
                }
            }
        }
    }
}

fn enqueue(queue: &Queue, pod: &Pod, services: impl Iterator<Item = String>) {
    let ns = pod.namespace().unwrap_or_default();
    for svc in services {
        queue.add((ns.clone(), svc));
    }
}

/// The Services in the pod's namespace whose selector matches it.
fn matching_services(pod: &Pod, services: &Store<Service>) -> Vec<String> {
    let ns = pod.namespace();
    services
        .state()
        .iter()
        .filter(|svc| svc.namespace() == ns && selector(svc).is_some_and(|sel| selects(sel, pod)))
        .map(|svc| svc.name_any())
        .collect()
}

/// The selector of a Service this controller manages: `None` for Services without one (whose
/// endpoints someone else maintains) and for ExternalName Services.
pub(crate) fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    // An empty selector is dropped by the API server upstream, so it means "none" too.
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Syncs queued Services one at a time, retrying failures with exponential backoff.
async fn work(
    ctx: Arc<Context>,
    services: Store<Service>,
    pods: Store<Pod>,
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<Key>,
) {
    if services.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
        return;
    }
    let mut failures: HashMap<Key, u32> = HashMap::new();
    let mut retries = FuturesUnordered::new();
    loop {
        let key = tokio::select! {
            Some(key) = rx.recv() => key,
            Some(key) = retries.next(), if !retries.is_empty() => {
                queue.add(key);
                continue;
            }
            else => return,
        };
        queue.start(&key);
        let (ns, name) = &key;
        match sync(&ctx, &services, &pods, ns, name).await {
            Ok(()) => {
                failures.remove(&key);
            }
            Err(e) => {
                let n = failures.entry(key.clone()).or_insert(0);
                *n += 1;
                let delay = (Duration::from_millis(100) * 2u32.saturating_pow(*n)).min(MAX_BACKOFF);
                tracing::debug!(namespace = %ns, service = %name, error = %e, ?delay, "endpoints sync failed; retrying");
                retries.push(async move {
                    tokio::time::sleep(delay).await;
                    key
                });
            }
        }
    }
}

/// Brings the Endpoints and EndpointSlices of one Service up to date.
async fn sync(ctx: &Context, services: &Store<Service>, pods: &Store<Pod>, ns: &str, name: &str) -> Result<(), Error> {
    let Some(svc) = services.get(&ObjectRef::new(name).within(ns)) else {
        return remove(ctx, ns, name).await;
    };
    let Some(sel) = selector(&svc) else {
        return Ok(());
    };
    let mut selected: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && selects(sel, p))
        .collect();
    selected.sort_by_key(|p| p.name_any());
    sync_endpoints(ctx, &svc, &selected).await?;
    endpointslice::sync(ctx, &svc, &selected).await
}

/// Deletes what a vanished Service left behind; its slices also carry an ownerReference, but
/// the garbage collector need not be relied on for what this controller made.
async fn remove(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(ep) = api.get_opt(name).await?
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(namespace = %ns, service = %name, "deleted the endpoints of a deleted service"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    endpointslice::remove(ctx, ns, name).await
}

/// Creates or updates the Endpoints object of a Service.
async fn sync_endpoints(ctx: &Context, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let (ns, name) = key_of(svc);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api.get_opt(&name).await?;
    let (subsets, truncated) = truncate(desired_subsets(svc, pods));
    let mut labels = svc.labels().clone();
    if headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    let mut wanted = current.clone().unwrap_or_default();
    wanted.metadata.name = Some(name.clone());
    wanted.metadata.labels = Some(labels).filter(|l| !l.is_empty());
    let annotations = wanted.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        wanted.metadata.annotations = None;
    }
    wanted.subsets = Some(subsets).filter(|s| !s.is_empty());
    let ready: usize = count(&wanted, |s| s.addresses.as_ref());
    let not_ready: usize = count(&wanted, |s| s.not_ready_addresses.as_ref());
    match current {
        None => match api.create(&PostParams::default(), &wanted).await {
            Ok(_) => {}
            // Creation in a terminating namespace is refused; the namespace takes the Service too.
            Err(kube::Error::Api(e)) if e.code == 403 => return Ok(()),
            Err(e) => return Err(e.into()),
        },
        Some(current) if current == wanted => return Ok(()),
        Some(_) => {
            api.replace(&name, &PostParams::default(), &wanted).await?;
        }
    }
    tracing::info!(namespace = %ns, service = %name, ready, not_ready, "updated endpoints");
    Ok(())
}

fn count(ep: &Endpoints, list: impl Fn(&EndpointSubset) -> Option<&Vec<EndpointAddress>>) -> usize {
    ep.subsets.iter().flatten().map(|s| list(s).map_or(0, Vec::len)).sum()
}

/// Whether a Service has no cluster IP.
pub(crate) fn headless(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    ip.is_empty() || ip == "None"
}

/// Whether a pod is published at all: it has an IP, has not finished, and (unless `terminating`
/// pods are wanted) is not being deleted.
pub(crate) fn publishable(pod: &Pod, terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let has_ip = pod.status.as_ref().is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()) || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (terminating || pod.metadata.deletion_timestamp.is_none())
}

/// Whether the pod's Ready condition is True.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The IP families a Service is published in (`IPv4` unless it says otherwise).
pub(crate) fn families(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".into()])
}

/// The pod's IP of the given family (`IPv4` or `IPv6`).
pub(crate) fn pod_ip(pod: &Pod, family: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.clone());
    std::iter::once(status.pod_ip.clone())
        .flatten()
        .chain(listed)
        .find(|ip| !ip.is_empty() && ip.contains(':') == (family == "IPv6"))
}

/// The pod's hostname, when it should be published for this Service (upstream's
/// ShouldSetHostname: the pod names the Service as its subdomain).
pub(crate) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str()) && pod.namespace() == svc.namespace()).then_some(host)
}

/// The reference to a pod that endpoints carry.
pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// The pod's port for a Service port (upstream's FindPort): a named target port is looked up
/// among the ports of the pod's containers (and sidecar init containers) with the same protocol.
pub(crate) fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        Some(IntOrString::Int(n)) => Some(*n),
        None => Some(port.port),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The subsets of a Service's Endpoints: pods grouped by the ports they resolve to, ready ones
/// in `addresses` and the others in `notReadyAddresses`, everything sorted so that an unchanged
/// set of pods gives an identical object.
fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let service_ports = spec.ports.unwrap_or_default();
    let family = families(svc).into_iter().next().unwrap_or_else(|| "IPv4".into());
    // The pods' addresses by the (sorted) ports they resolve to.
    let mut groups: BTreeMap<Vec<PortKey>, Subset> = BTreeMap::new();
    for pod in pods {
        if !publishable(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ip(pod, &family) else { continue };
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|sp| {
                resolve_port(pod, sp).map(|n| EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: n,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        // A pod none of whose ports resolve is left out, except for a headless Service
        // without ports, which publishes bare addresses.
        if ports.is_empty() && !(service_ports.is_empty() && headless(svc)) {
            continue;
        }
        let address = EndpointAddress {
            ip,
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let mut ports = ports;
        ports.sort_by_key(port_key);
        let key: Vec<_> = ports.iter().map(port_key).collect();
        let group = groups.entry(key).or_insert_with(|| Subset {
            ports,
            ..Default::default()
        });
        if publish_not_ready || pod_ready(pod) {
            group.ready.push(address);
        } else {
            group.not_ready.push(address);
        }
    }
    groups
        .into_values()
        .map(
            |Subset {
                 ports,
                 mut ready,
                 mut not_ready,
             }| {
                let by_ip = |a: &EndpointAddress| (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()));
                ready.sort_by_key(by_ip);
                not_ready.sort_by_key(by_ip);
                EndpointSubset {
                    addresses: Some(ready).filter(|a| !a.is_empty()),
                    not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                    ports: Some(ports).filter(|p| !p.is_empty()),
                }
            },
        )
        .collect()
}

/// The pods that resolve to the same ports, before they become an [`EndpointSubset`].
#[derive(Default)]
struct Subset {
    ports: Vec<EndpointPort>,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
}

/// A port's identity, for grouping and sorting: name, number, protocol, app protocol.
type PortKey = (String, i32, String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// Upstream's truncation to [`MAX_ADDRESSES`]: ready addresses are kept before not-ready ones,
/// each subset keeping its share. Returns the subsets and whether anything was cut.
fn truncate(mut subsets: Vec<EndpointSubset>) -> (Vec<EndpointSubset>, bool) {
    let len = |a: &Option<Vec<EndpointAddress>>| a.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ADDRESSES {
        return (subsets, false);
    }
    let cut_ready = ready > MAX_ADDRESSES;
    let (room, total) = if cut_ready {
        (MAX_ADDRESSES, ready)
    } else {
        (MAX_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for subset in &mut subsets {
        let list = if cut_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let share = (len(list) * room).div_ceil(total).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
            left -= addresses.len();
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    (subsets, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec};

    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status = Some(PodStatus {
            pod_ip: ip.map(Into::into),
            pod_ips: ip.map(|ip| vec![PodIP { ip: ip.into() }]),
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    pub(crate) fn service(ports: Vec<ServicePort>) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some("web".into());
        s.metadata.namespace = Some("default".into());
        s.metadata.uid = Some("svc-uid".into());
        s.spec = Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(ports),
            ..Default::default()
        });
        s
    }

    pub(crate) fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()).filter(|n: &String| !n.is_empty()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_per_pod() {
        let p = pod("a", Some("10.0.0.1"), true);
        assert_eq!(resolve_port(&p, &port("", 80, IntOrString::Int(9090))), Some(9090));
        assert_eq!(
            resolve_port(&p, &port("", 80, IntOrString::String("http".into()))),
            Some(8080)
        );
        assert_eq!(
            resolve_port(&p, &port("", 80, IntOrString::String("grpc".into()))),
            None
        );
        let mut udp = port("", 80, IntOrString::String("http".into()));
        udp.protocol = Some("UDP".into());
        assert_eq!(resolve_port(&p, &udp), None, "the protocol must match");
        let mut untargeted = port("", 80, IntOrString::Int(0));
        untargeted.target_port = None;
        assert_eq!(resolve_port(&p, &untargeted), Some(80));
    }

    #[test]
    fn subsets_split_ready_and_not_ready() {
        let svc = service(vec![port("web", 80, IntOrString::String("http".into()))]);
        let pods = vec![
            pod("b", Some("10.0.0.2"), false),
            pod("a", Some("10.0.0.1"), true),
            pod("c", None, true),
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        let ips =
            |a: &Option<Vec<EndpointAddress>>| -> Vec<String> { a.iter().flatten().map(|a| a.ip.clone()).collect() };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
        let ports = subsets[0].ports.as_ref().expect("ports");
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("web"), 8080));
        let address = &subsets[0].addresses.as_ref().expect("ready")[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("a"));
    }

    #[test]
    fn pods_group_by_resolved_ports() {
        let svc = service(vec![
            port("web", 80, IntOrString::String("http".into())),
            port("metrics", 9100, IntOrString::Int(9100)),
        ]);
        let mut other = (*pod("b", Some("10.0.0.2"), true)).clone();
        other.spec.as_mut().expect("spec").containers[0].ports = None;
        let subsets = desired_subsets(&svc, &[pod("a", Some("10.0.0.1"), true), Arc::new(other)]);
        assert_eq!(subsets.len(), 2, "the pod without an http port gets its own subset");
        let port_counts: Vec<usize> = subsets.iter().map(|s| s.ports.as_ref().map_or(0, Vec::len)).collect();
        assert!(port_counts.contains(&1) && port_counts.contains(&2));
    }

    #[test]
    fn terminating_and_finished_pods_are_left_out() {
        let svc = service(vec![port("", 80, IntOrString::Int(80))]);
        let mut terminating = (*pod("a", Some("10.0.0.1"), true)).clone();
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        let mut done = (*pod("b", Some("10.0.0.2"), false)).clone();
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        assert!(desired_subsets(&svc, &[Arc::new(terminating.clone()), Arc::new(done)]).is_empty());
        let mut publish = svc.clone();
        publish.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
        assert_eq!(desired_subsets(&publish, &[Arc::new(terminating)]).len(), 1);
    }

    #[test]
    fn headless_services_without_ports_publish_bare_addresses() {
        let mut svc = service(vec![]);
        svc.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
        let subsets = desired_subsets(&svc, &[pod("a", Some("10.0.0.1"), true)]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        let mut clustered = svc.clone();
        clustered.spec.as_mut().expect("spec").cluster_ip = Some("10.96.0.1".into());
        assert!(desired_subsets(&clustered, &[pod("a", Some("10.0.0.1"), true)]).is_empty());
    }

    #[test]
    fn truncation_prefers_ready_addresses() {
        let address = |n: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", n / 256, n % 256),
            ..Default::default()
        };
        let subsets = vec![EndpointSubset {
            addresses: Some((0..900).map(address).collect()),
            not_ready_addresses: Some((900..1200).map(address).collect()),
            ports: None,
        }];
        let (cut, truncated) = truncate(subsets);
        assert!(truncated);
        assert_eq!(cut[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(cut[0].not_ready_addresses.as_ref().map(Vec::len), Some(100));
        let (kept, truncated) = truncate(vec![EndpointSubset::default()]);
        assert!(!truncated);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn selectors_and_external_names() {
        let mut svc = service(vec![]);
        assert!(selects(selector(&svc).expect("selector"), &pod("a", None, true)));
        svc.spec.as_mut().expect("spec").type_ = Some("ExternalName".into());
        assert!(selector(&svc).is_none());
        let mut empty = service(vec![]);
        empty.spec.as_mut().expect("spec").selector = Some(BTreeMap::new());
        assert!(selector(&empty).is_none());
    }
}
