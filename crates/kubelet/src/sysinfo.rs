//! What the node is: its resources, addresses and software, read from the host.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pressure::MEMORY_EVICTION_BYTES;

/// Pods a node runs at most, as upstream's default `--max-pods`.
pub const MAX_PODS: u32 = 110;
/// Memory kept back from allocatable, as upstream's default hard eviction threshold.
const EVICTION_MEMORY_KI: u64 = MEMORY_EVICTION_BYTES / 1024;

/// The host facts a Node object reports.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Logical CPUs.
    pub cpus: usize,
    /// Physical memory in KiB.
    pub memory_ki: u64,
    /// Size of the file system holding the data directory, in bytes.
    pub storage_bytes: u64,
    /// The address other nodes reach this one at.
    pub ip: IpAddr,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// PRETTY_NAME from `/etc/os-release`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

impl HostInfo {
    /// Reads the host; what cannot be read is left empty or zero rather than failing.
    pub fn read(data_dir: &Path) -> HostInfo {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let memory_ki = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        HostInfo {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_ki,
            storage_bytes: filesystem_size(data_dir),
            ip: primary_ip(),
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }

    /// The node's capacity: cpu, memory, ephemeral-storage and pods.
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        self.resources(0)
    }

    /// What pods may use: capacity less the memory kept for eviction.
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        self.resources(EVICTION_MEMORY_KI)
    }

    fn resources(&self, reserved_memory_ki: u64) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            (
                "memory".to_string(),
                Quantity(format!("{}Ki", self.memory_ki.saturating_sub(reserved_memory_ki))),
            ),
            (
                "ephemeral-storage".to_string(),
                Quantity(self.storage_bytes.to_string()),
            ),
            ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ])
    }
}

/// The address of the interface that routes off the host (no packet is sent), or loopback: the
/// node's InternalIP.
pub fn primary_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(10, 255, 255, 254), 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The size in bytes of the file system holding `path` (0 if unknown).
fn filesystem_size(path: &Path) -> u64 {
    rustix::fs::statvfs(path)
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        let info = HostInfo::read(Path::new("/"));
        assert!(info.cpus >= 1);
        assert!(info.memory_ki > 0);
        assert!(info.storage_bytes > 0);
        assert!(!info.kernel.is_empty());
        let alloc = info.allocatable();
        assert_eq!(alloc["pods"].0, "110");
        assert!(alloc["memory"].0.ends_with("Ki"));
    }
}
