//! Test helpers shared by kate's integration and end-to-end tests: the busybox test image,
//! checks for required tools and root, and a local `docker-registry` to pull from.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Fails, naming the Debian package, unless `command` is on PATH: a missing tool must not make
/// a test pass silently. `scripts/install-deps.sh` (run by `make test`) installs them all.
pub fn require(command: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()));
    assert!(
        found,
        "`{command}` is missing: install the Debian package `{package}` (scripts/install-deps.sh does)"
    );
}

/// Fails unless running as root, which unpacking layers needs (owners, device nodes, xattrs).
pub fn require_root() {
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    assert_eq!(
        uid,
        Some(0),
        "this test unpacks layers, which needs root: run it as root"
    );
}

/// The busybox OCI archive `target/images/busybox.tar`, built by
/// scripts/build-busybox-image.sh when missing (once per test binary).
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = root.join("target/images/busybox.tar");
        if !out.exists() {
            // The build is deterministic and publishes with a rename, so concurrent builds agree.
            let script = root.join("scripts/build-busybox-image.sh");
            let status = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .status()
                .expect("running the build script");
            assert!(status.success(), "{} failed", script.display());
        }
        out
    })
}

/// The busybox tags the script writes: `latest` and the Debian package's upstream version.
pub fn busybox_version() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "busybox-static"])
        .output()
        .expect("running dpkg-query");
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let version = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
    version.rsplit_once('-').map_or(version, |(v, _)| v).to_string()
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An htpasswd file (bcrypt) for [`Registry::start`] accepting [`REGISTRY_USER`] with
/// [`REGISTRY_PASSWORD`].
pub const HTPASSWD: &str = "kate:$2b$05$zLzboHp51h.EL4bEbERlA.65NaFPZdmrAyTRy0buRn.0id3cK5vvW\n";
/// The user [`HTPASSWD`] accepts.
pub const REGISTRY_USER: &str = "kate";
/// That user's password.
pub const REGISTRY_PASSWORD: &str = "kate-secret";

/// A `docker-registry` on 127.0.0.1 with a random port, killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `htpasswd`, it requires basic auth against that file's content.
    pub fn start(htpasswd: Option<&str>) -> Self {
        require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some(htpasswd) = htpasswd {
            let path = dir.path().join("htpasswd");
            fs::write(&path, htpasswd).unwrap();
            config += &format!("auth:\n  htpasswd:\n    realm: kate\n    path: {}\n", path.display());
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        // Its log (it reports every 404 as an error) goes to a file, shown if it fails to start.
        let log_path = dir.path().join("registry.log");
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let registry = Self { child, host, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}:\n{}",
                registry.host,
                fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Copies an image into the registry with skopeo (`source` in skopeo's transport syntax).
    pub fn push(&self, source: &str, repository_tag: &str, creds: Option<&str>, all: bool) {
        require("skopeo", "skopeo");
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            command.arg("--all");
        }
        if let Some(creds) = creds {
            command.args(["--dest-creds", creds]);
        }
        run(command
            .arg(source)
            .arg(format!("docker://{}/{repository_tag}", self.host)));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
