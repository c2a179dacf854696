//! Services on a real node: how fast an endpoint change reaches the proxy's rules with many
//! Services, requests per second through a ClusterIP against the same pod's own IP, and cluster
//! DNS queries per second and latency.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::client::{Conn, Connector, Credentials};
use crate::measure;
use crate::report::{Latency, Services};
use crate::server::Server;

/// The namespace of the test's objects.
const NS: &str = "bench-svc";
/// The cluster DNS service IP.
const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

/// Sizes of the services test.
pub struct Sizes {
    /// Services created before the endpoint change is timed.
    pub services: usize,
    /// Concurrent HTTP connections in the throughput comparison.
    pub clients: usize,
    /// Seconds of load on each target, in alternating one-second turns.
    pub seconds: u64,
    /// DNS queries sent.
    pub dns_queries: usize,
}

/// Runs the services test in a fresh server with a node.
pub async fn measure(kate: &Path, data_root: &Path, image: &Path, sizes: Sizes) -> Result<Services> {
    let mut server = Server::start_node(kate, data_root, image)?;
    let result = run(&server, &sizes).await;
    let result = result.with_context(|| {
        format!(
            "the services test failed; the end of kate's log:\n{}",
            server.log_tail()
        )
    })?;
    server.check_alive()?;
    Ok(result)
}

async fn run(server: &Server, sizes: &Sizes) -> Result<Services> {
    let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
    let connector = Connector::new(&creds, server.port)?;
    let mut conn = connector.connect().await?;
    measure::create_namespace(&mut conn, NS).await?;
    // Two identical pods, one reached directly and one through the Service: each connection
    // leaves a TIME_WAIT socket in the pod, and a pod full of them from one run would slow the
    // next run's connections.
    let direct_ip = start_httpd(&mut conn, "direct").await?;
    let pod_ip = start_httpd(&mut conn, "behind").await?;

    // Many Services (without endpoints), then one whose EndpointSlice is written by hand.
    let created = Instant::now();
    for i in 0..sizes.services {
        create(&mut conn, "services", &service(&format!("filler-{i:04}"))).await?;
    }
    let filler_seconds = created.elapsed().as_secs_f64();
    let measured = service("measured");
    create(&mut conn, "services", &measured).await?;
    let cluster_ip = cluster_ip(&mut conn, "measured").await?;
    // Let the proxy take in the Services before the endpoint change is timed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let changed = Instant::now();
    create(&mut conn, "endpointslices", &slice("measured", &pod_ip)).await?;
    let target: SocketAddr = (cluster_ip, 80).into();
    let deadline = changed + Duration::from_secs(30);
    loop {
        if http_get(target).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the ClusterIP {cluster_ip} never answered after its endpoint was added");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let endpoint_to_rule_ms = changed.elapsed().as_secs_f64() * 1e3;

    // One-second turns, alternating, so that a passing load on the machine weighs on both.
    let (mut direct, mut through) = (0.0, 0.0);
    for _ in 0..sizes.seconds.max(1) {
        direct += throughput((direct_ip, 80).into(), sizes.clients, Duration::from_secs(1)).await?;
        through += throughput(target, sizes.clients, Duration::from_secs(1)).await?;
    }
    let turns = sizes.seconds.max(1) as f64;
    let (direct, through) = (direct / turns, through / turns);
    let mut dns = dns_latency(sizes.dns_queries).await?;
    let dns_seconds = dns.iter().sum::<Duration>().as_secs_f64();
    Ok(Services {
        services: sizes.services + 1,
        services_created_per_second: sizes.services as f64 / filler_seconds.max(1e-9),
        endpoint_to_rule_ms,
        direct_rps: direct,
        cluster_ip_rps: through,
        ratio: through / direct.max(1e-9),
        dns_queries: dns.len(),
        dns_per_second: dns.len() as f64 / dns_seconds.max(1e-9),
        dns_latency: Latency::of(&mut dns),
    })
}

async fn create(conn: &mut Conn, plural: &str, body: &str) -> Result<()> {
    let path = match plural {
        "endpointslices" => format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
        _ => format!("/api/v1/namespaces/{NS}/{plural}"),
    };
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        &path,
        None,
        Some(Bytes::from(body.to_string())),
    )
    .await?;
    Ok(())
}

/// A Service on port 80 without a selector (its endpoints are written by hand).
fn service(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"ports":[{{"port":80,"targetPort":80}}]}}}}"#
    )
}

/// The EndpointSlice of Service `name` with one ready endpoint.
fn slice(name: &str, ip: &Ipv4Addr) -> String {
    format!(
        r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"{name}-1","labels":{{"kubernetes.io/service-name":"{name}"}}}},"addressType":"IPv4","endpoints":[{{"addresses":["{ip}"],"conditions":{{"ready":true}}}}],"ports":[{{"port":80,"protocol":"TCP"}}]}}"#
    )
}

async fn cluster_ip(conn: &mut Conn, name: &str) -> Result<Ipv4Addr> {
    let body = conn
        .expect(
            StatusCode::OK,
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/services/{name}"),
            None,
            None,
        )
        .await?;
    let svc: serde_json::Value = serde_json::from_slice(&body)?;
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .context("the Service has no cluster IP")
}

/// Starts a busybox httpd pod and returns its IP once it runs.
async fn start_httpd(conn: &mut Conn, name: &str) -> Result<Ipv4Addr> {
    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"web","image":"busybox:1.35.0","command":["sh","-c","mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]}}]}}}}"#
    );
    create(conn, "pods", &pod).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let body = conn
            .expect(
                StatusCode::OK,
                Method::GET,
                &format!("/api/v1/namespaces/{NS}/pods/{name}"),
                None,
                None,
            )
            .await?;
        let pod: serde_json::Value = serde_json::from_slice(&body)?;
        if pod["status"]["phase"] == "Running"
            && let Some(ip) = pod["status"]["podIP"].as_str().and_then(|ip| ip.parse().ok())
            && http_get((ip, 80).into()).await.is_ok()
        {
            return Ok(ip);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the httpd pod did not start (is this run as root?)")
}

/// One HTTP/1.0 GET of `/` on a new connection; Ok when a 200 comes back.
async fn http_get(addr: SocketAddr) -> Result<()> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
        let mut buf = Vec::with_capacity(512);
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .context("timeout")??;
    if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        bail!("unexpected answer")
    }
}

/// Successful requests per second with `clients` connections in a loop for `duration`; fails
/// when more than 1% of the requests fail.
async fn throughput(addr: SocketAddr, clients: usize, duration: Duration) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while started.elapsed() < duration {
                match http_get(addr).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (o, f) = done.context("a client panicked")?;
        ok += o;
        failed += f;
    }
    if failed * 100 > ok + failed {
        bail!("{failed} of {} requests to {addr} failed", ok + failed);
    }
    Ok(ok as f64 / started.elapsed().as_secs_f64())
}

/// A DNS query for the A record of `kubernetes.default.svc.cluster.local`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["kubernetes", "default", "svc", "cluster", "local"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Latency of `count` queries to the cluster DNS service, one at a time.
async fn dns_latency(count: usize) -> Result<Vec<Duration>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((DNS_IP, 53)).await?;
    let mut samples = Vec::with_capacity(count);
    let mut buf = [0u8; 512];
    for i in 0..count {
        let id = i as u16;
        let sent = Instant::now();
        socket.send(&dns_query(id)).await?;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
                .await
                .context("no DNS answer within 2 s")??;
            // An answer with our ID and at least one record.
            if n > 12 && buf[..2] == id.to_be_bytes() {
                if u16::from_be_bytes([buf[6], buf[7]]) == 0 {
                    bail!("the cluster DNS has no record of kubernetes.default.svc.cluster.local");
                }
                break;
            }
        }
        samples.push(sent.elapsed());
    }
    Ok(samples)
}
