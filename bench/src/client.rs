//! A minimal HTTPS client for the bench: the admin credentials of a kubeconfig, and one
//! keep-alive HTTP/1.1 connection per [`Conn`] (hyper's connection-level client over
//! tokio-rustls), so concurrency is exactly the number of connections opened.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Upper bound for connecting, and for one request with its whole response body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// PEM credentials of the admin user: the cluster CA, client certificate and client key.
pub struct Credentials {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Credentials {
    /// Reads the base64 `*-data` fields of the first cluster and user of a kubeconfig (kate writes
    /// exactly one of each).
    pub fn from_kubeconfig(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let field = |pointer: &str| -> Result<Vec<u8>> {
            let b64 = doc
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .with_context(|| format!("{} has no {pointer}", path.display()))?;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .with_context(|| format!("{pointer} in {} is not base64", path.display()))
        };
        Ok(Credentials {
            ca_pem: field("/clusters/0/cluster/certificate-authority-data")?,
            cert_pem: field("/users/0/user/client-certificate-data")?,
            key_pem: field("/users/0/user/client-key-data")?,
        })
    }
}

/// Opens TLS connections with client-certificate authentication to `127.0.0.1:<port>`.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    addr: SocketAddr,
    host: HeaderValue,
}

impl Connector {
    /// A connector trusting only the cluster CA and presenting the admin client certificate.
    pub fn new(creds: &Credentials, port: u16) -> Result<Connector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut creds.ca_pem.as_slice()) {
            roots
                .add(cert.context("reading the cluster CA")?)
                .context("adding the cluster CA")?;
        }
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut creds.cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .context("reading the client certificate")?;
        let key = rustls_pemfile::private_key(&mut creds.key_pem.as_slice())
            .context("reading the client key")?
            .context("the kubeconfig holds no client key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("using the client certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = HeaderValue::from_str(&format!("127.0.0.1:{port}")).context("building the Host header")?;
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(config)),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            host,
        })
    }

    /// Opens one new keep-alive connection (TCP, TLS handshake, HTTP/1.1).
    pub async fn connect(&self) -> Result<Conn> {
        let open = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
            let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
            let tls = self.tls.connect(name, tcp).await.context("TLS handshake with kate")?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .context("HTTP/1.1 handshake with kate")?;
            // Ends by itself once `send` and any response body are dropped.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            anyhow::Ok(send)
        };
        let send = tokio::time::timeout(REQUEST_TIMEOUT, open)
            .await
            .context("timed out connecting to kate")??;
        Ok(Conn {
            send,
            host: self.host.clone(),
        })
    }
}

/// One HTTP/1.1 connection; requests on it are sequential.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Conn {
    /// Sends a request and returns the response head with its still-streaming body.
    pub async fn start(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.host.clone())
            .header(ACCEPT, accept.unwrap_or("application/json"));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .with_context(|| format!("building {method} {path}"))?;
        let send = async {
            self.send.ready().await.context("the connection to kate closed")?;
            self.send
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, send)
            .await
            .with_context(|| format!("{method} {path}: no response within {REQUEST_TIMEOUT:?}"))?
    }

    /// Sends a request and reads the whole response.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        let exchange = async {
            let resp = self.start(method.clone(), path, accept, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .with_context(|| format!("reading the response to {method} {path}"))?
                .to_bytes();
            anyhow::Ok((status, bytes))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {path}: not answered within {REQUEST_TIMEOUT:?}"))?
    }

    /// Sends a request and fails unless the response status is `expected`.
    pub async fn expect(
        &mut self,
        expected: StatusCode,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let (status, bytes) = self.call(method.clone(), path, accept, body).await?;
        if status != expected {
            bail!(
                "{method} {path}: expected {expected}, got {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
            );
        }
        Ok(bytes)
    }
}
