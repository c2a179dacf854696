//! The runtime: options, directories, and the handle the kubelet holds. The operations live in
//! sandbox.rs and container.rs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cgroup::CgroupMode;
use crate::cni::{Cni, CniConfig};
use crate::error::{IoContext, Result};
use crate::runc::Runc;
use crate::store::ImageStore;

/// How the runtime is set up on this node.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where sandboxes, containers and runc's state live, e.g. `/var/lib/kate/runtime`.
    pub root: PathBuf,
    /// The OCI runtime binary; default `runc` (found on PATH).
    pub runc: PathBuf,
    /// Where CNI plugins are; default `/usr/lib/cni` (Debian's `containernetworking-plugins`).
    pub cni_bin_dir: PathBuf,
    /// The pod network.
    pub cni_conf: CniConfig,
    /// The program run as `<shim_exe> shim start|run <container dir>` to supervise a container:
    /// the kate binary itself by default.
    pub shim_exe: PathBuf,
    /// Where pinned network namespaces go, default `/run/netns` (where `ip netns` looks).
    pub netns_dir: PathBuf,
}

impl RuntimeOptions {
    /// Options with the defaults, keeping state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            runc: PathBuf::from("runc"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf: CniConfig::default(),
            shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kate")),
            netns_dir: PathBuf::from("/run/netns"),
        }
    }
}

/// The container runtime of a node: pod sandboxes and their containers, run by an OCI runtime
/// under a detached shim each, so they keep running while kate restarts. All state is on disk
/// below [`RuntimeOptions::root`]; a new `Runtime` on the same root finds everything again.
///
/// ```text
/// ROOT/sandboxes/ID/     see Runtime::run_sandbox
/// ROOT/containers/ID/    see Runtime::create_container
/// ROOT/runc/             runc's state (--root)
/// ROOT/cni/networks/     host-local's IP allocations (NETWORK/IP files)
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: RuntimeOptions,
    images: ImageStore,
    cgroup_mode: CgroupMode,
    runc: Runc,
    cni: Cni,
}

impl Runtime {
    /// A runtime with these options over this image store; creates the directories it uses.
    pub fn new(mut options: RuntimeOptions, images: ImageStore) -> Result<Self> {
        // The shim runs in `/`: every path it is given must be absolute.
        options.root = std::path::absolute(&options.root).ctx("resolving", &options.root)?;
        let root = &options.root;
        for dir in ["sandboxes", "containers", "runc", "cni/networks"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).ctx("creating", &dir)?;
        }
        let runc = Runc {
            path: options.runc.clone(),
            root: root.join("runc"),
        };
        let cni = Cni {
            bin_dir: options.cni_bin_dir.clone(),
            config: options.cni_conf.clone(),
            ipam_dir: root.join("cni/networks"),
        };
        let runtime = Self {
            inner: Arc::new(Inner {
                cgroup_mode: CgroupMode::detect(),
                options,
                images,
                runc,
                cni,
            }),
        };
        if runtime.bridge_unused()? {
            runtime.inner.cni.drop_stale_bridge();
        }
        Ok(runtime)
    }

    /// Deletes the pod bridge, once every sandbox is gone (`kate reset`).
    pub fn remove_network(&self) -> Result<()> {
        if self.bridge_unused()? {
            self.inner.cni.remove_bridge();
        }
        Ok(())
    }

    /// Whether no sandbox is attached to the pod bridge (host-network ones never are).
    fn bridge_unused(&self) -> Result<bool> {
        Ok(self.list_sandboxes()?.iter().all(|s| s.host_network))
    }

    /// The image store containers are created from.
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// The options the runtime was made with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The host's cgroup layout, detected at start.
    pub fn cgroup_mode(&self) -> CgroupMode {
        self.inner.cgroup_mode
    }

    /// host-local's allocation directory of the pod network: one file per allocated IP.
    pub fn ipam_dir(&self) -> PathBuf {
        self.inner.cni.ipam_dir.join(&self.inner.options.cni_conf.network)
    }

    pub(crate) fn runc(&self) -> &Runc {
        &self.inner.runc
    }

    pub(crate) fn cni(&self) -> &Cni {
        &self.inner.cni
    }

    pub(crate) fn sandboxes_dir(&self) -> PathBuf {
        self.inner.options.root.join("sandboxes")
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes_dir().join(id)
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.inner.options.root.join("containers")
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// The names of the subdirectories of `dir`, sorted; none when it does not exist.
    pub(crate) fn ids_in(&self, dir: &Path) -> Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx("listing", dir),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.ctx("listing", dir)?;
            if entry.file_type().ctx("listing", dir)?.is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}
