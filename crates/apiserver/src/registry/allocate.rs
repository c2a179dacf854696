//! Service address allocation: cluster IPs from the service range and node ports from
//! 30000-32767, unique across all services, kept across updates that omit them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::watchcache::Cached;

/// The default service range (as k3s): `10.43.0.0/16`.
pub const DEFAULT_SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The node port range.
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Allocates service addresses.
pub struct ServiceAllocator {
    base: u32,
    size: u32,
}

impl ServiceAllocator {
    /// An allocator over `network/prefix`.
    pub fn new(network: Ipv4Addr, prefix: u8) -> ServiceAllocator {
        let size = 1u32 << (32 - u32::from(prefix.clamp(8, 30)));
        ServiceAllocator {
            base: u32::from(network) & !(size - 1),
            size,
        }
    }

    /// The first usable address, which upstream gives the `kubernetes` service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size - 1
    }

    /// Fills in the cluster IP and node ports of `svc`, keeping those of `old` when the new
    /// spec omits them, and refusing ones another service in `existing` holds.
    pub fn assign(&self, svc: &mut Value, old: Option<&Value>, existing: &[Arc<Cached>]) -> Result<(), Vec<Cause>> {
        let me = svc.pointer("/metadata/uid").cloned();
        let others: Vec<&Arc<Cached>> = existing
            .iter()
            .filter(|s| s.pointer("/metadata/uid") != me.as_ref())
            .collect();
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if ty == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            return Ok(());
        }
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty());
        let wanted = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(String::from);
        let ip = match (wanted, old_ip) {
            (Some(ip), _) => ip,
            (None, Some(old)) => old.to_string(),
            (None, None) => self.next_free(&others).ok_or_else(|| {
                vec![Cause::invalid(
                    "spec.clusterIPs",
                    &json!(""),
                    "failed to allocate IP: range is full",
                )]
            })?,
        };
        if ip != "None" && old_ip != Some(ip.as_str()) {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(ip),
                    "must be a valid IP address",
                )]
            })?;
            if !self.contains(parsed) {
                return Err(vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(ip),
                    "provided IP is not in the valid range",
                )]);
            }
            if others
                .iter()
                .any(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(ip.as_str()))
            {
                return Err(vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(ip),
                    "provided IP is already allocated",
                )]);
            }
        }
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            assign_node_ports(spec, old, &others)?;
        }
        Ok(())
    }

    fn next_free(&self, others: &[&Arc<Cached>]) -> Option<String> {
        let used: HashSet<&str> = others
            .iter()
            .filter_map(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str))
            .collect();
        let span = self.size.saturating_sub(2);
        let start = uuid::Uuid::new_v4().as_u128() as u32 % span.max(1);
        (0..span)
            .map(|i| Ipv4Addr::from(self.base + 1 + (start + i) % span))
            .filter(|ip| *ip != self.first())
            .map(|ip| ip.to_string())
            .find(|ip| !used.contains(ip.as_str()))
    }
}

fn assign_node_ports(
    spec: &mut serde_json::Map<String, Value>,
    old: Option<&Value>,
    others: &[&Arc<Cached>],
) -> Result<(), Vec<Cause>> {
    let mut used: HashSet<i64> = others
        .iter()
        .flat_map(|s| s.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .collect();
    let old_ports = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut causes = Vec::new();
    for (n, port) in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let requested = port.get("nodePort").and_then(Value::as_i64).filter(|p| *p != 0);
        let kept = old_ports
            .iter()
            .find(|o| o.get("port") == port.get("port") && o.get("protocol") == port.get("protocol"))
            .and_then(|o| o.get("nodePort"))
            .and_then(Value::as_i64);
        let chosen = match requested.or(kept) {
            Some(p) if !NODE_PORTS.contains(&p) => {
                causes.push(Cause::invalid(
                    format!("spec.ports[{n}].nodePort"),
                    &json!(p),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
                continue;
            }
            Some(p) if used.contains(&p) && Some(p) != kept => {
                causes.push(Cause::invalid(
                    format!("spec.ports[{n}].nodePort"),
                    &json!(p),
                    "provided port is already allocated",
                ));
                continue;
            }
            Some(p) => p,
            None => {
                let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
                let start = (uuid::Uuid::new_v4().as_u128() % span as u128) as i64;
                match (0..span)
                    .map(|i| NODE_PORTS.start() + (start + i) % span)
                    .find(|p| !used.contains(p))
                {
                    Some(p) => p,
                    None => {
                        causes.push(Cause::invalid(
                            format!("spec.ports[{n}].nodePort"),
                            &json!(0),
                            "range is full",
                        ));
                        continue;
                    }
                }
            }
        };
        used.insert(chosen);
        port["nodePort"] = json!(chosen);
    }
    if causes.is_empty() { Ok(()) } else { Err(causes) }
}

/// Turns allocation causes into the 422 upstream answers.
pub fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("", "Service", name, causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(uid: &str, spec: Value) -> Value {
        json!({"metadata": {"uid": uid}, "spec": spec})
    }

    #[test]
    fn allocates_unique_addresses_and_keeps_them() {
        let alloc = ServiceAllocator::new(DEFAULT_SERVICE_CIDR.0, DEFAULT_SERVICE_CIDR.1);
        let mut a = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        alloc.assign(&mut a, None, &[]).unwrap();
        let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.43."));
        assert_ne!(ip, "10.43.0.1");
        let port = a["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(NODE_PORTS.contains(&port));

        let mut replaced = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        alloc.assign(&mut replaced, Some(&a), &[]).unwrap();
        assert_eq!(replaced["spec"]["clusterIP"], a["spec"]["clusterIP"]);
        assert_eq!(
            replaced["spec"]["ports"][0]["nodePort"],
            a["spec"]["ports"][0]["nodePort"]
        );

        let mut clash = svc("b", json!({"clusterIP": ip, "ports": [{"port": 80}]}));
        let causes = alloc.assign(&mut clash, None, &[Cached::new(a)]).unwrap_err();
        assert!(causes[0].message.contains("already allocated"));
    }

    #[test]
    fn headless_and_external_name() {
        let alloc = ServiceAllocator::new(DEFAULT_SERVICE_CIDR.0, DEFAULT_SERVICE_CIDR.1);
        let mut headless = svc("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        alloc.assign(&mut headless, None, &[]).unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut ext = svc(
            "e",
            json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": ""}),
        );
        alloc.assign(&mut ext, None, &[]).unwrap();
        assert!(ext["spec"].get("clusterIP").is_none());
    }
}
