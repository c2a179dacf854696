//! kate's service proxy and cluster DNS, both API clients on each node.
//!
//! The proxy ([`run`]) watches Services and EndpointSlices and programs one nftables table
//! (`ip` family: IPv4 only) so that cluster IPs, node ports, external IPs and load-balancer IPs
//! of Services lead to their ready endpoints, like upstream kube-proxy in nftables mode; see
//! [`nft`] for the layout. Each sync replaces the table's content in one `nft -f -`
//! transaction, at most every [`Config::min_sync_interval`]. [`cleanup`] removes the table.
//!
//! The DNS server ([`dns`]) answers the `cluster.local` zone from the same objects and forwards
//! other names to the host's resolvers.

pub mod dns;
pub mod model;
pub mod nft;
mod watch;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::nft::{Cidr, Params, Ruleset};

/// Errors of the proxy and the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is malformed.
    #[error("bad configuration: {0}")]
    Config(String),
    /// Running `nft` failed.
    #[error("{0}")]
    Nft(String),
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// A socket could not be bound or used.
    #[error("{0}")]
    Io(String),
    /// The watches of the API stopped.
    #[error("the watches of Services and EndpointSlices stopped")]
    WatchEnded,
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// The nftables table (family `ip`) the proxy owns; see [`table_name`].
    pub table: String,
    /// This node's name, which tells local endpoints apart (traffic policies `Local`).
    pub node_name: String,
    /// The addresses node ports answer on; empty means every local address but loopback.
    /// IPv6 addresses are ignored.
    pub node_ips: Vec<IpAddr>,
    /// The pod network (`--cluster-cidr`): traffic from elsewhere to a cluster IP is masqueraded.
    pub cluster_cidr: String,
    /// The service range; traffic to an unallocated address in it is dropped.
    pub service_cidr: String,
    /// The interface this node's pods send from (the pod bridge); cluster IPs are served to it
    /// and to the host itself. `None` serves them to every interface.
    pub pod_interface: Option<String>,
    /// The `nft` binary.
    pub nft: PathBuf,
    /// Changes are coalesced: syncs are at least this far apart.
    pub min_sync_interval: Duration,
    /// The table is rewritten this often even when nothing changed (repairing outside edits).
    pub resync_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            table: table_name("kate0"),
            node_name: String::new(),
            node_ips: Vec::new(),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: DEFAULT_SERVICE_CIDR.into(),
            pod_interface: None,
            nft: PathBuf::from("nft"),
            min_sync_interval: Duration::from_millis(100),
            resync_interval: Duration::from_secs(60),
        }
    }
}

/// The service range kate's API server allocates cluster IPs from.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// The table of the node whose pods use the bridge `bridge`: `kate-proxy-BRIDGE` (characters
/// nftables names do not allow become `_`), so that nodes (and test clusters) sharing a host
/// keep apart.
pub fn table_name(bridge: &str) -> String {
    let clean: String = bridge
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("kate-proxy-{clean}")
}

/// Removes the proxy's table (for `kate reset`); a missing table is not an error.
pub fn cleanup(table: &str) -> Result<(), Error> {
    let exists = std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::Nft(format!("running nft: {e}")))?;
    if !exists.success() {
        return Ok(());
    }
    let out = std::process::Command::new("nft")
        .args(["delete", "table", "ip", table])
        .output()
        .map_err(|e| Error::Nft(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Nft(format!(
            "deleting table ip {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs the proxy until the watches end (they retry, so in practice until the runtime stops):
/// programs the table once the first lists of Services and EndpointSlices are in, then again
/// after every change.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    let node_ips: Vec<Ipv4Addr> = config
        .node_ips
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut params = Params {
        table: config.table.clone(),
        cluster_cidr: Cidr::parse(&config.cluster_cidr)?,
        service_cidr: Cidr::parse(&config.service_cidr)?,
        pod_interface: config.pod_interface.clone(),
        node_ips,
        masquerade_bridged: false,
    };
    let cache = watch::Cache::start(client);
    cache.ready().await?;
    tracing::info!(table = %config.table, "service proxy: first lists received, programming nftables");
    let mut previous: Option<Ruleset> = None;
    let mut failures = 0u32;
    let mut resync_at = Instant::now() + config.resync_interval;
    loop {
        let started = Instant::now();
        params.masquerade_bridged = params
            .pod_interface
            .as_deref()
            .is_some_and(|bridge| !nft::bridge_calls_netfilter(bridge));
        let ports = desired(&cache, &config.node_name);
        let next = nft::render(&params, &ports);
        let due = started >= resync_at;
        if due || previous.as_ref() != Some(&next) {
            let script = nft::script(&config.table, &next, previous.as_ref());
            match nft::apply(&config.nft, &script).await {
                Ok(()) => {
                    tracing::debug!(table = %config.table, ports = ports.len(), elapsed = ?started.elapsed(), "nftables synced");
                    previous = Some(next);
                    failures = 0;
                    resync_at = Instant::now() + config.resync_interval;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(table = %config.table, error = %e, failures, "nftables sync failed; retrying");
                    // The next attempt replaces the whole table.
                    previous = None;
                    let backoff = (Duration::from_millis(200) * 2u32.saturating_pow(failures.min(6)))
                        .min(Duration::from_secs(10));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = cache.changed.notified() => {}
            _ = tokio::time::sleep_until(resync_at.into()) => {}
            ended = cache.ended() => return ended,
        }
        // Coalesce: let the burst of changes that woke us settle into one sync.
        let since = started.elapsed();
        if since < config.min_sync_interval {
            tokio::time::sleep(config.min_sync_interval - since).await;
        }
    }
}

/// The service ports to program, from the watch caches.
fn desired(cache: &watch::Cache, node_name: &str) -> Vec<model::ServicePort> {
    let mut by_service: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
    for slice in cache.slices.state() {
        if let (Some(ns), Some(svc)) = (slice.namespace(), slice.labels().get(model::SERVICE_NAME_LABEL)) {
            by_service.entry((ns, svc.clone())).or_default().push(slice.clone());
        }
    }
    let none = Vec::new();
    cache
        .services
        .state()
        .iter()
        .flat_map(|svc| {
            let key = (svc.namespace().unwrap_or_default(), svc.name_any());
            let slices = by_service.get(&key).unwrap_or(&none);
            model::service_ports(svc, slices.iter().map(|s| s.as_ref()), node_name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_per_bridge_and_valid() {
        assert_eq!(table_name("kate0"), "kate-proxy-kate0");
        assert_eq!(table_name("br:x y"), "kate-proxy-br_x_y");
    }
}
