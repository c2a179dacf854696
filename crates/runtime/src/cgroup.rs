//! Control groups: which layout the host uses, where a container's cgroup lives, and what the
//! kernel recorded in it (OOM kills). runc creates and configures the cgroups; this module only
//! reads them and removes the directories runc leaves behind.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `CGROUP2_SUPER_MAGIC`, the file system type of a cgroup v2 mount.
const CGROUP2_MAGIC: i64 = 0x6367_7270;
/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The top cgroup under which all of kate's containers live.
pub(crate) const KATE_CGROUP: &str = "kate";

/// How the host arranges its control groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies, one per controller.
    Legacy,
    /// v1 controllers, plus an (almost empty) v2 hierarchy at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// One cgroup v2 hierarchy at `/sys/fs/cgroup`.
    Unified,
}

impl CgroupMode {
    /// Finds out the host's layout from the file system types under `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let is_v2 = |p: &str| rustix::fs::statfs(p).is_ok_and(|s| s.f_type as i64 == CGROUP2_MAGIC);
        if is_v2(CGROUP_ROOT) {
            Self::Unified
        } else if is_v2("/sys/fs/cgroup/unified") {
            Self::Hybrid
        } else {
            Self::Legacy
        }
    }

    /// Whether controllers (memory, cpu, pids) are managed through cgroup v2.
    pub fn is_unified(self) -> bool {
        self == Self::Unified
    }
}

/// The absolute cgroup path of a sandbox's containers: `/kate/<parent>`, or `/kate` when the
/// sandbox names no parent. Components that are empty or `.`/`..` are dropped.
pub(crate) fn parent_path(parent: &str) -> String {
    let mut path = format!("/{KATE_CGROUP}");
    for part in parent.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..") {
        path.push('/');
        path.push_str(part);
    }
    path
}

/// The absolute cgroup path of a container: `/kate/<parent>/<id>`.
pub(crate) fn container_path(parent: &str, id: &str) -> String {
    format!("{}/{id}", parent_path(parent))
}

/// A mounted cgroup hierarchy.
#[derive(Debug)]
struct Hierarchy {
    mount_point: PathBuf,
    /// For v1: the controllers bound to it (and `name=…` options); empty for v2.
    controllers: Vec<String>,
    v2: bool,
}

/// The cgroup hierarchies mounted in this mount namespace, from `/proc/self/mountinfo`.
fn hierarchies() -> Vec<Hierarchy> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mountinfo(&text)
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in text.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fs_type = right.next().unwrap_or_default();
        let super_options = right.nth(1).unwrap_or_default();
        let mount_point = PathBuf::from(mount_point.replace("\\040", " "));
        match fs_type {
            "cgroup2" => found.push(Hierarchy {
                mount_point,
                controllers: Vec::new(),
                v2: true,
            }),
            "cgroup" => found.push(Hierarchy {
                mount_point,
                controllers: super_options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                    .map(str::to_string)
                    .collect(),
                v2: false,
            }),
            _ => {}
        }
    }
    found
}

/// The directory of `path` in the hierarchy that holds the memory controller.
fn memory_dir(mode: CgroupMode, path: &str) -> PathBuf {
    let relative = path.trim_start_matches('/');
    if mode.is_unified() {
        return Path::new(CGROUP_ROOT).join(relative);
    }
    let mount = hierarchies()
        .into_iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "memory"))
        .map_or_else(|| Path::new(CGROUP_ROOT).join("memory"), |h| h.mount_point);
    mount.join(relative)
}

/// How many processes of the cgroup at `path` the OOM killer has killed (`oom_kill` of
/// `memory.oom_control` on v1, of `memory.events` on v2); `None` when unreadable.
pub(crate) fn oom_kills(mode: CgroupMode, path: &str) -> Option<u64> {
    let file = if mode.is_unified() {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    let text = fs::read_to_string(memory_dir(mode, path).join(file)).ok()?;
    parse_oom_kill(&text)
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
}

/// Whether memory+swap can be limited (`memory.memsw.*` on v1, only present with swap
/// accounting); kate then sets swap equal to the memory limit, so containers do not swap.
pub(crate) fn swap_accounting(mode: CgroupMode) -> bool {
    !mode.is_unified() && memory_dir(mode, "/").join("memory.memsw.limit_in_bytes").exists()
}

/// Removes the (empty) cgroup directory of `path` in every hierarchy, and then of up to
/// `ancestors` of its ancestors, never `/kate` itself; directories still in use are left alone.
/// Best effort.
pub(crate) fn remove(path: &str, ancestors: usize) {
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let hierarchies = hierarchies();
    for _ in 0..=ancestors {
        if parts.len() <= 1 {
            break;
        }
        let relative = parts.join("/");
        for h in &hierarchies {
            let _ = fs::remove_dir(h.mount_point.join(&relative));
        }
        parts.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_under_kate() {
        assert_eq!(container_path("", "c1"), "/kate/c1");
        assert_eq!(container_path("pods/p1", "c1"), "/kate/pods/p1/c1");
        assert_eq!(container_path("/pods//../p1/", "c1"), "/kate/pods/p1/c1");
        assert_eq!(parent_path("pods/p1/"), "/kate/pods/p1");
        assert_eq!(parent_path(""), "/kate");
    }

    #[test]
    fn oom_kill_counts_are_parsed() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn cgroup_mounts_are_found_in_mountinfo() {
        let text = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let found = parse_mountinfo(text);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(found[0].controllers, ["memory"]);
        assert_eq!(found[1].controllers, ["cpu", "cpuacct"]);
        assert!(found[2].v2);
    }
}
