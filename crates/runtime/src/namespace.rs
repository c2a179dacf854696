//! Namespaces that outlive any process: a pod sandbox's network, IPC and UTS namespaces are made
//! by a short-lived thread that unshares them and bind-mounts `/proc/thread-self/ns/<kind>` onto
//! files (as `ip netns add` does for network namespaces). The bind mounts keep the namespaces
//! alive, so no pause process is needed and the sandbox survives restarts of kate; runc joins
//! them by path. Unmounting the files ends them.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::mount_bind;
use rustix::thread::UnshareFlags;

use crate::error::{Error, IoContext, Result};

/// `NSFS_MAGIC`, the file system type of a namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The namespaces to create and the files to pin them at.
#[derive(Debug, Default)]
pub(crate) struct NewNamespaces {
    /// A network namespace, pinned at this path.
    pub net: Option<PathBuf>,
    /// An IPC namespace, pinned at this path.
    pub ipc: Option<PathBuf>,
    /// A UTS namespace with this host name, pinned at this path.
    pub uts: Option<(PathBuf, String)>,
}

/// Creates the namespaces and pins them. On failure, what was pinned is undone.
pub(crate) fn create(ns: &NewNamespaces) -> Result<()> {
    let mut flags = UnshareFlags::empty();
    let mut pins: Vec<(&str, &Path)> = Vec::new();
    if let Some(path) = &ns.net {
        flags |= UnshareFlags::NEWNET;
        pins.push(("net", path));
    }
    if let Some(path) = &ns.ipc {
        flags |= UnshareFlags::NEWIPC;
        pins.push(("ipc", path));
    }
    if let Some((path, _)) = &ns.uts {
        flags |= UnshareFlags::NEWUTS;
        pins.push(("uts", path));
    }
    if pins.is_empty() {
        return Ok(());
    }
    for (_, path) in &pins {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).ctx("creating", dir)?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .ctx("creating namespace file", path)?;
    }
    let hostname = ns.uts.as_ref().map(|(_, h)| h.clone());
    let owned: Vec<(String, PathBuf)> = pins.iter().map(|(k, p)| (k.to_string(), p.to_path_buf())).collect();
    // The thread's namespaces change, not the process's; the thread ends right after.
    let result = std::thread::spawn(move || -> Result<()> {
        // SAFETY: without CLONE_FILES (or CLONE_FS) this only detaches this thread's
        // network/IPC/UTS namespaces, which no other thread observes.
        unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| Error::Io {
            context: "unsharing namespaces".to_string(),
            error: e.into(),
        })?;
        if let Some(hostname) = hostname {
            rustix::system::sethostname(hostname.as_bytes()).map_err(|e| Error::Io {
                context: format!("setting the host name {hostname:?}"),
                error: e.into(),
            })?;
        }
        for (kind, path) in owned {
            let source = format!("/proc/thread-self/ns/{kind}");
            mount_bind(source.as_str(), &path)
                .map_err(io::Error::from)
                .ctx(&format!("bind-mounting {source} on"), &path)?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            context: "creating namespaces".to_string(),
            error: io::Error::other("the namespace thread panicked"),
        })
    });
    if result.is_err() {
        for (_, path) in &pins {
            let _ = remove(path);
        }
    }
    result
}

/// Unpins and deletes a namespace file (ending the namespace once nothing else uses it).
/// A missing or unmounted file is fine.
pub(crate) fn remove(path: &Path) -> Result<()> {
    crate::rootfs::unmount(path)?;
    crate::state::remove_file(path)
}

/// Whether `path` is a pinned namespace.
// `f_type`'s integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn is_pinned(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS_MAGIC)
}
