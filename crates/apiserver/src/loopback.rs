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
