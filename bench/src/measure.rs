//! The measurements: startup, create throughput, GET/LIST latency, watch fan-out latency and
//! how fast the controllers create a Deployment's pods.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashSet;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use tokio::task::JoinSet;

use crate::client::{Conn, Connector};
use crate::report::{self, Latency};
use crate::server::Server;

/// The Accept header asking for a server-side Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
/// Untimed requests sent before each timed read series.
const WARMUP: usize = 10;
/// A create answered this late in the watch test is counted as slow.
const SLOW_CREATE: Duration = Duration::from_millis(5);
/// How long watchers wait for outstanding events once the last create was answered.
const WATCH_GRACE: Duration = Duration::from_secs(30);
/// How long the controllers get to create a Deployment's pods.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts `runs` servers, each in a fresh data directory, and records spawn → ready times.
pub fn startup(kate: &Path, data_root: &Path, runs: usize) -> Result<report::Startup> {
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let server = Server::start(kate, data_root).with_context(|| format!("startup run {run} of {runs}"))?;
        times.push(server.startup);
    }
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let median_ms = report::percentile(&sorted, 0.5).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(report::Startup {
        runs_ms: times.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        median_ms,
    })
}

/// A small ConfigMap named `name`.
pub fn configmap(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"kate-bench"}}}},"data":{{"key":"value","greeting":"hello"}}}}"#
    ))
}

/// The collection path of ConfigMaps in namespace `ns`.
pub fn configmaps_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

/// Creates namespace `name` (201 expected).
pub async fn create_namespace(conn: &mut Conn, name: &str) -> Result<()> {
    let body = format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{name}"}}}}"#);
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        "/api/v1/namespaces",
        None,
        Some(Bytes::from(body)),
    )
    .await
    .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Creates `count` ConfigMaps named `<prefix><index>` in `ns` over `clients` concurrent
/// connections; returns the wall-clock time and each create's latency.
pub async fn create_many(
    connector: &Connector,
    ns: &str,
    prefix: &str,
    count: usize,
    clients: usize,
) -> Result<(Duration, Vec<Duration>)> {
    ensure!(clients > 0, "at least one client is needed");
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connector.connect().await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let path: Arc<str> = configmaps_path(ns).into();
    let prefix: Arc<str> = prefix.into();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let (next, path, prefix) = (next.clone(), path.clone(), prefix.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(count / clients + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(latencies);
                }
                let body = configmap(&format!("{prefix}{i:06}"));
                let sent = Instant::now();
                conn.expect(StatusCode::CREATED, Method::POST, &path, None, Some(body))
                    .await?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a create client panicked")??);
    }
    Ok((started.elapsed(), all))
}

/// Times `requests` sequential GETs of `path` on one connection (after a short warm-up).
pub async fn get_latency(conn: &mut Conn, path: &str, requests: usize) -> Result<Latency> {
    for _ in 0..WARMUP {
        conn.expect(StatusCode::OK, Method::GET, path, None, None).await?;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        conn.expect(StatusCode::OK, Method::GET, path, None, None).await?;
        samples.push(sent.elapsed());
    }
    Ok(Latency::of(&mut samples))
}

/// Times `requests` sequential LISTs of `path` with the given Accept header, after checking
/// that one response holds `objects` items (or Table rows); returns the latency and the size of
/// one response.
pub async fn list_latency(
    conn: &mut Conn,
    path: &str,
    accept: Option<&str>,
    requests: usize,
    objects: usize,
) -> Result<(Latency, usize)> {
    let body = conn.expect(StatusCode::OK, Method::GET, path, accept, None).await?;
    let list: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("parsing the LIST of {path}"))?;
    let (kind, field) = if accept.is_some() {
        ("Table", "rows")
    } else {
        ("ConfigMapList", "items")
    };
    ensure!(
        list["kind"] == kind,
        "LIST {path} returned kind {} instead of {kind}",
        list["kind"]
    );
    let found = list[field].as_array().map_or(0, Vec::len);
    ensure!(
        found == objects,
        "LIST {path} returned {found} {field}, expected {objects}"
    );
    for _ in 1..WARMUP {
        conn.expect(StatusCode::OK, Method::GET, path, accept, None).await?;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        conn.expect(StatusCode::OK, Method::GET, path, accept, None).await?;
        samples.push(sent.elapsed());
    }
    Ok((Latency::of(&mut samples), body.len()))
}

/// Opens `watchers` watches on ConfigMaps in `ns` from the resourceVersion of a prior LIST, then
/// creates `events` ConfigMaps one at a time with `pause` between them; the latency of each
/// watcher × event pair is its receive time minus the time just before that create was sent.
pub async fn watch_latency(
    connector: &Connector,
    ns: &str,
    watchers: usize,
    events: usize,
    pause: Duration,
) -> Result<report::Watch> {
    let mut creator = connector.connect().await?;
    create_namespace(&mut creator, ns).await?;
    let path = configmaps_path(ns);
    let list = creator.expect(StatusCode::OK, Method::GET, &path, None, None).await?;
    let list: serde_json::Value =
        serde_json::from_slice(&list).with_context(|| format!("parsing the LIST of {path}"))?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .with_context(|| format!("the LIST of {path} has no resourceVersion"))?
        .to_string();
    let watch_path = format!("{path}?watch=true&resourceVersion={rv}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    for _ in 0..watchers {
        let mut conn = connector.connect().await?;
        let resp = conn.start(Method::GET, &watch_path, None, None).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            bail!(
                "GET {watch_path}: expected 200, got {status}: {}",
                body.map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            );
        }
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            // The connection must outlive the streaming body.
            let _conn = conn;
            let mut body = resp.into_body();
            let mut seen: Vec<Option<Instant>> = vec![None; events];
            let mut received = 0;
            let mut buf: Vec<u8> = Vec::new();
            while received < events {
                let frame = tokio::select! {
                    frame = body.frame() => frame,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let now = Instant::now();
                let Some(frame) = frame else { break };
                let Ok(data) = frame.context("reading a watch stream")?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    if let Some(i) = added_index(&line)?
                        && i < events
                        && seen[i].is_none()
                    {
                        seen[i] = Some(now);
                        received += 1;
                    }
                }
            }
            anyhow::Ok(seen)
        });
    }

    let mut sent_at = Vec::with_capacity(events);
    let mut slow_creates = 0;
    for i in 0..events {
        let body = configmap(&format!("watch-{i:06}"));
        let sent = Instant::now();
        sent_at.push(sent);
        creator
            .expect(StatusCode::CREATED, Method::POST, &path, None, Some(body))
            .await?;
        if sent.elapsed() >= SLOW_CREATE {
            slow_creates += 1;
        }
        tokio::time::sleep(pause).await;
    }
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(WATCH_GRACE).await;
        let _ = stop_tx.send(true);
    });

    let mut samples = Vec::with_capacity(watchers * events);
    let mut missing = 0;
    while let Some(done) = tasks.join_next().await {
        let seen = done.context("a watcher panicked")??;
        for (i, at) in seen.into_iter().enumerate() {
            match at {
                Some(at) => samples.push(at.saturating_duration_since(sent_at[i])),
                None => missing += 1,
            }
        }
    }
    stopper.abort();
    Ok(report::Watch {
        watchers,
        events,
        pause_ms: pause.as_millis() as u64,
        received: samples.len(),
        missing,
        latency: Latency::of(&mut samples),
        slow_creates,
    })
}

/// A Deployment of `replicas` pods named `name`, as JSON.
fn deployment(name: &str, replicas: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},"spec":{{"replicas":{replicas},"selector":{{"matchLabels":{{"app":"{name}"}}}},"template":{{"metadata":{{"labels":{{"app":"{name}"}}}},"spec":{{"containers":[{{"name":"app","image":"nginx:1.27"}}]}}}}}}}}"#
    ))
}

/// Watches the pods of a fresh namespace `ns`, creates a Deployment of `replicas` pods there and
/// times, from just before the create, the first and the last pod's ADDED event: the work of
/// the Deployment and ReplicaSet controllers inside the server.
pub async fn deployment_rollout(connector: &Connector, ns: &str, replicas: usize) -> Result<report::Rollout> {
    let mut conn = connector.connect().await?;
    create_namespace(&mut conn, ns).await?;
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let list = conn.expect(StatusCode::OK, Method::GET, &pods, None, None).await?;
    let list: serde_json::Value =
        serde_json::from_slice(&list).with_context(|| format!("parsing the LIST of {pods}"))?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .with_context(|| format!("the LIST of {pods} has no resourceVersion"))?
        .to_string();
    let mut watcher = connector.connect().await?;
    let watch_path = format!("{pods}?watch=true&resourceVersion={rv}");
    let resp = watcher.start(Method::GET, &watch_path, None, None).await?;
    ensure!(resp.status() == StatusCode::OK, "GET {watch_path}: {}", resp.status());
    let mut body = resp.into_body();

    let started = Instant::now();
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        None,
        Some(deployment("bench", replicas)),
    )
    .await?;
    let mut seen = HashSet::with_capacity(replicas);
    let mut first = None;
    let mut buf: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    while seen.len() < replicas {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .with_context(|| format!("only {} of {replicas} pods within {ROLLOUT_TIMEOUT:?}", seen.len()))?
            .with_context(|| format!("the pod watch ended after {} pods", seen.len()))?
            .context("reading the pod watch")?;
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if let Some(name) = added_name(&line)? {
                first.get_or_insert_with(|| started.elapsed());
                seen.insert(name);
            }
        }
    }
    let elapsed = started.elapsed();
    Ok(report::Rollout {
        replicas,
        seconds: elapsed.as_secs_f64(),
        per_second: replicas as f64 / elapsed.as_secs_f64().max(1e-9),
        first_pod_ms: first.unwrap_or(elapsed).as_secs_f64() * 1e3,
    })
}

/// The object name of an ADDED watch event line, if it is one.
fn added_name(line: &[u8]) -> Result<Option<String>> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let event: serde_json::Value = serde_json::from_slice(line).with_context(|| {
        format!(
            "a watch event is not JSON: {}",
            String::from_utf8_lossy(&line[..line.len().min(300)])
        )
    })?;
    if event["type"] != "ADDED" {
        return Ok(None);
    }
    Ok(event["object"]["metadata"]["name"].as_str().map(String::from))
}

/// The index of a bench ConfigMap `watch-<index>` in an ADDED watch event line, if it is one.
fn added_index(line: &[u8]) -> Result<Option<usize>> {
    Ok(added_name(line)?.and_then(|name| name.strip_prefix("watch-")?.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_event_index() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"watch-000042"}}}"#;
        assert_eq!(added_index(added).ok().flatten(), Some(42));
        let modified = br#"{"type":"MODIFIED","object":{"metadata":{"name":"watch-000042"}}}"#;
        assert_eq!(added_index(modified).ok().flatten(), None);
        assert_eq!(added_index(b"\n").ok().flatten(), None);
        assert!(added_index(b"{oops").is_err());
    }

    #[test]
    fn added_pod_name() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"bench-x-abcde"}}}"#;
        assert_eq!(added_name(added).ok().flatten().as_deref(), Some("bench-x-abcde"));
        let deleted = br#"{"type":"DELETED","object":{"metadata":{"name":"bench-x-abcde"}}}"#;
        assert_eq!(added_name(deleted).ok().flatten(), None);
        let d: serde_json::Value = serde_json::from_slice(&deployment("b", 3)).unwrap_or_default();
        assert_eq!(d["spec"]["replicas"], 3);
    }

    #[test]
    fn configmap_is_json() {
        let cm: serde_json::Value = serde_json::from_slice(&configmap("a-1")).unwrap_or_default();
        assert_eq!(cm["metadata"]["name"], "a-1");
    }
}
