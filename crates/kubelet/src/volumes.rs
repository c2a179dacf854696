//! Pod volumes on the node: each volume becomes a directory under the pod's directory (or a host
//! path), filled in before the containers start, and each volumeMount a bind mount of it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};
use kate_runtime::Mount;

use crate::env::{self, ConfigError, Sources};
use crate::sysinfo::HostInfo;

/// A volume ready on the host.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Where it is on the host.
    pub path: PathBuf,
    /// Whether containers always see it read-only (configMap, secret, downwardAPI, projected).
    pub read_only: bool,
}

/// Prepares every volume of the pod under `pod_dir/volumes`, by name.
pub async fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    host: &HostInfo,
    sources: &mut Sources,
) -> Result<BTreeMap<String, Prepared>, ConfigError> {
    let mut out = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let prepared = prepare_one(pod, volume, &dir, host, sources).await?;
        out.insert(volume.name.clone(), prepared);
    }
    Ok(out)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::Missing(format!("{what} {}: {e}", path.display()))
}

async fn prepare_one(
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
    host: &HostInfo,
    sources: &mut Sources,
) -> Result<Prepared, ConfigError> {
    let files = |read_only| Prepared {
        path: dir.to_path_buf(),
        read_only,
    };
    if let Some(hp) = &volume.host_path {
        let path = PathBuf::from(&hp.path);
        check_host_path(&path, hp.type_.as_deref().unwrap_or(""))?;
        return Ok(Prepared { path, read_only: false });
    }
    if let Some(empty) = &volume.empty_dir {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        if empty.medium.as_deref() == Some("Memory") && !is_mount_point(dir) {
            mount_tmpfs(dir, empty.size_limit.as_ref().map(|q| q.0.as_str()))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| io("chmod", dir, e))?;
        return Ok(files(false));
    }
    let mut contents: Vec<(String, Vec<u8>, u32)> = Vec::new();
    if let Some(cm) = &volume.config_map {
        let data = sources.config_map(&cm.name).await?;
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        add_keys(
            &mut contents,
            data,
            cm.items.as_deref(),
            mode,
            cm.optional,
            &format!("configmap {:?}", cm.name),
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = sources.secret(&name).await?;
        let mode = secret.default_mode.unwrap_or(0o644) as u32;
        add_keys(
            &mut contents,
            data,
            secret.items.as_deref(),
            mode,
            secret.optional,
            &format!("secret {name:?}"),
        )?;
    } else if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        for item in d.items.iter().flatten() {
            contents.push(downward_item(pod, item, mode, host)?);
        }
    } else if let Some(p) = &volume.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let what = format!("configmap {:?}", cm.name);
                let data = sources.config_map(&cm.name).await?;
                add_keys(&mut contents, data, cm.items.as_deref(), mode, cm.optional, &what)?;
            }
            if let Some(s) = &source.secret {
                let what = format!("secret {:?}", s.name);
                let data = sources.secret(&s.name).await?;
                add_keys(&mut contents, data, s.items.as_deref(), mode, s.optional, &what)?;
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    contents.push(downward_item(pod, item, mode, host)?);
                }
            }
        }
    } else {
        return Err(ConfigError::Unsupported(format!(
            "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported",
            volume.name
        )));
    }
    write_files(dir, &contents)?;
    Ok(files(true))
}

/// Mounts a tmpfs (an emptyDir with medium Memory), limited to `size_limit` when given.
fn mount_tmpfs(dir: &Path, size_limit: Option<&str>) -> Result<(), ConfigError> {
    let mut data = "mode=0777".to_string();
    if let Some(bytes) = size_limit
        .and_then(|q| kate_quantity::parse_scaled(q, 1))
        .filter(|b| *b > 0)
    {
        data.push_str(&format!(",size={bytes}"));
    }
    let data = std::ffi::CString::new(data).map_err(|e| ConfigError::Missing(e.to_string()))?;
    let flags = rustix::mount::MountFlags::NODEV | rustix::mount::MountFlags::NOSUID;
    rustix::mount::mount("tmpfs", dir, "tmpfs", flags, Some(data.as_c_str()))
        .map_err(|e| io("mounting a tmpfs on", dir, e.into()))
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// Unmounts the memory-backed volumes under a pod's directory, before it is removed.
pub fn unmount_all(pod_dir: &Path) {
    for entry in std::fs::read_dir(pod_dir.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if is_mount_point(&path)
            && let Err(e) = rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not unmount a volume");
        }
    }
}

/// Upstream's hostPath type checks; DirectoryOrCreate and FileOrCreate create what is missing.
fn check_host_path(path: &Path, kind: &str) -> Result<(), ConfigError> {
    let missing = |what: &str| {
        Err(ConfigError::Missing(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        )))
    };
    match kind {
        "DirectoryOrCreate" => std::fs::create_dir_all(path).map_err(|e| io("creating", path, e)),
        "FileOrCreate" => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|_| ())
                .map_err(|e| io("creating", path, e))
        }
        "Directory" if !path.is_dir() => missing("directory"),
        "File" if !path.is_file() => missing("file"),
        "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => missing(kind),
        _ => Ok(()),
    }
}

fn add_keys(
    out: &mut Vec<(String, Vec<u8>, u32)>,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: Option<bool>,
    what: &str,
) -> Result<(), ConfigError> {
    let Some(data) = data else {
        return if optional == Some(true) {
            Ok(())
        } else {
            Err(ConfigError::Missing(format!("{what} not found")))
        };
    };
    match items {
        None => out.extend(data.into_iter().map(|(k, v)| (k, v, mode))),
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => out.push((item.path.clone(), v.clone(), item.mode.map_or(mode, |m| m as u32))),
                    None if optional == Some(true) => {}
                    None => {
                        return Err(ConfigError::Missing(format!(
                            "couldn't find key {} in {what}",
                            item.key
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn downward_item(
    pod: &Pod,
    item: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
    mode: u32,
    host: &HostInfo,
) -> Result<(String, Vec<u8>, u32), ConfigError> {
    let value = if let Some(f) = &item.field_ref {
        env::field(pod, &f.field_path)?
    } else if let Some(r) = &item.resource_field_ref {
        let default = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .unwrap_or_else(Container::default);
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
        env::resource(pod, r.container_name.as_deref(), &default, &r.resource, divisor, host)?
    } else {
        String::new()
    };
    Ok((
        item.path.clone(),
        value.into_bytes(),
        item.mode.map_or(mode, |m| m as u32),
    ))
}

/// Writes the files of a volume, refusing paths that would leave its directory.
fn write_files(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    for (rel, data, mode) in files {
        let rel = Path::new(rel);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(ConfigError::Missing(format!(
                "invalid volume file path {}",
                rel.display()
            )));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&path, data).map_err(|e| io("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode & 0o777))
            .map_err(|e| io("chmod", &path, e))?;
    }
    Ok(())
}

/// The container's volume mounts as runtime mounts (subPath resolved inside the volume).
pub fn mounts(container: &Container, volumes: &BTreeMap<String, Prepared>) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&m.name)
            .ok_or_else(|| ConfigError::Missing(format!("volume {:?} not found", m.name)))?;
        let mut host_path = volume.path.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sub = Path::new(sub);
            if !sub.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(ConfigError::Missing(format!("invalid subPath {}", sub.display())));
            }
            host_path = host_path.join(sub);
            if !host_path.exists() {
                std::fs::create_dir_all(&host_path).map_err(|e| io("creating", &host_path, e))?;
            }
        }
        out.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: volume.read_only || m.read_only == Some(true),
        });
    }
    Ok(out)
}
