//! Container root file systems: an overlay of the image's unpacked layers (read-only, shared by
//! all containers of the image) under a writable upper directory of the container's own.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount as umount};

use crate::error::{Error, IoContext, Result};

/// The most option bytes `mount(2)` takes (one page).
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts an overlay at `target`: `lower` are the image's layers topmost first, `upper` and
/// `work` empty directories on one file system.
pub(crate) fn mount_overlay(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let data = overlay_options(lower, upper, work)?;
    let data = std::ffi::CString::new(data).map_err(|_| Error::InvalidConfig("NUL in a layer path".to_string()))?;
    mount("overlay", target, "overlay", MountFlags::empty(), data.as_c_str())
        .map_err(io::Error::from)
        .ctx("mounting the overlay root file system on", target)
}

/// The overlay's mount options.
fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    if lower.is_empty() {
        return Err(Error::Invalid("the image has no layers".to_string()));
    }
    let mut paths = lower.iter().map(|p| p.as_path()).chain([upper, work]);
    if let Some(bad) = paths.find(|p| p.to_str().is_none_or(|s| s.contains([':', ',']))) {
        return Err(Error::InvalidConfig(format!(
            "{} cannot be an overlay directory (':' and ',' separate the options)",
            bad.display()
        )));
    }
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::InvalidConfig(format!(
            "the image has too many layers for one overlay mount ({} bytes of options)",
            data.len()
        )));
    }
    Ok(data)
}

/// Unmounts `path` (lazily, so a busy mount does not block); a path that is not a mount point or
/// does not exist is fine.
pub(crate) fn unmount(path: &Path) -> Result<()> {
    match umount(path, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(io::Error::from(e)).ctx("unmounting", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_list_layers_topmost_first() {
        let lower = [PathBuf::from("/l/top"), PathBuf::from("/l/base")];
        let data = overlay_options(&lower, Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(data, "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err());
        let many: Vec<_> = (0..100)
            .map(|i| PathBuf::from(format!("/{}/{i}", "x".repeat(60))))
            .collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w")).is_err());
    }
}
