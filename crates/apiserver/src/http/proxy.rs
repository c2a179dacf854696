//! The pod subresources served by the pod's kubelet: `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`. As upstream, the API server checks the request against the pod (which
//! container, which node), then proxies it over TLS to the kubelet's port on the node's
//! InternalIP, showing the kubelet-client certificate and checking the kubelet's certificate
//! against the cluster CA. Logs stream back as `text/plain`; for exec, attach and port-forward
//! the kubelet's `101 Switching Protocols` (with the protocol it chose) goes back to the client
//! and the two upgraded connections are joined byte for byte.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::target::Target;
use crate::error::{ApiError, Cause};
use crate::registry::Registry;
use crate::serve::TlsError;

/// How long connecting to a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a kubelet's error answer that is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The kubelet port when a node does not say.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Request headers an upgrade needs passed on to the kubelet.
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
/// Response headers of a `101` passed back to the client.
const SWITCH_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The API server's TLS client for kubelets.
pub struct KubeletClient {
    connector: TlsConnector,
}

impl KubeletClient {
    /// A client trusting kubelets whose certificates `ca_pem` signed, showing `cert_pem`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<KubeletClient, TlsError> {
        let pem = |e: std::io::Error| TlsError::Pem(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(ca.map_err(pem)?)?;
        }
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(pem)?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(pem)?
            .ok_or_else(|| TlsError::Pem("no private key".into()))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}

/// The streaming subresources of pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// `log`.
    Log,
    /// `exec`.
    Exec,
    /// `attach`.
    Attach,
    /// `portforward`.
    PortForward,
}

impl Streaming {
    /// The streaming subresource a request addresses, if any.
    pub fn of(target: &Target) -> Option<Streaming> {
        if !target.def.group.is_empty() || target.def.plural != "pods" || target.name.is_none() {
            return None;
        }
        match target.subresource.as_deref()? {
            "log" => Some(Streaming::Log),
            "exec" => Some(Streaming::Exec),
            "attach" => Some(Streaming::Attach),
            "portforward" => Some(Streaming::PortForward),
            _ => None,
        }
    }
}

/// Serves a streaming subresource.
pub async fn handle(
    registry: &Registry,
    kubelet: Option<&KubeletClient>,
    kind: Streaming,
    mut parts: Parts,
    target: Target,
) -> Result<Response, ApiError> {
    let allowed = match kind {
        Streaming::Log => parts.method == Method::GET,
        _ => parts.method == Method::GET || parts.method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} pods/{})",
            parts.method,
            target.subresource.as_deref().unwrap_or("")
        )));
    }
    let ns = target.namespace.as_deref().unwrap_or("default");
    let name = target.name.as_deref().unwrap_or("");
    let query: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let pod = registry.get(&target.def, Some(ns), name).await?;
    let requested = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str());
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    let (path, forwarded) = match kind {
        Streaming::Log => {
            let container = log_container(&pod, name, requested.unwrap_or(""))?;
            let forwarded = log_query(&query, name)?;
            if node.is_empty() {
                // Upstream answers an unscheduled pod's log with nothing.
                return Ok(text_response(Body::empty()));
            }
            (format!("/containerLogs/{ns}/{name}/{container}"), forwarded)
        }
        Streaming::Exec | Streaming::Attach => {
            let container = stream_container(&pod, name, requested.unwrap_or(""))?;
            if node.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            let verb = if kind == Streaming::Exec { "exec" } else { "attach" };
            let forwarded = query.iter().filter(|(k, _)| k != "container").cloned().collect();
            (format!("/{verb}/{ns}/{name}/{container}"), forwarded)
        }
        Streaming::PortForward => {
            if node.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            (format!("/portForward/{ns}/{name}"), query.clone())
        }
    };
    let kubelet = kubelet.ok_or_else(|| ApiError::unavailable("this API server has no kubelet client certificate"))?;
    let (host, port) = kubelet_address(registry, node).await?;
    let mut uri = path;
    if !forwarded.is_empty() {
        uri.push('?');
        uri.push_str(&serde_urlencoded::to_string(&forwarded).map_err(ApiError::internal)?);
    }
    let mut builder = http::Request::builder()
        .method(parts.method.clone())
        .uri(&uri)
        .header(header::HOST, format!("{}:{port}", host_text(&host)));
    if kind != Streaming::Log {
        for name in UPGRADE_HEADERS {
            for value in parts.headers.get_all(name) {
                builder = builder.header(name, value);
            }
        }
    }
    let request = builder.body(Empty::<Bytes>::new()).map_err(ApiError::internal)?;
    tracing::debug!(node, %uri, "proxying to the kubelet");
    let mut resp = send(kubelet, &host, port, request).await?;

    if kind == Streaming::Log {
        if !resp.status().is_success() {
            return Err(backend_error(resp).await);
        }
        return Ok(text_response(Body::new(resp.into_body())));
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Passed on as the kubelet said it (kubectl shows "unable to upgrade connection: …").
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_limited(resp.into_body()).await;
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        if let Some(ct) = content_type {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return Ok(out);
    }
    let client_side = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
    let kubelet_side = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in SWITCH_HEADERS {
        for value in resp.headers().get_all(name) {
            out.headers_mut().append(name, value.clone());
        }
    }
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::join!(client_side, kubelet_side) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!(client = ?c.err(), kubelet = ?k.err(), "an upgrade did not complete");
                return;
            }
        };
        let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
        match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            Ok((up, down)) => tracing::debug!(up, down, "a streaming connection ended"),
            Err(e) => tracing::debug!(error = %e, "a streaming connection ended with an error"),
        }
    });
    Ok(out)
}

fn text_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A host as it goes in a `Host` header.
fn host_text(host: &Host) -> String {
    match host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    }
}

/// Where a kubelet is reached.
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The node's kubelet address: its InternalIP (else another address) and kubelet port.
async fn kubelet_address(registry: &Registry, node_name: &str) -> Result<(Host, u16), ApiError> {
    let nodes = registry
        .catalog
        .find("", "v1", "nodes")
        .cloned()
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let node = registry.get(&nodes, None, node_name).await?;
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a.get("type")?.as_str()?, a.get("address")?.as_str()?)))
        .collect();
    let host = ["InternalIP", "ExternalIP", "InternalDNS", "Hostname", "ExternalDNS"]
        .iter()
        .find_map(|kind| addresses.iter().find(|(t, _)| t == kind).map(|(_, a)| *a))
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name:?} has no address")))?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.to_string()),
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host, port))
}

/// Sends one request to a kubelet on a connection of its own (which an upgrade then keeps).
async fn send(
    kubelet: &KubeletClient,
    host: &Host,
    port: u16,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let dial_error = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!(
            "error dialing backend: dial tcp {}:{port}: {e}",
            host_text(host)
        ))
    };
    let connect = async {
        match host {
            Host::Ip(ip) => TcpStream::connect((*ip, port)).await,
            Host::Name(name) => TcpStream::connect((name.as_str(), port)).await,
        }
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| dial_error(&"i/o timeout"))?
        .map_err(|e| dial_error(&e))?;
    let _ = tcp.set_nodelay(true);
    let server_name = match host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| dial_error(&e))?,
    };
    let tls = kubelet
        .connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| dial_error(&format!("TLS: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| dial_error(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a kubelet connection ended with an error");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::internal(format!("the kubelet did not answer: {e}")))
}

async fn read_limited(body: hyper::body::Incoming) -> Bytes {
    match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// A kubelet's error answer as a Status, as upstream's response checker makes it.
async fn backend_error(resp: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = read_limited(resp.into_body()).await;
    let text = String::from_utf8_lossy(&body).trim().to_string();
    match code {
        500 => ApiError::internal(text),
        _ => ApiError::from_backend(code, text),
    }
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

fn has_container(pod: &Value, container: &str) -> bool {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .any(|list| names(pod, list).iter().any(|n| n == container))
}

/// The requested container, or the pod's only one; `ambiguous` words the error for a pod with
/// several containers when none was named.
fn pick_container(
    pod: &Value,
    name: &str,
    requested: &str,
    ambiguous: impl FnOnce(&[String]) -> String,
) -> Result<String, ApiError> {
    if !requested.is_empty() {
        if !has_container(pod, requested) {
            return Err(ApiError::bad_request(format!(
                "container {requested} is not valid for pod {name}"
            )));
        }
        return Ok(requested.to_string());
    }
    let containers = names(pod, "containers");
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        _ => Err(ApiError::bad_request(ambiguous(&containers))),
    }
}

/// The container whose log is read, checked as upstream's `ValidateContainer` does: the
/// choices listed are all the pod's containers.
fn log_container(pod: &Value, name: &str, requested: &str) -> Result<String, ApiError> {
    pick_container(pod, name, requested, |_| {
        let all: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|list| names(pod, list))
            .collect();
        format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            all.join(" ")
        )
    })
}

/// The container an exec or attach goes to, checked as upstream's `streamLocation` does: the
/// containers are listed, then the init containers apart.
fn stream_container(pod: &Value, name: &str, requested: &str) -> Result<String, ApiError> {
    pick_container(pod, name, requested, |containers| {
        let mut message = format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        );
        let init = names(pod, "initContainers");
        if !init.is_empty() {
            message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
        }
        message
    })
}

/// The log options passed on to the kubelet, validated as upstream's `ValidatePodLogOptions`.
fn log_query(query: &[(String, String)], name: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut forwarded = Vec::new();
    let mut causes = Vec::new();
    let (mut since_seconds, mut since_time) = (false, false);
    for (key, value) in query {
        match key.as_str() {
            "follow" | "previous" | "timestamps" => {
                let on = match value.as_str() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid value {value:?} for {key}: not a boolean"
                        )));
                    }
                };
                if on {
                    forwarded.push((key.clone(), "true".to_string()));
                }
            }
            "tailLines" | "limitBytes" | "sinceSeconds" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid value {value:?} for {key}: not an integer")))?;
                let (ok, why) = match key.as_str() {
                    "tailLines" => (n >= 0, "must be greater than or equal to 0"),
                    _ => (n >= 1, "must be greater than 0"),
                };
                if !ok {
                    causes.push(Cause::invalid(key.clone(), &json!(n), why));
                }
                since_seconds |= key == "sinceSeconds";
                forwarded.push((key.clone(), n.to_string()));
            }
            "sinceTime" => {
                since_time = true;
                forwarded.push((key.clone(), value.clone()));
            }
            _ => {}
        }
    }
    if since_seconds && since_time {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            field: String::new(),
        });
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, causes));
    }
    Ok(forwarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_container_must_be_named_when_there_are_several() {
        let two = pod(json!({"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}));
        let e = stream_container(&two, "web", "").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [i]"
        );
        let e = log_container(&two, "web", "").unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [i a b]"
        );
        assert_eq!(stream_container(&two, "web", "b").unwrap(), "b");
        assert_eq!(log_container(&two, "web", "i").unwrap(), "i");
        assert_eq!(
            stream_container(&two, "web", "z").unwrap_err().message,
            "container z is not valid for pod web"
        );
        let one = pod(json!({"containers": [{"name": "only"}]}));
        assert_eq!(log_container(&one, "web", "").unwrap(), "only");
    }

    #[test]
    fn log_options_are_validated_and_passed_on() {
        let q = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap();
        let fwd = log_query(
            &q("container=a&follow=true&tailLines=5&timestamps=false&sinceSeconds=10"),
            "web",
        )
        .unwrap();
        assert_eq!(
            fwd,
            [
                ("follow".to_string(), "true".to_string()),
                ("tailLines".to_string(), "5".to_string()),
                ("sinceSeconds".to_string(), "10".to_string())
            ]
        );
        let e = log_query(&q("tailLines=-2"), "web").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -2: must be greater than or equal to 0"
        );
        assert_eq!(log_query(&q("follow=yes"), "web").unwrap_err().code, 400);
    }
}
