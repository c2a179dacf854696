//! kate's Kubernetes API server.
//!
//! It serves the Kubernetes v1.33 REST API over HTTPS to the real `kubectl` and to kube-rs:
//! discovery, OpenAPI v3, CRUD with optimistic concurrency, the four patch types, watch, and
//! server-side Tables. Objects are stored as JSON in a [`kate_store::Store`]; lists and watches
//! are served from an in-memory [`watchcache::WatchCache`]. All kinds go through one generic
//! [`registry::Registry`]; what differs per kind (defaults, validation, table columns) lives in
//! a small [`strategy::Strategy`] each.

pub mod auth;
mod bootstrap;
pub mod catalog;
pub mod error;
pub mod http;
pub mod join;
pub mod loopback;
pub mod pki;
mod priority;
pub mod registry;
pub mod selector;
pub mod serve;
pub mod strategy;
pub mod watchcache;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use kate_openapi::{ApiResource, OpenApi};
use kate_store::Store;

use crate::catalog::Catalog;
use crate::registry::Registry;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store, certificates and kubeconfig live.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub bind_address: IpAddr,
    /// The HTTPS port (0 picks a free one).
    pub port: u16,
    /// Extra names and addresses for the serving certificate.
    pub extra_sans: Vec<String>,
    /// How long watch history is kept (the store's compaction window).
    pub history: std::time::Duration,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] serve::TlsError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] kate_store::Error),
    /// Loading the watch cache.
    #[error("watch cache: {0}")]
    Cache(#[from] watchcache::CacheError),
    /// Listening.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Creating the built-in namespaces.
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] error::ApiError),
}

/// A started server: bound, bootstrapped and ready to serve.
pub struct Server {
    /// The registry (also used in-process by other components).
    pub registry: Arc<Registry>,
    /// The URL clients use.
    pub url: String,
    /// Where the admin kubeconfig was written.
    pub kubeconfig: PathBuf,
    pki: Arc<pki::Pki>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
}

impl Server {
    /// Opens the state in `config.data_dir`, prepares TLS and binds the port; `progress` hears
    /// about each step.
    pub async fn start(config: &Config, store: Arc<dyn Store>, progress: &dyn Fn(&str)) -> Result<Server, StartError> {
        progress("loading the watch cache");
        let cache = watchcache::WatchCache::start(store.clone(), config.history).await?;
        let catalog = Arc::new(Catalog::builtin());
        let openapi = Arc::new(OpenApi::new(api_resources(&catalog)));
        let registry = Arc::new(Registry::new(store, cache, catalog, openapi));

        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?
            .port();

        progress("preparing certificates");
        let host = config.bind_address.to_string();
        let mut sans = config.extra_sans.clone();
        sans.push(host.clone());
        let pki = pki::Pki::load_or_create(&config.data_dir.join("pki"), &sans)?;
        let acceptor = serve::acceptor(&pki.ca_cert_pem, &pki.server_cert_pem, &pki.server_key_pem)?;
        let client_host = if config.bind_address.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let url = match config.bind_address {
            IpAddr::V6(_) if !config.bind_address.is_unspecified() => {
                format!("https://[{client_host}]:{port}")
            }
            _ => format!("https://{client_host}:{port}"),
        };
        let kubeconfig = config.data_dir.join("kubeconfig.yaml");
        pki.write_admin_kubeconfig(&kubeconfig, &url)?;

        progress("creating system namespaces");
        let advertise = if config.bind_address.is_unspecified() {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            config.bind_address
        };
        bootstrap::run(&registry, advertise, port).await?;

        let kubelet = http::proxy::KubeletClient::new(
            &pki.ca_cert_pem,
            &pki.kubelet_client_cert_pem,
            &pki.kubelet_client_key_pem,
        )?;
        let pki = Arc::new(pki);
        let state = Arc::new(http::AppState {
            registry: registry.clone(),
            tokens: auth::Tokens::new(pki.admin_token.clone()),
            kubelet: Some(kubelet),
            join_tokens: join::JoinTokens::new(&config.data_dir.join("pki")),
            pki: pki.clone(),
        });
        let app = http::router(state);
        Ok(Server {
            registry,
            url,
            kubeconfig,
            pki,
            listener,
            acceptor,
            app,
        })
    }

    /// An in-process transport into this server for a component running beside it, acting as
    /// `user` (a cluster administrator) and naming itself `user_agent`; wrap it with
    /// `kube::Client::new`.
    pub fn loopback(&self, user: &str, user_agent: &str) -> loopback::Loopback {
        let user = auth::User {
            name: user.into(),
            groups: vec![pki::MASTERS_GROUP.into(), "system:authenticated".into()],
        };
        loopback::Loopback::new(self.app.clone(), user, user_agent)
    }

    /// The cluster's certificates (the CA issues kubelet serving certificates).
    pub fn pki(&self) -> &pki::Pki {
        &self.pki
    }

    /// Serves requests until the process ends.
    pub async fn serve(self) {
        serve::serve(self.listener, self.acceptor, self.app).await
    }
}

/// The catalog as the OpenAPI builder needs it.
pub(crate) fn api_resources(catalog: &Catalog) -> Vec<ApiResource> {
    catalog
        .all()
        .iter()
        .map(|d| ApiResource {
            group: d.group.into(),
            version: d.version.into(),
            kind: d.kind.into(),
            plural: d.plural.into(),
            namespaced: d.namespaced,
            subresources: d.subresources.iter().map(|s| s.name().to_string()).collect(),
            list_kind: format!("{}List", d.kind),
        })
        .collect()
}
