//! The pod's sandbox on the node: its network namespace and IP, host name, DNS and host ports,
//! its volumes, and their removal when the pod goes.

use std::collections::BTreeMap;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kate_runtime::{DnsConfig, PortMapping, Protocol, Sandbox, SandboxConfig};

use crate::Shared;
use crate::env::{ConfigError, Sources};
use crate::spec::labels;
use crate::volumes::{self, Prepared};

/// The longest host name a pod gets, as upstream truncates it.
const MAX_HOSTNAME: usize = 63;

/// The search domains and options pods of the cluster DNS get, as upstream's kubelet.
const CLUSTER_DOMAIN: &str = "cluster.local";

/// The pod's resolver configuration from its dnsPolicy and dnsConfig: ClusterFirst (and
/// ClusterFirstWithHostNet for host-network pods) use the cluster DNS when there is one,
/// Default and the rest the node's resolv.conf, None only dnsConfig; dnsConfig is merged in.
fn dns_config(spec: &PodSpec, namespace: &str, cluster_dns: Option<IpAddr>) -> DnsConfig {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    let mut dns = match (cluster_first, cluster_dns) {
        (true, Some(ip)) => DnsConfig {
            servers: vec![ip.to_string()],
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            options: vec!["ndots:5".to_string()],
        },
        _ => DnsConfig::default(),
    };
    if let Some(c) = spec.dns_config.as_ref() {
        dns.servers.extend(c.nameservers.iter().flatten().cloned());
        dns.searches.extend(c.searches.iter().flatten().cloned());
        for o in c.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            dns.options
                .retain(|existing| existing.split(':').next() != Some(name.as_str()));
            dns.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns
}

/// What the runtime needs to create the pod's sandbox.
pub fn config(pod: &Pod, uid: &str, cluster_dns: Option<IpAddr>) -> SandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let mut hostname = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.clone());
    if hostname.len() > MAX_HOSTNAME {
        hostname.truncate(MAX_HOSTNAME);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let fqdn = spec
        .subdomain
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{hostname}.{sub}.{namespace}.svc.cluster.local"));
    let dns = dns_config(&spec, &namespace, cluster_dns);
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            })
        })
        .collect();
    SandboxConfig {
        id: uid.to_string(),
        hostname,
        fqdn,
        host_network: spec.host_network.unwrap_or(false),
        dns,
        extra_hosts: spec
            .host_aliases
            .iter()
            .flatten()
            .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
            .collect(),
        port_mappings,
        labels: BTreeMap::from([
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::POD_NAME.to_string(), name),
            (labels::POD_NAMESPACE.to_string(), namespace),
        ]),
        cgroup_parent: format!("pods/pod{uid}"),
    }
}

/// Creates the pod's sandbox (replacing a stale one whose namespaces are gone).
pub async fn create(shared: &Shared, pod: &Pod) -> Result<Sandbox, kate_runtime::Error> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if shared.runtime.sandbox(&uid).is_ok() {
        shared.runtime.remove_sandbox(&uid).await?;
    }
    shared
        .runtime
        .run_sandbox(&config(pod, &uid, shared.config.cluster_dns))
        .await
}

/// Prepares the pod's volumes in its directory.
pub async fn volumes(shared: &Shared, pod: &Pod) -> Result<BTreeMap<String, Prepared>, ConfigError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut sources = Sources::new(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    volumes::prepare(pod, &shared.pod_dir(&uid), &shared.host, &mut sources).await
}

/// Removes everything the pod has on the node: containers, sandbox, volumes and logs.
pub async fn remove_all(shared: &Shared, uid: &str, pod: Option<&Pod>) {
    let runtime = &shared.runtime;
    for c in runtime.list_containers().unwrap_or_default() {
        if c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
            && let Err(e) = runtime.remove_container(&c.id).await
        {
            tracing::warn!(container = %c.id, error = %e, "could not remove a container");
        }
    }
    if let Err(e) = runtime.remove_sandbox(uid).await {
        tracing::warn!(pod = uid, error = %e, "could not remove the pod sandbox");
    }
    volumes::unmount_all(&shared.pod_dir(uid));
    let _ = std::fs::remove_dir_all(shared.pod_dir(uid));
    if let Some(pod) = pod {
        let _ = std::fs::remove_dir_all(shared.pod_log_dir(pod));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cluster_first_pods_use_the_cluster_dns() {
        let dns: Option<IpAddr> = "10.43.0.10".parse().ok();
        let c = dns_config(&spec(json!({"containers": []})), "shop", dns);
        assert_eq!(c.servers, ["10.43.0.10"]);
        assert_eq!(
            c.searches,
            ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(c.options, ["ndots:5"]);
        let host = dns_config(&spec(json!({"containers": [], "hostNetwork": true})), "shop", dns);
        assert!(host.servers.is_empty(), "host-network pods keep the node's resolver");
        let none = dns_config(
            &spec(json!({"containers": [], "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}})),
            "shop",
            dns,
        );
        assert_eq!(none.servers, ["1.1.1.1"]);
        assert_eq!(none.options, ["ndots:2"]);
        let merged = dns_config(
            &spec(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}})),
            "shop",
            dns,
        );
        assert_eq!(merged.options, ["ndots:1"]);
        assert!(
            dns_config(&spec(json!({"containers": []})), "shop", None)
                .servers
                .is_empty()
        );
    }
}
