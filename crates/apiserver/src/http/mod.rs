//! The HTTP surface: routing, authentication, content negotiation and the resource handlers.

mod body;
mod discovery;
mod encode;
pub mod proxy;
mod query;
mod resource;
mod target;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::auth::{PeerCertificate, Tokens, User, is_public};
use crate::error::ApiError;
use crate::registry::Registry;

/// Everything a handler needs.
pub struct AppState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Accepted bearer tokens.
    pub tokens: Tokens,
    /// The TLS client for kubelets (pod logs, exec, attach, port-forward).
    pub kubelet: Option<proxy::KubeletClient>,
    /// The tokens nodes join with.
    pub join_tokens: crate::join::JoinTokens,
    /// The cluster CA, which issues joining nodes their certificates.
    pub pki: Arc<crate::pki::Pki>,
}

/// The Kubernetes version kate reports (the machine's kubectl picks its binary by the minor).
pub const KUBE_MAJOR: &str = "1";
/// See [`KUBE_MAJOR`].
pub const KUBE_MINOR: &str = "33";
/// See [`KUBE_MAJOR`].
pub const KUBE_GIT_VERSION: &str = "v1.33.0+kate";

/// Builds the router for all endpoints.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/api", get(discovery::core))
        .route("/apis", get(discovery::groups))
        .route("/api/{version}", get(discovery::core_version))
        .route("/apis/{group}", get(discovery::group))
        .route("/apis/{group}/{version}", get(discovery::group_version))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/{*path}", get(openapi_doc))
        .route("/cacerts", get(cacerts))
        .route("/kate/v1/join", axum::routing::post(join))
        .fallback(resource::handle)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Resolves the caller and refuses anonymous requests to anything but the public paths.
async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let from_cert = req.extensions().get::<PeerCertificate>().and_then(|p| p.0.clone());
    let from_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| state.tokens.authenticate(t.trim()));
    let user = match (from_token, from_cert) {
        (Some(None), _) => return ApiError::unauthorized().into_response(),
        (Some(Some(user)), _) | (None, Some(user)) => Some(user),
        (None, None) => None,
    };
    match user {
        Some(user) => {
            tracing::trace!(user = %user.name, path = %req.uri().path(), "authenticated");
            req.extensions_mut().insert::<User>(user);
        }
        None if is_public(req.uri().path()) => {}
        None => return ApiError::unauthorized().into_response(),
    }
    next.run(req).await
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": KUBE_MAJOR,
            "minor": KUBE_MINOR,
            "emulationMajor": KUBE_MAJOR,
            "emulationMinor": KUBE_MINOR,
            "minCompatibilityMajor": KUBE_MAJOR,
            "minCompatibilityMinor": "32",
            "gitVersion": KUBE_GIT_VERSION,
            "gitCommit": env!("CARGO_PKG_VERSION"),
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
        }),
    )
}

async fn health() -> &'static str {
    "ok"
}

/// The cluster CA certificate, public: joining agents check it against their token's hash.
async fn cacerts(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.pki.ca_cert_pem.clone(),
    )
        .into_response()
}

/// Issues a joining node its certificates in exchange for a valid join token.
async fn join(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let request: crate::join::JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("invalid join request: {e}")).into_response(),
    };
    if !state.join_tokens.accepts(&request.secret) {
        return ApiError::unauthorized().into_response();
    }
    match crate::join::issue(&state.pki, &request) {
        Ok(response) => {
            tracing::info!(node = %request.node_name, "a node joined");
            json_response(StatusCode::OK, &json!(response))
        }
        Err(e) => ApiError::internal(format!("issuing the node's certificates: {e}")).into_response(),
    }
}

async fn openapi_root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let root = state.registry.openapi.root();
    let body = serde_json::to_vec(&root).unwrap_or_default();
    let etag = format!("\"{:016X}\"", fnv(&body));
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut resp = bytes_response(StatusCode::OK, "application/json", body);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn openapi_doc(State(state): State<Arc<AppState>>, Path(path): Path<String>) -> Response {
    match state.registry.openapi.document(&path) {
        Some(doc) => {
            let mut resp = bytes_response(StatusCode::OK, "application/json", doc.json.clone());
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
            resp.headers_mut().insert(
                header::EXPIRES,
                HeaderValue::from_static("Thu, 31 Dec 2099 23:59:59 GMT"),
            );
            resp.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{}\"", doc.hash)).unwrap_or(HeaderValue::from_static("\"\"")),
            );
            resp
        }
        None => ApiError::no_route().into_response(),
    }
}

/// A 64-bit FNV-1a hash, for ETags.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A JSON response.
pub fn json_response(code: StatusCode, value: &serde_json::Value) -> Response {
    bytes_response(code, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

/// A response with a body and content type.
pub fn bytes_response(code: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
