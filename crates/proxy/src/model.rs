//! What the proxy programs, distilled from Services and EndpointSlices: one [`ServicePort`] per
//! port of each proxied Service, with the endpoints that may receive its traffic.
//!
//! This follows upstream kube-proxy's reading of the API: headless and ExternalName Services and
//! those labelled `service.kubernetes.io/service-proxy-name` are left alone; endpoints come only
//! from EndpointSlices (the first address of each endpoint); an endpoint is used when it is
//! ready, and when no endpoint is ready, the serving ones that are terminating are used instead;
//! a named target port resolves through the port of the same name in each slice. Only IPv4 is
//! handled.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

/// The label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services with this label belong to another proxy (upstream's convention).
pub const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API's spelling (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables (and chain names) use: `tcp`, `udp`, `sctp`.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// An endpoint that may receive a service port's traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The target port on that address.
    pub port: u16,
    /// Whether the endpoint runs on this proxy's node.
    pub local: bool,
}

/// One port of a proxied Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (empty for a lone unnamed port).
    pub port_name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The service port.
    pub port: u16,
    /// The cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// External IPs and load-balancer ingress IPs, reached like node ports.
    pub external_ips: Vec<Ipv4Addr>,
    /// The node port, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: how long (seconds) a client sticks to its endpoint.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// The usable endpoints, sorted and without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// A name for this port unique in the cluster: `namespace/name/protocol/port-name`, with the
    /// port number standing in for a missing name (port names always contain a letter).
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.port_name.clone()
        };
        format!("{}/{}/{}/{}", self.namespace, self.name, self.protocol.nft(), port)
    }

    /// The endpoints on this node.
    pub fn local_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.local)
    }
}

/// The upstream default of `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// The ports of `svc` that the proxy programs, with endpoints taken from `slices` (any slices;
/// those of other Services are skipped). `node_name` decides which endpoints are local.
pub fn service_ports<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice> + Clone,
    node_name: &str,
) -> Vec<ServicePort> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    if svc.labels().contains_key(PROXY_NAME_LABEL) || spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new();
    };
    let (namespace, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref())
                .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
        );
    }
    external_ips.sort();
    external_ips.dedup();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let ours: Vec<&EndpointSlice> = slices
        .into_iter()
        .filter(|s| {
            s.address_type == "IPv4"
                && s.namespace().as_deref() == Some(namespace.as_str())
                && s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
        })
        .collect();
    let mut out = Vec::new();
    for sp in spec.ports.iter().flatten() {
        let (Some(protocol), Ok(port)) = (Protocol::parse(sp.protocol.as_deref()), u16::try_from(sp.port)) else {
            continue;
        };
        let port_name = sp.name.clone().unwrap_or_default();
        let node_port = sp.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
        out.push(ServicePort {
            namespace: namespace.clone(),
            name: name.clone(),
            endpoints: endpoints(&ours, &port_name, protocol, node_name),
            port_name,
            protocol,
            port,
            cluster_ip,
            external_ips: external_ips.clone(),
            node_port,
            affinity_timeout,
            external_local,
            internal_local,
        });
    }
    out
}

/// The usable endpoints of the port named `port_name`: the ready ones, or, when none is ready,
/// the serving ones that are terminating (upstream's fallback, so that connections drain).
fn endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol, node_name: &str) -> Vec<Endpoint> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or("") == port_name && Protocol::parse(p.protocol.as_deref()) == Some(protocol))
                .then_some(p.port)
                .flatten()
                .and_then(|n| u16::try_from(n).ok())
        }) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let cond = ep.conditions.as_ref();
            let is_ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let serving = cond.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            let endpoint = Endpoint {
                ip,
                port,
                local: ep.node_name.as_deref() == Some(node_name),
            };
            if is_ready {
                ready.insert(endpoint);
            } else if serving && is_terminating {
                terminating.insert(endpoint);
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    #[test]
    fn named_ports_resolve_per_slice_and_readiness_falls_back_to_terminating() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "type": "NodePort",
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]},
        }));
        let slices = [
            slice(json!({
                "metadata": {"name": "web-a", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.0.3"], "conditions": {"ready": true}, "nodeName": "n1"},
                    {"addresses": ["10.42.0.4"], "conditions": {"ready": false}, "nodeName": "n1"},
                ],
            })),
            slice(json!({
                "metadata": {"name": "web-b", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.42.1.5"], "nodeName": "n2"}],
            })),
            slice(json!({
                "metadata": {"name": "other", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "other"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.42.9.9"]}],
            })),
        ];
        let ports = service_ports(&svc, &slices, "n1");
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].id(), "default/web/tcp/http");
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(
            ports[0].endpoints,
            vec![
                Endpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 3),
                    port: 8080,
                    local: true
                },
                Endpoint {
                    ip: Ipv4Addr::new(10, 42, 1, 5),
                    port: 9090,
                    local: false
                },
            ]
        );
        assert!(ports[1].endpoints.is_empty(), "no slice has a UDP port named dns");

        let draining = [slice(json!({
            "metadata": {"name": "web-a", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.42.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.0.4"], "conditions": {"ready": false, "serving": false, "terminating": true}},
            ],
        }))];
        let ports = service_ports(&svc, &draining, "n1");
        assert_eq!(ports[0].endpoints.len(), 1);
        assert_eq!(ports[0].endpoints[0].ip, Ipv4Addr::new(10, 42, 0, 3));
    }

    #[test]
    fn headless_external_name_and_foreign_services_are_skipped() {
        let none: [EndpointSlice; 0] = [];
        for spec in [
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ] {
            let svc = service(json!({"metadata": {"name": "x", "namespace": "d"}, "spec": spec}));
            assert!(service_ports(&svc, &none, "n").is_empty());
        }
        let svc = service(json!({
            "metadata": {"name": "x", "namespace": "d", "labels": {PROXY_NAME_LABEL: "other"}},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80}]},
        }));
        assert!(service_ports(&svc, &none, "n").is_empty());
    }

    #[test]
    fn load_balancer_ingress_affinity_and_policies() {
        let svc = service(json!({
            "metadata": {"name": "lb", "namespace": "d"},
            "spec": {"clusterIP": "10.43.0.9", "type": "LoadBalancer", "externalIPs": ["192.0.2.50"],
                     "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local",
                     "internalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.60"}, {"hostname": "lb.example"}]}},
        }));
        let none: [EndpointSlice; 0] = [];
        let ports = service_ports(&svc, &none, "n");
        assert_eq!(ports[0].id(), "d/lb/tcp/80");
        assert_eq!(
            ports[0].external_ips,
            vec![Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 60)]
        );
        assert_eq!(ports[0].affinity_timeout, Some(10800));
        assert!(ports[0].external_local && ports[0].internal_local);
    }
}
