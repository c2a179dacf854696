//! The scheduler measurement, after upstream's scheduler_perf SchedulingBasic: a fresh server
//! with simulated nodes, some pods placed first, then many new pods timed from the first
//! create to the last binding seen on a watch (so the binding is persisted); plus the same with
//! topology spreading and with pod anti-affinity.
//!
//! The nodes either play the kubelet (`kate server --sim-nodes N`: every bound pod also gets
//! its Running status written) or, as in upstream's benchmark, only exist and heartbeat
//! (`kate sim --no-kubelet` beside a plain server).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Connector, Credentials};
use crate::measure;
use crate::report::{Latency, Scheduling};
use crate::server::Server;

/// How long the simulated nodes may take to register.
const NODES_TIMEOUT: Duration = Duration::from_secs(300);
/// How long all pods of a phase may take to be bound.
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// The namespace of the measured pods.
const NS: &str = "bench-sched";

/// What the pods ask of the scheduler.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Requests only (upstream's pod-default: 100m cpu, 500Mi).
    Basic,
    /// Plus a DoNotSchedule spread over zones (maxSkew 5), as upstream's TopologySpreading.
    TopologySpread,
    /// Plus required anti-affinity to each other per host, as upstream's
    /// SchedulingPodAntiAffinity (at most one pod per node).
    AntiAffinity,
}

impl Workload {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::TopologySpread => "topology spread",
            Workload::AntiAffinity => "anti-affinity",
        }
    }

    fn pod(self, name: &str) -> Bytes {
        let (labels, extra) = match self {
            Workload::Basic => (r#"{"app":"basic"}"#, String::new()),
            Workload::TopologySpread => (
                r#"{"color":"blue"}"#,
                r#","topologySpreadConstraints":[{"maxSkew":5,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"color":"blue"}}}]"#.to_string(),
            ),
            Workload::AntiAffinity => (
                r#"{"color":"green"}"#,
                r#","affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"color":"green"}},"topologyKey":"kubernetes.io/hostname"}]}}"#.to_string(),
            ),
        };
        Bytes::from(format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{labels}}},"spec":{{"containers":[{{"name":"pause","image":"registry.k8s.io/pause:3.10","ports":[{{"containerPort":80}}],"resources":{{"requests":{{"cpu":"100m","memory":"500Mi"}},"limits":{{"cpu":"100m","memory":"500Mi"}}}}}}]{extra}}}}}"#
        ))
    }
}

/// The sizes of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Whether the simulated nodes start the pods bound to them.
    pub kubelet: bool,
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods placed before timing.
    pub placed: usize,
    /// Pods timed.
    pub pods: usize,
    /// Concurrent clients creating pods.
    pub clients: usize,
}

#[derive(Deserialize)]
struct WatchEvent {
    object: WatchedPod,
}

#[derive(Deserialize)]
struct WatchedPod {
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct NodeList {
    items: Vec<serde::de::IgnoredAny>,
}

/// Runs one measurement in a fresh server.
pub async fn measure(
    kate: &std::path::Path,
    data_root: &std::path::Path,
    workload: Workload,
    sizes: Sizes,
) -> Result<Scheduling> {
    ensure!(sizes.clients > 0 && sizes.pods > 0, "scheduling needs pods and clients");
    let nodes = sizes.nodes.to_string();
    let mut server = if sizes.kubelet {
        Server::start_with(kate, data_root, &["--sim-nodes", &nodes])?
    } else {
        Server::start(kate, data_root)?
    };
    let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
    let connector = Connector::new(&creds, server.port)?;
    let _sim = if sizes.kubelet {
        None
    } else {
        Some(Sim::start(kate, &server.kubeconfig(), &nodes)?)
    };
    let result = async {
        let registered = Instant::now();
        wait_for_nodes(&connector, sizes.nodes).await?;
        let registration = registered.elapsed();
        let mut conn = connector.connect().await?;
        measure::create_namespace(&mut conn, NS).await?;
        let mut bound = watch_bindings(&connector).await?;
        create_pods(&connector, workload, "placed-", sizes.placed, sizes.clients).await?;
        wait_bound(&mut bound, sizes.placed)
            .await
            .context("placing the first pods")?;
        let started = Instant::now();
        let (created, create_elapsed) = create_pods(&connector, workload, "pod-", sizes.pods, sizes.clients).await?;
        let bound_at = wait_bound(&mut bound, sizes.pods)
            .await
            .context("binding the timed pods")?;
        let last = bound_at.values().max().copied().unwrap_or(started);
        let seconds = last.duration_since(started).as_secs_f64();
        let mut latencies: Vec<Duration> = created
            .iter()
            .filter_map(|(name, at)| bound_at.get(name).map(|b| b.saturating_duration_since(*at)))
            .collect();
        anyhow::Ok(Scheduling {
            workload: workload.name().to_string(),
            kubelet: sizes.kubelet,
            nodes: sizes.nodes,
            placed: sizes.placed,
            pods: sizes.pods,
            clients: sizes.clients,
            node_registration_seconds: registration.as_secs_f64(),
            create_per_second: sizes.pods as f64 / create_elapsed.as_secs_f64().max(1e-9),
            seconds,
            per_second: sizes.pods as f64 / seconds.max(1e-9),
            create_to_bound: Latency::of(&mut latencies),
            peak_rss_kib: server.peak_rss_kib()?,
        })
    }
    .await
    .with_context(|| {
        format!(
            "the {} scheduling test failed; the end of kate's log:\n{}",
            workload.name(),
            server.log_tail()
        )
    })?;
    server.check_alive()?;
    Ok(result)
}

/// A `kate sim --no-kubelet` process, killed on drop.
struct Sim(std::process::Child);

impl Sim {
    fn start(kate: &std::path::Path, kubeconfig: &std::path::Path, nodes: &str) -> Result<Sim> {
        let child = std::process::Command::new(kate)
            .args(["sim", "--no-kubelet", "--nodes", nodes, "--kubeconfig"])
            .arg(kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting kate sim")?;
        Ok(Sim(child))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `count` simulated nodes exist.
async fn wait_for_nodes(connector: &Connector, count: usize) -> Result<()> {
    let mut conn = connector.connect().await?;
    let deadline = Instant::now() + NODES_TIMEOUT;
    loop {
        let body = conn
            .expect(
                StatusCode::OK,
                Method::GET,
                "/api/v1/nodes?labelSelector=kate.dev%2Fsimulated%3Dtrue",
                None,
                None,
            )
            .await?;
        let list: NodeList = serde_json::from_slice(&body).context("parsing the node list")?;
        if list.items.len() >= count {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} nodes within {NODES_TIMEOUT:?}",
            list.items.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Watches the namespace's pods and reports each pod's first event with a node, as it is read.
async fn watch_bindings(connector: &Connector) -> Result<mpsc::UnboundedReceiver<(String, Instant)>> {
    let mut conn = connector.connect().await?;
    let path = format!("/api/v1/namespaces/{NS}/pods");
    let list: serde_json::Value =
        serde_json::from_slice(&conn.expect(StatusCode::OK, Method::GET, &path, None, None).await?)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("no resourceVersion")?
        .to_string();
    let watch = format!("{path}?watch=true&resourceVersion={rv}");
    let resp = conn.start(Method::GET, &watch, None, None).await?;
    ensure!(resp.status() == StatusCode::OK, "GET {watch}: {}", resp.status());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            let now = Instant::now();
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<WatchEvent>(&line) else {
                    continue;
                };
                let pod = event.object;
                if pod.spec.node_name.is_some_and(|n| !n.is_empty())
                    && seen.insert(pod.metadata.name.clone())
                    && tx.send((pod.metadata.name, now)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Waits for `count` bindings; when each was seen.
async fn wait_bound(
    bound: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    count: usize,
) -> Result<HashMap<String, Instant>> {
    let mut seen = HashMap::with_capacity(count);
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    while seen.len() < count {
        let (name, at) = tokio::time::timeout_at(deadline, bound.recv())
            .await
            .with_context(|| format!("only {} of {count} pods bound within {BIND_TIMEOUT:?}", seen.len()))?
            .context("the pod watch ended")?;
        seen.insert(name, at);
    }
    Ok(seen)
}

/// Creates `count` pods named `<prefix><i>` over `clients` connections; when each create was
/// sent, and how long creating took.
async fn create_pods(
    connector: &Connector,
    workload: Workload,
    prefix: &str,
    count: usize,
    clients: usize,
) -> Result<(Vec<(String, Instant)>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let path: Arc<str> = format!("/api/v1/namespaces/{NS}/pods").into();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients.min(count.max(1)) {
        let mut conn = connector.connect().await?;
        let (next, sent, path, prefix) = (next.clone(), sent.clone(), path.clone(), prefix.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let name = format!("{prefix}{i:06}");
                let at = Instant::now();
                conn.expect(
                    StatusCode::CREATED,
                    Method::POST,
                    &path,
                    None,
                    Some(workload.pod(&name)),
                )
                .await?;
                if let Ok(mut sent) = sent.lock() {
                    sent.push((name, at));
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a create client panicked")??;
    }
    let elapsed = started.elapsed();
    let sent = std::mem::take(&mut *sent.lock().map_err(|_| anyhow::anyhow!("a create client panicked"))?);
    Ok((sent, elapsed))
}
