//! The pod's sandbox on the node: its network namespace and IP, host name, DNS and host ports,
//! its volumes, and their removal when the pod goes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kate_runtime::{DnsConfig, PortMapping, Protocol, Sandbox, SandboxConfig};

use crate::Shared;
use crate::env::{ConfigError, Sources};
use crate::spec::labels;
use crate::volumes::{self, Prepared};

/// The longest host name a pod gets, as upstream truncates it.
const MAX_HOSTNAME: usize = 63;

/// What the runtime needs to create the pod's sandbox.
pub fn config(pod: &Pod, uid: &str) -> SandboxConfig {
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
    let dns = match (spec.dns_policy.as_deref(), spec.dns_config.as_ref()) {
        (Some("None"), Some(c)) => DnsConfig {
            servers: c.nameservers.clone().unwrap_or_default(),
            searches: c.searches.clone().unwrap_or_default(),
            options: c
                .options
                .iter()
                .flatten()
                .map(|o| match &o.value {
                    Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                    None => o.name.clone().unwrap_or_default(),
                })
                .collect(),
        },
        // Without a cluster DNS service, every other policy uses the node's resolver.
        _ => DnsConfig::default(),
    };
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
    shared.runtime.run_sandbox(&config(pod, &uid)).await
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
    let _ = std::fs::remove_dir_all(shared.pod_dir(uid));
    if let Some(pod) = pod {
        let _ = std::fs::remove_dir_all(shared.pod_log_dir(pod));
    }
}
