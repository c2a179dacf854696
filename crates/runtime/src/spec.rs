//! The OCI runtime spec (runc's `config.json`) of a container: its process, namespaces (joining
//! the sandbox's network, IPC and UTS namespaces), mounts, capabilities and cgroup limits, with
//! the defaults Docker and containerd use.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, Process, RootBuilder, Spec, UserBuilder, get_default_maskedpaths,
    get_default_readonly_paths,
};

use crate::cgroup::CgroupMode;
use crate::container::ContainerConfig;
use crate::error::{Error, Result};
use crate::image::ImageConfig;
use crate::sandbox::Sandbox;
use crate::user::ResolvedUser;

/// The capabilities containers get by default (Docker's and containerd's set).
pub(crate) const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, indexed by its number.
pub(crate) const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// PATH when neither the image nor the container sets one.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the spec is made from.
pub(crate) struct SpecInput<'a> {
    pub config: &'a ContainerConfig,
    pub sandbox: &'a Sandbox,
    pub image: &'a ImageConfig,
    pub user: &'a ResolvedUser,
    /// The container's cgroup, absolute.
    pub cgroups_path: &'a str,
    pub cgroup_mode: CgroupMode,
    /// Whether memory+swap can be limited (then swap is set to the memory limit).
    pub swap_accounting: bool,
    /// The capability bounding set kate runs with (bit N = capability N): `ALL` and privileged
    /// containers get the capabilities in it, as a container cannot get more than its runtime has.
    pub bounding: u64,
}

/// The bounding set of this process (`CapBnd` in /proc/self/status); all bits when unreadable.
pub(crate) fn bounding_set() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The container's spec.
pub(crate) fn generate(input: &SpecInput) -> Result<Spec> {
    let cfg = input.config;
    let privileged = cfg.privileged;

    let mut args = cfg.args.clone();
    if args.is_empty() {
        args = input.image.entrypoint.iter().chain(&input.image.cmd).cloned().collect();
    }
    if args.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "container {} has no command and its image none either",
            cfg.id
        )));
    }
    let cwd = cfg
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| input.image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidConfig(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }

    let caps: Capabilities = capabilities(
        &cfg.capabilities_add,
        &cfg.capabilities_drop,
        privileged,
        input.bounding,
    )?
    .iter()
    .map(|name| to_capability(name))
    .collect::<Result<_>>()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(spec_error)?;
    let user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid)
        .additional_gids(input.user.additional_gids.clone())
        .build()
        .map_err(spec_error)?;

    let mut process = Process::default();
    process.set_terminal(Some(cfg.tty));
    process.set_user(user);
    process.set_args(Some(args));
    let mut env = environment(&input.image.env, &cfg.env, &input.sandbox.hostname);
    // As containerd does: programs on a terminal look for TERM to know how to draw on it.
    if cfg.tty && !env.iter().any(|v| v.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    process.set_env(Some(env));
    process.set_cwd(cwd.into());
    process.set_capabilities(Some(capabilities));
    // Resource limits are inherited from kate, as with Docker and containerd.
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(cfg.no_new_privileges && !privileged));
    // No oomScoreAdj: lowering it needs CAP_SYS_RESOURCE, which not every host grants.
    process.set_oom_score_adj(None);

    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(cfg.read_only_rootfs)
        .build()
        .map_err(spec_error)?;

    let linux = LinuxBuilder::default()
        .namespaces(namespaces(input)?)
        .cgroups_path(input.cgroups_path)
        .resources(resources(input)?)
        .masked_paths(if privileged { Vec::new() } else { masked_paths() })
        .readonly_paths(if privileged {
            Vec::new()
        } else {
            get_default_readonly_paths()
        })
        .devices(Vec::new())
        .sysctl(HashMap::new())
        .build()
        .map_err(spec_error)?;

    let mut spec = Spec::default();
    spec.set_version("1.0.2-dev".to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts(input)?));
    // The host name comes with the sandbox's UTS namespace (or is the host's).
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The runc default masked paths, plus powercap (as newer runtimes mask it).
fn masked_paths() -> Vec<String> {
    let mut paths = get_default_maskedpaths();
    paths.push("/sys/devices/virtual/powercap".to_string());
    paths
}

fn spec_error(e: impl std::fmt::Display) -> Error {
    Error::Spec(e.to_string())
}

/// A capability name without `CAP_`, upper case; `ALL` stays `ALL`.
fn normalize_capability(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_string();
    if bare == "ALL" || ALL_CAPABILITIES.contains(&bare.as_str()) {
        Ok(bare)
    } else {
        Err(Error::InvalidConfig(format!("unknown capability {name:?}")))
    }
}

fn to_capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(format!("CAP_{name}")))
        .map_err(|e| Error::InvalidConfig(format!("capability {name}: {e}")))
}

/// The container's capabilities, in number order: the defaults with `add` and `drop` applied
/// (`ALL` in `add` means every capability in `bounding`, in `drop` none), or all of `bounding`
/// for a privileged container.
pub(crate) fn capabilities(add: &[String], drop: &[String], privileged: bool, bounding: u64) -> Result<Vec<String>> {
    let add = add
        .iter()
        .map(|n| normalize_capability(n))
        .collect::<Result<Vec<_>>>()?;
    let drop = drop
        .iter()
        .map(|n| normalize_capability(n))
        .collect::<Result<Vec<_>>>()?;
    let available = || {
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
            .map(|(_, name)| name.to_string())
    };
    let mut set: HashSet<String> = if privileged || add.iter().any(|c| c == "ALL") {
        available().collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if !privileged {
        if drop.iter().any(|c| c == "ALL") {
            set.clear();
        }
        for cap in drop.iter().filter(|c| *c != "ALL") {
            set.remove(cap);
        }
        for cap in add.into_iter().filter(|c| c != "ALL") {
            set.insert(cap);
        }
    }
    Ok(ALL_CAPABILITIES
        .iter()
        .filter(|c| set.contains(**c))
        .map(|c| c.to_string())
        .collect())
}

/// The environment: HOSTNAME, then the image's, then the container's; a later value of a
/// name replaces the earlier one in place. PATH is added when nobody sets it.
pub(crate) fn environment(image_env: &[String], env: &[(String, String)], hostname: &str) -> Vec<String> {
    let mut vars: Vec<(String, String)> = vec![("HOSTNAME".to_string(), hostname.to_string())];
    let mut set = |name: &str, value: &str| match vars.iter_mut().find(|(n, _)| n == name) {
        Some(var) => var.1 = value.to_string(),
        None => vars.push((name.to_string(), value.to_string())),
    };
    for entry in image_env {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(name, value);
    }
    for (name, value) in env {
        set(name, value);
    }
    let mut list: Vec<String> = vars.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    if !list.iter().any(|v| v.starts_with("PATH=")) {
        list.insert(0, DEFAULT_PATH.to_string());
    }
    list
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace> {
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        builder = builder.path(path);
    }
    builder.build().map_err(spec_error)
}

/// New PID and mount namespaces; the sandbox's network, IPC and UTS namespaces (none of their
/// own, so the host's, where the sandbox uses the host network); a cgroup namespace on v2.
fn namespaces(input: &SpecInput) -> Result<Vec<LinuxNamespace>> {
    let sandbox = input.sandbox;
    let mut list = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Ipc, Some(&sandbox.ipc_ns_path()))?,
    ];
    if let Some(uts) = sandbox.uts_ns_path() {
        list.push(namespace(LinuxNamespaceType::Uts, Some(&uts))?);
    }
    if let Some(netns) = &sandbox.netns {
        list.push(namespace(LinuxNamespaceType::Network, Some(netns))?);
    }
    if input.cgroup_mode.is_unified() {
        list.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(list)
}

fn mount(destination: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

/// The standard file systems, the sandbox's shared files, then the container's bind mounts
/// (parents before children). A container mount replaces a standard one at the same place.
fn mounts(input: &SpecInput) -> Result<Vec<Mount>> {
    let cfg = input.config;
    let sandbox = input.sandbox;
    let sys = if cfg.privileged { "rw" } else { "ro" };
    let etc = if cfg.read_only_rootfs { "ro" } else { "rw" };
    let mut list = vec![
        mount("/proc", "proc", Path::new("proc"), &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount(
            "/dev/shm",
            "bind",
            &sandbox.shm_path(),
            &["rbind", "rprivate", "nosuid", "nodev", "noexec"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", Path::new("sysfs"), &["nosuid", "noexec", "nodev", sys])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", sys],
        )?,
        mount(
            "/etc/hostname",
            "bind",
            &sandbox.hostname_path(),
            &["rbind", "rprivate", etc],
        )?,
        mount("/etc/hosts", "bind", &sandbox.hosts_path(), &["rbind", "rprivate", etc])?,
        mount(
            "/etc/resolv.conf",
            "bind",
            &sandbox.resolv_conf_path(),
            &["rbind", "rprivate", etc],
        )?,
    ];
    let mut extra: Vec<&crate::container::Mount> = cfg.mounts.iter().collect();
    for m in &extra {
        if !m.container_path.starts_with('/') || !m.host_path.is_absolute() {
            return Err(Error::InvalidConfig(format!(
                "mount {} on {:?}: both paths must be absolute",
                m.host_path.display(),
                m.container_path
            )));
        }
    }
    // Parents first, so a mount inside another one's directory is not hidden by it.
    extra.sort_by_key(|m| Path::new(&m.container_path).components().count());
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    list.retain(|std| {
        let dest = std.destination().to_string_lossy().to_string();
        !extra.iter().any(|m| clean(&m.container_path) == dest)
    });
    for m in extra {
        let access = if m.read_only { "ro" } else { "rw" };
        list.push(mount(
            &m.container_path,
            "bind",
            &m.host_path,
            &["rbind", "rprivate", access],
        )?);
    }
    Ok(list)
}

/// Device access, and the cgroup limits asked for.
fn resources(input: &SpecInput) -> Result<oci_spec::runtime::LinuxResources> {
    let r = &input.config.resources;
    // Deny all; runc adds the standard devices (null, zero, full, tty, random, urandom, pts).
    let devices = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(input.config.privileged)
            .access("rwm")
            .build()
            .map_err(spec_error)?,
    ];
    let mut builder = LinuxResourcesBuilder::default().devices(devices);
    if let Some(limit) = r.memory_limit {
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if input.swap_accounting {
            memory = memory.swap(limit);
        }
        builder = builder.memory(memory.build().map_err(spec_error)?);
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(shares) = r.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some(quota) = r.cpu_quota {
            cpu = cpu.quota(quota);
        }
        if let Some(period) = r.cpu_period {
            cpu = cpu.period(period);
        }
        builder = builder.cpu(cpu.build().map_err(spec_error)?);
    }
    if let Some(limit) = r.pids_limit {
        builder = builder.pids(LinuxPidsBuilder::default().limit(limit).build().map_err(spec_error)?);
    }
    builder.build().map_err(spec_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Mount as BindMount, Resources};
    use crate::reference::ImageRef;
    use serde_json::{Value, json};

    fn sandbox(host_network: bool) -> Sandbox {
        Sandbox {
            id: "pod1".into(),
            hostname: "web".into(),
            host_network,
            netns: (!host_network).then(|| "/run/netns/kate-pod1".into()),
            ip: None,
            port_mappings: Vec::new(),
            labels: Default::default(),
            cgroup_parent: "pods/pod1".into(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            dir: "/var/lib/kate/runtime/sandboxes/pod1".into(),
            ready: true,
        }
    }

    fn config() -> ContainerConfig {
        let mut cfg = ContainerConfig::new("c1", ImageRef::parse("busybox").unwrap(), "/var/log/c1.log");
        cfg.args = vec!["sleep".into(), "10".into()];
        cfg
    }

    fn root() -> ResolvedUser {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        }
    }

    /// The spec as runc reads it.
    fn generate_json(cfg: &ContainerConfig, sandbox: &Sandbox, image: &ImageConfig, mode: CgroupMode) -> Value {
        let spec = generate(&SpecInput {
            config: cfg,
            sandbox,
            image,
            user: &ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10],
            },
            cgroups_path: "/kate/pods/pod1/c1",
            cgroup_mode: mode,
            swap_accounting: true,
            bounding: u64::MAX,
        })
        .unwrap();
        serde_json::to_value(&spec).unwrap()
    }

    fn names(value: &Value) -> Vec<String> {
        let mut v: Vec<String> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_spec_joins_the_sandbox() {
        let image = ImageConfig {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/srv".into()),
            ..ImageConfig::default()
        };
        let mut cfg = config();
        cfg.env = vec![("A".into(), "pod".into()), ("B".into(), "x=y".into())];
        let spec = generate_json(&cfg, &sandbox(false), &image, CgroupMode::Hybrid);
        let _ = root();

        let process = &spec["process"];
        assert_eq!(process["args"], json!(["sleep", "10"]));
        assert_eq!(process["cwd"], "/srv");
        assert_eq!(process["env"], json!(["HOSTNAME=web", "PATH=/bin", "A=pod", "B=x=y"]));
        assert_eq!(
            process["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10]})
        );
        assert_eq!(process["terminal"], false);
        assert!(process.get("rlimits").is_none() && process.get("oomScoreAdj").is_none());
        let mut expected: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
        expected.sort();
        assert_eq!(names(&process["capabilities"]["bounding"]), expected);
        assert_eq!(names(&process["capabilities"]["effective"]), expected);
        assert_eq!(process["capabilities"]["inheritable"], json!([]));
        assert!(spec.get("hostname").is_none());
        assert_eq!(spec["root"], json!({"path": "rootfs", "readonly": false}));

        let linux = &spec["linux"];
        assert_eq!(linux["cgroupsPath"], "/kate/pods/pod1/c1");
        assert_eq!(
            linux["namespaces"],
            json!([
                {"type": "pid"},
                {"type": "mount"},
                {"type": "ipc", "path": "/var/lib/kate/runtime/sandboxes/pod1/ns/ipc"},
                {"type": "uts", "path": "/var/lib/kate/runtime/sandboxes/pod1/ns/uts"},
                {"type": "network", "path": "/run/netns/kate-pod1"},
            ])
        );
        assert!(names(&linux["maskedPaths"]).contains(&"/proc/kcore".to_string()));
        assert!(names(&linux["readonlyPaths"]).contains(&"/proc/sys".to_string()));
        assert_eq!(
            linux["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"}])
        );

        let mounts: Vec<(String, String)> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["destination"].as_str().unwrap().to_string(),
                    m["source"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let find = |dest: &str| mounts.iter().find(|(d, _)| d == dest).map(|(_, s)| s.as_str());
        assert_eq!(find("/proc"), Some("proc"));
        assert_eq!(find("/dev/pts"), Some("devpts"));
        assert_eq!(find("/dev/mqueue"), Some("mqueue"));
        assert_eq!(find("/sys"), Some("sysfs"));
        assert_eq!(find("/dev/shm"), Some("/var/lib/kate/runtime/sandboxes/pod1/shm"));
        assert_eq!(find("/etc/hosts"), Some("/var/lib/kate/runtime/sandboxes/pod1/hosts"));
        assert_eq!(
            find("/etc/resolv.conf"),
            Some("/var/lib/kate/runtime/sandboxes/pod1/resolv.conf")
        );
        assert_eq!(
            find("/etc/hostname"),
            Some("/var/lib/kate/runtime/sandboxes/pod1/hostname")
        );
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(names(&sys["options"]).contains(&"ro".to_string()));
    }

    #[test]
    fn host_network_has_no_network_or_uts_namespace_and_v2_a_cgroup_one() {
        let spec = generate_json(&config(), &sandbox(true), &ImageConfig::default(), CgroupMode::Unified);
        let types: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "mount", "ipc", "cgroup"]);
        // No PATH anywhere: the default one.
        assert_eq!(spec["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(spec["process"]["cwd"], "/");
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let caps = capabilities(
            &s(&["NET_ADMIN", "cap_sys_time"]),
            &s(&["CAP_KILL", "MKNOD"]),
            false,
            u64::MAX,
        )
        .unwrap();
        assert!(caps.contains(&"NET_ADMIN".into()) && caps.contains(&"SYS_TIME".into()));
        assert!(!caps.contains(&"KILL".into()) && !caps.contains(&"MKNOD".into()));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());

        let only = capabilities(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), false, u64::MAX).unwrap();
        assert_eq!(only, ["NET_BIND_SERVICE"]);

        // ALL is what the runtime has: here, everything but SYS_RESOURCE (bit 24).
        let bounding = !(1u64 << 24);
        let all = capabilities(&s(&["ALL"]), &s(&["SYS_ADMIN"]), false, bounding).unwrap();
        assert_eq!(all.len(), ALL_CAPABILITIES.len() - 2);
        assert!(!all.contains(&"SYS_RESOURCE".into()) && !all.contains(&"SYS_ADMIN".into()));
        let privileged = capabilities(&[], &s(&["ALL"]), true, bounding).unwrap();
        assert_eq!(privileged.len(), ALL_CAPABILITIES.len() - 1);

        assert!(capabilities(&s(&["NOT_A_CAP"]), &[], false, u64::MAX).is_err());
        for name in ALL_CAPABILITIES {
            to_capability(name).unwrap();
        }
    }

    #[test]
    fn privileged_containers_are_unconfined() {
        let mut cfg = config();
        cfg.privileged = true;
        cfg.no_new_privileges = true;
        let spec = generate_json(&cfg, &sandbox(false), &ImageConfig::default(), CgroupMode::Legacy);
        assert_eq!(spec["linux"]["maskedPaths"], json!([]));
        assert_eq!(spec["linux"]["readonlyPaths"], json!([]));
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        assert_eq!(spec["process"]["noNewPrivileges"], false);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"].as_array().unwrap().len(),
            ALL_CAPABILITIES.len()
        );
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(names(&sys["options"]).contains(&"rw".to_string()));
    }

    #[test]
    fn limits_mounts_and_read_only_root() {
        let mut cfg = config();
        cfg.read_only_rootfs = true;
        cfg.no_new_privileges = true;
        cfg.resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(16 << 20),
            pids_limit: Some(100),
        };
        cfg.mounts = vec![
            BindMount {
                host_path: "/data/sub".into(),
                container_path: "/data/sub".into(),
                read_only: false,
            },
            BindMount {
                host_path: "/data".into(),
                container_path: "/data".into(),
                read_only: true,
            },
            BindMount {
                host_path: "/custom/hosts".into(),
                container_path: "/etc/hosts".into(),
                read_only: true,
            },
        ];
        let spec = generate_json(&cfg, &sandbox(false), &ImageConfig::default(), CgroupMode::Legacy);
        let resources = &spec["linux"]["resources"];
        assert_eq!(resources["memory"], json!({"limit": 16 << 20, "swap": 16 << 20}));
        assert_eq!(
            resources["cpu"],
            json!({"shares": 512, "quota": 50_000, "period": 100_000})
        );
        assert_eq!(resources["pids"], json!({"limit": 100}));
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["process"]["noNewPrivileges"], true);

        let mounts = spec["mounts"].as_array().unwrap();
        let hosts: Vec<&Value> = mounts.iter().filter(|m| m["destination"] == "/etc/hosts").collect();
        assert_eq!(hosts.len(), 1, "the container's mount replaces the sandbox's");
        assert_eq!(hosts[0]["source"], "/custom/hosts");
        let order: Vec<&str> = mounts.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        let data = order.iter().position(|d| *d == "/data").unwrap();
        let sub = order.iter().position(|d| *d == "/data/sub").unwrap();
        assert!(data < sub, "parents before children: {order:?}");
        assert_eq!(mounts[data]["options"], json!(["rbind", "rprivate", "ro"]));
        let hostname = mounts.iter().find(|m| m["destination"] == "/etc/hostname").unwrap();
        assert_eq!(hostname["options"], json!(["rbind", "rprivate", "ro"]));
    }

    #[test]
    fn the_image_command_is_the_fallback() {
        let mut cfg = config();
        cfg.args.clear();
        let image = ImageConfig {
            entrypoint: vec!["/bin/app".into()],
            cmd: vec!["serve".into()],
            ..ImageConfig::default()
        };
        let spec = generate_json(&cfg, &sandbox(false), &image, CgroupMode::Legacy);
        assert_eq!(spec["process"]["args"], json!(["/bin/app", "serve"]));
        let result = generate(&SpecInput {
            config: &cfg,
            sandbox: &sandbox(false),
            image: &ImageConfig::default(),
            user: &root(),
            cgroups_path: "/kate/c1",
            cgroup_mode: CgroupMode::Legacy,
            swap_accounting: false,
            bounding: u64::MAX,
        });
        assert!(matches!(result, Err(Error::InvalidConfig(_))));
    }
}
