//! Which user a container runs as: the kubelet's numeric `runAsUser`/`runAsGroup`, or else the
//! image's `User` (a name or number, optionally `:group`), resolved against the image's
//! /etc/passwd and /etc/group as Docker and containerd do. Supplementary groups are the user's
//! memberships in /etc/group plus those asked for.

use std::fs;
use std::path::Path;

use crate::container::UserSpec;
use crate::error::{Error, Result};

/// The IDs the container's process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// One /etc/passwd entry.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One /etc/group entry.
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the container's user in the root file system at `rootfs`.
pub(crate) fn resolve(rootfs: &Path, requested: Option<&UserSpec>, image_user: Option<&str>) -> Result<ResolvedUser> {
    let passwd = parse_passwd(&read_image_file(rootfs, "etc/passwd"));
    let groups = parse_group(&read_image_file(rootfs, "etc/group"));
    resolve_with(&passwd, &groups, requested, image_user)
}

fn resolve_with(
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
    requested: Option<&UserSpec>,
    image_user: Option<&str>,
) -> Result<ResolvedUser> {
    let (uid, gid, name, mut additional) = match requested {
        Some(spec) => {
            let entry = passwd.iter().find(|e| e.uid == spec.uid);
            let gid = spec.gid.or(entry.map(|e| e.gid)).unwrap_or(0);
            (
                spec.uid,
                gid,
                entry.map(|e| e.name.clone()),
                spec.supplemental_groups.clone(),
            )
        }
        None => {
            let spec = image_user.unwrap_or("").trim();
            let (user, group) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec, None),
            };
            let (uid, mut gid, name) = if user.is_empty() {
                (0, 0, Some("root".to_string()))
            } else if let Ok(uid) = user.parse::<u32>() {
                let entry = passwd.iter().find(|e| e.uid == uid);
                (uid, entry.map_or(0, |e| e.gid), entry.map(|e| e.name.clone()))
            } else {
                let entry = passwd
                    .iter()
                    .find(|e| e.name == user)
                    .ok_or_else(|| Error::InvalidConfig(format!("user {user:?} is not in the image's /etc/passwd")))?;
                (entry.uid, entry.gid, Some(entry.name.clone()))
            };
            if let Some(group) = group.filter(|g| !g.is_empty()) {
                gid = match group.parse::<u32>() {
                    Ok(gid) => gid,
                    Err(_) => {
                        groups
                            .iter()
                            .find(|g| g.name == group)
                            .ok_or_else(|| {
                                Error::InvalidConfig(format!("group {group:?} is not in the image's /etc/group"))
                            })?
                            .gid
                    }
                };
            }
            (uid, gid, name, Vec::new())
        }
    };
    if let Some(name) = name {
        additional.extend(groups.iter().filter(|g| g.members.contains(&name)).map(|g| g.gid));
    }
    additional.retain(|g| *g != gid);
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// Reads a file of the image, refusing symbolic links on the way: the image's links would
/// resolve against the host's file system here.
fn read_image_file(rootfs: &Path, relative: &str) -> String {
    let mut path = rootfs.to_path_buf();
    for part in relative.split('/') {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return String::new(),
        }
    }
    fs::read_to_string(&path).unwrap_or_default()
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nnobody:x:65534:65534::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,nobody\nnogroup:x:65534:\n";

    fn resolve(requested: Option<&UserSpec>, image: Option<&str>) -> Result<ResolvedUser> {
        resolve_with(&parse_passwd(PASSWD), &parse_group(GROUP), requested, image)
    }

    fn user(uid: u32, gid: u32, additional: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn image_users_resolve_by_name_or_number() {
        assert_eq!(resolve(None, None).unwrap(), user(0, 0, &[]));
        assert_eq!(resolve(None, Some("www")).unwrap(), user(33, 33, &[50]));
        assert_eq!(resolve(None, Some("33")).unwrap(), user(33, 33, &[50]));
        assert_eq!(resolve(None, Some("1234")).unwrap(), user(1234, 0, &[]));
        assert_eq!(resolve(None, Some("www:nogroup")).unwrap(), user(33, 65534, &[50]));
        assert_eq!(resolve(None, Some("1000:1000")).unwrap(), user(1000, 1000, &[]));
        assert!(resolve(None, Some("ghost")).is_err());
        assert!(resolve(None, Some("www:ghosts")).is_err());
    }

    #[test]
    fn requested_ids_win_over_the_image() {
        let spec = UserSpec {
            uid: 65534,
            gid: None,
            supplemental_groups: vec![7, 7],
        };
        assert_eq!(resolve(Some(&spec), Some("www")).unwrap(), user(65534, 65534, &[7, 50]));
        let spec = UserSpec {
            uid: 4242,
            gid: Some(42),
            supplemental_groups: vec![42],
        };
        assert_eq!(resolve(Some(&spec), None).unwrap(), user(4242, 42, &[]));
    }

    #[test]
    fn symlinked_files_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        assert_eq!(read_image_file(dir.path(), "etc/passwd"), "");
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(read_image_file(dir.path(), "etc/group"), GROUP);
    }
}
