//! The service proxy and the cluster DNS of this machine's node, run inside `kate server`.
//!
//! Both are API clients like the kubelet. The proxy programs the nftables table of the node's
//! pod bridge (`kate-proxy-BRIDGE`); the DNS server listens on the node's address, port 53 when
//! that is free (else a free port, published as the target port), and is published as the
//! `kube-system/kube-dns` Service with cluster IP 10.43.0.10.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// How long to wait for the kubelet to report the node's addresses before guessing them.
const NODE_ADDRESS_PATIENCE: Duration = Duration::from_secs(30);

/// Starts the proxy (and, with `dns`, the cluster DNS server: one per cluster, on the server's
/// node) on the runtime's tasks; programming nftables needs root, so without root both are
/// skipped with a notice.
pub fn start(client: kube::Client, agent: &crate::agent::AgentArgs, cluster_cidr: &str, dns: bool) {
    if !crate::is_root() {
        eprintln!("kate: not running as root, so this machine runs no service proxy or cluster DNS");
        return;
    }
    let node_name = agent.node_name();
    let bridge = agent.pod_bridge().to_string();
    let cluster_cidr = cluster_cidr.to_string();
    tokio::spawn(async move {
        let node_ip = node_address(&client, &node_name).await;
        if dns {
            tokio::spawn(cluster_dns(
                client.clone(),
                node_ip,
                node_name.clone(),
                cluster_cidr.clone(),
            ));
        }
        let config = kate_proxy::Config {
            table: kate_proxy::table_name(&bridge),
            node_name,
            node_ips: vec![node_ip],
            cluster_cidr,
            pod_interface: Some(bridge),
            ..Default::default()
        };
        if let Err(e) = kate_proxy::run(client, config).await {
            tracing::error!(error = %e, "the service proxy stopped");
            eprintln!("kate: the service proxy stopped: {e}");
        }
    });
}

/// Removes the proxy's nftables table on a clean stop (the node's containers keep running, as
/// they do across restarts; Service addresses stop working until kate is back).
pub fn stop(agent: &crate::agent::AgentArgs) {
    if !crate::is_root() {
        return;
    }
    if let Err(e) = kate_proxy::cleanup(&kate_proxy::table_name(agent.pod_bridge())) {
        eprintln!("kate: could not remove the service proxy's nftables table: {e}");
    }
}

/// Serves cluster DNS on the node's address and publishes it as `kube-system/kube-dns`.
async fn cluster_dns(client: kube::Client, node_ip: IpAddr, node_name: String, cluster_cidr: String) {
    let server = match kate_proxy::dns::DnsServer::bind(node_ip, 53).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "cluster DNS cannot listen");
            eprintln!("kate: cluster DNS cannot listen: {e}");
            return;
        }
    };
    let addr = server.local_addr();
    if addr.port() != 53 {
        eprintln!("kate: port 53 on {node_ip} is taken, so cluster DNS listens on {addr}");
    }
    let service_ip = kate_proxy::dns::DEFAULT_SERVICE_IP;
    let exclude: Vec<IpAddr> = [Some(node_ip), service_ip.parse().ok()].into_iter().flatten().collect();
    let config = kate_proxy::dns::Config {
        upstreams: kate_proxy::dns::forward::resolv_conf_nameservers(Path::new("/etc/resolv.conf"), &exclude),
        reverse_cidrs: vec![kate_proxy::DEFAULT_SERVICE_CIDR.into(), cluster_cidr],
        ..Default::default()
    };
    tokio::spawn(publish(client.clone(), addr, node_name));
    if let Err(e) = server.run(client, config).await {
        tracing::error!(error = %e, "cluster DNS stopped");
        eprintln!("kate: cluster DNS stopped: {e}");
    }
}

/// Publishes the DNS Service, retrying with backoff until it succeeds.
async fn publish(client: kube::Client, addr: SocketAddr, node_name: String) {
    let mut delay = Duration::from_millis(200);
    loop {
        match kate_proxy::dns::publish(client.clone(), kate_proxy::dns::DEFAULT_SERVICE_IP, addr, &node_name).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, ?delay, "publishing kube-system/kube-dns failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The node's first IPv4 InternalIP as its kubelet reports it, else (after a while) the address
/// of the interface that routes off the host.
async fn node_address(client: &kube::Client, node_name: &str) -> IpAddr {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + NODE_ADDRESS_PATIENCE;
    while Instant::now() < deadline {
        if let Ok(Some(node)) = nodes.get_opt(node_name).await {
            let found = node
                .status
                .and_then(|s| s.addresses)
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok());
            if let Some(ip) = found {
                return IpAddr::V4(ip);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(
        node = node_name,
        "the node reports no InternalIP; using the host's primary address"
    );
    kate_kubelet::sysinfo::primary_ip()
}
