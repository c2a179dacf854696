//! Starting, watching and stopping a `kate server` process in a throwaway data directory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many of the server's last stderr lines are kept for error messages.
const LOG_TAIL: usize = 40;

/// A running `kate server`, killed (SIGKILL) and its data directory removed on drop.
pub struct Server {
    child: Child,
    /// The server's temporary data directory.
    dir: tempfile::TempDir,
    /// The server's HTTPS port on 127.0.0.1.
    pub port: u16,
    /// Wall-clock time from spawning the process to reading its ready line.
    pub startup: Duration,
    log: Arc<Mutex<VecDeque<String>>>,
    /// The kate binary that removes the node's containers on drop, for a server with a node.
    reset_with: Option<PathBuf>,
}

/// The pod bridge of benchmark servers that run a node.
const NODE_BRIDGE: &str = "katebench0";

fn data_dir(data_root: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("kate-bench-")
        .tempdir_in(data_root)
        .with_context(|| format!("creating a data directory in {}", data_root.display()))
}

/// A cluster CIDR among 10.100.0.0/16–10.139.0.0/16 that differs from run to run. The kernel keeps
/// a closed connection's conntrack entry for two minutes; were the pods of this run at the
/// previous run's addresses, behind Services at new ClusterIPs, every NAT'd connection would
/// first have to evict an old entry with the same reply tuple, and the figures would measure the
/// previous run's leftovers.
fn fresh_cluster_cidr() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("10.{}.0.0/16", 100 + (nanos ^ std::process::id()) % 40)
}

impl Server {
    /// Spawns `kate server --https-port 0` in a fresh directory under `data_root` and waits for
    /// the ready line.
    pub fn start(kate: &Path, data_root: &Path) -> Result<Server> {
        Server::start_with(kate, data_root, &[])
    }

    /// Like [`Server::start`], with extra `kate server` arguments; the server runs no node
    /// (kubelet), so its figures are the control plane's.
    pub fn start_with(kate: &Path, data_root: &Path, extra: &[&str]) -> Result<Server> {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Server::launch(kate, data_dir(data_root)?, &args, None)
    }

    /// A server that also runs this machine's node (needs root) with `image` imported, on its
    /// own pod bridge; its containers are removed on drop.
    pub fn start_node(kate: &Path, data_root: &Path, image: &Path) -> Result<Server> {
        let dir = data_dir(data_root)?;
        let import = Command::new(kate)
            .args(["image", "import", "--data-dir"])
            .arg(dir.path())
            .arg(image)
            .output()
            .with_context(|| format!("running {} image import", kate.display()))?;
        if !import.status.success() {
            bail!(
                "importing {}: {}",
                image.display(),
                String::from_utf8_lossy(&import.stderr)
            );
        }
        let cidr = fresh_cluster_cidr();
        let args = [
            "--pod-bridge",
            NODE_BRIDGE,
            "--cluster-cidr",
            &cidr,
            "--kubelet-port",
            "20240",
        ];
        Server::launch(kate, dir, &args, Some(kate.to_path_buf()))
    }

    fn launch(kate: &Path, dir: tempfile::TempDir, extra: &[&str], reset_with: Option<PathBuf>) -> Result<Server> {
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (tx, rx) = mpsc::channel::<(Instant, String)>();
        let spawned = Instant::now();
        let mut child = Command::new(kate)
            .args(["server", "--https-port", "0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", kate.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server's stderr was not captured");
        };
        let tail = log.clone();
        // Drains stderr for the server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let now = Instant::now();
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == LOG_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                }
                let _ = tx.send((now, line));
            }
        });
        let mut server = Server {
            child,
            dir,
            port: 0,
            startup: Duration::ZERO,
            log,
            reset_with,
        };
        let deadline = spawned + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) if line.contains(" ready in ") => {
                    server.startup = at.duration_since(spawned);
                    server.port = parse_ready_line(&line)?;
                    return Ok(server);
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "kate server did not become ready within {READY_TIMEOUT:?}; its log:\n{}",
                    server.log_tail()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().context("waiting for kate server")?;
                    bail!(
                        "kate server exited ({status}) before it was ready; its log:\n{}",
                        server.log_tail()
                    );
                }
            }
        }
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// The server's resident set size (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// The server's peak resident set size (`VmHWM`) in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Fails, with the end of the server's log, if the server has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("polling kate server")? {
            bail!("kate server exited ({status}); its log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines the server wrote to stderr.
    pub fn log_tail(&self) -> String {
        match self.log.lock() {
            Ok(tail) => tail.iter().map(|l| format!("  {l}\n")).collect(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(kate) = &self.reset_with {
            let _ = Command::new(kate)
                .args(["reset", "--pod-bridge", NODE_BRIDGE, "--data-dir"])
                .arg(self.dir.path())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The memory of the container shims (`kate shim run …` processes) of a data directory's
/// containers.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShimMemory {
    /// How many shims.
    pub count: usize,
    /// Summed `VmRSS` in KiB (counts the binary's shared pages once per shim).
    pub rss_kib: u64,
    /// Summed proportional set size in KiB (shared pages divided among their users).
    pub pss_kib: u64,
    /// Summed anonymous (private) memory in KiB.
    pub anon_kib: u64,
}

/// Reads the memory of the shims of `data_dir`'s containers.
pub fn shims_memory(data_dir: &Path) -> ShimMemory {
    let needle = data_dir.to_string_lossy().into_owned();
    let mut m = ShimMemory::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args.get(1).map(String::as_str) == Some("shim") && args.get(2).map(String::as_str) == Some("run");
        if is_shim && args.iter().any(|a| a.contains(&needle)) {
            m.count += 1;
            m.rss_kib += proc_status_kib(pid, "VmRSS").unwrap_or(0);
            m.anon_kib += proc_status_kib(pid, "RssAnon").unwrap_or(0);
            m.pss_kib += smaps_rollup_kib(pid, "Pss").unwrap_or(0);
        }
    }
    m
}

/// Reads one field of `/proc/<pid>/smaps_rollup`, in KiB.
fn smaps_rollup_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let value = text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Extracts the port from `kate: ready in 0.02s: API server at https://127.0.0.1:PORT, ...`,
/// refusing any address other than 127.0.0.1.
fn parse_ready_line(line: &str) -> Result<u16> {
    let url = line
        .split("API server at ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .with_context(|| format!("no URL in the ready line {line:?}"))?;
    let port = url
        .trim()
        .strip_prefix("https://127.0.0.1:")
        .with_context(|| format!("the server is not at https://127.0.0.1: {url}"))?;
    port.trim_end_matches('/')
        .parse()
        .with_context(|| format!("bad port in {url}"))
}

/// Reads one `kB` field of `/proc/<pid>/status`.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in {path}"))?;
    value
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("bad {field} in {path}: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_port() {
        let line = "kate: ready in 0.02s: API server at https://127.0.0.1:41234, kubeconfig at /tmp/x/kubeconfig.yaml";
        assert_eq!(parse_ready_line(line).ok(), Some(41234));
        assert!(parse_ready_line("kate: ready in 0.02s: API server at https://10.0.0.1:1, k").is_err());
    }

    #[test]
    fn own_rss() {
        let rss = proc_status_kib(std::process::id(), "VmRSS").unwrap_or(0);
        assert!(rss > 0);
    }
}
