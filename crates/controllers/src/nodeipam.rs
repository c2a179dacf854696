//! The node IPAM controller: gives every node a pod CIDR (`spec.podCIDR`) out of the cluster's
//! pod network, one /24 each by default, which the node's CNI bridge then hands addresses from.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::{Context, Error};

/// An IPv4 network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cidr, Error> {
        let invalid = || Error::Invalid(format!("{s:?} is not an IPv4 CIDR such as 10.42.0.0/16"));
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

/// Hands out node subnets of one size from the cluster network.
#[derive(Debug)]
struct Allocator {
    cluster: Cidr,
    node_prefix: u8,
    used: BTreeSet<u32>,
}

impl Allocator {
    fn new(cluster: Cidr, node_prefix: u8) -> Allocator {
        Allocator {
            cluster,
            node_prefix: node_prefix.max(cluster.prefix),
            used: BTreeSet::new(),
        }
    }

    /// Records a subnet a node already has (if it lies in the cluster network).
    fn note(&mut self, cidr: &str) {
        if let Ok(c) = cidr.parse::<Cidr>()
            && c.prefix == self.node_prefix
            && u32::from(c.addr) & mask(self.cluster.prefix) == u32::from(self.cluster.addr)
        {
            self.used.insert(u32::from(c.addr));
        }
    }

    /// Returns a subnet that was not written after all.
    fn release(&mut self, cidr: Cidr) {
        self.used.remove(&u32::from(cidr.addr));
    }

    /// The first free subnet, now marked used.
    fn allocate(&mut self) -> Option<Cidr> {
        let count = 1u64 << (self.node_prefix - self.cluster.prefix);
        let step = 1u64 << (32 - self.node_prefix);
        let base = u64::from(u32::from(self.cluster.addr));
        (0..count)
            .map(|i| (base + i * step) as u32)
            .find(|a| !self.used.contains(a))
            .inspect(|a| {
                self.used.insert(*a);
            })
            .map(|a| Cidr {
                addr: Ipv4Addr::from(a),
                prefix: self.node_prefix,
            })
    }
}

/// Runs the controller until the process stops: one task, so two nodes never get one subnet.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let cluster: Cidr = ctx.config.cluster_cidr.parse()?;
    let mut allocator = Allocator::new(cluster, ctx.config.node_cidr_prefix);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let stream = watcher(nodes.clone(), watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Until the initial list is complete the subnets in use are not all known, so nodes without
    // one wait for it.
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    let mut initialized = false;
    // Nodes given a subnet whose watch event with it has not arrived yet.
    let mut assigned: BTreeSet<String> = BTreeSet::new();
    while let Some(event) = stream.next().await {
        let node = match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => node,
            Ok(watcher::Event::Init) => {
                initialized = false;
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                initialized = true;
                for name in std::mem::take(&mut waiting) {
                    if assign(&nodes, &mut allocator, &name).await {
                        assigned.insert(name);
                    }
                }
                continue;
            }
            Ok(watcher::Event::Delete(_)) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "node watch failed; retrying");
                continue;
            }
        };
        let spec = node.spec.as_ref();
        let cidrs = spec
            .and_then(|s| s.pod_cidrs.clone())
            .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
            .unwrap_or_default();
        if !cidrs.is_empty() {
            assigned.remove(&node.name_any());
            cidrs.iter().for_each(|c| allocator.note(c));
        } else if assigned.contains(&node.name_any()) {
            // Assigned already; this event predates the write.
        } else if initialized {
            if assign(&nodes, &mut allocator, &node.name_any()).await {
                assigned.insert(node.name_any());
            }
        } else {
            waiting.insert(node.name_any());
        }
    }
    Ok(())
}

/// Gives the node a subnet; true when it was written.
async fn assign(nodes: &Api<Node>, allocator: &mut Allocator, name: &str) -> bool {
    let Some(cidr) = allocator.allocate() else {
        tracing::warn!(node = name, cluster = %allocator.cluster, "no pod CIDR left for the node");
        return false;
    };
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    match nodes.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => {
            tracing::info!(node = name, %cidr, "assigned the node's pod CIDR");
            true
        }
        Err(e) => {
            allocator.release(cidr);
            tracing::warn!(node = name, error = %e, "could not assign the node's pod CIDR");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_free_subnets_in_order() {
        let mut a = Allocator::new("10.42.0.0/16".parse().unwrap(), 24);
        a.note("10.42.0.0/24");
        a.note("10.64.0.0/24");
        a.note("10.42.2.0/24");
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.1.0/24");
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.3.0/24");
    }

    #[test]
    fn a_full_network_has_nothing_left() {
        let mut a = Allocator::new("10.42.0.0/23".parse().unwrap(), 24);
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_none());
    }

    #[test]
    fn cidrs_parse_and_normalize() {
        let c: Cidr = "10.42.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense/8".parse::<Cidr>().is_err());
    }
}
