//! Helpers for end-to-end tests: start a real `kate server` in a temporary directory and drive it
//! with the machine's real `kubectl` or with kube-rs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
pub use kate_testkit::{HTPASSWD, REGISTRY_PASSWORD, REGISTRY_USER, Registry, busybox_archive};

/// The `kate` binary under test: `$KATE_BIN`, else the workspace's debug build.
pub fn kate_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KATE_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join("kate")
}

/// A running `kate server` with its own data directory, killed on drop.
pub struct Cluster {
    child: Child,
    /// The data directory (a temp dir).
    pub dir: tempfile::TempDir,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The server URL.
    pub url: String,
    /// The pod bridge, when the server runs a node: its containers are removed on drop.
    node_bridge: Option<String>,
}

impl Cluster {
    /// Starts a server on a free port and waits until it says it is ready.
    pub fn start() -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        Cluster::start_in(dir)
    }

    /// Starts a server with an existing data directory (to test restarts).
    pub fn start_in(dir: tempfile::TempDir) -> Result<Cluster> {
        Cluster::start_with(dir, &[])
    }

    /// Starts a control plane without a node (no kubelet) in `dir` with extra `kate server`
    /// arguments; tests that need running pods play the kubelet themselves.
    pub fn start_with(dir: tempfile::TempDir, extra: &[&str]) -> Result<Cluster> {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Cluster::launch(dir, &args)
    }

    /// Starts a server that runs this machine's node too (needs root), with the busybox test
    /// image imported. `network` (0–99) keeps its pod network (bridge, pod CIDR) and kubelet
    /// port apart from those of tests running at the same time.
    pub fn start_node(network: u8) -> Result<Cluster> {
        Cluster::start_node_in(tempfile::tempdir()?, network)
    }

    /// Like [`Cluster::start_node`], with extra `kate server` arguments.
    pub fn start_node_with(network: u8, extra: &[&str]) -> Result<Cluster> {
        Cluster::start_node_args(tempfile::tempdir()?, network, extra)
    }

    /// Like [`Cluster::start_node`] with an existing data directory (to test restarts).
    pub fn start_node_in(dir: tempfile::TempDir, network: u8) -> Result<Cluster> {
        Cluster::start_node_args(dir, network, &[])
    }

    fn start_node_args(dir: tempfile::TempDir, network: u8, extra: &[&str]) -> Result<Cluster> {
        let image = kate_testkit::busybox_archive();
        let import = Command::new(kate_bin())
            .args(["image", "import", "--data-dir"])
            .arg(dir.path())
            .arg(image)
            .output()?;
        if !import.status.success() {
            bail!(
                "importing {}: {}",
                image.display(),
                String::from_utf8_lossy(&import.stderr)
            );
        }
        let bridge = format!("katee{network}");
        let cidr = format!("10.{}.0.0/16", 150 + u16::from(network));
        let port = (20250 + u16::from(network)).to_string();
        let mut args = vec![
            "--pod-bridge",
            bridge.as_str(),
            "--cluster-cidr",
            &cidr,
            "--kubelet-port",
            &port,
        ];
        args.extend_from_slice(extra);
        let mut cluster = Cluster::launch(dir, &args)?;
        cluster.node_bridge = Some(bridge);
        Ok(cluster)
    }

    fn launch(dir: tempfile::TempDir, extra: &[&str]) -> Result<Cluster> {
        let bin = kate_bin();
        if !bin.exists() {
            bail!(
                "{} is missing: build it first with `cargo build -p kate`",
                bin.display()
            );
        }
        let mut child = Command::new(&bin)
            .args(["server", "--https-port", "0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[kate] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(" ready in ") => {
                    let url = line
                        .split("API server at ")
                        .nth(1)
                        .and_then(|r| r.split(',').next())
                        .context("no URL in the ready line")?;
                    break url.to_string();
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    bail!("kate server did not become ready");
                }
            }
        };
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        Ok(Cluster {
            child,
            dir,
            kubeconfig,
            url,
            node_bridge: None,
        })
    }

    /// Stops the server with SIGKILL and hands back its data directory (the node's
    /// containers keep running, as they would).
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.node_bridge = None;
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Asks the server to stop cleanly (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(self.child.wait()?)
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, manifest: &str) -> Result<()> {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(manifest)).map(drop)
    }

    /// A pod (in the default namespace) as JSON.
    pub fn pod(&self, name: &str) -> Result<serde_json::Value> {
        let out = self.kubectl(&["get", "pod", name, "-o", "json"])?;
        serde_json::from_str(&out).context("pod JSON")
    }

    /// Waits until `check` holds for the pod, then returns it; on a timeout the error carries
    /// the pod's status and events.
    pub fn wait_pod(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let waited = eventually_blocking(what, || Ok(self.pod(name).map(|p| check(&p)).unwrap_or(false)));
        if let Err(e) = waited {
            let status = self.pod(name).map(|p| p["status"].to_string()).unwrap_or_default();
            let selector = format!("involvedObject.name={name}");
            let events = self
                .kubectl(&["get", "events", "--field-selector", &selector])
                .unwrap_or_default();
            bail!("{e}\npod status: {status}\nevents:\n{events}");
        }
        self.pod(name)
    }

    /// A `kubectl` command using this cluster's kubeconfig and a private discovery cache.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("kubectl-cache").display()
            ))
            .args(args);
        cmd
    }

    /// Runs kubectl and returns its output whatever the exit status.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut cmd = self.kubectl_cmd(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running kubectl")?;
        if let Some(input) = stdin {
            child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl, requiring success; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `input` on stdin, requiring success; returns stdout.
    pub fn kubectl_stdin(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let out = self.kubectl_output(args, input)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_output(args, None)?;
        if out.status.success() {
            bail!(
                "kubectl {} unexpectedly succeeded: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(bridge) = &self.node_bridge {
            let _ = Command::new(kate_bin())
                .args(["reset", "--pod-bridge", bridge, "--data-dir"])
                .arg(self.dir.path())
                .status();
        }
    }
}

/// An HTTP/1.0 `GET /` from the host to `ip:port` on a fresh connection: the whole response,
/// status line and headers included.
pub fn http_response(ip: &str, port: u16) -> std::io::Result<String> {
    let addr = format!("{ip}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut page = String::new();
    std::io::Read::read_to_string(&mut s, &mut page)?;
    Ok(page)
}

/// Like [`http_response`], only the body, trimmed.
pub fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let page = http_response(ip, port)?;
    Ok(page
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or(page))
}

/// How long [`eventually`] and [`eventually_blocking`] keep checking.
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls an async check every 200 ms until it holds, failing after 30 s with `what`.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out waiting for {what}")
}

/// Polls a blocking check (e.g. one running kubectl) every 200 ms until it holds, failing after
/// 30 s with `what`.
pub fn eventually_blocking(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out waiting for {what}")
}

/// Splits kubectl's table output into rows of whitespace-separated cells (header included).
pub fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}
