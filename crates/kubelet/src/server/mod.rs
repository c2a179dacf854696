//! The kubelet's HTTPS server, which the API server proxies `kubectl logs`, `exec`, `attach`
//! and `port-forward` to, with upstream's kubelet paths:
//!
//! ```text
//! GET       /containerLogs/{namespace}/{pod}/{container}?follow&previous&tailLines&…
//! GET|POST  /exec/{namespace}/{pod}[/{uid}]/{container}?command=…&stdin&stdout&stderr&tty
//! GET|POST  /attach/{namespace}/{pod}[/{uid}]/{container}?stdin&stdout&stderr&tty
//! GET|POST  /portForward/{namespace}/{pod}[/{uid}]
//! ```
//!
//! It serves TLS with a certificate from the cluster CA and requires a client certificate from
//! the same CA in the `system:masters` group (the API server's kubelet-client certificate).
//! `exec` and `attach` speak WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io`, or SPDY/3.1
//! (kubectl's fallback); port-forward speaks SPDY/3.1, raw or tunnelled in a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.33 uses).

mod logs;
mod portforward;
mod pty;
mod remotecommand;
mod spdy;
mod websocket;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kate_runtime::ContainerState;
use kube::Api;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Shared;
use crate::spec::labels;
use logs::LogOptions;
use remotecommand::StreamOptions;

/// The group whose members may use the kubelet's API (as upstream's `system:masters`).
const MASTERS_GROUP: &str = "system:masters";
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The SPDY upgrade token.
const SPDY: &str = "SPDY/3.1";
/// The SPDY sub-protocol of port-forward.
const PORT_FORWARD: &str = "portforward.k8s.io";

/// The kubelet server's certificates, PEM.
#[derive(Clone)]
pub struct ServingTls {
    /// The cluster CA: client certificates must be signed by it.
    pub ca_pem: String,
    /// The serving certificate (signed by the cluster CA for the node's address).
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls").finish_non_exhaustive()
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificates could not be used.
    #[error("kubelet server TLS: {0}")]
    Tls(String),
    /// The port could not be bound.
    #[error("kubelet server: listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Binds the kubelet's port on all addresses and serves it in the background.
pub(crate) async fn start(shared: Arc<Shared>, tls: &ServingTls) -> Result<(), ServerError> {
    let acceptor = acceptor(tls)?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), shared.config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    tracing::info!(%addr, "the kubelet serves logs, exec, attach and port-forward");
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet server: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move { connection(tcp, peer, acceptor, shared).await });
        }
    });
    Ok(())
}

fn acceptor(tls: &ServingTls) -> Result<TlsAcceptor, ServerError> {
    let err = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes())
        .map_err(|e| err(&e))?
        .ok_or_else(|| ServerError::Tls("no private key".into()))?;
    let mut roots = RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut tls.ca_pem.as_bytes()) {
        roots.add(ca.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| err(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The caller, from its verified client certificate: (user, groups).
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    groups: Vec<String>,
}

fn caller(der: &[u8]) -> Option<Caller> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    Some(Caller {
        name: subject.iter_common_name().next()?.as_str().ok()?.to_string(),
        groups: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(String::from)
            .collect(),
    })
}

async fn connection(tcp: tokio::net::TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "kubelet server: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "kubelet server: TLS handshake timed out");
            return;
        }
    };
    let caller = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| caller(c));
    let service = hyper::service::service_fn(move |req| {
        let (shared, caller) = (shared.clone(), caller.clone());
        async move { Ok::<_, Infallible>(handle(shared, caller, req).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::trace!(%peer, error = %e, "kubelet server: connection ended with an error");
    }
}

/// A failed request, answered in plain text as upstream's kubelet does.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut body = message.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed_unsync()
}

async fn handle(shared: Arc<Shared>, caller: Option<Caller>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let verb = if req.method() == Method::GET { "get" } else { "create" };
    match &caller {
        Some(c) if c.groups.iter().any(|g| g == MASTERS_GROUP) => {}
        other => {
            let user = other.as_ref().map_or("system:anonymous", |c| c.name.as_str());
            return text(
                StatusCode::FORBIDDEN,
                format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[proxy])"),
            );
        }
    }
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(String::from).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let span = tracing::debug_span!("kubelet request", %method, %path);
    let result = tracing::Instrument::instrument(route(&shared, &method, &segs, req), span).await;
    result.unwrap_or_else(|e| {
        tracing::debug!(status = %e.status, message = %e.message, "kubelet request refused");
        text(e.status, e.message)
    })
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    match (method, segs) {
        (&Method::GET, ["containerLogs", ns, pod, container]) => container_logs(shared, ns, pod, container, &req).await,
        (&Method::GET | &Method::POST, ["exec" | "attach", ns, pod, container])
        | (&Method::GET | &Method::POST, ["exec" | "attach", ns, pod, _, container]) => {
            let kind = if segs[0] == "exec" { Kind::Exec } else { Kind::Attach };
            remote_command(shared, kind, ns, pod, container, req).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod])
        | (&Method::GET | &Method::POST, ["portForward", ns, pod, _]) => port_forward(shared, ns, pod, req).await,
        _ => Err(HttpError::not_found("404 page not found")),
    }
}

fn query_pairs(req: &Request<Incoming>) -> Result<Vec<(String, String)>, HttpError> {
    serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
        .map_err(|e| HttpError::bad_request(format!("invalid query: {e}")))
}

/// The pod, if it exists and is bound to this node.
async fn find_pod(shared: &Shared, ns: &str, name: &str) -> Result<Pod, HttpError> {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(pod))
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(shared.config.node_name.as_str()) =>
        {
            Ok(pod)
        }
        Ok(_) => Err(HttpError::not_found(format!("pod {name:?} does not exist"))),
        Err(e) => Err(HttpError::internal(format!("looking up pod {name:?}: {e}"))),
    }
}

/// Whether the pod has a container (or init or ephemeral container) of that name.
fn has_container(pod: &Pod, name: &str) -> bool {
    keeps_stdin(pod, name).is_some()
}

/// Whether the pod's container `name` keeps its stdin open for attaching; `None` without one.
fn keeps_stdin(pod: &Pod, name: &str) -> Option<bool> {
    let spec = pod.spec.as_ref()?;
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    containers
        .map(|c| (&c.name, c.stdin))
        .chain(spec.ephemeral_containers.iter().flatten().map(|c| (&c.name, c.stdin)))
        .find(|(n, _)| *n == name)
        .map(|(_, stdin)| stdin.unwrap_or(false))
}

/// The runtime ID in a status `containerID` (`kate://ID`).
fn runtime_id(container_id: &str) -> &str {
    container_id.split_once("://").map_or(container_id, |(_, id)| id)
}

/// Which instance's log to show, decided from the pod's status as upstream's kubelet does.
fn log_container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let statuses = pod.status.as_ref();
    let status = statuses
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .find(|s| s.name == container)
        .ok_or_else(|| format!("container {container:?} in pod {pod_name:?} is not available"))?;
    let id_of = |id: &Option<String>| id.as_deref().filter(|i| !i.is_empty()).map(String::from);
    let last = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let state = status.state.as_ref();
    let terminated_error = || format!("container {container:?} in pod {pod_name:?} is terminated");
    if previous {
        return last
            .and_then(|t| id_of(&t.container_id))
            .ok_or_else(|| format!("previous terminated container {container:?} in pod {pod_name:?} not found"));
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return id_of(&status.container_id).ok_or_else(terminated_error);
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return id_of(&t.container_id)
            .or_else(|| last.and_then(|l| id_of(&l.container_id)))
            .ok_or_else(terminated_error);
    }
    if let Some(l) = last {
        return id_of(&l.container_id).ok_or_else(terminated_error);
    }
    match state
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.reason.clone().unwrap_or_default())
    {
        Some(reason) if reason == "ErrImagePull" => Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: image can't be pulled"
        )),
        Some(reason) if reason == "ImagePullBackOff" => Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: trying and failing to pull image"
        )),
        Some(reason) => Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {reason}"
        )),
        None => Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        )),
    }
}

/// The attempt number at the end of a container ID (`<pod uid>-<name>-<attempt>`).
fn attempt_of(id: &str) -> Option<u32> {
    id.rsplit('-').next()?.parse().ok()
}

/// Whether the runtime container still runs (or is about to).
fn still_running(runtime: &kate_runtime::Runtime, id: &str) -> bool {
    matches!(
        runtime.container_status(id).map(|s| s.state),
        Ok(ContainerState::Running | ContainerState::Created)
    )
}

async fn container_logs(
    shared: &Arc<Shared>,
    ns: &str,
    pod_name: &str,
    container: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let opts = LogOptions::from_query(&query_pairs(req)?, Timestamp::now()).map_err(HttpError::bad_request)?;
    let pod = find_pod(shared, ns, pod_name).await?;
    if !has_container(&pod, container) {
        return Err(HttpError::not_found(format!(
            "container {container:?} not found in pod {pod_name:?}"
        )));
    }
    let id = log_container_id(&pod, container, opts.previous).map_err(HttpError::bad_request)?;
    let id = runtime_id(&id).to_string();
    let attempt = attempt_of(&id).ok_or_else(|| HttpError::internal(format!("unexpected container ID {id:?}")))?;
    let path = shared.log_path(&pod, container, attempt);
    let running: Option<Box<dyn Fn() -> bool + Send>> = opts.follow.then(|| {
        let runtime = shared.runtime.clone();
        Box::new(move || still_running(&runtime, &id)) as Box<dyn Fn() -> bool + Send>
    });
    let (line_tx, line_rx) = mpsc::channel(4);
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(8);
    let tail = opts.tail_lines;
    tokio::spawn(async move {
        if let Err(e) = logs::read_lines(path.clone(), tail, running, line_tx).await {
            tracing::warn!(path = %path.display(), error = %e, "reading a container log failed");
        }
    });
    tokio::spawn(logs::format_lines(opts, line_rx, body_tx));
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// Exec or attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
}

/// The container instance that runs now, by the runtime's labels.
fn running_container(shared: &Shared, uid: &str, container: &str) -> Option<kate_runtime::Container> {
    shared
        .runtime
        .list_containers()
        .ok()?
        .into_iter()
        .filter(|c| {
            c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                && c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container)
        })
        .max_by_key(|c| {
            c.labels
                .get(labels::ATTEMPT)
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .filter(|c| still_running(&shared.runtime, &c.id))
}

/// How the client asked to upgrade: a WebSocket sub-protocol or a SPDY stream protocol.
#[derive(Debug)]
enum Upgrade {
    WebSocket(&'static str),
    Spdy(&'static str),
}

/// Picks the transport from the request's upgrade headers.
fn upgrade_of(headers: &HeaderMap, websocket: &[&'static str], spdy: &[&'static str]) -> Result<Upgrade, HttpError> {
    if websocket::is_websocket(headers) {
        return websocket::negotiate(headers, websocket)
            .map(Upgrade::WebSocket)
            .ok_or_else(|| {
                HttpError::bad_request(format!(
                    "unable to upgrade: none of the requested WebSocket protocols is supported (supported: {})",
                    websocket.join(", ")
                ))
            });
    }
    let spdy_requested = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SPDY));
    if !spdy_requested {
        return Err(HttpError::bad_request("Upgrade request required"));
    }
    let offered: Vec<&str> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    offered
        .iter()
        .find_map(|o| spdy.iter().find(|s| *s == o).copied())
        .map(Upgrade::Spdy)
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {spdy:?}"
                ),
            )
        })
}

/// The `101 Switching Protocols` answer to a SPDY upgrade.
fn spdy_accept(protocol: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
    h.insert("x-stream-protocol-version", HeaderValue::from_static(protocol));
    resp
}

/// Answers the upgrade with 101 and runs `session` on the upgraded connection.
fn upgraded<F, Fut>(mut req: Request<Incoming>, transport: Upgrade, session: F) -> Result<Response<Body>, HttpError>
where
    F: FnOnce(Transport) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let resp = match &transport {
        Upgrade::WebSocket(protocol) => {
            websocket::accept(req.headers(), protocol, full(Bytes::new())).map_err(HttpError::bad_request)?
        }
        Upgrade::Spdy(protocol) => spdy_accept(protocol),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "the upgrade did not complete");
                return;
            }
        };
        let transport = match transport {
            Upgrade::WebSocket(_) => {
                Transport::WebSocket(Box::new(WebSocketStream::from_raw_socket(io, Role::Server, None).await))
            }
            Upgrade::Spdy(_) => Transport::Spdy(io),
        };
        session(transport).await;
    });
    Ok(resp)
}

/// An upgraded connection.
enum Transport {
    WebSocket(Box<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>),
    Spdy(TokioIo<hyper::upgrade::Upgraded>),
}

async fn remote_command(
    shared: &Arc<Shared>,
    kind: Kind,
    ns: &str,
    pod_name: &str,
    container: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let mut opts = StreamOptions::default();
    let mut argv = Vec::new();
    for (name, value) in query_pairs(&req)? {
        let flag = || logs::parse_bool(&name, &value).map_err(HttpError::bad_request);
        match name.as_str() {
            "command" => argv.push(value.clone()),
            "stdin" | "input" => opts.stdin = flag()?,
            "stdout" | "output" => opts.stdout = flag()?,
            "stderr" | "error" => opts.stderr = flag()?,
            "tty" => opts.tty = flag()?,
            _ => {}
        }
    }
    // A terminal has one output.
    if opts.tty {
        opts.stderr = false;
    }
    if !(opts.stdin || opts.stdout || opts.stderr) {
        return Err(HttpError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if kind == Kind::Exec && argv.is_empty() {
        return Err(HttpError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let pod = find_pod(shared, ns, pod_name).await?;
    let Some(stdin) = keeps_stdin(&pod, container) else {
        return Err(HttpError::not_found(format!("container not found ({container:?})")));
    };
    // Said in the stream, where kubectl prints it, rather than as a refused upgrade.
    let no_stdin = (kind == Kind::Attach && opts.stdin && !stdin).then(|| {
        format!(
            "container {container:?} in pod {pod_name:?} does not keep stdin open (set stdin: true in its spec to attach to it with -i)"
        )
    });
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let instance = running_container(shared, &uid, container)
        .ok_or_else(|| HttpError::bad_request(format!("container {container:?} in pod {pod_name:?} is not running")))?;
    let transport = upgrade_of(
        req.headers(),
        &[websocket::CHANNEL_V5, websocket::CHANNEL_V4],
        &[websocket::CHANNEL_V5, websocket::CHANNEL_V4],
    )?;
    let what = match kind {
        Kind::Exec => "exec",
        Kind::Attach => "attach",
    };
    tracing::debug!(pod = pod_name, container, command = ?argv, ?opts, "{what}");
    let runtime = shared.runtime.clone();
    upgraded(req, transport, move |transport| async move {
        let streams = match transport {
            Transport::WebSocket(ws) => websocket::channels(*ws, opts),
            Transport::Spdy(io) => {
                let incoming = match spdy::serve(io) {
                    Ok(incoming) => incoming,
                    Err(e) => {
                        tracing::debug!(error = %e, "SPDY session failed");
                        return;
                    }
                };
                match remotecommand::over_spdy(incoming, opts).await {
                    Ok(streams) => streams,
                    Err(e) => {
                        tracing::debug!(error = %e, "SPDY {what} failed");
                        return;
                    }
                }
            }
        };
        match kind {
            Kind::Exec => match runtime.exec(&instance.id, &argv, opts.tty) {
                Ok(command) if opts.tty => remotecommand::exec_tty(command, argv, streams).await,
                Ok(command) => remotecommand::exec(command, argv, opts, streams).await,
                Err(e) => remotecommand::fail(streams, &e.to_string()).await,
            },
            Kind::Attach => {
                if let Some(message) = no_stdin {
                    return remotecommand::fail(streams, &message).await;
                }
                match runtime.attach(&instance.id).await {
                    Ok(conn) => remotecommand::attach(conn, opts, streams).await,
                    Err(e) => remotecommand::fail(streams, &e.to_string()).await,
                }
            }
        }
    })
}

async fn port_forward(
    shared: &Arc<Shared>,
    ns: &str,
    pod_name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let pod = find_pod(shared, ns, pod_name).await?;
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let ip = if host_network {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        pod.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| HttpError::bad_request(format!("pod {pod_name:?} has no IP address yet")))?
    };
    let target = portforward::Target {
        ip,
        pod: format!("{pod_name}_{ns}"),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    let transport = upgrade_of(
        req.headers(),
        &[websocket::SPDY_PORTFORWARD, websocket::CHANNEL_V4],
        &[PORT_FORWARD],
    )?;
    let channels = matches!(transport, Upgrade::WebSocket(websocket::CHANNEL_V4));
    let ports = portforward::ports_of(&query_pairs(&req)?).map_err(HttpError::bad_request)?;
    if channels && ports.is_empty() {
        return Err(HttpError::bad_request("query parameter \"ports\" is required"));
    }
    tracing::debug!(pod = pod_name, %ip, ?ports, "port-forward");
    upgraded(req, transport, move |transport| async move {
        let session = match transport {
            Transport::WebSocket(ws) if channels => return portforward::serve_channels(*ws, ports, target).await,
            Transport::WebSocket(ws) => spdy::serve(websocket::tunnel(*ws)),
            Transport::Spdy(io) => spdy::serve(io),
        };
        match session {
            Ok(streams) => portforward::serve(streams, target).await,
            Err(e) => tracing::debug!(error = %e, "port-forward session failed"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "init"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_log_shown_follows_the_container_status() {
        let running = pod(json!({"containerStatuses": [{
            "name": "c", "image": "", "imageID": "", "ready": true, "restartCount": 1,
            "containerID": "kate://u-c-1",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "kate://u-c-0"}},
        }]}));
        assert_eq!(log_container_id(&running, "c", false).unwrap(), "kate://u-c-1");
        assert_eq!(log_container_id(&running, "c", true).unwrap(), "kate://u-c-0");
        assert_eq!(
            log_container_id(&running, "x", false).unwrap_err(),
            "container \"x\" in pod \"p\" is not available"
        );
        let waiting = pod(json!({"containerStatuses": [{
            "name": "c", "image": "", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }]}));
        assert_eq!(
            log_container_id(&waiting, "c", false).unwrap_err(),
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            log_container_id(&waiting, "c", true).unwrap_err(),
            "previous terminated container \"c\" in pod \"p\" not found"
        );
        let crashing = pod(json!({"containerStatuses": [{
            "name": "c", "image": "", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "kate://u-c-1"}},
        }]}));
        assert_eq!(log_container_id(&crashing, "c", false).unwrap(), "kate://u-c-1");
        let done = pod(json!({"initContainerStatuses": [{
            "name": "init", "image": "", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "containerID": "kate://u-init-0"}},
        }]}));
        assert_eq!(log_container_id(&done, "init", false).unwrap(), "kate://u-init-0");
        assert!(has_container(&done, "init"));
        assert!(!has_container(&done, "nope"));
    }

    #[test]
    fn container_ids_carry_the_attempt() {
        assert_eq!(runtime_id("kate://abc-def-web-app-3"), "abc-def-web-app-3");
        assert_eq!(attempt_of("abc-def-web-app-3"), Some(3));
        assert_eq!(attempt_of("nope"), None);
    }

    #[test]
    fn upgrades_pick_the_transport() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(matches!(
            upgrade_of(&h, &[websocket::CHANNEL_V5], &[websocket::CHANNEL_V4]),
            Ok(Upgrade::Spdy("v4.channel.k8s.io"))
        ));
        let mut w = HeaderMap::new();
        w.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        w.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
        );
        assert!(matches!(
            upgrade_of(&w, &[websocket::SPDY_PORTFORWARD], &[PORT_FORWARD]),
            Ok(Upgrade::WebSocket(_))
        ));
        assert_eq!(
            upgrade_of(&HeaderMap::new(), &[], &[]).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
