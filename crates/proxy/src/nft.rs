//! The nftables ruleset of the proxy, as text for `nft -f -`, and its application.
//!
//! The layout follows the behaviour of upstream kube-proxy's nftables mode, in one `ip` table
//! per node (so that several clusters on one host keep apart):
//!
//! - verdict maps keyed by `address . protocol . port` (cluster IPs, external IPs) or
//!   `protocol . port` (node ports) send a new connection to the chain of its service port;
//! - `svc-ID` (cluster IP traffic) marks traffic from outside the pod network for masquerading
//!   and goes on to `cluster-ID` (all endpoints) or `local-ID` (this node's endpoints, for
//!   `internalTrafficPolicy: Local`); `ext-ID` (node ports, external and load-balancer IPs) does
//!   the same for the external traffic policy;
//! - `cluster-ID` and `local-ID` pick an endpoint with `numgen random` (after the client's
//!   remembered endpoint under `sessionAffinity: ClientIP`), and `ep-ID/IP/PORT` DNATs to it,
//!   marking hairpin traffic (a pod reaching itself) for masquerading;
//! - filter chains reject new connections to service ports without endpoints before any DNAT,
//!   reject traffic to a cluster IP on a port it does not serve, and drop traffic to the rest of
//!   the service range, so that nothing addressed to a service leaves the host;
//! - the postrouting chain masquerades marked connections and, where the bridge does not pass
//!   its traffic through netfilter (no `br_netfilter`), connections from pods that were DNATed
//!   back onto the pod bridge (their replies would otherwise bypass the host's conntrack).
//!
//! Cluster IPs are served for this host's own traffic (the `output` hook) and for traffic
//! entering from the pod interface; traffic arriving on other interfaces reaches node ports and
//! external IPs only. Node ports on 127.0.0.1 are not served (as upstream's nftables mode).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::Error;
use crate::model::{Endpoint, ServicePort};

/// The mark bit that asks the postrouting chain to masquerade a connection.
const MASQUERADE_MARK: &str = "0x4000";

/// The verdict maps of the table (flushed and refilled by every sync).
const MAPS: [&str; 5] = [
    "service-ips",
    "external-ips",
    "service-nodeports",
    "no-endpoint-services",
    "no-endpoint-nodeports",
];
/// The address sets of the table (flushed and refilled by every sync).
const SETS: [&str; 2] = ["cluster-ips", "nodeport-ips"];

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (the address is masked to the prefix).
    pub fn parse(s: &str) -> Result<Cidr, Error> {
        let bad = || Error::Config(format!("{s:?} is not an IPv4 CIDR"));
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the ruleset depends on besides the services.
#[derive(Debug, Clone)]
pub struct Params {
    /// The table's name.
    pub table: String,
    /// The pod network: traffic from elsewhere to a cluster IP is masqueraded.
    pub cluster_cidr: Cidr,
    /// The service range: traffic to an unallocated address in it is dropped.
    pub service_cidr: Cidr,
    /// The interface pods send from (the bridge); `None` serves cluster IPs to every interface.
    pub pod_interface: Option<String>,
    /// The addresses node ports answer on; empty means every local address but 127.0.0.0/8.
    pub node_ips: Vec<Ipv4Addr>,
    /// Whether to masquerade pod traffic DNATed back onto the pod interface (needed when the
    /// bridge's own traffic bypasses netfilter).
    pub masquerade_bridged: bool,
}

/// A rendered ruleset: the table's declaration and the names of what it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// `table ip NAME { ... }`.
    pub body: String,
    /// The regular (non-base) chains, by name.
    pub chains: BTreeSet<String>,
    /// The session-affinity sets, by name, with their declaration (a changed one is recreated).
    pub affinity_sets: BTreeMap<String, String>,
}

/// A chain being written.
struct Chain {
    name: String,
    base: Option<String>,
    rules: Vec<String>,
}

impl Chain {
    fn new(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            rules: Vec::new(),
        }
    }

    fn base(name: &str, spec: &str) -> Chain {
        Chain {
            name: name.into(),
            base: Some(spec.into()),
            rules: Vec::new(),
        }
    }

    fn rule(&mut self, rule: impl Into<String>) -> &mut Chain {
        self.rules.push(rule.into());
        self
    }
}

/// The elements of the verdict maps, collected while the service chains are written.
#[derive(Default)]
struct Maps {
    service_ips: Vec<String>,
    external_ips: Vec<String>,
    nodeports: Vec<String>,
    no_endpoint_services: Vec<String>,
    no_endpoint_nodeports: Vec<String>,
    cluster_ips: BTreeSet<Ipv4Addr>,
}

/// Renders the table for `services` (in any order; the output is sorted and so stable).
pub fn render(params: &Params, services: &[ServicePort]) -> Ruleset {
    let mut services: Vec<&ServicePort> = services.iter().collect();
    services.sort_by_key(|s| s.id());
    let mut maps = Maps::default();
    let mut chains: Vec<Chain> = Vec::new();
    let mut affinity_sets = BTreeMap::new();
    for sp in &services {
        service_chains(params, sp, &mut maps, &mut chains, &mut affinity_sets);
    }
    let mut out = String::new();
    let _ = writeln!(out, "table ip {} {{", params.table);
    let _ = writeln!(out, "\tcomment \"kate service proxy\"");
    let verdict_map = |out: &mut String, name: &str, key: &str, elements: &[String]| {
        let _ = writeln!(out, "\tmap {name} {{");
        let _ = writeln!(out, "\t\ttype {key} : verdict");
        if !elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        let _ = writeln!(out, "\t}}");
    };
    let addr_key = "ipv4_addr . inet_proto . inet_service";
    let port_key = "inet_proto . inet_service";
    verdict_map(&mut out, "service-ips", addr_key, &maps.service_ips);
    verdict_map(&mut out, "external-ips", addr_key, &maps.external_ips);
    verdict_map(&mut out, "service-nodeports", port_key, &maps.nodeports);
    verdict_map(&mut out, "no-endpoint-services", addr_key, &maps.no_endpoint_services);
    verdict_map(&mut out, "no-endpoint-nodeports", port_key, &maps.no_endpoint_nodeports);
    let addr_set = |out: &mut String, name: &str, elements: Vec<String>| {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype ipv4_addr");
        if !elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        let _ = writeln!(out, "\t}}");
    };
    addr_set(
        &mut out,
        "cluster-ips",
        maps.cluster_ips.iter().map(Ipv4Addr::to_string).collect(),
    );
    let mut node_ips = params.node_ips.clone();
    node_ips.sort();
    node_ips.dedup();
    addr_set(
        &mut out,
        "nodeport-ips",
        node_ips.iter().map(Ipv4Addr::to_string).collect(),
    );
    for decl in affinity_sets.values() {
        out.push_str(decl);
    }

    let mut fixed = fixed_chains(params);
    fixed.append(&mut chains);
    let mut names = BTreeSet::new();
    for chain in &fixed {
        if chain.base.is_none() {
            names.insert(chain.name.clone());
        }
        let _ = writeln!(out, "\tchain {} {{", chain.name);
        if let Some(base) = &chain.base {
            let _ = writeln!(out, "\t\t{base}");
        }
        for rule in &chain.rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        let _ = writeln!(out, "\t}}");
    }
    out.push_str("}\n");
    Ruleset {
        body: out,
        chains: names,
        affinity_sets,
    }
}

/// The chains every table has: the hooks and the shared helpers.
fn fixed_chains(params: &Params) -> Vec<Chain> {
    let cidr = params.cluster_cidr;
    let nodeport_match = if params.node_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    let mut v = Vec::new();

    let mut c = Chain::base(
        "nat-prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    );
    match &params.pod_interface {
        Some(pods) => {
            c.rule(format!("iifname \"{pods}\" jump services"));
            c.rule(format!("iifname != \"{pods}\" jump external-services"));
        }
        None => {
            c.rule("jump services");
        }
    }
    v.push(c);
    let mut c = Chain::base("nat-output", "type nat hook output priority -100; policy accept;");
    c.rule("jump services");
    v.push(c);
    let mut c = Chain::base(
        "nat-postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    );
    c.rule("jump masquerading");
    if let (true, Some(pods)) = (params.masquerade_bridged, &params.pod_interface) {
        c.rule(format!(
            "oifname \"{pods}\" ip saddr {cidr} ct status dnat masquerade fully-random"
        ));
    }
    v.push(c);
    let mut c = Chain::base("filter-input", "type filter hook input priority -110; policy accept;");
    c.rule("ct state new jump endpoints-check");
    v.push(c);
    let mut c = Chain::base(
        "filter-forward",
        "type filter hook forward priority -110; policy accept;",
    );
    c.rule("ct state new jump endpoints-check");
    c.rule("ct state new jump cluster-ips-check");
    v.push(c);
    let mut c = Chain::base("filter-output", "type filter hook output priority -110; policy accept;");
    c.rule("ct state new jump endpoints-check");
    v.push(c);
    let mut c = Chain::base(
        "filter-output-post-dnat",
        "type filter hook output priority -90; policy accept;",
    );
    c.rule("ct state new jump cluster-ips-check");
    v.push(c);

    let mut c = Chain::new("services");
    c.rule("ip daddr . meta l4proto . th dport vmap @service-ips");
    c.rule("ip daddr . meta l4proto . th dport vmap @external-ips");
    c.rule(format!(
        "{nodeport_match} meta l4proto . th dport vmap @service-nodeports"
    ));
    v.push(c);
    let mut c = Chain::new("external-services");
    c.rule("ip daddr . meta l4proto . th dport vmap @external-ips");
    c.rule(format!(
        "{nodeport_match} meta l4proto . th dport vmap @service-nodeports"
    ));
    v.push(c);
    let mut c = Chain::new("endpoints-check");
    c.rule("ip daddr . meta l4proto . th dport vmap @no-endpoint-services");
    c.rule(format!(
        "{nodeport_match} meta l4proto . th dport vmap @no-endpoint-nodeports"
    ));
    v.push(c);
    let mut c = Chain::new("cluster-ips-check");
    c.rule("ip daddr @cluster-ips reject comment \"a port this cluster IP does not serve\"");
    c.rule(format!(
        "ip daddr {} drop comment \"an unallocated cluster IP\"",
        params.service_cidr
    ));
    v.push(c);
    let mut c = Chain::new("reject-chain");
    c.rule("reject comment \"no endpoints\"");
    v.push(c);
    let mut c = Chain::new("mark-for-masquerade");
    c.rule(format!("meta mark set meta mark | {MASQUERADE_MARK}"));
    v.push(c);
    let mut c = Chain::new("masquerading");
    c.rule(format!("meta mark & {MASQUERADE_MARK} == 0 return"));
    c.rule(format!("meta mark set meta mark ^ {MASQUERADE_MARK}"));
    c.rule("masquerade fully-random");
    v.push(c);
    v
}

/// The chain of one endpoint of a service port.
fn endpoint_chain(id: &str, ep: &Endpoint) -> String {
    format!("ep-{id}/{}/{}", ep.ip, ep.port)
}

/// The session-affinity set of one endpoint of a service port.
fn affinity_set(id: &str, ep: &Endpoint) -> String {
    format!("aff-{id}/{}/{}", ep.ip, ep.port)
}

/// Writes the chains of one service port and adds its map elements.
fn service_chains(
    params: &Params,
    sp: &ServicePort,
    maps: &mut Maps,
    chains: &mut Vec<Chain>,
    affinity_sets: &mut BTreeMap<String, String>,
) {
    let id = sp.id();
    let proto = sp.protocol.nft();
    maps.cluster_ips.insert(sp.cluster_ip);
    if sp.endpoints.is_empty() {
        let reject = "goto reject-chain";
        maps.no_endpoint_services
            .push(format!("{} . {proto} . {} : {reject}", sp.cluster_ip, sp.port));
        for ip in &sp.external_ips {
            maps.no_endpoint_services
                .push(format!("{ip} . {proto} . {} : {reject}", sp.port));
        }
        if let Some(np) = sp.node_port {
            maps.no_endpoint_nodeports.push(format!("{proto} . {np} : {reject}"));
        }
        return;
    }
    let cluster = format!("cluster-{id}");
    let local = format!("local-{id}");
    let external = sp.node_port.is_some() || !sp.external_ips.is_empty();

    maps.service_ips
        .push(format!("{} . {proto} . {} : goto svc-{id}", sp.cluster_ip, sp.port));
    let mut svc = Chain::new(format!("svc-{id}"));
    // Traffic from this host keeps its source: the pod answers through its gateway, this host,
    // where the DNAT is undone; masquerading every host connection made NAT search for free
    // ports among conntrack's closed connections and cost 40% of the throughput. Loopback
    // sources cannot leave the host, so they are masqueraded.
    svc.rule(format!(
        "ip saddr != {} fib saddr type != local jump mark-for-masquerade",
        params.cluster_cidr
    ));
    svc.rule("ip saddr 127.0.0.0/8 jump mark-for-masquerade");
    svc.rule(format!("goto {}", if sp.internal_local { &local } else { &cluster }));
    chains.push(svc);

    if external {
        let mut ext = Chain::new(format!("ext-{id}"));
        if sp.external_local {
            ext.rule(format!("ip saddr {} goto {cluster}", params.cluster_cidr));
            ext.rule("fib saddr type local jump mark-for-masquerade");
            ext.rule(format!("fib saddr type local goto {cluster}"));
            ext.rule(format!("goto {local}"));
        } else {
            ext.rule("jump mark-for-masquerade");
            ext.rule(format!("goto {cluster}"));
        }
        chains.push(ext);
        for ip in &sp.external_ips {
            maps.external_ips
                .push(format!("{ip} . {proto} . {} : goto ext-{id}", sp.port));
        }
        if let Some(np) = sp.node_port {
            maps.nodeports.push(format!("{proto} . {np} : goto ext-{id}"));
        }
    }

    let all: Vec<&Endpoint> = sp.endpoints.iter().collect();
    let mut c = Chain::new(cluster);
    balance(&mut c, &id, &all, sp.affinity_timeout.is_some());
    chains.push(c);
    if sp.internal_local || (external && sp.external_local) {
        let mine: Vec<&Endpoint> = sp.local_endpoints().collect();
        let mut c = Chain::new(local);
        if mine.is_empty() {
            c.rule("drop comment \"no local endpoints\"");
        } else {
            balance(&mut c, &id, &mine, sp.affinity_timeout.is_some());
        }
        chains.push(c);
    }

    for ep in &sp.endpoints {
        let mut c = Chain::new(endpoint_chain(&id, ep));
        c.rule(format!("ip saddr {} jump mark-for-masquerade", ep.ip));
        if let Some(timeout) = sp.affinity_timeout {
            let set = affinity_set(&id, ep);
            c.rule(format!("update @{set} {{ ip saddr }}"));
            affinity_sets.insert(
                set.clone(),
                format!(
                    "\tset {set} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}\n"
                ),
            );
        }
        c.rule(format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port));
        chains.push(c);
    }
}

/// Load-balancing rules over `endpoints`: a client's remembered endpoint first (under session
/// affinity), then a random one.
fn balance(chain: &mut Chain, id: &str, endpoints: &[&Endpoint], affinity: bool) {
    if affinity {
        for ep in endpoints {
            chain.rule(format!(
                "ip saddr @{} goto {}",
                affinity_set(id, ep),
                endpoint_chain(id, ep)
            ));
        }
    }
    match endpoints {
        [one] => {
            chain.rule(format!("goto {}", endpoint_chain(id, one)));
        }
        _ => {
            let arms: Vec<String> = endpoints
                .iter()
                .enumerate()
                .map(|(n, ep)| format!("{n} : goto {}", endpoint_chain(id, ep)))
                .collect();
            chain.rule(format!(
                "numgen random mod {} vmap {{ {} }}",
                endpoints.len(),
                arms.join(", ")
            ));
        }
    }
}

/// The `nft -f` script that installs `next`: replacing the whole table when `previous` is
/// unknown, else flushing its rules and maps in place, which keeps the session-affinity sets
/// (and so the clients' endpoints) that did not change. Either way it is one transaction.
pub fn script(table: &str, next: &Ruleset, previous: Option<&Ruleset>) -> String {
    let mut out = String::new();
    match previous {
        None => {
            let _ = writeln!(out, "table ip {table}");
            let _ = writeln!(out, "delete table ip {table}");
        }
        Some(prev) => {
            let _ = writeln!(out, "flush table ip {table}");
            for map in MAPS {
                let _ = writeln!(out, "flush map ip {table} {map}");
            }
            for set in SETS {
                let _ = writeln!(out, "flush set ip {table} {set}");
            }
            for (set, decl) in &prev.affinity_sets {
                if next.affinity_sets.get(set) != Some(decl) {
                    let _ = writeln!(out, "delete set ip {table} {set}");
                }
            }
            for chain in prev.chains.difference(&next.chains) {
                let _ = writeln!(out, "delete chain ip {table} {chain}");
            }
        }
    }
    out.push_str(&next.body);
    out
}

/// Runs `nft -f -` with `script` on its standard input.
pub async fn apply(nft: &Path, script: &str) -> Result<(), Error> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Nft(format!("starting {}: {e}", nft.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| Error::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Nft(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether IPv4 traffic bridged between the ports of `bridge` passes through netfilter
/// (`br_netfilter` loaded with `bridge-nf-call-iptables`, globally or for this bridge).
pub fn bridge_calls_netfilter(bridge: &str) -> bool {
    let on = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
    // The sysctl exists only while br_netfilter is loaded; the bridge's own switch needs it too.
    let global = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    Path::new(global).exists() && (on(global) || on(&format!("/sys/class/net/{bridge}/bridge/nf_call_iptables")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn params() -> Params {
        Params {
            table: "kate-proxy-test".into(),
            cluster_cidr: Cidr::parse("10.42.0.0/16").expect("cidr"),
            service_cidr: Cidr::parse("10.43.0.0/16").expect("cidr"),
            pod_interface: Some("kate0".into()),
            node_ips: vec![],
            masquerade_bridged: false,
        }
    }

    fn port(name: &str, port_name: &str, cluster_ip: [u8; 4], endpoints: &[([u8; 4], u16, bool)]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: port_name.into(),
            protocol: Protocol::Tcp,
            port: 80,
            cluster_ip: cluster_ip.into(),
            external_ips: vec![],
            node_port: None,
            affinity_timeout: None,
            external_local: false,
            internal_local: false,
            endpoints: endpoints
                .iter()
                .map(|(ip, port, local)| Endpoint {
                    ip: (*ip).into(),
                    port: *port,
                    local: *local,
                })
                .collect(),
        }
    }

    /// Three services: one with two endpoints and a node port, one without endpoints, and a
    /// load balancer with an external IP, session affinity and `externalTrafficPolicy: Local`.
    fn services() -> Vec<ServicePort> {
        let mut web = port(
            "web",
            "http",
            [10, 43, 0, 20],
            &[([10, 42, 0, 3], 8080, true), ([10, 42, 0, 4], 8080, true)],
        );
        web.node_port = Some(30080);
        let empty = port("empty", "", [10, 43, 0, 21], &[]);
        let mut lb = port(
            "lb",
            "",
            [10, 43, 0, 22],
            &[([10, 42, 0, 5], 80, true), ([10, 42, 1, 6], 80, false)],
        );
        lb.external_ips = vec![[192, 0, 2, 50].into()];
        lb.node_port = Some(31000);
        lb.external_local = true;
        lb.affinity_timeout = Some(600);
        vec![web, empty, lb]
    }

    /// Compares `text` with the golden file `name` (rewritten when `KATE_UPDATE_GOLDEN` is set).
    fn golden(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        if std::env::var_os("KATE_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, text).expect("writing the golden file");
        }
        let want = std::fs::read_to_string(&path).expect("reading the golden file");
        assert_eq!(
            text,
            want,
            "{} differs (KATE_UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }

    #[test]
    fn the_ruleset_matches_the_golden_text() {
        let r = render(&params(), &services());
        golden("ruleset.nft", &r.body);
        assert!(r.chains.contains("ep-default/web/tcp/http/10.42.0.3/8080"));
        assert!(
            !r.chains.contains("nat-prerouting"),
            "base chains are never deleted alone"
        );
        assert_eq!(r.affinity_sets.len(), 2);

        let mut p = params();
        p.masquerade_bridged = true;
        p.node_ips = vec![[192, 0, 2, 2].into()];
        let r = render(&p, &[]);
        golden("ruleset-empty.nft", &r.body);
    }

    #[test]
    fn the_output_is_independent_of_input_order() {
        let mut reversed = services();
        reversed.reverse();
        assert_eq!(render(&params(), &services()), render(&params(), &reversed));
    }

    #[test]
    fn updates_flush_in_place_and_delete_what_went() {
        let before = render(&params(), &services());
        let full = script("kate-proxy-test", &before, None);
        assert!(full.starts_with("table ip kate-proxy-test\ndelete table ip kate-proxy-test\ntable ip"));

        let mut after_services = services();
        after_services[0].endpoints.pop();
        after_services[2].affinity_timeout = Some(60);
        let after = render(&params(), &after_services);
        let update = script("kate-proxy-test", &after, Some(&before));
        let head: Vec<&str> = update.lines().take_while(|l| !l.starts_with("table")).collect();
        assert_eq!(
            head,
            [
                "flush table ip kate-proxy-test",
                "flush map ip kate-proxy-test service-ips",
                "flush map ip kate-proxy-test external-ips",
                "flush map ip kate-proxy-test service-nodeports",
                "flush map ip kate-proxy-test no-endpoint-services",
                "flush map ip kate-proxy-test no-endpoint-nodeports",
                "flush set ip kate-proxy-test cluster-ips",
                "flush set ip kate-proxy-test nodeport-ips",
                "delete set ip kate-proxy-test aff-default/lb/tcp/80/10.42.0.5/80",
                "delete set ip kate-proxy-test aff-default/lb/tcp/80/10.42.1.6/80",
                "delete chain ip kate-proxy-test ep-default/web/tcp/http/10.42.0.4/8080",
            ]
        );
    }

    /// Loads the full script and then the update into nftables in a private network namespace
    /// (as root with `nft` and `unshare`; skipped elsewhere).
    #[test]
    fn the_scripts_load_into_nftables() {
        let have = |bin: &str| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        if !root || !have("nft") || !have("unshare") {
            eprintln!("skipped: needs root, nft and unshare");
            return;
        }
        let before = render(&params(), &services());
        let mut changed = services();
        changed[0].endpoints.pop();
        changed[1].endpoints.push(Endpoint {
            ip: [10, 42, 0, 9].into(),
            port: 80,
            local: true,
        });
        let after = render(&params(), &changed);
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full.nft");
        let update = dir.path().join("update.nft");
        std::fs::write(&full, script("kate-proxy-test", &before, None)).expect("write");
        std::fs::write(&update, script("kate-proxy-test", &after, Some(&before))).expect("write");
        let out = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c"])
            .arg(format!(
                "nft -f {full} && nft -f {full} \
                 && nft add element ip kate-proxy-test aff-default/lb/tcp/80/10.42.0.5/80 '{{ 10.42.0.77 }}' \
                 && nft -f {update} && nft list table ip kate-proxy-test",
                full = full.display(),
                update = update.display()
            ))
            .output()
            .expect("running unshare");
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(listed.contains("dnat to 10.42.0.9:80"), "{listed}");
        assert!(!listed.contains("10.42.0.4:8080"), "{listed}");
        assert!(
            listed.contains("10.42.0.77"),
            "the client's affinity survived the update: {listed}"
        );
    }
}
