//! Sandboxes and containers end to end, as root, with runc, the CNI plugins and the busybox image:
//! output logged in the CRI format, exit codes, stopping, the pod network, OOM kills, failures,
//! and adoption by a new `Runtime` on the same root.
//!
//! Every test has its own root, bridge and subnet (10.250.N.0/24, `katetN`), so they run in
//! parallel; sandbox IDs carry the process ID, since network namespaces are pinned in /run/netns.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kate_runtime::{
    CniConfig, ContainerConfig, ContainerState, ContainerStatus, Error, ImageRef, ImageStore, Output, PortMapping,
    Protocol, Resources, Runtime, RuntimeOptions, Sandbox, SandboxConfig, Timestamp,
};
use kate_testkit::{busybox_archive, require, require_root};

/// One test's runtime, network and directories; cleans up what a failed test leaves.
struct Fixture {
    runtime: Runtime,
    n: u8,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A runtime on a fresh root, with bridge `katetN` on 10.250.N.0/24.
    fn new(n: u8) -> Self {
        require_root();
        require("runc", "runc");
        require("iptables", "iptables");
        assert!(
            Path::new("/usr/lib/cni/bridge").exists(),
            "the CNI plugins are missing: install the Debian package `containernetworking-plugins`"
        );
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(dir.path().join("images")).unwrap();
        images.import(busybox_archive()).unwrap();
        let runtime = Runtime::new(Self::options(dir.path(), n), images).unwrap();
        Self { runtime, n, dir }
    }

    fn options(dir: &Path, n: u8) -> RuntimeOptions {
        let mut options = RuntimeOptions::new(dir.join("runtime"));
        options.shim_exe = PathBuf::from(env!("CARGO_BIN_EXE_kate-runtime-shim"));
        options.cni_conf = CniConfig {
            network: format!("katet{n}"),
            bridge: format!("katet{n}"),
            subnet: format!("10.250.{n}.0/24"),
            gateway: None,
            mtu: None,
        };
        options
    }

    /// Another runtime on the same root, as after a restart of kate.
    fn reopen(&self) -> Runtime {
        let images = ImageStore::open(self.dir.path().join("images")).unwrap();
        Runtime::new(Self::options(self.dir.path(), self.n), images).unwrap()
    }

    /// A sandbox configuration with a unique ID.
    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            id: format!("{name}-{}", std::process::id()),
            hostname: name.to_string(),
            labels: BTreeMap::from([("io.kubernetes.pod.name".to_string(), name.to_string())]),
            cgroup_parent: format!("test/{name}-{}", std::process::id()),
            ..SandboxConfig::default()
        }
    }

    /// A busybox container running `sh -c script`, logging into the test's directory.
    fn container(&self, id: &str, script: &str) -> ContainerConfig {
        let id = format!("{id}-{}", std::process::id());
        let log = self.dir.path().join("logs").join(format!("{id}.log"));
        let mut cfg = ContainerConfig::new(id, ImageRef::parse("busybox:latest").unwrap(), log);
        cfg.args = vec!["sh".into(), "-c".into(), script.into()];
        cfg
    }

    async fn run(&self, sandbox: &Sandbox, cfg: &ContainerConfig) {
        self.runtime.create_container(sandbox, cfg).await.unwrap();
        self.runtime.start_container(&cfg.id).await.unwrap();
    }

    /// Waits for the container to reach `state`.
    async fn wait_for(&self, id: &str, state: ContainerState) -> ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.runtime.container_status(id).unwrap();
            if status.state == state {
                return status;
            }
            assert!(Instant::now() < deadline, "{id} never became {state:?}: {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a command in the container; its stdout, asserting it succeeded.
    async fn exec(&self, id: &str, argv: &[&str]) -> String {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let out = self
            .runtime
            .exec(id, &argv, false)
            .unwrap()
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "exec {argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Removes every sandbox (and so container) of the test.
    async fn cleanup(&self) {
        for sandbox in self.runtime.list_sandboxes().unwrap() {
            self.runtime.remove_sandbox(&sandbox.id).await.unwrap();
        }
        assert!(self.runtime.list_containers().unwrap().is_empty());
    }
}

impl Drop for Fixture {
    /// For a test that failed half-way: removes its sandboxes (CNI DEL included) with a runtime of
    /// its own, then makes sure nothing stays mounted in the temporary directory or in
    /// /run/netns; the bridge goes.
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for sandbox in runtime.list_sandboxes().unwrap_or_default() {
                    let _ = runtime.remove_sandbox(&sandbox.id).await;
                }
                for container in runtime.list_containers().unwrap_or_default() {
                    let _ = runtime.remove_container(&container.id).await;
                }
            });
        })
        .join();
        let root = self.dir.path().join("runtime");
        let umount = |p: &Path| {
            let _ = Command::new("umount").arg("-l").arg(p).stderr(Stdio::null()).status();
        };
        for entry in fs::read_dir(root.join("containers")).into_iter().flatten().flatten() {
            umount(&entry.path().join("rootfs"));
        }
        for entry in fs::read_dir(root.join("sandboxes")).into_iter().flatten().flatten() {
            for sub in ["ns/ipc", "ns/uts", "shm"] {
                umount(&entry.path().join(sub));
            }
            let netns = Path::new("/run/netns").join(format!("kate-{}", entry.file_name().to_string_lossy()));
            umount(&netns);
            let _ = fs::remove_file(netns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("katet{}", self.n)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Fields of /proc/PID/stat after the command name: 0 state, 1 ppid, 2 pgrp, 3 session.
fn stat_field(pid: u32, field: usize) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(field).unwrap().parse().unwrap()
}

/// The log's entries: (time, stream, tag, content).
fn log_entries(path: &Path) -> Vec<(String, String, String, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("bad log line {line:?}"))
                    .to_string()
            };
            (next(), next(), next(), next())
        })
        .collect()
}

/// GET / over HTTP/1.0, retrying while the server starts.
fn http_get(addr: (IpAddr, u16)) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        });
        match attempt {
            Ok(response) if !response.is_empty() => return response,
            other => assert!(Instant::now() < deadline, "GET {addr:?}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The device and inode of a namespace file, which identify the namespace.
fn ns_id(path: impl AsRef<Path>) -> (u64, u64) {
    let meta = fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[tokio::test]
async fn output_is_logged_in_cri_format_and_the_exit_code_recorded() {
    let fx = Fixture::new(1);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("logs")).await.unwrap();
    let cfg = fx.container(
        "exit3",
        "echo hello; echo oops >&2; hostname; echo \"$HOSTNAME $GREETING\"; printf unterminated; exit 3",
    );
    let mut cfg = cfg;
    cfg.env = vec![("GREETING".into(), "hi there".into())];
    let created = fx.runtime.create_container(&sandbox, &cfg).await.unwrap();
    assert_eq!(created.sandbox_id, sandbox.id);
    assert_eq!(created.image, "docker.io/library/busybox:latest");
    assert!(created.image_id.starts_with("sha256:"));
    let status = fx.runtime.container_status(&cfg.id).unwrap();
    assert_eq!(status.state, ContainerState::Created);
    assert_eq!((status.pid, status.exit_code, status.started_at), (None, None, None));

    fx.runtime.start_container(&cfg.id).await.unwrap();
    let status = fx.wait_for(&cfg.id, ContainerState::Exited).await;
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.reason.as_deref(), Some("Error"));
    let (started, finished) = (status.started_at.unwrap(), status.finished_at.unwrap());
    assert!(status.created_at <= started && started <= finished);
    assert!(
        fx.runtime.start_container(&cfg.id).await.is_err(),
        "a container starts only once"
    );

    let entries = log_entries(&fx.runtime.log_path(&cfg.id).unwrap());
    let lines: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(_, stream, tag, content)| (stream.as_str(), tag.as_str(), content.as_str()))
        .collect();
    let stdout: Vec<_> = lines.iter().filter(|l| l.0 == "stdout").copied().collect();
    assert_eq!(
        stdout,
        [
            ("stdout", "F", "hello"),
            ("stdout", "F", "logs"),
            ("stdout", "F", "logs hi there"),
            ("stdout", "F", "unterminated"),
        ]
    );
    assert!(lines.contains(&("stderr", "F", "oops")), "{lines:?}");
    assert_eq!(lines.len(), 5);
    // Entries are stamped when read: the last ones may be read just after the exit.
    let latest = finished + jiff::SignedDuration::from_secs(2);
    for (time, ..) in &entries {
        let time: Timestamp = time.parse().unwrap();
        assert!(time >= started && time <= latest, "{time} not in {started}..{finished}");
    }

    fx.runtime.remove_container(&cfg.id).await.unwrap();
    assert!(!created.dir.exists());
    assert!(matches!(
        fx.runtime.container_status(&cfg.id),
        Err(Error::ContainerNotFound(_))
    ));
    fx.runtime.remove_container(&cfg.id).await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let fx = Fixture::new(2);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("stop")).await.unwrap();
    // As PID 1, sleep has no handler for SIGTERM, which therefore does nothing.
    let sleeper = fx.container("sleeper", "exec sleep 1000");
    let trapper = fx.container("trapper", "trap 'exit 7' TERM; while :; do sleep 0.1; done");
    fx.run(&sandbox, &sleeper).await;
    fx.run(&sandbox, &trapper).await;

    let status = fx.wait_for(&sleeper.id, ContainerState::Running).await;
    let pid = status.pid.unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x001000\x00");
    assert_eq!(fx.exec(&sleeper.id, &["echo", "exec works"]).await, "exec works\n");
    assert_eq!(fx.exec(&sleeper.id, &["cat", "/etc/hostname"]).await, "stop\n");

    let t = Instant::now();
    fx.runtime
        .stop_container(&trapper.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "SIGTERM was handled at once");
    let status = fx.runtime.container_status(&trapper.id).unwrap();
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, Some(7)));

    let t = Instant::now();
    fx.runtime
        .stop_container(&sleeper.id, Duration::from_secs(1))
        .await
        .unwrap();
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(8),
        "killed after the grace period, took {elapsed:?}"
    );
    let status = fx.runtime.container_status(&sleeper.id).unwrap();
    assert_eq!(status.state, ContainerState::Exited);
    assert_eq!(status.exit_code, Some(137), "128 + SIGKILL");
    assert_eq!(status.reason.as_deref(), Some("Error"));
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(matches!(
        fx.runtime.exec(&sleeper.id, &["true".to_string()], false),
        Err(Error::NotRunning(_))
    ));
    // Stopping again is fine.
    fx.runtime
        .stop_container(&sleeper.id, Duration::from_secs(1))
        .await
        .unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn pods_get_an_ip_serve_traffic_and_share_namespaces() {
    let fx = Fixture::new(3);
    let mut cfg = fx.sandbox_config("web");
    cfg.port_mappings = vec![PortMapping {
        host_port: 18083,
        container_port: 8080,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    cfg.extra_hosts = vec![("10.9.9.9".into(), vec!["alias.example".into()])];
    let web = fx.runtime.run_sandbox(&cfg).await.unwrap();
    let ip = web.ip.expect("the sandbox has an IP");
    let IpAddr::V4(v4) = ip else { panic!("{ip} is not IPv4") };
    assert_eq!(v4.octets()[..3], [10, 250, 3], "{ip} is in the subnet");
    assert_ne!(v4.octets()[3], 1, "the gateway is the bridge's");
    let ipam_file = fx.runtime.ipam_dir().join(ip.to_string());
    assert!(ipam_file.exists(), "host-local recorded {}", ipam_file.display());
    let netns = web.netns.clone().unwrap();
    assert!(netns.starts_with("/run/netns"));

    let server = fx.container(
        "httpd",
        "mkdir -p /www && echo hello from kate > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let sidecar = fx.container("sidecar", "exec sleep 1000");
    fx.run(&web, &server).await;
    fx.run(&web, &sidecar).await;

    // From the host, through the bridge.
    let response = http_get((ip, 8080));
    assert!(response.contains("hello from kate"), "{response}");
    // Through the host port.
    let response = http_get(("127.0.0.1".parse().unwrap(), 18083));
    assert!(response.contains("hello from kate"), "{response}");

    // From another pod.
    let client = fx.runtime.run_sandbox(&fx.sandbox_config("client")).await.unwrap();
    assert_ne!(client.ip, web.ip);
    let wget = fx.container("wget", "exec sleep 1000");
    fx.run(&client, &wget).await;
    let page = fx
        .exec(&wget.id, &["wget", "-qO-", &format!("http://{ip}:8080/")])
        .await;
    assert_eq!(page, "hello from kate\n");

    // The pod's files.
    let hosts = fx.exec(&sidecar.id, &["cat", "/etc/hosts"]).await;
    assert!(hosts.contains(&format!("{ip}\tweb\n")), "{hosts}");
    assert!(hosts.contains("10.9.9.9\talias.example\n"), "{hosts}");
    assert_eq!(fx.exec(&sidecar.id, &["hostname"]).await, "web\n");

    // Containers of a pod share its network, IPC and UTS namespaces, and not the host's.
    let pid = |id: &str| fx.runtime.container_status(id).unwrap().pid.unwrap();
    let (a, b, c) = (pid(&server.id), pid(&sidecar.id), pid(&wget.id));
    for ns in ["net", "ipc", "uts"] {
        let ns_of = |pid: u32| ns_id(format!("/proc/{pid}/ns/{ns}"));
        assert_eq!(ns_of(a), ns_of(b), "{ns} is shared in the pod");
        assert_ne!(ns_of(a), ns_of(c), "{ns} differs between pods");
        assert_ne!(ns_of(a), ns_id(format!("/proc/self/ns/{ns}")), "{ns} is not the host's");
    }
    assert_eq!(ns_id(format!("/proc/{a}/ns/net")), ns_id(&netns));
    assert_ne!(ns_id(format!("/proc/{a}/ns/pid")), ns_id(format!("/proc/{b}/ns/pid")));

    // Removal frees the IP and deletes the namespaces, and can be repeated.
    fx.runtime.remove_sandbox(&web.id).await.unwrap();
    assert!(!ipam_file.exists(), "the IP was released");
    assert!(!netns.exists());
    assert!(!web.dir.exists());
    assert!(fx.runtime.container(&server.id).is_err() && fx.runtime.container(&sidecar.id).is_err());
    assert!(
        TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(1)).is_err(),
        "the server is gone"
    );
    fx.runtime.remove_sandbox(&web.id).await.unwrap();
    let left: Vec<String> = fx.runtime.list_sandboxes().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, [client.id.as_str()]);
    fx.cleanup().await;
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_an_oom_kill() {
    let fx = Fixture::new(4);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("oom")).await.unwrap();
    // tail buffers its never-ending last line.
    let mut hog = fx.container("hog", "exec tail /dev/zero");
    hog.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Resources::default()
    };
    fx.run(&sandbox, &hog).await;
    let status = fx.wait_for(&hog.id, ContainerState::Exited).await;
    assert_eq!(status.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(status.exit_code, Some(137));

    // A container that stays below its limit is not.
    let mut modest = fx.container("modest", "head -c 1000000 /dev/zero | wc -c");
    modest.resources.memory_limit = Some(16 << 20);
    fx.run(&sandbox, &modest).await;
    let status = fx.wait_for(&modest.id, ContainerState::Exited).await;
    assert_eq!(
        (status.exit_code, status.reason.as_deref()),
        (Some(0), Some("Completed"))
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn a_new_runtime_adopts_sandboxes_and_running_containers() {
    let fx = Fixture::new(5);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("adopt")).await.unwrap();
    let cfg = fx.container("long", "echo before; exec sleep 1000");
    fx.run(&sandbox, &cfg).await;
    let pid = fx.wait_for(&cfg.id, ContainerState::Running).await.pid;

    // The container's init is the child of its shim, a session leader that is not ours: it
    // lives on when the process that started it (kate) ends.
    let shim = stat_field(pid.unwrap(), 1);
    assert_ne!(shim, std::process::id());
    assert_eq!(stat_field(shim, 3), shim, "the shim leads its own session");
    assert_ne!(stat_field(shim, 1), std::process::id(), "the shim is not our child");

    let restarted = fx.reopen();
    let sandboxes = restarted.list_sandboxes().unwrap();
    assert_eq!(sandboxes.len(), 1);
    let found = &sandboxes[0];
    assert_eq!(found, &sandbox, "the same sandbox, IP and labels");
    assert!(found.ready);
    let containers = restarted.list_containers().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, cfg.id);
    assert_eq!(containers[0].sandbox_id, sandbox.id);
    let status = restarted.container_status(&cfg.id).unwrap();
    assert_eq!((status.state, status.pid), (ContainerState::Running, pid));

    restarted.stop_container(&cfg.id, Duration::ZERO).await.unwrap();
    assert_eq!(restarted.container_status(&cfg.id).unwrap().exit_code, Some(137));
    let log = log_entries(&cfg.log_path);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].3, "before");
    restarted.remove_sandbox(&sandbox.id).await.unwrap();
    assert!(restarted.list_sandboxes().unwrap().is_empty());
    assert!(fx.runtime.list_containers().unwrap().is_empty());
    assert!(!fx.runtime.ipam_dir().join(sandbox.ip.unwrap().to_string()).exists());
}

#[tokio::test]
async fn failures_are_reported_and_leave_nothing_behind() {
    let fx = Fixture::new(6);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("fail")).await.unwrap();
    let again = fx.runtime.run_sandbox(&fx.sandbox_config("fail")).await;
    assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");

    let mut missing = fx.container("missing", "");
    missing.args = vec!["/no/such/program".into()];
    fx.runtime.create_container(&sandbox, &missing).await.unwrap();
    let err = fx.runtime.start_container(&missing.id).await.unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    assert_eq!(
        fx.runtime.container_status(&missing.id).unwrap().state,
        ContainerState::Created
    );
    fx.runtime.remove_container(&missing.id).await.unwrap();

    let mut unknown = fx.container("unknown", "true");
    unknown.image = ImageRef::parse("example.com/nothing:1").unwrap();
    let err = fx.runtime.create_container(&sandbox, &unknown).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(!fx.dir.path().join("runtime/containers").join(&unknown.id).exists());

    let mut bad_user = fx.container("baduser", "true");
    let mut image_user = bad_user.clone();
    image_user.user = Some(kate_runtime::UserSpec {
        uid: 65534,
        gid: None,
        supplemental_groups: vec![1234],
    });
    image_user.id = format!("{}-ok", bad_user.id);
    image_user.args = vec!["id".into()];
    fx.run(&sandbox, &image_user).await;
    fx.wait_for(&image_user.id, ContainerState::Exited).await;
    let out = log_entries(&image_user.log_path);
    assert!(out[0].3.starts_with("uid=65534"), "{out:?}");
    assert!(out[0].3.contains("1234"), "{out:?}");
    bad_user.capabilities_add = vec!["NOT_A_CAPABILITY".into()];
    let err = fx.runtime.create_container(&sandbox, &bad_user).await.unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");

    let err = fx.runtime.start_container("never-created").await.unwrap_err();
    assert!(matches!(err, Error::ContainerNotFound(_)), "{err}");
    fx.cleanup().await;
}

#[tokio::test]
async fn host_network_pods_use_the_host_namespaces() {
    let fx = Fixture::new(7);
    let mut cfg = fx.sandbox_config("hostnet");
    cfg.host_network = true;
    let sandbox = fx.runtime.run_sandbox(&cfg).await.unwrap();
    assert_eq!((sandbox.netns.as_ref(), sandbox.ip), (None, None));
    let c = fx.container("hostnet", "hostname; exec sleep 1000");
    fx.run(&sandbox, &c).await;
    let pid = fx.wait_for(&c.id, ContainerState::Running).await.pid.unwrap();
    for ns in ["net", "uts"] {
        assert_eq!(
            ns_id(format!("/proc/{pid}/ns/{ns}")),
            ns_id(format!("/proc/self/ns/{ns}")),
            "{ns} is the host's"
        );
    }
    assert_ne!(ns_id(format!("/proc/{pid}/ns/ipc")), ns_id("/proc/self/ns/ipc"));
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(fx.exec(&c.id, &["hostname"]).await, host);
    fx.cleanup().await;
    assert!(!sandbox.dir.exists());
}

/// Reads an attach connection's output until it contains `want`; all of it.
async fn read_until(output: &mut kate_runtime::AttachOutput, want: &str) -> String {
    let mut seen = String::new();
    let deadline = Duration::from_secs(20);
    while !seen.contains(want) {
        let next = tokio::time::timeout(deadline, output.next())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in the attached output {seen:?}"))
            .unwrap();
        match next {
            Some(Output::Stdout(data) | Output::Stderr(data)) => seen.push_str(&String::from_utf8_lossy(&data)),
            None => panic!("the output ended without {want:?}: {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn attached_clients_share_the_output_and_write_stdin_once() {
    let fx = Fixture::new(8);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("attach")).await.unwrap();
    let mut cfg = fx.container("attach", "while read line; do echo \"got $line\"; done; echo bye >&2");
    cfg.stdin = true;
    cfg.stdin_once = true;
    fx.run(&sandbox, &cfg).await;
    fx.wait_for(&cfg.id, ContainerState::Running).await;
    let (mut out_a, mut in_a) = fx.runtime.attach(&cfg.id).await.unwrap();
    let (mut out_b, _in_b) = fx.runtime.attach(&cfg.id).await.unwrap();
    in_a.stdin(b"one\n").await.unwrap();
    read_until(&mut out_a, "got one").await;
    read_until(&mut out_b, "got one").await;
    // The first client's end of input is the container's: it says bye and exits.
    in_a.close_stdin().await.unwrap();
    for output in [&mut out_a, &mut out_b] {
        read_until(output, "bye").await;
        let end = tokio::time::timeout(Duration::from_secs(20), output.next())
            .await
            .unwrap();
        assert_eq!(end.unwrap(), None, "the stream ends with the container");
    }
    let status = fx.wait_for(&cfg.id, ContainerState::Exited).await;
    assert_eq!(status.exit_code, Some(0));
    let logged: Vec<String> = log_entries(&cfg.log_path).into_iter().map(|e| e.3).collect();
    assert_eq!(logged, ["got one", "bye"]);
    assert!(matches!(fx.runtime.attach(&cfg.id).await, Err(Error::NotRunning(_))));

    // Without stdin, the container reads the end of input at once.
    let closed = fx.container("nostdin", "cat; echo done");
    fx.run(&sandbox, &closed).await;
    assert_eq!(fx.wait_for(&closed.id, ContainerState::Exited).await.exit_code, Some(0));
    fx.cleanup().await;
}

#[tokio::test]
async fn a_terminal_is_resized_and_echoes_input() {
    let fx = Fixture::new(9);
    let sandbox = fx.runtime.run_sandbox(&fx.sandbox_config("tty")).await.unwrap();
    let mut cfg = fx.container(
        "tty",
        "[ -t 0 ] && echo \"tty $TERM\"; read x; echo \"size $(stty size) got $x\"",
    );
    cfg.stdin = true;
    cfg.tty = true;
    fx.run(&sandbox, &cfg).await;
    fx.wait_for(&cfg.id, ContainerState::Running).await;
    let (mut output, mut input) = fx.runtime.attach(&cfg.id).await.unwrap();
    input.resize(100, 30).await.unwrap();
    // The terminal turns the carriage return of Enter into a newline, and echoes what is typed.
    input.stdin(b"hi\r").await.unwrap();
    let seen = read_until(&mut output, "got hi").await;
    assert!(seen.contains("hi\r\n"), "the terminal echoes input: {seen:?}");
    assert!(seen.contains("size 30 100 got hi"), "{seen:?}");
    assert_eq!(fx.wait_for(&cfg.id, ContainerState::Exited).await.exit_code, Some(0));
    // A terminal has one output: everything is logged as stdout.
    let logged = log_entries(&cfg.log_path);
    assert!(logged.iter().all(|e| e.1 == "stdout"), "{logged:?}");
    assert!(logged.iter().any(|e| e.3.contains("tty xterm")), "{logged:?}");
    fx.cleanup().await;
}
