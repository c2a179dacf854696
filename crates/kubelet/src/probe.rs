//! Liveness, readiness and startup probes: exec in the container, an HTTP GET or a TCP connect,
//! with upstream's delays, periods, timeouts and thresholds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kate_runtime::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Restarts the container when it fails.
    Liveness,
    /// Gates the container's readiness.
    Readiness,
    /// Holds the other two until it succeeds; restarts the container when it fails.
    Startup,
}

impl Kind {
    /// The name used in events ("Liveness probe failed: …").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// The running state of one probe of one container.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// The probe's kind.
    pub kind: Kind,
    next: Instant,
    successes: i32,
    failures: i32,
    /// The current verdict: true once successThreshold successes were seen (and until
    /// failureThreshold failures are).
    pub passing: bool,
    /// Whether the failure threshold was reached (and the verdict turned to failing).
    pub tripped: bool,
}

impl ProbeState {
    /// A probe for a container started at `started`: readiness starts failing, the others
    /// passing (nothing to act on until they fail).
    pub fn new(kind: Kind, probe: &Probe, started: Instant) -> ProbeState {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        ProbeState {
            kind,
            next: started + delay,
            successes: 0,
            failures: 0,
            passing: kind != Kind::Readiness && kind != Kind::Startup,
            tripped: false,
        }
    }

    /// Whether it is time to run the probe.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// When it is due next.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Records one result and schedules the next run; returns true when the verdict changed.
    pub fn record(&mut self, probe: &Probe, ok: bool, now: Instant) -> bool {
        self.next = now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let before = self.passing;
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passing = true;
                self.tripped = false;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.passing = false;
                self.tripped = true;
                self.failures = 0;
            }
        }
        before != self.passing
    }
}

/// Runs one probe (or lifecycle hook handler) against a container; `Err` says why it failed.
pub async fn run(
    probe: &Probe,
    runtime: &Runtime,
    container_id: &str,
    container: &Container,
    pod_ip: Option<IpAddr>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let check = async {
        if let Some(exec) = &probe.exec {
            return exec_command(runtime, container_id, exec.command.as_deref().unwrap_or_default()).await;
        }
        let host = |h: Option<&String>| -> Result<IpAddr, String> {
            match h {
                Some(h) if !h.is_empty() => h.parse().map_err(|_| format!("unsupported probe host {h:?}")),
                _ => pod_ip.ok_or_else(|| "the pod has no IP".to_string()),
            }
        };
        if let Some(http) = &probe.http_get {
            let port = resolve_port(&http.port, container)?;
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            if http.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
                return Err("HTTPS probes are not supported yet".into());
            }
            return http_get(host(http.host.as_ref())?, port, &path, &headers).await;
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = resolve_port(&tcp.port, container)?;
            let ip = host(tcp.host.as_ref())?;
            return TcpStream::connect((ip, port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {ip}:{port}: {e}"));
        }
        Err("the probe has no handler".into())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("timeout: no answer within {}s", timeout.as_secs())),
    }
}

/// Runs a postStart or preStop hook (exec, httpGet, tcpSocket or sleep) within `limit`.
pub async fn hook(
    handler: &LifecycleHandler,
    runtime: &Runtime,
    container_id: &str,
    container: &Container,
    pod_ip: Option<IpAddr>,
    limit: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(limit.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Default::default()
    };
    run(&as_probe, runtime, container_id, container, pod_ip).await
}

/// Runs a command in the container; success is exit code 0.
pub async fn exec_command(runtime: &Runtime, container_id: &str, argv: &[String]) -> Result<(), String> {
    let mut command = runtime.exec(container_id, argv, false).map_err(|e| e.to_string())?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = command.output().await.map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let code = output.status.code().unwrap_or(-1);
    Err(format!("command {argv:?} exited with {code}: {}", text.trim()))
}

/// A port by number, or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("port {name:?} not found in the container"))
        }
    }
}

/// An HTTP/1.1 GET; a status from 200 to 399 passes, as upstream.
pub async fn http_get(ip: IpAddr, port: u16, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    let mut stream = TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("Get \"http://{ip}:{port}{path}\": {e}"))?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        request.push_str(&format!("Host: {ip}:{port}\r\n"));
    }
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 256];
    let mut read = 0;
    while read < head.len() && !head[..read].contains(&b'\n') {
        match stream.read(&mut head[read..]).await {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response {:?}", line.lines().next().unwrap_or("")))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_turn_the_verdict() {
        let p = probe(json!({"failureThreshold": 2, "successThreshold": 1, "periodSeconds": 1}));
        let now = Instant::now();
        let mut s = ProbeState::new(Kind::Liveness, &p, now);
        assert!(s.passing && s.due(now));
        assert!(!s.record(&p, false, now));
        assert!(s.record(&p, false, now));
        assert!(s.tripped && !s.passing);
        assert!(!s.due(now));
        assert!(s.record(&p, true, now));
        assert!(s.passing && !s.tripped);
        let r = ProbeState::new(Kind::Readiness, &p, now);
        assert!(!r.passing, "readiness starts failing");
    }

    #[test]
    fn named_ports_resolve() {
        let c: Container =
            serde_json::from_value(json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]})).unwrap();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_probes_read_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(http_get(ip, port, "/healthz", &[]).await, Ok(()));
        assert!(http_get(ip, port, "/healthz", &[]).await.unwrap_err().contains("500"));
    }
}
