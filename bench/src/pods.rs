//! Pod startup on a real node: in a fresh server that runs this machine's kubelet, pods of the
//! busybox image are created at a steady pace and timed from just before each create to the
//! watch event that shows it Running; the server's and the container shims' memory is read with
//! no pods and with all of them running.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::client::{Connector, Credentials};
use crate::measure;
use crate::report::{Latency, PodStartup};
use crate::server::{Server, shims_memory};

/// The namespace the pods are created in.
const NS: &str = "bench-pods";
/// How long all pods may take to run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A busybox pod that sleeps, as JSON.
fn pod(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"busybox:1.35.0","command":["sleep","3600"]}}]}}}}"#
    ))
}

/// Runs the pod startup test.
pub async fn startup(kate: &Path, data_root: &Path, image: &Path, pods: usize, gap: Duration) -> Result<PodStartup> {
    let mut server = Server::start_node(kate, data_root, image)?;
    let result = async {
        let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
        let connector = Connector::new(&creds, server.port)?;
        let mut conn = connector.connect().await?;
        wait_for_ready_node(&mut conn).await?;
        // Let the node settle (first status reports, leases) before reading its memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_rss_kib = server.rss_kib()?;
        measure::create_namespace(&mut conn, NS).await?;
        let path = format!("/api/v1/namespaces/{NS}/pods");
        let watcher = connector.connect().await?;
        let (running, watch) = watch_running(watcher, &path, pods).await?;
        let mut created = HashMap::with_capacity(pods);
        for i in 0..pods {
            let name = format!("pod-{i:03}");
            created.insert(name.clone(), Instant::now());
            conn.expect(StatusCode::CREATED, Method::POST, &path, None, Some(pod(&name)))
                .await?;
            tokio::time::sleep(gap).await;
        }
        let seen = tokio::time::timeout(TIMEOUT, running)
            .await
            .with_context(|| format!("not all {pods} pods ran within {TIMEOUT:?}"))?
            .context("the watch task failed")??;
        drop(watch);
        let mut latencies: Vec<Duration> = seen
            .iter()
            .filter_map(|(name, at)| Some(at.saturating_duration_since(*created.get(name)?)))
            .collect();
        let shims = shims_memory(server.dir());
        anyhow::Ok(PodStartup {
            pods,
            gap_ms: gap.as_millis() as u64,
            latency: Latency::of(&mut latencies),
            idle_rss_kib,
            rss_kib: server.rss_kib()?,
            shims: shims.count,
            shims_rss_kib: shims.rss_kib,
            shims_pss_kib: shims.pss_kib,
            shims_anon_kib: shims.anon_kib,
        })
    }
    .await
    .with_context(|| {
        format!(
            "the pod startup test failed; the end of kate's log:\n{}",
            server.log_tail()
        )
    })?;
    server.check_alive()?;
    Ok(result)
}

/// Waits until a node reports Ready and has a pod CIDR.
async fn wait_for_ready_node(conn: &mut crate::client::Conn) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let body = conn
            .expect(StatusCode::OK, Method::GET, "/api/v1/nodes", None, None)
            .await?;
        let list: serde_json::Value = serde_json::from_slice(&body).context("parsing the node list")?;
        let ready = list["items"].as_array().into_iter().flatten().any(|n| {
            n["spec"]["podCIDR"].is_string()
                && n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        });
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no node became Ready (is this run as root, and runc installed?)")
}

/// Watches the namespace's pods and resolves, once `count` pods were seen Running, to when
/// each was first seen so.
async fn watch_running(
    mut conn: crate::client::Conn,
    path: &str,
    count: usize,
) -> Result<(
    tokio::task::JoinHandle<Result<HashMap<String, Instant>>>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let resp = conn
        .start(Method::GET, &format!("{path}?watch=true"), None, None)
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {path}?watch=true: {}",
        resp.status()
    );
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _conn = conn;
        let mut body = resp.into_body();
        let mut seen: HashMap<String, Instant> = HashMap::with_capacity(count);
        let mut buf: Vec<u8> = Vec::new();
        while seen.len() < count {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                _ = &mut stopped => break,
            };
            let now = Instant::now();
            let Some(frame) = frame else {
                bail!("the pod watch ended")
            };
            let Ok(data) = frame.context("reading the pod watch")?.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(line.trim_ascii()) else {
                    continue;
                };
                let object = &event["object"];
                if object["status"]["phase"] == "Running"
                    && let Some(name) = object["metadata"]["name"].as_str()
                {
                    seen.entry(name.to_string()).or_insert(now);
                }
            }
        }
        Ok(seen)
    });
    Ok((task, stop))
}
