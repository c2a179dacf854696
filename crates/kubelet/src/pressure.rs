//! Memory, disk and PID pressure: the host's free resources against upstream's hard eviction thresholds.
//!
//! They only set the node's conditions: no pod is evicted. What cannot be read counts as no
//! pressure, as upstream reports False when it has no observation.

use std::path::Path;

/// The `memory.available` hard eviction threshold, 100Mi.
pub const MEMORY_EVICTION_BYTES: u64 = 100 * 1024 * 1024;

/// Which of the node's resources are short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// `memory.available` is below 100Mi.
    pub memory: bool,
    /// The kubelet directory's file system has under 10% of its space or 5% of its inodes free.
    pub disk: bool,
    /// Under 10% of the PIDs the kernel hands out are free.
    pub pid: bool,
}

impl Pressure {
    /// Reads the host now; `data_dir` is the kubelet's directory, whose file system is nodefs.
    pub fn observe(data_dir: &Path) -> Pressure {
        Pressure {
            memory: judge("memory.available", memory_available(), memory_pressure),
            disk: judge("nodefs", statvfs(data_dir), |s| {
                disk_pressure(s.f_bfree, s.f_blocks, s.f_ffree, s.f_files)
            }),
            pid: judge("pid.available", pids(), |(in_use, max)| pid_pressure(in_use, max)),
        }
    }
}

/// The verdict on an observation, or no pressure when there is none.
fn judge<T>(signal: &str, observed: Result<T, String>, pressure: impl FnOnce(T) -> bool) -> bool {
    match observed {
        Ok(value) => pressure(value),
        Err(error) => {
            tracing::debug!(signal, %error, "cannot observe; reporting no pressure");
            false
        }
    }
}

/// Whether `available_bytes` of memory is under the 100Mi threshold.
pub fn memory_pressure(available_bytes: u64) -> bool {
    available_bytes < MEMORY_EVICTION_BYTES
}

/// Whether a file system is short of space (`nodefs.available` < 10%) or inodes (`nodefs.inodesFree` < 5%).
///
/// Available blocks are the free ones, the blocks reserved for root included: upstream counts
/// only those an unprivileged user may take, but kate's kubelet and the images, logs and
/// container layers it writes are root's, and a file system reserving a large share for root
/// (ext4 may hold back far more than the default 5%) would otherwise report pressure with most
/// of its space free. A file system without an inode limit reports 0 inodes and is never short
/// of them.
pub fn disk_pressure(avail_blocks: u64, total_blocks: u64, free_inodes: u64, total_inodes: u64) -> bool {
    // Widened so that huge file systems cannot overflow the scaled comparison.
    u128::from(avail_blocks) * 10 < u128::from(total_blocks) || u128::from(free_inodes) * 20 < u128::from(total_inodes)
}

/// Whether fewer than 10% of `max` PIDs are left when `in_use` are taken.
///
/// Upstream has no default `pid.available` threshold, so its PIDPressure stays False unless one
/// is configured; kate applies 10% so that a node running out of PIDs says so.
pub fn pid_pressure(in_use: u64, max: u64) -> bool {
    u128::from(max.saturating_sub(in_use)) * 10 < u128::from(max)
}

/// `memory.available` in bytes. Upstream takes capacity less the root cgroup's working set;
/// the kernel's MemAvailable estimate is the same idea (free memory plus the page cache and
/// slab that can be reclaimed) without depending on the cgroup layout.
fn memory_available() -> Result<u64, String> {
    mem_available(&read("/proc/meminfo")?).ok_or_else(|| "no MemAvailable in /proc/meminfo".into())
}

/// MemAvailable from the text of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

fn statvfs(path: &Path) -> Result<rustix::fs::StatVfs, String> {
    rustix::fs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))
}

/// PIDs in use and the most there can be. Every thread takes a PID, so threads are counted, and
/// the kernel stops at threads-max when that is below pid_max.
fn pids() -> Result<(u64, u64), String> {
    let pid_max = number(&read("/proc/sys/kernel/pid_max")?, "/proc/sys/kernel/pid_max")?;
    let max = match read("/proc/sys/kernel/threads-max") {
        Ok(text) => pid_max.min(number(&text, "/proc/sys/kernel/threads-max")?),
        Err(_) => pid_max,
    };
    let in_use = threads(&read("/proc/loadavg")?).ok_or("no thread count in /proc/loadavg")?;
    Ok((in_use, max))
}

/// The number of threads from the text of `/proc/loadavg`: the total in its 4th field,
/// "runnable/total". It is read rather than sysinfo(2)'s count, which is 16 bits wide.
fn threads(loadavg: &str) -> Option<u64> {
    loadavg.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

fn number(text: &str, path: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|e| format!("{path}: {e}"))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       32851564 kB\nMemFree:         1234567 kB\n\
                           MemAvailable:   24134696 kB\nBuffers:          345678 kB\n";

    #[test]
    fn memory_threshold_is_100mi() {
        assert!(memory_pressure(0));
        assert!(memory_pressure(100 * 1024 * 1024 - 1));
        assert!(!memory_pressure(100 * 1024 * 1024));
        assert!(!memory_pressure(u64::MAX));
    }

    #[test]
    fn disk_space_threshold_is_10_percent() {
        assert!(!disk_pressure(10, 100, 50, 100));
        assert!(disk_pressure(9, 100, 50, 100));
        // u64::MAX - 5 is a multiple of 10, so u64::MAX / 10 is exactly 10% of it.
        assert!(!disk_pressure(u64::MAX / 10, u64::MAX - 5, 0, 0));
        assert!(disk_pressure(u64::MAX / 10 - 1, u64::MAX - 5, 0, 0));
        assert!(!disk_pressure(u64::MAX, u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    fn disk_inode_threshold_is_5_percent() {
        assert!(!disk_pressure(50, 100, 5, 100));
        assert!(disk_pressure(50, 100, 4, 100));
    }

    #[test]
    fn empty_counts_are_no_disk_pressure() {
        // btrfs and others report no inode limit as 0 of 0.
        assert!(!disk_pressure(50, 100, 0, 0));
        assert!(!disk_pressure(0, 0, 0, 0));
    }

    #[test]
    fn pid_threshold_is_10_percent() {
        assert!(!pid_pressure(900, 1000));
        assert!(pid_pressure(901, 1000));
        assert!(pid_pressure(2000, 1000));
        assert!(!pid_pressure(0, 0));
    }

    #[test]
    fn parses_mem_available() {
        assert_eq!(mem_available(MEMINFO), Some(24_134_696 * 1024));
        assert_eq!(mem_available("MemTotal:       32851564 kB\n"), None);
        assert_eq!(mem_available("MemAvailable:   lots kB\n"), None);
    }

    #[test]
    fn parses_loadavg_threads() {
        assert_eq!(threads("1.22 2.59 2.07 1/87 17747\n"), Some(87));
        assert_eq!(threads("0.00 0.01 0.05 3/123456 99\n"), Some(123_456));
        assert_eq!(threads("1.22 2.59 2.07"), None);
        assert_eq!(threads("1.22 2.59 2.07 87 17747"), None);
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(number("32768\n", "pid_max"), Ok(32768));
        assert!(number("", "pid_max").is_err());
    }

    #[test]
    fn observes_this_host() {
        // A path that does not exist cannot be measured, which is no disk pressure.
        let pressure = Pressure::observe(Path::new("/nonexistent/kubelet"));
        assert!(!pressure.disk);
        assert!(memory_available().is_ok());
        let (in_use, max) = pids().expect("readable /proc");
        assert!(in_use > 0 && max > 0);
    }
}
