//! Watch streams: newline-delimited JSON events, optionally as one-row Tables, with bookmarks.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use kate_store::{EventKind, Revision};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::encode::{Format, Include, Partial, table};
use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::registry::{ListOptions, Registry};
use crate::watchcache::{CacheError, Event};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// Upstream closes watches without a timeout after 30 to 60 minutes; clients then re-watch.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// What a watch asks for.
pub struct WatchRequest {
    /// The resource.
    pub def: Arc<ResourceDef>,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// Selectors and the starting resourceVersion.
    pub list: ListOptions,
    /// Plain objects or Tables.
    pub format: Format,
    /// Table row contents.
    pub include: Include,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

/// Starts a watch and returns the streaming response.
pub async fn serve(registry: Arc<Registry>, req: WatchRequest) -> Response {
    let prefix = req.def.prefix_in(req.namespace.as_deref());
    let rv = req.list.resource_version.clone().unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let start = if rv.is_empty() || rv == "0" || req.initial_events == Some(true) {
        if rv.is_empty() {
            registry.sync().await;
        }
        Ok(registry.cache.snapshot(&prefix))
    } else {
        match rv.parse::<Revision>() {
            Ok(after) => registry.cache.watch_from(&prefix, after).map_err(|e| match e {
                CacheError::TooOld { requested, oldest } => {
                    ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
                }
                CacheError::Store(e) => e.into(),
            }),
            Err(_) => Err(ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {rv:?}: must be a non-negative integer"
            ))),
        }
    };
    let mut stream = Stream {
        req,
        tx,
        sent_headers: false,
    };
    match start {
        Ok(start) => {
            tokio::spawn(async move { stream.run(start.past, start.revision, start.live).await });
        }
        Err(e) => {
            tokio::spawn(async move {
                let _ = stream.send("ERROR", &e.status()).await;
            });
        }
    }
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}

struct Stream {
    req: WatchRequest,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    sent_headers: bool,
}

impl Stream {
    async fn run(&mut self, past: Vec<Arc<Event>>, mut revision: Revision, mut live: broadcast::Receiver<Arc<Event>>) {
        let initial = self.req.initial_events == Some(true);
        for ev in &past {
            if !self.emit(ev).await {
                return;
            }
        }
        if initial && !self.bookmark(revision, true).await {
            return;
        }
        let deadline = tokio::time::sleep(self.req.timeout.unwrap_or(DEFAULT_TIMEOUT));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if self.req.bookmarks {
                        self.bookmark(revision, false).await;
                    }
                    return;
                }
                _ = ticker.tick(), if self.req.bookmarks => {
                    if !self.bookmark(revision, false).await {
                        return;
                    }
                }
                _ = self.tx.closed() => return,
                msg = live.recv() => match msg {
                    Ok(ev) if ev.revision <= revision => {}
                    Ok(ev) => {
                        revision = ev.revision;
                        if !self.emit(&ev).await {
                            return;
                        }
                    }
                    // A watcher that fell this far behind ends; its client re-watches from the
                    // last revision it saw, which the cache still holds.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Sends one change if it concerns this watch; false once the client is gone.
    async fn emit(&mut self, ev: &Event) -> bool {
        if !ev
            .key
            .starts_with(&self.req.def.prefix_in(self.req.namespace.as_deref()))
        {
            return true;
        }
        let def = &self.req.def;
        let object = def.shown(ev.object.clone());
        let prev = ev.prev.clone().map(|p| def.shown(p));
        let now = self.matches(&object);
        let before = prev.as_deref().is_some_and(|p| self.matches(p));
        let kind = match (ev.kind, before, now) {
            (EventKind::Delete, true, _) => "DELETED",
            (EventKind::Delete, false, _) => return true,
            (EventKind::Create, _, true) => "ADDED",
            (EventKind::Update, true, true) => "MODIFIED",
            (EventKind::Update, false, true) => "ADDED",
            (EventKind::Update, true, false) => "DELETED",
            _ => return true,
        };
        // An object that stopped matching is reported gone in its last matching state.
        let left = kind == "DELETED" && ev.kind == EventKind::Update;
        let stamped = left.then(|| stamp(prev.as_deref().map(|p| &**p), ev.revision));
        match (self.req.format, &stamped) {
            (Format::Object, None) => self.send_raw(kind, object.json()).await,
            (Format::Object, Some(gone)) => self.send(kind, gone).await,
            (Format::Metadata, _) => self.send(kind, &Partial(stamped.as_ref().unwrap_or(&object))).await,
            (Format::Table, _) => {
                let shown: &Value = stamped.as_ref().unwrap_or(&object);
                let rv = shown
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let first = !self.sent_headers;
                self.sent_headers = true;
                let body = table(
                    def,
                    std::iter::once(shown),
                    json!({"resourceVersion": rv}),
                    first,
                    self.req.include,
                );
                self.send(kind, &body).await
            }
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        self.req.list.labels.matches(obj.pointer("/metadata/labels")) && self.req.list.fields.matches(obj)
    }

    async fn bookmark(&mut self, revision: Revision, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.req.def.kind, "apiVersion": self.req.def.api_version(), "metadata": meta});
        self.send("BOOKMARK", &object).await
    }

    async fn send(&mut self, kind: &str, object: &(impl Serialize + Sync)) -> bool {
        let bytes = serde_json::to_vec(object).unwrap_or_default();
        self.send_raw(kind, &bytes).await
    }

    /// Sends one event line around an object already serialized as JSON.
    async fn send_raw(&mut self, kind: &str, object: &[u8]) -> bool {
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }
}

/// The previous state of an object that left the selection, stamped with the revision at which it left.
fn stamp(prev: Option<&Value>, revision: Revision) -> Value {
    let mut obj = prev.cloned().unwrap_or(Value::Null);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    obj
}
