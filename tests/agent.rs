//! `kate agent`: a second node joins a control plane with a token from `kate token create`,
//! registers, runs the pods scheduled to it and serves their logs. Needs root, as CI has.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use kate_e2e::{Cluster, eventually_blocking, kate_bin};
use serde_json::Value;

/// A `kate agent` process, stopped (and its containers removed) on drop.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    bridge: String,
}

impl Agent {
    fn start(c: &Cluster, token: &str, name: &str, bridge: &str) -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let import = Command::new(kate_bin())
            .args(["image", "import", "--data-dir"])
            .arg(dir.path())
            .arg(kate_e2e::busybox_archive())
            .output()?;
        if !import.status.success() {
            bail!("importing the image: {}", String::from_utf8_lossy(&import.stderr));
        }
        let child = Command::new(kate_bin())
            .args(["agent", "--server", &c.url, "--token", token, "--node-name", name])
            .args(["--pod-bridge", bridge, "--kubelet-port", "20341", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting kate agent")?;
        Ok(Agent {
            child,
            dir,
            bridge: bridge.to_string(),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(kate_bin())
            .args(["reset", "--pod-bridge", &self.bridge, "--data-dir"])
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn an_agent_joins_with_a_token_and_runs_pods() -> Result<()> {
    let c = Cluster::start_with(tempfile::tempdir()?, &["--cluster-cidr", "10.190.0.0/16"])?;
    let out = Command::new(kate_bin())
        .args(["token", "create", "--data-dir"])
        .arg(c.dir.path())
        .output()?;
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    assert!(
        token.starts_with("K10") && token.contains("::"),
        "a join token: {token:?}"
    );

    let refused = Command::new(kate_bin())
        .args([
            "agent",
            "--server",
            &c.url,
            "--token",
            &format!("{}x", token),
            "--node-name",
            "intruder",
        ])
        .args(["--data-dir", &tempfile::tempdir()?.path().display().to_string()])
        .output()?;
    assert!(!refused.status.success(), "a wrong token is refused");

    let _agent = Agent::start(&c, &token, "worker-1", "katee41")?;
    eventually_blocking("the worker to be Ready", || {
        let nodes = c.kubectl(&["get", "node", "worker-1"]).unwrap_or_default();
        Ok(nodes.contains(" Ready "))
    })?;
    let node: Value = serde_json::from_str(&c.kubectl(&["get", "node", "worker-1", "-o", "json"])?)?;
    assert_eq!(node["spec"]["podCIDR"], "10.190.0.0/24");
    assert!(
        node["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_none()
    );

    c.kubectl(&[
        "run",
        "hello",
        "--image",
        "busybox:1.35.0",
        "--restart",
        "Never",
        "--",
        "sh",
        "-c",
        "echo hello from worker-1",
    ])?;
    eventually_blocking("the pod to succeed on the worker", || {
        let phase = c.kubectl(&["get", "pod", "hello", "-o", "jsonpath={.status.phase} {.spec.nodeName}"])?;
        Ok(phase == "Succeeded worker-1")
    })?;
    let logs = c.kubectl(&["logs", "hello"])?;
    assert_eq!(logs.trim(), "hello from worker-1", "logs come from the agent's kubelet");
    Ok(())
}
