//! The loopback transport: a tower service that hands requests straight to the router, so the
//! components `kate server` runs beside the API server (controllers, scheduler, kubelet) reach
//! it without a socket or TLS, as upstream's in-process loopback client does.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use tower::{Service, ServiceExt};

use crate::auth::{PeerCertificate, User};

/// Marks a request that came through the loopback transport, from a component of this server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InProcess;

/// An in-process client transport that authenticates every request as one fixed user.
#[derive(Clone)]
pub struct Loopback {
    app: Router,
    caller: PeerCertificate,
    user_agent: HeaderValue,
}

impl Loopback {
    /// A transport into `app` acting as `user`; `user_agent` names the component, which is
    /// also the field manager of its writes.
    pub(crate) fn new(app: Router, user: User, user_agent: &str) -> Loopback {
        Loopback {
            app,
            caller: PeerCertificate(Some(user)),
            user_agent: HeaderValue::from_str(user_agent).unwrap_or_else(|_| HeaderValue::from_static("kate")),
        }
    }
}

impl<B> Service<Request<B>> for Loopback
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<Router, Request<Body>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(self.caller.clone());
        req.extensions_mut().insert(InProcess);
        req.headers_mut()
            .entry(header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        self.app.clone().oneshot(req)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::Method;
    use http_body_util::BodyExt;
    use serde_json::Value;

    use super::*;
    use crate::{Config, Server};

    const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

    fn request(method: Method, uri: &str, body: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request")
    }

    /// The object of the first event line of a watch response.
    async fn first_event(resp: Response<Body>) -> Value {
        let mut body = resp.into_body();
        let mut line = Vec::new();
        while !line.contains(&b'\n') {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("an event in time")
                .expect("an open watch")
                .expect("a frame");
            line.extend_from_slice(frame.data_ref().expect("data"));
        }
        let event: Value =
            serde_json::from_slice(&line[..=line.iter().position(|b| *b == b'\n').expect("line")]).expect("event JSON");
        event["object"].clone()
    }

    #[test]
    fn in_process_watches_leave_out_managed_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let config = Config {
                data_dir: dir.path().to_path_buf(),
                bind_address: "127.0.0.1".parse().expect("address"),
                port: 0,
                extra_sans: Vec::new(),
                history: Duration::from_secs(60),
            };
            let store: Arc<dyn kate_store::Store> =
                Arc::new(kate_store::sqlite::SqliteStore::open(&dir.path().join("db")).expect("store"));
            let server = Server::start(&config, store, &|_| {}).await.expect("server");
            let inside = server.loopback("test-admin", "test");
            let revision = server.registry.cache.revision();
            let watch = format!("{CONFIGMAPS}?watch=true&resourceVersion={revision}");
            // The same user from outside: authenticated, but not through the loopback.
            let mut from_outside = request(Method::GET, &watch, "");
            from_outside.extensions_mut().insert(inside.caller.clone());
            let outside_watch = server.app.clone().oneshot(from_outside).await.expect("outside watch");
            let inside_watch = inside
                .clone()
                .call(request(Method::GET, &watch, ""))
                .await
                .expect("inside watch");
            let created = inside
                .clone()
                .call(request(
                    Method::POST,
                    CONFIGMAPS,
                    r#"{"metadata":{"name":"a"},"data":{"k":"v"}}"#,
                ))
                .await
                .expect("create");
            assert_eq!(created.status(), http::StatusCode::CREATED);

            let outside = first_event(outside_watch).await;
            let inside = first_event(inside_watch).await;
            assert!(
                outside.pointer("/metadata/managedFields/0/manager").is_some(),
                "{outside}"
            );
            assert_eq!(inside.pointer("/metadata/managedFields"), None, "{inside}");
            let mut trimmed = outside.clone();
            trimmed["metadata"]
                .as_object_mut()
                .expect("metadata")
                .shift_remove("managedFields");
            assert_eq!(inside, trimmed);
        });
    }
}
