//! Streaming through the API server to the kubelet's own HTTPS port, driven with the real
//! kubectl (and kube-rs): `logs` (tail, timestamps, containers, previous, follow), `exec`
//! (stdout, stderr, exit codes, stdin, a TTY, the SPDY fallback), `cp`, `attach` and `run -i` /
//! `run -it` (stdin, stdinOnce, a terminal), and `port-forward` (WebSocket-tunnelled SPDY, raw
//! SPDY). These tests need root, as CI has.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kate_e2e::{Cluster, eventually_blocking};
use serde_json::Value;

const IMAGE: &str = "busybox:1.35.0";

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()))
}

/// Runs kubectl with extra environment variables; returns (exit code, stdout, stderr).
fn kubectl_env(
    c: &Cluster,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<(i32, Vec<u8>, String)> {
    let mut cmd = c.kubectl_cmd(args);
    cmd.envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running kubectl")?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A long-running kubectl whose stdout lines arrive on a channel; killed on drop.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Background {
    fn start(c: &Cluster, env: &[(&str, &str)], args: &[&str]) -> Result<Background> {
        let mut child = c
            .kubectl_cmd(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().context("stdout")?) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[kubectl] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Background { child, lines })
    }

    /// The first line that `pick` accepts, within `timeout`.
    fn line(&self, timeout: Duration, pick: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pick(&line) => return Ok(line),
                Ok(_) => continue,
                Err(e) => bail!("no expected line from kubectl: {e}"),
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /` over a fresh connection to 127.0.0.1:`port`, reading until the server closes.
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn logs_show_containers_tails_timestamps_and_previous_instances() -> Result<()> {
    let c = Cluster::start_node(20)?;
    c.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: two}}
spec:
  initContainers:
  - {{name: init, image: "{IMAGE}", command: [sh, -c, "echo from init"]}}
  containers:
  - {{name: a, image: "{IMAGE}", command: [sh, -c, "for i in 1 2 3 4 5; do echo a$i; done; sleep 0.5; echo oops >&2; sleep 3600"]}}
  - {{name: b, image: "{IMAGE}", command: [sh, -c, "echo from b; sleep 3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - {{name: c, image: "{IMAGE}", command: [sh, -c, "echo started at $(cat /proc/uptime); exit 1"]}}
"#
        ),
    )?;
    c.wait_pod("two", "pod two to run", running)?;
    eventually_blocking("container a to write all its lines", || {
        Ok(c.kubectl(&["logs", "two", "-c", "a"])?.contains("oops"))
    })?;

    // The first container by default, with kubectl's notice; stderr is in the log too.
    let (code, out, err) = kubectl_env(&c, &[], &["logs", "two"], None)?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(out)?, "a1\na2\na3\na4\na5\noops\n");
    assert!(
        err.contains("Defaulted container \"a\" out of: a, b, init (init)"),
        "{err}"
    );
    assert_eq!(c.kubectl(&["logs", "two", "-c", "b"])?, "from b\n");
    assert_eq!(c.kubectl(&["logs", "two", "-c", "init"])?, "from init\n");
    let all = c.kubectl(&["logs", "two", "--all-containers"])?;
    for line in ["from init", "a5", "from b"] {
        assert!(all.lines().any(|l| l == line), "{line} in {all}");
    }
    assert_eq!(c.kubectl(&["logs", "two", "-c", "a", "--tail", "2"])?, "a5\noops\n");
    assert_eq!(c.kubectl(&["logs", "two", "-c", "a", "--limit-bytes", "5"])?, "a1\na2");
    let stamped = c.kubectl(&["logs", "two", "-c", "a", "--timestamps", "--tail", "3"])?;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, text) in lines.iter().zip(["a4", "a5", "oops"]) {
        let (time, rest) = line.split_once(' ').context("a timestamp and the line")?;
        assert_eq!(rest, text);
        assert!(
            time.ends_with('Z') && time.contains('T') && time.len() >= 20,
            "RFC3339Nano: {time}"
        );
    }
    assert_eq!(
        c.kubectl(&["logs", "two", "-c", "a", "--since", "1h", "--tail", "1"])?,
        "oops\n"
    );

    // Errors as upstream words them.
    let err = c.kubectl_fails(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"])?;
    assert!(
        err.contains("a container name must be specified for pod two, choose one of: [init a b]"),
        "{err}"
    );
    let err = c.kubectl_fails(&["logs", "nope"])?;
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    let err = c.kubectl_fails(&["logs", "two", "-c", "zz"])?;
    assert!(err.contains("container zz is not valid for pod two"), "{err}");
    let err = c.kubectl_fails(&["logs", "two", "-c", "b", "--previous"])?;
    assert!(
        err.contains("previous terminated container \"b\" in pod \"two\" not found"),
        "{err}"
    );

    // After a restart, --previous shows the instance before.
    c.wait_pod("crash", "the crashing pod to restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .is_some_and(|n| n >= 1)
            && p["status"]["containerStatuses"][0]["lastState"]["terminated"]["containerID"].is_string()
    })?;
    let previous = c.kubectl(&["logs", "crash", "--previous"])?;
    assert!(previous.starts_with("started at "), "{previous}");
    assert_eq!(previous.lines().count(), 1, "{previous}");
    let current = c.kubectl(&["logs", "crash"])?;
    assert!(current.starts_with("started at "), "{current}");
    Ok(())
}

#[test]
fn logs_follow_streams_until_the_container_ends() -> Result<()> {
    let c = Cluster::start_node(21)?;
    c.kubectl(&[
        "run",
        "ticker",
        "--image",
        IMAGE,
        "--",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done",
    ])?;
    c.wait_pod("ticker", "the ticker to run", running)?;
    // -f keeps delivering lines written after it started.
    let follow = Background::start(&c, &[], &["logs", "-f", "ticker", "--tail", "1"])?;
    let first = follow.line(Duration::from_secs(20), |l| l.starts_with("tick "))?;
    let n: u64 = first.trim_start_matches("tick ").parse()?;
    follow.line(Duration::from_secs(20), |l| l == format!("tick {}", n + 3))?;
    drop(follow);

    // A container that ends ends the stream, and kubectl with it.
    c.kubectl(&[
        "run",
        "ender",
        "--image",
        IMAGE,
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "sleep 2; for i in 1 2 3; do echo line $i; sleep 0.5; done",
    ])?;
    c.wait_pod("ender", "the pod to start", |p| {
        p["status"]["containerStatuses"][0]["containerID"].is_string()
    })?;
    let started = std::time::Instant::now();
    let (code, out, err) = kubectl_env(&c, &[], &["logs", "-f", "ender"], None)?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(out)?, "line 1\nline 2\nline 3\n");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A container that has not started yet.
    c.kubectl(&["run", "bad", "--image", "nonexistent.invalid/none:1"])?;
    eventually_blocking("the pull to fail", || {
        let err = c.kubectl_fails(&["logs", "bad"])?;
        Ok(err.contains("container \"bad\" in pod \"bad\" is waiting to start"))
    })?;
    Ok(())
}

#[test]
fn exec_cp_and_attach_work_through_the_kubelet() -> Result<()> {
    let c = Cluster::start_node(22)?;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: box}}
spec:
  containers:
  - {{name: main, image: "{IMAGE}", command: [sleep, "3600"]}}
  - {{name: side, image: "{IMAGE}", command: [sh, -c, "i=0; while true; do echo side $i; i=$((i+1)); sleep 0.3; done"]}}
"#
    ))?;
    c.wait_pod("box", "the pod to run", running)?;

    // stdout, stderr and the exit code, over WebSocket v5 and over the SPDY fallback.
    for env in [&[][..], &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..]] {
        let args = [
            "exec",
            "box",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ];
        let (code, out, err) = kubectl_env(&c, env, &args, None)?;
        assert_eq!(code, 3, "{env:?}: {err}");
        assert_eq!(String::from_utf8(out)?, "out\n");
        assert!(err.contains("err\n"), "{err}");
        assert!(err.contains("command terminated with exit code 3"), "{err}");
        // stdin, to its end.
        let args = ["exec", "-i", "box", "-c", "main", "--", "sh", "-c", "cat; echo done"];
        let (code, out, err) = kubectl_env(&c, env, &args, Some(b"hello\nworld\n"))?;
        assert_eq!(code, 0, "{env:?}: {err}");
        assert_eq!(String::from_utf8(out)?, "hello\nworld\ndone\n");
    }
    // The default container, and a named one.
    let (code, out, err) = kubectl_env(&c, &[], &["exec", "box", "--", "hostname"], None)?;
    assert_eq!((code, String::from_utf8(out)?), (0, "box\n".to_string()), "{err}");
    assert!(err.contains("Defaulted container \"main\""), "{err}");
    assert_eq!(c.kubectl(&["exec", "box", "-c", "side", "--", "echo", "hi"])?, "hi\n");
    let err = c.kubectl_fails(&["get", "--raw", "/api/v1/namespaces/default/pods/box/exec?command=ls"])?;
    assert!(
        err.contains("a container name must be specified for pod box, choose one of: [main side]"),
        "{err}"
    );
    let err = c.kubectl_fails(&["exec", "box", "-c", "main", "--", "/no/such/program"])?;
    assert!(err.contains("command terminated with exit code"), "{err}");

    // A terminal: kubectl asks for one only when its own stdin is one, so run it under script(1).
    let kubectl_line = format!(
        "kubectl --kubeconfig={} --cache-dir={} exec -it box -c main -- sh -c 'tty; stty size; exit 7'",
        c.kubeconfig.display(),
        c.dir.path().join("kubectl-cache").display()
    );
    let out = Command::new("script")
        .args(["-qec", &kubectl_line, "/dev/null"])
        .stdin(Stdio::piped())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(text.contains("/dev/pts/"), "the command has a terminal: {text}");

    // cp both ways (tar over exec).
    let local = c.dir.path().join("upload.txt");
    let content: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &content)?;
    let local_arg = local.display().to_string();
    c.kubectl(&["cp", &local_arg, "box:/tmp/upload.txt", "-c", "main"])?;
    assert_eq!(
        c.kubectl(&["exec", "box", "-c", "main", "--", "wc", "-l", "/tmp/upload.txt"])?,
        "2000 /tmp/upload.txt\n"
    );
    let back = c.dir.path().join("download.txt");
    let back_arg = back.display().to_string();
    c.kubectl(&["cp", "box:/tmp/upload.txt", &back_arg, "-c", "main"])?;
    assert_eq!(std::fs::read_to_string(&back)?, content);

    // attach shows what the container writes from now on; stdin only where the spec keeps it.
    let attach = Background::start(&c, &[], &["attach", "box", "-c", "side"])?;
    attach.line(Duration::from_secs(20), |l| l.starts_with("side "))?;
    drop(attach);
    let err = c.kubectl_fails(&["attach", "-i", "box", "-c", "side"])?;
    assert!(
        err.contains("container \"side\" in pod \"box\" does not keep stdin open"),
        "{err}"
    );
    Ok(())
}

#[test]
fn run_and_attach_with_stdin_and_a_terminal() -> Result<()> {
    let c = Cluster::start_node(25)?;
    let image = format!("--image={IMAGE}");
    // `run -i`: the pod keeps stdin open for the first attach, and ends when that input ends.
    let args = [
        "run",
        "reader",
        "-i",
        "--rm",
        "--restart=Never",
        &image,
        "--",
        "sh",
        "-c",
        "while read line; do echo \"got $line\"; done; echo bye",
    ];
    let (code, out, err) = kubectl_env(&c, &[], &args, Some(b"one\ntwo\n"))?;
    let out = String::from_utf8(out)?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("got one\ngot two\nbye\n"), "{out}{err}");
    assert!(
        out.contains("pod \"reader\" deleted"),
        "--rm deletes the pod: {out}{err}"
    );

    // `attach -i` to a running pod's stdin, twice: it stays open without stdinOnce.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  containers:
  - {{name: echo, image: "{IMAGE}", stdin: true, command: [sh, -c, "while read line; do echo \"echo $line\"; done"]}}
"#
    ))?;
    c.wait_pod("echo", "the pod to run", running)?;
    for word in ["first", "second"] {
        let mut attach = c
            .kubectl_cmd(&["attach", "-i", "echo"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = attach.stdin.take().context("stdin")?;
        let mut lines = BufReader::new(attach.stdout.take().context("stdout")?).lines();
        // kubectl may connect after the first write: repeat until the echo comes back.
        let (tx, echoed) = mpsc::channel();
        std::thread::spawn(move || {
            let found = lines.any(|l| l.is_ok_and(|l| l.starts_with("echo ")));
            let _ = tx.send(found);
        });
        let mut seen = false;
        for _ in 0..40 {
            writeln!(stdin, "{word}")?;
            if let Ok(found) = echoed.recv_timeout(Duration::from_millis(500)) {
                seen = found;
                break;
            }
        }
        let _ = attach.kill();
        let _ = attach.wait();
        assert!(seen, "attach -i echoed {word}");
    }

    // `run -it` under script(1), which gives kubectl the terminal it needs to ask for one.
    let kubectl_line = format!(
        "kubectl --kubeconfig={} --cache-dir={} run term -it --rm --restart=Never {image} -- sh -c 'read x; tty; echo \"got $x\"; exit 5'",
        c.kubeconfig.display(),
        c.dir.path().join("kubectl-cache").display()
    );
    let mut script = Command::new("script")
        .args(["-qec", &kubectl_line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut input = script.stdin.take().context("stdin")?;
    let typist = std::thread::spawn(move || {
        // Typed until the container has read it (the pod may still be starting).
        for _ in 0..60 {
            if writeln!(input, "typed").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let out = script.wait_with_output()?;
    let _ = typist.join();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "the container has a terminal: {text}");
    assert!(text.contains("got typed"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");
    eventually_blocking("the --rm pods to go", || {
        let pods = c.kubectl(&["get", "pods", "-o", "name"])?;
        Ok(!pods.contains("reader") && !pods.contains("term"))
    })?;
    Ok(())
}

#[test]
fn port_forward_reaches_a_pods_port() -> Result<()> {
    let c = Cluster::start_node(23)?;
    c.kubectl(&[
        "run",
        "web",
        "--image",
        IMAGE,
        "--",
        "sh",
        "-c",
        "mkdir /www && echo hello from the pod > /www/index.html && httpd -f -p 80 -h /www",
    ])?;
    c.wait_pod("web", "the web pod to run", running)?;
    // kubectl 1.33 tunnels SPDY through a WebSocket; without WebSockets it speaks SPDY itself.
    for env in [&[][..], &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]] {
        let forward = Background::start(&c, env, &["port-forward", "pod/web", ":80"])?;
        let line = forward.line(Duration::from_secs(20), |l| l.starts_with("Forwarding from 127.0.0.1:"))?;
        let port: u16 = line
            .trim_start_matches("Forwarding from 127.0.0.1:")
            .split(' ')
            .next()
            .context("a port")?
            .parse()?;
        for _ in 0..3 {
            let page = http_get(port, "/")?;
            assert!(
                page.lines().next().is_some_and(|l| l.ends_with(" 200 OK")),
                "{env:?}: {page}"
            );
            assert!(page.ends_with("hello from the pod\n"), "{page}");
        }
        let missing = http_get(port, "/missing")?;
        assert!(missing.lines().next().is_some_and(|l| l.contains(" 404 ")), "{missing}");
    }
    // A port nothing listens on: kubectl reports the kubelet's error.
    let forward = Background::start(&c, &[], &["port-forward", "pod/web", ":81"])?;
    let line = forward.line(Duration::from_secs(20), |l| l.starts_with("Forwarding from 127.0.0.1:"))?;
    let port: u16 = line
        .trim_start_matches("Forwarding from 127.0.0.1:")
        .split(' ')
        .next()
        .context("a port")?
        .parse()?;
    let _ = http_get(port, "/");
    forward.line(Duration::from_secs(20), |l| {
        l.contains("error forwarding port 81 to pod web_default") && l.contains("refused")
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_execs_and_forwards_ports() -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::AttachParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let c = tokio::task::spawn_blocking(|| Cluster::start_node(24)).await??;
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - {{name: web, image: \"{IMAGE}\", command: [sh, -c, \"mkdir /www && echo kube-rs > /www/index.html && httpd -f -p 8080 -h /www\"]}}\n"
    );
    let c = tokio::task::spawn_blocking(move || -> Result<Cluster> {
        c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest))?;
        c.wait_pod("web", "the pod to run", running)?;
        Ok(c)
    })
    .await??;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);

    let params = AttachParams::default().stdout(true).stderr(true).stdin(true);
    let mut process = pods
        .exec("web", ["sh", "-c", "read x; echo got $x; exit 2"], &params)
        .await?;
    let mut stdin = process.stdin().context("stdin")?;
    stdin.write_all(b"ping\n").await?;
    let mut stdout = process.stdout().context("stdout")?;
    let mut out = String::new();
    stdout.read_to_string(&mut out).await?;
    assert_eq!(out, "got ping\n");
    let status = process.take_status().context("status")?.await.context("a status")?;
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let code = status
        .details
        .and_then(|d| d.causes)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("2"));
    process.join().await?;

    let mut forwarder = pods.portforward("web", &[8080]).await?;
    let mut stream = forwarder.take_stream(8080).context("the port's stream")?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut page = String::new();
    stream.read_to_string(&mut page).await?;
    assert!(page.lines().next().is_some_and(|l| l.ends_with(" 200 OK")), "{page}");
    assert!(page.ends_with("kube-rs\n"), "{page}");
    drop(stream);
    forwarder.abort();
    Ok(())
}
