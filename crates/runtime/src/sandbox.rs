//! Pod sandboxes: the namespaces and files a pod's containers share.
//!
//! ```text
//! ROOT/sandboxes/ID/sandbox.json    the Sandbox record (written first, updated with the IP)
//! ROOT/sandboxes/ID/network.json    the CNI result, passed back to the plugins on deletion
//! ROOT/sandboxes/ID/ns/{ipc,uts}    pinned IPC and UTS namespaces (see namespace.rs)
//! ROOT/sandboxes/ID/shm/            a tmpfs mounted as every container's /dev/shm
//! ROOT/sandboxes/ID/{hostname,hosts,resolv.conf}   bind-mounted into every container's /etc
//! NETNS_DIR/kate-ID                 the pinned network namespace (like `ip netns add`)
//! ```
//!
//! With `host_network` the pod uses the host's network and UTS namespaces: no network namespace,
//! no CNI, and the host's /etc/hosts and host name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use jiff::Timestamp;
use rustix::mount::{MountFlags, mount};
use serde::{Deserialize, Serialize};

use crate::cgroup;
use crate::cni::Attachment;
use crate::error::{Error, IoContext, Result};
use crate::namespace::{self, NewNamespaces};
use crate::rootfs::unmount;
use crate::runtime::Runtime;
use crate::state::{read_json, remove_dir_all, validate_id, write_atomic, write_json_atomic};

/// What the pod sandbox should be: the kubelet's translation of a pod's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The sandbox ID, unique on the node (letters, digits, `_-.+`).
    pub id: String,
    /// The pod's host name (its UTS namespace's, and in /etc/hostname and /etc/hosts).
    pub hostname: String,
    /// The pod's fully qualified name (`hostname.subdomain.namespace.svc.cluster.local`), listed
    /// with the host name for the pod IP in /etc/hosts when set.
    pub fqdn: Option<String>,
    /// Use the host's network (and UTS) namespace instead of a network of its own.
    pub host_network: bool,
    /// The pod's /etc/resolv.conf; all empty copies the host's.
    pub dns: DnsConfig,
    /// Extra /etc/hosts entries: an IP and its names (a pod's `hostAliases`).
    pub extra_hosts: Vec<(String, Vec<String>)>,
    /// Host ports forwarded to the pod (containers' `hostPort`s).
    pub port_mappings: Vec<PortMapping>,
    /// The kubelet's own data (pod UID, name, namespace…), kept and returned as is.
    pub labels: BTreeMap<String, String>,
    /// The pod's cgroup below `/kate`, e.g. `pods/burstable/pod<uid>`: containers go in
    /// `/kate/<cgroup_parent>/<container id>`.
    pub cgroup_parent: String,
}

/// The pod's resolver configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` domains.
    pub searches: Vec<String>,
    /// `options`, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// A host port forwarded to a port of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u16,
    /// The port in the pod.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// Only on this host address; all addresses when `None`.
    pub host_ip: Option<String>,
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase name CNI plugins take.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// A pod sandbox that exists on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Its ID.
    pub id: String,
    /// Its host name.
    pub hostname: String,
    /// Whether it uses the host's network.
    pub host_network: bool,
    /// Its pinned network namespace (`None` with host network).
    pub netns: Option<PathBuf>,
    /// Its IP on the pod network (`None` with host network).
    pub ip: Option<IpAddr>,
    /// The forwarded host ports.
    pub port_mappings: Vec<PortMapping>,
    /// The kubelet's labels, as given.
    pub labels: BTreeMap<String, String>,
    /// The cgroup parent of its containers, below `/kate`.
    pub cgroup_parent: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether its namespaces still exist (they do not survive a reboot): when false, the
    /// kubelet should remove it and create a new one.
    #[serde(skip)]
    pub ready: bool,
}

impl Sandbox {
    /// The file bind-mounted as containers' /etc/hosts.
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The file bind-mounted as containers' /etc/resolv.conf.
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// The file bind-mounted as containers' /etc/hostname.
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    /// The tmpfs bind-mounted as containers' /dev/shm.
    pub fn shm_path(&self) -> PathBuf {
        self.dir.join("shm")
    }

    /// The pinned IPC namespace containers join.
    pub fn ipc_ns_path(&self) -> PathBuf {
        self.dir.join("ns/ipc")
    }

    /// The pinned UTS namespace containers join (`None` with host network: they share the
    /// host's).
    pub fn uts_ns_path(&self) -> Option<PathBuf> {
        (!self.host_network).then(|| self.dir.join("ns/uts"))
    }

    fn check_ready(&mut self) {
        self.ready = namespace::is_pinned(&self.ipc_ns_path())
            && self.uts_ns_path().is_none_or(|p| namespace::is_pinned(&p))
            && self.netns.as_deref().is_none_or(namespace::is_pinned);
    }
}

impl Runtime {
    /// Creates a pod sandbox: its namespaces, its network (CNI ADD), and its hosts, resolv.conf
    /// and hostname files. On failure everything made so far is removed again.
    pub async fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox> {
        validate_id("sandbox", &cfg.id)?;
        if !cfg.host_network {
            validate_hostname(&cfg.hostname)?;
        }
        let dir = self.sandbox_dir(&cfg.id);
        let parent = self.sandboxes_dir();
        fs::create_dir_all(&parent).ctx("creating", &parent)?;
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    kind: "sandbox",
                    id: cfg.id.clone(),
                });
            }
            other => other.ctx("creating", &dir)?,
        }
        let mut sandbox = Sandbox {
            id: cfg.id.clone(),
            hostname: cfg.hostname.clone(),
            host_network: cfg.host_network,
            netns: (!cfg.host_network).then(|| self.netns_path(&cfg.id)),
            ip: None,
            port_mappings: cfg.port_mappings.clone(),
            labels: cfg.labels.clone(),
            cgroup_parent: cfg.cgroup_parent.clone(),
            created_at: Timestamp::now(),
            dir,
            ready: false,
        };
        match self.setup_sandbox(cfg, &mut sandbox).await {
            Ok(()) => {
                sandbox.ready = true;
                Ok(sandbox)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove_sandbox(&cfg.id).await {
                    tracing::warn!(sandbox = %cfg.id, "cleaning up a failed sandbox: {cleanup}");
                }
                Err(e)
            }
        }
    }

    async fn setup_sandbox(&self, cfg: &SandboxConfig, sandbox: &mut Sandbox) -> Result<()> {
        // The record comes first, so a removal after a crash finds what to undo.
        write_json_atomic(&sandbox.dir.join("sandbox.json"), &*sandbox)?;
        let namespaces = NewNamespaces {
            net: sandbox.netns.clone(),
            ipc: Some(sandbox.ipc_ns_path()),
            uts: sandbox.uts_ns_path().map(|p| (p, cfg.hostname.clone())),
        };
        tokio::task::spawn_blocking(move || namespace::create(&namespaces))
            .await
            .map_err(|e| Error::Io {
                context: "creating namespaces".to_string(),
                error: io::Error::other(e),
            })??;
        let shm = sandbox.shm_path();
        fs::create_dir(&shm).ctx("creating", &shm)?;
        mount(
            "shm",
            &shm,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"mode=1777,size=65536k",
        )
        .map_err(io::Error::from)
        .ctx("mounting a tmpfs on", &shm)?;

        if let Some(netns) = &sandbox.netns {
            let attachment = self.cni().add(&cfg.id, netns, &cfg.port_mappings).await?;
            sandbox.ip = attachment.ip;
            write_json_atomic(&sandbox.dir.join("network.json"), &attachment)?;
        }

        let (hostname, hosts) = if cfg.host_network {
            let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
            let mut hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts += &extra_hosts(&cfg.extra_hosts);
            (host, hosts)
        } else {
            (cfg.hostname.clone(), hosts_file(cfg, sandbox.ip))
        };
        write_atomic(&sandbox.hostname_path(), format!("{hostname}\n").as_bytes())?;
        write_atomic(&sandbox.hosts_path(), hosts.as_bytes())?;
        let resolv = match resolv_conf(&cfg.dns) {
            Some(text) => text,
            None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        write_atomic(&sandbox.resolv_conf_path(), resolv.as_bytes())?;
        // Bind mounts keep the inode they were made with: these files are never replaced.
        for path in [
            sandbox.hostname_path(),
            sandbox.hosts_path(),
            sandbox.resolv_conf_path(),
        ] {
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).ctx("chmod", &path)?;
        }
        write_json_atomic(&sandbox.dir.join("sandbox.json"), &*sandbox)
    }

    /// Removes a pod sandbox: removes its containers (killing running ones), detaches it from the
    /// network (CNI DEL, freeing its IP), and deletes its namespaces, cgroup and directory.
    /// Removing a sandbox that does not exist succeeds.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        validate_id("sandbox", id)?;
        for container in self.list_containers()? {
            if container.sandbox_id == id {
                self.remove_container(&container.id).await?;
            }
        }
        let dir = self.sandbox_dir(id);
        let record: Option<Sandbox> = read_json(&dir.join("sandbox.json"))?;
        let attachment: Option<Attachment> = read_json(&dir.join("network.json"))?;
        if let Some(sandbox) = &record
            && let Some(netns) = &sandbox.netns
        {
            let pinned = namespace::is_pinned(netns);
            let prev = attachment.map(|a| a.result);
            self.cni()
                .del(id, pinned.then_some(netns.as_path()), prev, &sandbox.port_mappings)
                .await?;
        }
        namespace::remove(&self.netns_path(id))?;
        namespace::remove(&dir.join("ns/ipc"))?;
        namespace::remove(&dir.join("ns/uts"))?;
        unmount(&dir.join("shm"))?;
        if let Some(sandbox) = &record {
            // The pod's cgroup and its parents below /kate, when no other pod uses them.
            cgroup::remove(&cgroup::parent_path(&sandbox.cgroup_parent), usize::MAX);
        }
        remove_dir_all(&dir)
    }

    /// The sandbox `id`, read from disk.
    pub fn sandbox(&self, id: &str) -> Result<Sandbox> {
        validate_id("sandbox", id)?;
        let dir = self.sandbox_dir(id);
        let mut sandbox: Sandbox =
            read_json(&dir.join("sandbox.json"))?.ok_or_else(|| Error::SandboxNotFound(id.to_string()))?;
        sandbox.dir = dir;
        sandbox.check_ready();
        Ok(sandbox)
    }

    /// All sandboxes on disk (for instance to adopt them after kate restarts), by ID.
    pub fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        let mut found = Vec::new();
        for id in self.ids_in(&self.sandboxes_dir())? {
            match self.sandbox(&id) {
                Ok(s) => found.push(s),
                // Half-created (or half-removed) ones have no record yet.
                Err(Error::SandboxNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// The pinned network namespace of sandbox `id`.
    fn netns_path(&self, id: &str) -> PathBuf {
        self.options().netns_dir.join(format!("kate-{id}"))
    }
}

/// Checks a host name is a valid one (RFC 1123 labels, at most 64 bytes as the kernel allows).
fn validate_hostname(hostname: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if hostname.len() <= 64 && hostname.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!("invalid host name {hostname:?}")))
    }
}

/// The pod's /etc/hosts: localhost entries, the pod's own name for its IP, then the extra
/// entries.
fn hosts_file(cfg: &SandboxConfig, ip: Option<IpAddr>) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        match &cfg.fqdn {
            Some(fqdn) if fqdn != &cfg.hostname => {
                let _ = writeln!(text, "{ip}\t{fqdn}\t{}", cfg.hostname);
            }
            _ => {
                let _ = writeln!(text, "{ip}\t{}", cfg.hostname);
            }
        }
    }
    text + &extra_hosts(&cfg.extra_hosts)
}

fn extra_hosts(entries: &[(String, Vec<String>)]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n# Entries added by HostAliases.\n");
    for (ip, names) in entries {
        let _ = writeln!(text, "{ip}\t{}", names.join("\t"));
    }
    text
}

/// The pod's /etc/resolv.conf, or `None` to use the host's.
fn resolv_conf(dns: &DnsConfig) -> Option<String> {
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        let _ = writeln!(text, "search {}", dns.searches.join(" "));
    }
    for server in &dns.servers {
        let _ = writeln!(text, "nameserver {server}");
    }
    if !dns.options.is_empty() {
        let _ = writeln!(text, "options {}", dns.options.join(" "));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let cfg = SandboxConfig {
            hostname: "web-0".into(),
            fqdn: Some("web-0.web.default.svc.cluster.local".into()),
            extra_hosts: vec![("10.1.2.3".into(), vec!["foo".into(), "bar".into()])],
            ..SandboxConfig::default()
        };
        let text = hosts_file(&cfg, Some("10.42.0.7".parse().unwrap()));
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.42.0.7\tweb-0.web.default.svc.cluster.local\tweb-0\n"));
        assert!(text.ends_with("10.1.2.3\tfoo\tbar\n"));
    }

    #[test]
    fn resolv_conf_is_generated_or_left_to_the_host() {
        assert_eq!(resolv_conf(&DnsConfig::default()), None);
        let dns = DnsConfig {
            servers: vec!["10.43.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_names_are_checked() {
        assert!(validate_hostname("web-0").is_ok());
        assert!(validate_hostname("a.b-c.d").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("-x").is_err());
        assert!(validate_hostname("a_b").is_err());
        assert!(validate_hostname(&"a".repeat(65)).is_err());
    }
}
