//! The `local` provider, kate's default: the cluster's own nodes are the cloud.
//!
//! - Machines: every node is `local://<node name>` in zone and region `local`, of instance type
//!   `local`, at the addresses its kubelet reports. Simulated nodes (`kate sim`) and nodes that
//!   another provider claimed (a `spec.providerID` of another scheme) are left alone.
//! - Load balancers, like k3s' ServiceLB: a LoadBalancer Service gets the InternalIPs of the
//!   Ready nodes as its ingress (`ipMode: VIP`), and kate's service proxy on each node forwards
//!   `INGRESS_IP:port` to the Service's endpoints. Since every such Service shares the nodes'
//!   addresses, a port can serve only one Service there: a Service whose port another Service
//!   already serves on those addresses (or an older LoadBalancer Service waits for) stays
//!   pending until the port is free.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::{Error, InstanceMetadata, Provider, async_trait};

/// The provider's name, for `--cloud-provider`.
pub const NAME: &str = "local";
/// The zone, region and instance type of every local machine.
pub const LOCAL: &str = "local";
/// The label `kate sim` puts on simulated nodes, which have no real addresses.
pub const SIMULATED_LABEL: &str = "kate.dev/simulated";
/// The scheme of local provider IDs.
const SCHEME: &str = "local://";

/// The local provider.
pub struct Local {
    /// All Services, to find ports already served on the nodes' addresses; `None` skips the check.
    services: Option<Api<Service>>,
}

impl Local {
    /// A local provider that reads Services through `client` to keep load-balancer ports apart.
    pub fn new(client: kube::Client) -> Local {
        Local {
            services: Some(Api::all(client)),
        }
    }
}

#[async_trait]
impl Provider for Local {
    fn name(&self) -> &str {
        NAME
    }

    async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, Error> {
        Ok(metadata(node))
    }

    async fn ensure_load_balancer(&self, service: &Service, nodes: &[Node]) -> Result<Vec<LoadBalancerIngress>, Error> {
        let addrs = addresses(service, nodes);
        if addrs.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(api) = &self.services {
            let others = api.list(&ListParams::default()).await?.items;
            if let Some(why) = conflict(service, &others, &addrs) {
                return Err(Error::Pending(why));
            }
        }
        Ok(addrs
            .into_iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            })
            .collect())
    }

    async fn delete_load_balancer(&self, _service: &Service) -> Result<(), Error> {
        // Nothing was created outside the API: the proxy stops forwarding once the status is gone.
        Ok(())
    }
}

/// The local machine behind `node`, unless it is simulated or belongs to another provider.
pub fn metadata(node: &Node) -> Option<InstanceMetadata> {
    if node.labels().contains_key(SIMULATED_LABEL) {
        return None;
    }
    let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or("");
    if !provider_id.is_empty() && !provider_id.starts_with(SCHEME) {
        return None;
    }
    Some(InstanceMetadata {
        provider_id: format!("{SCHEME}{}", node.name_any()),
        instance_type: Some(LOCAL.into()),
        zone: Some(LOCAL.into()),
        region: Some(LOCAL.into()),
        addresses: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.clone())
            .unwrap_or_default(),
    })
}

/// The addresses a Service's balancer gets: the InternalIPs of the Ready, real nodes, in the
/// Service's IP families, sorted.
pub fn addresses(service: &Service, nodes: &[Node]) -> Vec<IpAddr> {
    let families: Vec<&str> = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let wanted = |ip: &IpAddr| {
        families.is_empty()
            || families.contains(&match ip {
                IpAddr::V4(_) => "IPv4",
                IpAddr::V6(_) => "IPv6",
            })
    };
    let set: BTreeSet<IpAddr> = nodes
        .iter()
        .filter(|n| crate::is_ready(n) && !n.labels().contains_key(SIMULATED_LABEL))
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
        })
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .filter(wanted)
        .collect();
    set.into_iter().collect()
}

/// The (protocol, port) pairs a Service serves.
fn ports(service: &Service) -> BTreeSet<(String, i32)> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
        .collect()
}

/// The addresses besides its cluster IP on which the proxy serves a Service's ports: its
/// external IPs and, for a LoadBalancer, its ingress IPs.
fn served_on(service: &Service) -> BTreeSet<IpAddr> {
    let spec = service.spec.as_ref();
    let mut addrs: BTreeSet<IpAddr> = spec
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") {
        addrs.extend(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref())
                .filter_map(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    addrs
}

/// Whether a Service wants a balancer of this provider (a LoadBalancer without a class, not
/// being deleted).
fn wants_local_balancer(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none()
        && service.metadata.deletion_timestamp.is_none()
}

/// Orders Services by age (then namespace and name), oldest first.
fn by_age(a: &Service, b: &Service) -> Ordering {
    (&a.metadata.creation_timestamp, a.namespace(), a.name_any()).cmp(&(
        &b.metadata.creation_timestamp,
        b.namespace(),
        b.name_any(),
    ))
}

/// A port two Services share, as `port/PROTOCOL`.
fn shared_port(a: &Service, b: &Service) -> Option<String> {
    let theirs = ports(b);
    ports(a)
        .into_iter()
        .find(|p| theirs.contains(p))
        .map(|(protocol, port)| format!("{port}/{protocol}"))
}

/// Why `service` cannot be served on `addrs` now, if it cannot: another Service of `others`
/// already serves one of its ports on one of those addresses, or an older LoadBalancer Service
/// that nothing blocks waits for one. Deciding by age keeps two new Services from both taking a
/// port at once.
pub fn conflict(service: &Service, others: &[Service], addrs: &[IpAddr]) -> Option<String> {
    let addrs: BTreeSet<IpAddr> = addrs.iter().copied().collect();
    let same = |o: &Service| o.namespace() == service.namespace() && o.name_any() == service.name_any();
    let holders: Vec<&Service> = others
        .iter()
        .filter(|o| !same(o) && !served_on(o).is_disjoint(&addrs))
        .collect();
    for holder in &holders {
        if let Some(port) = shared_port(service, holder) {
            return Some(format!(
                "port {port} is already served on the nodes' addresses by Service {}/{}",
                holder.namespace().unwrap_or_default(),
                holder.name_any()
            ));
        }
    }
    others
        .iter()
        .filter(|o| !same(o) && wants_local_balancer(o) && served_on(o).is_disjoint(&addrs))
        .filter(|o| by_age(o, service) == Ordering::Less)
        .filter(|o| holders.iter().all(|h| shared_port(o, h).is_none()))
        .find_map(|o| {
            shared_port(service, o).map(|port| {
                format!(
                    "port {port} is wanted by the older LoadBalancer Service {}/{}",
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: bool, ips: &[&str], labels: serde_json::Value) -> Node {
        let addresses: Vec<_> = ips
            .iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .chain([json!({"type": "Hostname", "address": name})])
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "addresses": addresses,
            }
        }))
        .unwrap()
    }

    fn lb(name: &str, created: &str, ports: &[i64], ingress: &[&str]) -> Service {
        let ports: Vec<_> = ports
            .iter()
            .map(|p| json!({"name": format!("p{p}"), "port": p, "protocol": "TCP"}))
            .collect();
        let ingress: Vec<_> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": ports, "ipFamilies": ["IPv4"]},
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    #[test]
    fn balancers_get_the_internal_ips_of_ready_real_nodes() {
        let nodes = [
            node("b", true, &["192.0.2.2", "2001:db8::2"], json!({})),
            node("a", true, &["192.0.2.1"], json!({})),
            node("down", false, &["192.0.2.3"], json!({})),
            node("sim", true, &["10.64.0.1"], json!({SIMULATED_LABEL: "true"})),
        ];
        let svc = lb("web", "2025-01-01T00:00:00Z", &[80], &[]);
        let ips: Vec<String> = addresses(&svc, &nodes).iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["192.0.2.1", "192.0.2.2"]);
    }

    #[tokio::test]
    async fn ensure_answers_vip_ingress_without_a_client() {
        let local = Local { services: None };
        let svc = lb("web", "2025-01-01T00:00:00Z", &[80], &[]);
        let ingress = local
            .ensure_load_balancer(&svc, &[node("a", true, &["192.0.2.1"], json!({}))])
            .await
            .unwrap();
        assert_eq!(ingress.len(), 1);
        assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(ingress[0].ip_mode.as_deref(), Some("VIP"));
        assert!(local.ensure_load_balancer(&svc, &[]).await.unwrap().is_empty());
        local.delete_load_balancer(&svc).await.unwrap();
    }

    #[test]
    fn machines_are_local_unless_simulated_or_foreign() {
        let n = node("n1", true, &["192.0.2.1"], json!({}));
        let md = metadata(&n).unwrap();
        assert_eq!(md.provider_id, "local://n1");
        assert_eq!(md.zone.as_deref(), Some("local"));
        assert_eq!(md.region.as_deref(), Some("local"));
        assert_eq!(md.instance_type.as_deref(), Some("local"));
        assert_eq!(md.addresses.len(), 2, "the kubelet's addresses");
        assert!(metadata(&node("s", true, &[], json!({SIMULATED_LABEL: "true"}))).is_none());
        let mut foreign = n.clone();
        foreign.spec.get_or_insert_with(Default::default).provider_id = Some("aws://i-123".into());
        assert!(metadata(&foreign).is_none());
        let mut ours = n;
        ours.spec.get_or_insert_with(Default::default).provider_id = Some("local://n1".into());
        assert!(metadata(&ours).is_some());
    }

    #[test]
    fn a_port_served_by_another_service_keeps_a_balancer_pending() {
        let addrs: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
        let new = lb("new", "2025-01-02T00:00:00Z", &[80], &[]);
        let holder = lb("old", "2025-01-03T00:00:00Z", &[80, 443], &["192.0.2.1"]);
        let why = conflict(&new, std::slice::from_ref(&holder), &addrs).unwrap();
        assert!(why.contains("80/TCP") && why.contains("default/old"), "{why}");
        // Other ports, or the same port on other addresses, are fine.
        assert!(
            conflict(
                &lb("x", "2025-01-02T00:00:00Z", &[8080], &[]),
                std::slice::from_ref(&holder),
                &addrs
            )
            .is_none()
        );
        let elsewhere = lb("y", "2025-01-09T00:00:00Z", &[80], &["198.51.100.1"]);
        assert!(conflict(&new, &[elsewhere], &addrs).is_none());
        // A Service never conflicts with itself.
        assert!(conflict(&holder, std::slice::from_ref(&holder), &addrs).is_none());
        // External IPs count as served addresses too.
        let mut external: Service = lb("ext", "2025-01-05T00:00:00Z", &[80], &[]);
        external.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        external.spec.as_mut().unwrap().external_ips = Some(vec!["192.0.2.1".into()]);
        assert!(conflict(&new, &[external], &addrs).is_some());
    }

    #[test]
    fn the_older_of_two_new_services_gets_a_contested_port() {
        let addrs: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
        let older = lb("a", "2025-01-01T00:00:00Z", &[80], &[]);
        let newer = lb("b", "2025-01-02T00:00:00Z", &[80], &[]);
        let all = [older.clone(), newer.clone()];
        assert!(conflict(&older, &all, &addrs).is_none());
        assert!(conflict(&newer, &all, &addrs).unwrap().contains("older"));
        // An older Service that is itself blocked by a holder does not block anyone.
        let blocked = lb("c", "2024-01-01T00:00:00Z", &[80, 443], &[]);
        let holder = lb("h", "2025-01-03T00:00:00Z", &[443], &["192.0.2.1"]);
        assert!(conflict(&older, &[blocked, holder], &addrs).is_none());
    }
}
