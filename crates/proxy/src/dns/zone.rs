//! The cluster zone (`cluster.local` by default) as the Kubernetes DNS specification describes
//! it, built from Services and EndpointSlices, and the answers to queries in it.
//!
//! - `SVC.NS.svc.ZONE` A: the cluster IP; for a headless Service, the ready endpoints' IPs;
//!   for an ExternalName Service, a CNAME to the external name.
//! - `HOST.SVC.NS.svc.ZONE` A: a ready endpoint of a headless Service, by its `hostname` or by
//!   its address with dashes (`10-42-0-3`).
//! - `_PORT._PROTO.SVC.NS.svc.ZONE` SRV: each named port, pointing at the Service's name (or,
//!   for a headless Service, at each ready endpoint), with the A records as additional answers.
//! - `A-B-C-D.NS.pod.ZONE` A: the address written in the name.
//! - PTR for cluster IPs and for headless endpoints' IPs; other reverse names within
//!   the configured networks are NXDOMAIN, and outside them they are not ours (forwarded).
//! - Other names in the zone are NXDOMAIN (or NODATA for names that exist with other types),
//!   with the zone's SOA in the authority section. Only IPv4 addresses are served; AAAA
//!   queries get NODATA.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::model::{Protocol, SERVICE_NAME_LABEL};
use crate::nft::Cidr;

/// The TTL of every answer (as CoreDNS's kubernetes plugin).
pub const TTL: u32 = 5;

/// A named port of a Service or an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedPort {
    /// The port's name (lower case).
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

impl NamedPort {
    /// A port as a Service or an EndpointSlice lists it; unnamed ones have no SRV records.
    fn new(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<NamedPort> {
        Some(NamedPort {
            name: name.filter(|n| !n.is_empty())?.to_ascii_lowercase(),
            protocol: Protocol::parse(protocol)?,
            port: u16::try_from(port?).ok()?,
        })
    }
}

/// A ready endpoint of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEndpoint {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its `hostname`, if the slice gives one.
    pub hostname: Option<String>,
    /// Its named ports.
    pub ports: BTreeSet<NamedPort>,
}

impl DnsEndpoint {
    /// The first label of the endpoint's own name: its hostname, else its address with dashes.
    pub fn label(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.ip.to_string().replace('.', "-"))
    }
}

/// What a Service's name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A cluster IP.
    ClusterIp(Ipv4Addr),
    /// The ready endpoints' addresses.
    Headless,
    /// A CNAME to this name.
    ExternalName(String),
}

/// A Service as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsService {
    /// What its name resolves to.
    pub kind: Kind,
    /// Its named ports.
    pub ports: Vec<NamedPort>,
    /// Its ready endpoints (by address).
    pub endpoints: Vec<DnsEndpoint>,
}

/// The answer to a query in one of our zones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// NoError or NXDomain.
    pub code: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
    /// The additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
}

/// The zone's data at one moment.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The cluster domain, lower case, without the trailing dot.
    domain: String,
    services: BTreeMap<(String, String), DnsService>,
    namespaces: BTreeSet<String>,
    /// The names of each address, for PTR.
    names: HashMap<Ipv4Addr, Vec<String>>,
    /// Reverse names in these networks are answered (NXDOMAIN when unknown), not forwarded.
    reverse: Vec<Cidr>,
}

impl Zone {
    /// An empty zone for `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str, reverse: Vec<Cidr>) -> Zone {
        Zone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            services: BTreeMap::new(),
            namespaces: BTreeSet::new(),
            names: HashMap::new(),
            reverse,
        }
    }

    /// The zone built from every Service and EndpointSlice.
    pub fn build(domain: &str, reverse: Vec<Cidr>, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Zone {
        let mut zone = Zone::new(domain, reverse);
        let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            if let (Some(ns), Some(svc)) = (slice.namespace(), slice.labels().get(SERVICE_NAME_LABEL)) {
                by_service.entry((ns, svc.clone())).or_default().push(slice);
            }
        }
        for svc in services {
            let key = (svc.namespace().unwrap_or_default(), svc.name_any());
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(entry) = dns_service(svc, slices) {
                zone.insert(&key.0, &key.1, entry);
            }
        }
        zone
    }

    /// Adds (or replaces) a Service.
    pub fn insert(&mut self, namespace: &str, name: &str, svc: DnsService) {
        let fqdn = format!("{name}.{namespace}.svc.{}", self.domain);
        match svc.kind {
            Kind::ClusterIp(ip) => self.names.entry(ip).or_default().push(fqdn.clone()),
            Kind::Headless => {
                for ep in &svc.endpoints {
                    self.names
                        .entry(ep.ip)
                        .or_default()
                        .push(format!("{}.{fqdn}", ep.label()));
                }
            }
            Kind::ExternalName(_) => {}
        }
        self.namespaces.insert(namespace.to_string());
        self.services.insert((namespace.to_string(), name.to_string()), svc);
    }

    /// The answer to `name`/`qtype`, or `None` when the name is not in our zones (to forward).
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        let text = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        if let Some(rest) = text.strip_suffix(".in-addr.arpa") {
            return self.reverse(name, rest, qtype);
        }
        let rest = if text == self.domain {
            ""
        } else {
            text.strip_suffix(&format!(".{}", self.domain))?
        };
        let labels: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('.').collect()
        };
        Some(self.forward_name(name, &labels, qtype))
    }

    fn forward_name(&self, name: &Name, labels: &[&str], qtype: RecordType) -> Answer {
        match labels {
            [] => match qtype {
                RecordType::SOA => self.positive(vec![self.soa()]),
                _ => self.nodata(),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => self.positive(vec![Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::TXT(TXT::new(vec!["1.1.0".into()])),
                )]),
                _ => self.nodata(),
            },
            ["svc"] | ["pod"] | [_, "pod"] => self.nodata(),
            [ns, "svc"] if self.namespaces.contains(*ns) => self.nodata(),
            [ip, _, "pod"] => match (dashed_ip(ip), qtype) {
                (Some(ip), RecordType::A) => self.positive(vec![a_record(name.clone(), ip)]),
                (Some(_), _) => self.nodata(),
                (None, _) => self.nxdomain(),
            },
            [svc, ns, "svc"] => match self.services.get(&(ns.to_string(), svc.to_string())) {
                Some(entry) => self.service(name, ns, svc, entry, qtype),
                None => self.nxdomain(),
            },
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                match self.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(_) => self.nodata(),
                    None => self.nxdomain(),
                }
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                match self.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(entry) => {
                        let wanted = |p: &NamedPort| p.name == port[1..] && p.protocol.nft() == &proto[1..];
                        if !entry.ports.iter().any(wanted)
                            && !entry.endpoints.iter().any(|e| e.ports.iter().any(wanted))
                        {
                            return self.nxdomain();
                        }
                        match qtype {
                            RecordType::SRV => self.srv(name, ns, svc, entry, Some(&wanted)),
                            _ => self.nodata(),
                        }
                    }
                    None => self.nxdomain(),
                }
            }
            [host, svc, ns, "svc"] => {
                let Some(entry) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return self.nxdomain();
                };
                let found: Vec<Ipv4Addr> = match entry.kind {
                    Kind::Headless => entry
                        .endpoints
                        .iter()
                        .filter(|e| e.label() == *host)
                        .map(|e| e.ip)
                        .collect(),
                    _ => Vec::new(),
                };
                match (found.is_empty(), qtype) {
                    (true, _) => self.nxdomain(),
                    (false, RecordType::A) => {
                        self.positive(found.into_iter().map(|ip| a_record(name.clone(), ip)).collect())
                    }
                    (false, _) => self.nodata(),
                }
            }
            _ => self.nxdomain(),
        }
    }

    /// Answers for the name of a Service itself.
    fn service(&self, name: &Name, ns: &str, svc: &str, entry: &DnsService, qtype: RecordType) -> Answer {
        if let Kind::ExternalName(target) = &entry.kind {
            return match Name::from_str(&format!("{}.", target.trim_end_matches('.'))) {
                Ok(target) => self.positive(vec![Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(target)))]),
                Err(_) => self.nodata(),
            };
        }
        match qtype {
            RecordType::A | RecordType::ANY => {
                let ips: Vec<Ipv4Addr> = match entry.kind {
                    Kind::ClusterIp(ip) => vec![ip],
                    _ => entry.endpoints.iter().map(|e| e.ip).collect(),
                };
                if ips.is_empty() {
                    return self.nodata();
                }
                self.positive(ips.into_iter().map(|ip| a_record(name.clone(), ip)).collect())
            }
            RecordType::SRV => self.srv(name, ns, svc, entry, None),
            _ => self.nodata(),
        }
    }

    /// SRV records of a Service's named ports (those `wanted`, or all).
    fn srv(
        &self,
        name: &Name,
        ns: &str,
        svc: &str,
        entry: &DnsService,
        wanted: Option<&dyn Fn(&NamedPort) -> bool>,
    ) -> Answer {
        let keep = |p: &&NamedPort| wanted.is_none_or(|w| w(p));
        let fqdn = format!("{svc}.{ns}.svc.{}.", self.domain);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        match entry.kind {
            Kind::ClusterIp(ip) => {
                let Ok(target) = Name::from_str(&fqdn) else {
                    return self.nodata();
                };
                for p in entry.ports.iter().filter(keep) {
                    answers.push(srv_record(name, 100, p.port, target.clone()));
                }
                if !answers.is_empty() {
                    additionals.push(a_record(target, ip));
                }
            }
            _ => {
                let targets: Vec<(&DnsEndpoint, Vec<&NamedPort>)> = entry
                    .endpoints
                    .iter()
                    .map(|e| (e, e.ports.iter().filter(keep).collect::<Vec<_>>()))
                    .filter(|(_, ports)| !ports.is_empty())
                    .collect();
                let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
                for (ep, ports) in targets {
                    let Ok(target) = Name::from_str(&format!("{}.{fqdn}", ep.label())) else {
                        continue;
                    };
                    for p in ports {
                        answers.push(srv_record(name, weight, p.port, target.clone()));
                    }
                    additionals.push(a_record(target, ep.ip));
                }
            }
        }
        if answers.is_empty() {
            return self.nodata();
        }
        Answer {
            answers,
            additionals,
            ..Answer::default()
        }
    }

    /// Answers for `rest.in-addr.arpa` (`rest` is the reversed address).
    fn reverse(&self, name: &Name, rest: &str, qtype: RecordType) -> Option<Answer> {
        let octets: Vec<u8> = rest.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
        let [d, c, b, a] = octets[..] else {
            return None;
        };
        let ip = Ipv4Addr::new(a, b, c, d);
        let names = self.names.get(&ip);
        if names.is_none() && !self.reverse.iter().any(|n| n.contains(ip)) {
            return None;
        }
        let soa_of_reverse = || {
            let mut answer = Answer {
                code: ResponseCode::NoError,
                ..Answer::default()
            };
            if let Ok(apex) = Name::from_str("in-addr.arpa.") {
                answer.authority.push(soa_record(apex, &self.domain));
            }
            answer
        };
        let Some(names) = names else {
            return Some(Answer {
                code: ResponseCode::NXDomain,
                ..soa_of_reverse()
            });
        };
        if qtype != RecordType::PTR {
            return Some(soa_of_reverse());
        }
        let answers = names
            .iter()
            .filter_map(|n| Name::from_str(&format!("{n}.")).ok())
            .map(|target| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(target))))
            .collect();
        Some(self.positive(answers))
    }

    fn positive(&self, answers: Vec<Record>) -> Answer {
        Answer {
            answers,
            ..Answer::default()
        }
    }

    fn nodata(&self) -> Answer {
        Answer {
            authority: vec![self.soa()],
            ..Answer::default()
        }
    }

    fn nxdomain(&self) -> Answer {
        Answer {
            code: ResponseCode::NXDomain,
            authority: vec![self.soa()],
            ..Answer::default()
        }
    }

    fn soa(&self) -> Record {
        let apex = Name::from_str(&format!("{}.", self.domain)).unwrap_or_else(|_| Name::root());
        soa_record(apex, &self.domain)
    }
}

/// The zone's SOA record (as CoreDNS: refresh 7200, retry 1800, expire 86400, minimum = TTL).
fn soa_record(owner: Name, domain: &str) -> Record {
    let mname = Name::from_str(&format!("ns.dns.{domain}.")).unwrap_or_else(|_| Name::root());
    let rname = Name::from_str(&format!("hostmaster.{domain}.")).unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        owner,
        TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)),
    )
}

fn a_record(name: Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name, TTL, RData::A(A(ip)))
}

fn srv_record(name: &Name, weight: u16, port: u16, target: Name) -> Record {
    Record::from_rdata(name.clone(), TTL, RData::SRV(SRV::new(0, weight, port, target)))
}

/// `10-42-0-3` → 10.42.0.3.
fn dashed_ip(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

/// A Service as DNS sees it, with its ready endpoints from `slices` (already the Service's own).
fn dns_service(svc: &Service, slices: &[&EndpointSlice]) -> Option<DnsService> {
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        Kind::ExternalName(spec.external_name.clone()?)
    } else {
        match spec.cluster_ip.as_deref() {
            Some("None") => Kind::Headless,
            Some(ip) => Kind::ClusterIp(ip.parse().ok()?),
            None => return None,
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| NamedPort::new(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
        .collect();
    let mut endpoints: BTreeMap<Ipv4Addr, DnsEndpoint> = BTreeMap::new();
    for slice in slices {
        let slice_ports: Vec<NamedPort> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| NamedPort::new(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for ip in ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                let entry = endpoints.entry(ip).or_insert_with(|| DnsEndpoint {
                    ip,
                    hostname: ep.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
                    ports: BTreeSet::new(),
                });
                entry.ports.extend(slice_ports.iter().cloned());
            }
        }
    }
    Some(DnsService {
        kind,
        ports,
        endpoints: endpoints.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> Zone {
        let services: Vec<Arc<Service>> = [
            json!({"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}, {"port": 81}]}}),
            json!({"metadata": {"name": "db", "namespace": "data"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "ext", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        ]
        .into_iter()
        .map(|v| Arc::new(serde_json::from_value(v).expect("service")))
        .collect();
        let slices: Vec<Arc<EndpointSlice>> = [json!({
            "metadata": {"name": "db-x", "namespace": "data", "labels": {SERVICE_NAME_LABEL: "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.8"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.9"], "conditions": {"ready": false}},
            ],
        })]
        .into_iter()
        .map(|v| Arc::new(serde_json::from_value(v).expect("slice")))
        .collect();
        let reverse = vec![Cidr::parse("10.43.0.0/16").expect("cidr")];
        Zone::build("cluster.local", reverse, &services, &slices)
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Option<Answer> {
        zone.lookup(&Name::from_str(name).expect("name"), qtype)
    }

    /// The answer section as `type data` strings.
    fn data(answer: &Answer) -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    #[test]
    fn services_resolve_to_cluster_ips_and_headless_endpoints() {
        let z = zone();
        let a = ask(&z, "web.default.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(data(&a), ["web.default.svc.cluster.local. A 10.43.0.20"]);
        let a = ask(&z, "WEB.Default.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(a.answers.len(), 1, "names are case-insensitive");

        let a = ask(&z, "db.data.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(
            data(&a),
            [
                "db.data.svc.cluster.local. A 10.42.0.7",
                "db.data.svc.cluster.local. A 10.42.0.8"
            ],
            "ready endpoints only"
        );
        let a = ask(&z, "db-0.db.data.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(data(&a), ["db-0.db.data.svc.cluster.local. A 10.42.0.7"]);
        let a = ask(&z, "10-42-0-8.db.data.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(data(&a), ["10-42-0-8.db.data.svc.cluster.local. A 10.42.0.8"]);

        let a = ask(&z, "ext.default.svc.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(data(&a), ["ext.default.svc.cluster.local. CNAME example.com."]);

        let a = ask(&z, "10-1-2-3.default.pod.cluster.local.", RecordType::A).expect("ours");
        assert_eq!(data(&a), ["10-1-2-3.default.pod.cluster.local. A 10.1.2.3"]);
    }

    #[test]
    fn srv_records_name_ports_and_their_targets() {
        let z = zone();
        let a = ask(&z, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).expect("ours");
        assert_eq!(
            data(&a),
            ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(a.additionals.len(), 1);
        let a = ask(&z, "_pg._tcp.db.data.svc.cluster.local.", RecordType::SRV).expect("ours");
        assert_eq!(
            data(&a),
            [
                "_pg._tcp.db.data.svc.cluster.local. SRV 0 50 5432 db-0.db.data.svc.cluster.local.",
                "_pg._tcp.db.data.svc.cluster.local. SRV 0 50 5432 10-42-0-8.db.data.svc.cluster.local.",
            ]
        );
        assert_eq!(a.additionals.len(), 2);
        let a = ask(&z, "_nope._tcp.web.default.svc.cluster.local.", RecordType::SRV).expect("ours");
        assert_eq!(a.code, ResponseCode::NXDomain);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_existing_ones_nodata() {
        let z = zone();
        for name in [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "web.default.svc.cluster.local.default.svc.cluster.local.",
            "x.web.default.svc.cluster.local.",
            "anything.cluster.local.",
        ] {
            let a = ask(&z, name, RecordType::A).expect("ours");
            assert_eq!(a.code, ResponseCode::NXDomain, "{name}");
            assert_eq!(a.authority.len(), 1, "{name} has the SOA");
        }
        for (name, qtype) in [
            ("web.default.svc.cluster.local.", RecordType::AAAA),
            ("default.svc.cluster.local.", RecordType::A),
            ("svc.cluster.local.", RecordType::A),
            ("cluster.local.", RecordType::A),
        ] {
            let a = ask(&z, name, qtype).expect("ours");
            assert_eq!(a.code, ResponseCode::NoError, "{name}");
            assert!(a.answers.is_empty(), "{name}");
        }
        let a = ask(&z, "cluster.local.", RecordType::SOA).expect("ours");
        assert_eq!(a.answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn reverse_names_of_known_addresses_and_forwarding_of_the_rest() {
        let z = zone();
        let a = ask(&z, "20.0.43.10.in-addr.arpa.", RecordType::PTR).expect("ours");
        assert_eq!(
            data(&a),
            ["20.0.43.10.in-addr.arpa. PTR web.default.svc.cluster.local."]
        );
        let a = ask(&z, "7.0.42.10.in-addr.arpa.", RecordType::PTR).expect("ours");
        assert_eq!(
            data(&a),
            ["7.0.42.10.in-addr.arpa. PTR db-0.db.data.svc.cluster.local."]
        );
        let a = ask(&z, "99.0.43.10.in-addr.arpa.", RecordType::PTR).expect("in the service range");
        assert_eq!(a.code, ResponseCode::NXDomain);
        assert!(ask(&z, "1.2.0.192.in-addr.arpa.", RecordType::PTR).is_none());
        assert!(ask(&z, "example.com.", RecordType::A).is_none());
        assert!(ask(&z, "local.", RecordType::A).is_none());
    }
}
