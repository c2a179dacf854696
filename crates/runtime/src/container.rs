//! Containers: created from an image inside a sandbox, started under a detached shim, stopped,
//! inspected and removed.
//!
//! ```text
//! ROOT/containers/ID/container.json   the Container record plus what the shim needs
//! ROOT/containers/ID/config.json      the OCI runtime spec (this directory is runc's bundle)
//! ROOT/containers/ID/rootfs/          the overlay of the image's layers …
//! ROOT/containers/ID/{upper,work}/    … with the container's own changes
//! ROOT/containers/ID/started.json     written by the shim once runc started the container
//! ROOT/containers/ID/exit.json        written by the shim when the container's process ended
//! ROOT/containers/ID/runc.log         runc's own log (JSON lines)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, CgroupMode};
use crate::error::{Error, IoContext, Result};
use crate::reference::ImageRef;
use crate::rootfs::{mount_overlay, unmount};
use crate::runc::{Runc, is_not_found};
use crate::runtime::Runtime;
use crate::sandbox::Sandbox;
use crate::spec::{self, SpecInput};
use crate::state::{read_json, remove_dir_all, validate_id, write_atomic, write_json_atomic};
use crate::user;

/// How often state is polled while waiting for a container to end.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for a container to end after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the container should be: the kubelet's translation of a pod's container.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The container ID, unique on the node (letters, digits, `_-.+`).
    pub id: String,
    /// The image; it must be in the store.
    pub image: ImageRef,
    /// The command line (the kubelet merges `command`/`args` with the image's entrypoint and
    /// cmd). When empty, the image's entrypoint and cmd.
    pub args: Vec<String>,
    /// Environment variables, over the image's (same names replace the image's values).
    pub env: Vec<(String, String)>,
    /// The working directory; default the image's, else `/`.
    pub working_dir: Option<String>,
    /// Bind mounts from the host.
    pub mounts: Vec<Mount>,
    /// The user to run as; default the image's `User` (root when it has none).
    pub user: Option<UserSpec>,
    /// All capabilities, no masked paths, writable /sys, all devices allowed in the cgroup.
    pub privileged: bool,
    /// Mount the root file system read-only.
    pub read_only_rootfs: bool,
    /// Forbid gaining privileges through setuid binaries and file capabilities.
    pub no_new_privileges: bool,
    /// Capabilities added to the default set (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub capabilities_add: Vec<String>,
    /// Capabilities removed from the default set (`ALL` removes all).
    pub capabilities_drop: Vec<String>,
    /// Resource limits.
    pub resources: Resources,
    /// Run with a terminal: its output is all on stdout, and attached clients can resize it.
    pub tty: bool,
    /// Keep stdin open for attached clients ([`Runtime::attach`]); otherwise stdin is /dev/null.
    pub stdin: bool,
    /// Close stdin when the first attached client that wrote to it goes away.
    pub stdin_once: bool,
    /// Where the shim writes the container's output, in the CRI log format.
    pub log_path: PathBuf,
    /// The kubelet's own data, kept and returned as is.
    pub labels: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// A configuration with the defaults: the image's command, user and environment, no limits.
    pub fn new(id: impl Into<String>, image: ImageRef, log_path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            image,
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            user: None,
            privileged: false,
            read_only_rootfs: false,
            no_new_privileges: false,
            capabilities_add: Vec::new(),
            capabilities_drop: Vec::new(),
            resources: Resources::default(),
            tty: false,
            stdin: false,
            stdin_once: false,
            log_path: log_path.into(),
            labels: BTreeMap::new(),
        }
    }
}

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The file or directory on the host; it must exist.
    pub host_path: PathBuf,
    /// Where it appears in the container (absolute).
    pub container_path: String,
    /// Mount it read-only.
    pub read_only: bool,
}

/// Numeric user and groups (a pod's `runAsUser`, `runAsGroup`, `supplementalGroups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// The user ID.
    pub uid: u32,
    /// The group ID; default the user's group in the image's /etc/passwd, else 0.
    pub gid: Option<u32>,
    /// More groups, besides the user's memberships in the image's /etc/group.
    pub supplemental_groups: Vec<u32>,
}

/// Resource limits, in the cgroup's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU shares (v1 `cpu.shares`; runc converts to a v2 weight): 1024 per CPU requested.
    pub cpu_shares: Option<u64>,
    /// CPU time per period, in microseconds.
    pub cpu_quota: Option<i64>,
    /// The CPU period, in microseconds (default 100000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// A container that exists on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its ID.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// The image's normalized name, e.g. `docker.io/library/busybox:latest`.
    pub image: String,
    /// The image ID (digest of its config) the container was created from.
    pub image_id: String,
    /// The kubelet's labels, as given.
    pub labels: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its log file.
    pub log_path: PathBuf,
    /// Its directory (the OCI bundle).
    pub dir: PathBuf,
}

/// A container's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// What a container is doing, or how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The state.
    pub state: ContainerState,
    /// The process ID (in the host's PID namespace) while running.
    pub pid: Option<u32>,
    /// The exit code once exited (128 + signal number for a killed process); `None` when it is
    /// unknown because the shim itself died (reason `Unknown`).
    pub exit_code: Option<i32>,
    /// Why it exited: `Completed` (code 0), `Error`, `OOMKilled` (the memory cgroup recorded an
    /// OOM kill), or `Unknown`.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was started.
    pub started_at: Option<Timestamp>,
    /// When it exited.
    pub finished_at: Option<Timestamp>,
}

/// `container.json`: the public record plus what the shim needs to run the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    #[serde(flatten)]
    pub container: Container,
    /// The OCI runtime to use.
    pub runc: Runc,
    /// The container's cgroup (absolute path, as in config.json).
    pub cgroups_path: String,
    /// The host's cgroup layout.
    pub cgroup_mode: CgroupMode,
    /// How the container's stdio is set up; records from before it existed had pipes only.
    #[serde(default)]
    pub stdio: StdioRecord,
}

/// The stdio choices of [`ContainerConfig`] the shim needs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct StdioRecord {
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
}

/// `started.json`, written by the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Started {
    /// The container's init process.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat` field 22), telling it from a later process of that PID.
    pub pid_start: u64,
    /// The shim's PID and start time.
    pub shim_pid: u32,
    pub shim_start: u64,
    pub started_at: Timestamp,
}

/// `exit.json`, written by the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Exited {
    /// The exit status, or 128 + signal.
    pub exit_code: i32,
    /// Whether the memory cgroup counted an OOM kill.
    pub oom_killed: bool,
    pub finished_at: Timestamp,
}

/// The start time of process `pid` in clock ticks since boot; `None` if it does not exist.
pub(crate) fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` that started at `start` still exists (and is not a zombie).
fn alive(pid: u32, start: u64) -> bool {
    if proc_start_time(pid) != Some(start) {
        return false;
    }
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let state = state
        .as_deref()
        .and_then(|s| s[s.rfind(')')? + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

impl Runtime {
    /// Creates a container in `sandbox`: mounts its root file system (an overlay of the image),
    /// writes the OCI spec and creates the log file. It does not run until
    /// [`start_container`](Self::start_container).
    pub async fn create_container(&self, sandbox: &Sandbox, cfg: &ContainerConfig) -> Result<Container> {
        let runtime = self.clone();
        let sandbox = sandbox.clone();
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || runtime.create_container_blocking(&sandbox, &cfg))
            .await
            .map_err(|e| Error::Io {
                context: "creating a container".to_string(),
                error: io::Error::other(e),
            })?
    }

    fn create_container_blocking(&self, sandbox: &Sandbox, cfg: &ContainerConfig) -> Result<Container> {
        validate_id("container", &cfg.id)?;
        if !sandbox.dir.join("sandbox.json").is_file() {
            return Err(Error::SandboxNotFound(sandbox.id.clone()));
        }
        let dir = self.container_dir(&cfg.id);
        let parent = self.containers_dir();
        fs::create_dir_all(&parent).ctx("creating", &parent)?;
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    kind: "container",
                    id: cfg.id.clone(),
                });
            }
            other => other.ctx("creating", &dir)?,
        }
        let result = self.build_container(sandbox, cfg, &dir);
        if result.is_err() {
            let _ = unmount(&dir.join("rootfs"));
            let _ = remove_dir_all(&dir);
        }
        result
    }

    fn build_container(&self, sandbox: &Sandbox, cfg: &ContainerConfig, dir: &Path) -> Result<Container> {
        let image = self.images().image(&cfg.image)?;
        let layers = self.images().rootfs_layers(&cfg.image)?;
        let rootfs = dir.join("rootfs");
        for sub in ["rootfs", "upper", "work"] {
            let path = dir.join(sub);
            fs::create_dir(&path).ctx("creating", &path)?;
        }
        mount_overlay(&layers, &dir.join("upper"), &dir.join("work"), &rootfs)?;

        let user = user::resolve(&rootfs, cfg.user.as_ref(), image.config.user.as_deref())?;
        let cgroups_path = cgroup::container_path(&sandbox.cgroup_parent, &cfg.id);
        let mode = self.cgroup_mode();
        let spec = spec::generate(&SpecInput {
            config: cfg,
            sandbox,
            image: &image.config,
            user: &user,
            cgroups_path: &cgroups_path,
            cgroup_mode: mode,
            swap_accounting: cgroup::swap_accounting(mode),
            bounding: spec::bounding_set(),
        })?;
        let config = serde_json::to_vec_pretty(&spec).map_err(Error::json("config.json"))?;
        write_atomic(&dir.join("config.json"), &config)?;

        // The shim runs in `/`: it needs the absolute path.
        let log_path = std::path::absolute(&cfg.log_path).ctx("resolving", &cfg.log_path)?;
        if let Some(parent) = log_path.parent() {
            fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .ctx("creating", &log_path)?;

        let record = ContainerRecord {
            container: Container {
                id: cfg.id.clone(),
                sandbox_id: sandbox.id.clone(),
                image: image.name.clone(),
                image_id: image.id.to_string(),
                labels: cfg.labels.clone(),
                created_at: Timestamp::now(),
                log_path,
                dir: dir.to_path_buf(),
            },
            runc: self.runc().clone(),
            cgroups_path,
            cgroup_mode: mode,
            stdio: StdioRecord {
                tty: cfg.tty,
                stdin: cfg.stdin,
                stdin_once: cfg.stdin_once,
            },
        };
        write_json_atomic(&dir.join("container.json"), &record)?;
        Ok(record.container)
    }

    /// Starts a created container: runs the shim (`<shim_exe> shim start DIR`), which detaches a
    /// supervisor that runs it with runc, writes its output to the log, and records how it ends.
    /// Returns once the container's process runs.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let record = self.record(id)?;
        let dir = &record.container.dir;
        if dir.join("started.json").exists() {
            return Err(Error::Command {
                command: "start".to_string(),
                message: format!("container {id} has already been started"),
            });
        }
        let shim = &self.options().shim_exe;
        let output = tokio::process::Command::new(shim)
            .arg("shim")
            .arg("start")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| Error::Command {
                command: format!("{} shim start", shim.display()),
                message: e.to_string(),
            })?;
        if !output.status.success() {
            let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if message.is_empty() {
                message = output.status.to_string();
            }
            return Err(Error::Command {
                command: format!("{} shim start", shim.display()),
                message,
            });
        }
        Ok(())
    }

    /// Stops a container: SIGTERM, then SIGKILL if it still runs after `grace`. Returns once it
    /// has exited (and the shim has recorded it); stopping one that is not running succeeds.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        if self.container_status(id)?.state != ContainerState::Running {
            return Ok(());
        }
        let runc = self.runc();
        if !grace.is_zero() {
            if let Err(e) = runc.run(&["kill", id, "TERM"]).await
                && !is_not_found(&e)
            {
                return Err(e);
            }
            if self.wait_exited(id, grace).await? {
                return Ok(());
            }
        }
        if let Err(e) = runc.run(&["kill", "--all", id, "KILL"]).await
            && !is_not_found(&e)
        {
            return Err(e);
        }
        if self.wait_exited(id, KILL_TIMEOUT).await? {
            Ok(())
        } else {
            Err(Error::Command {
                command: "stop".to_string(),
                message: format!("container {id} still runs {KILL_TIMEOUT:?} after SIGKILL"),
            })
        }
    }

    /// Waits up to `timeout` for the container to leave the Running state.
    async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.container_status(id)?.state != ContainerState::Running {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Removes a container, killing it if it runs: deletes it from runc, unmounts its root file
    /// system and deletes its directory (the log file stays: it is the kubelet's). Removing a
    /// container that does not exist succeeds.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        validate_id("container", id)?;
        let dir = self.container_dir(id);
        let record: Option<ContainerRecord> = read_json(&dir.join("container.json"))?;
        if record.is_some() {
            self.stop_container(id, Duration::ZERO).await?;
        }
        let runc = record.as_ref().map_or(self.runc(), |r| &r.runc);
        if let Err(e) = runc.run(&["delete", "--force", id]).await
            && !is_not_found(&e)
        {
            return Err(e);
        }
        unmount(&dir.join("rootfs"))?;
        if let Some(record) = &record {
            // runc removes it; only what a killed runc may have left. The pod's stays.
            cgroup::remove(&record.cgroups_path, 0);
        }
        remove_dir_all(&dir)
    }

    /// The container's current state, from the records in its directory and whether its
    /// process (or its shim) is alive.
    pub fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let record = self.record(id)?;
        let dir = &record.container.dir;
        let started: Option<Started> = read_json(&dir.join("started.json"))?;
        let mut exited: Option<Exited> = read_json(&dir.join("exit.json"))?;
        let mut status = ContainerStatus {
            state: ContainerState::Created,
            pid: None,
            exit_code: None,
            reason: None,
            created_at: record.container.created_at,
            started_at: started.as_ref().map(|s| s.started_at),
            finished_at: None,
        };
        let Some(started) = started else {
            return Ok(status);
        };
        if exited.is_none() {
            if alive(started.pid, started.pid_start) || alive(started.shim_pid, started.shim_start) {
                status.state = ContainerState::Running;
                status.pid = Some(started.pid);
                return Ok(status);
            }
            // The shim may have written the record between the two reads.
            exited = read_json(&dir.join("exit.json"))?;
        }
        status.state = ContainerState::Exited;
        match exited {
            Some(exit) => {
                status.exit_code = Some(exit.exit_code);
                status.finished_at = Some(exit.finished_at);
                status.reason = Some(
                    if exit.oom_killed {
                        "OOMKilled"
                    } else if exit.exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    }
                    .to_string(),
                );
            }
            None => status.reason = Some("Unknown".to_string()),
        }
        Ok(status)
    }

    /// The container `id`, read from disk.
    pub fn container(&self, id: &str) -> Result<Container> {
        Ok(self.record(id)?.container)
    }

    /// All containers on disk (for instance to adopt them after kate restarts), by ID.
    pub fn list_containers(&self) -> Result<Vec<Container>> {
        let mut found = Vec::new();
        for id in self.ids_in(&self.containers_dir())? {
            match self.record(&id) {
                Ok(r) => found.push(r.container),
                // Half-created ones have no record yet.
                Err(Error::ContainerNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// A command running `argv` in the running container (`runc exec`), with the container's
    /// environment, working directory, user and capabilities. The caller sets its stdio and
    /// spawns it; its exit status is the process's. With `tty` the process gets a terminal of
    /// its own (`runc exec --tty`), which runc connects to the command's stdio: that must then be
    /// a terminal too, the slave side of a pty the caller reads and writes.
    pub fn exec(&self, id: &str, argv: &[String], tty: bool) -> Result<tokio::process::Command> {
        if argv.is_empty() {
            return Err(Error::InvalidConfig("exec needs a command".to_string()));
        }
        let record = self.record(id)?;
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(Error::NotRunning(id.to_string()));
        }
        let mut command = record.runc.async_command();
        command.arg("exec");
        if tty {
            command.arg("--tty");
        }
        command.arg(id).args(argv).kill_on_drop(true);
        Ok(command)
    }

    /// The container's log file.
    pub fn log_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.record(id)?.container.log_path)
    }

    pub(crate) fn record(&self, id: &str) -> Result<ContainerRecord> {
        validate_id("container", id)?;
        let dir = self.container_dir(id);
        let mut record: ContainerRecord =
            read_json(&dir.join("container.json"))?.ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        record.container.dir = dir;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_times_are_read() {
        let me = std::process::id();
        let start = proc_start_time(me).expect("our own stat");
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert_eq!(proc_start_time(u32::MAX), None);
    }
}
