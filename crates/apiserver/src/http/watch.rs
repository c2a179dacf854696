//! Watch streams: newline-delimited JSON events, optionally as one-row Tables, with bookmarks.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use kate_store::{EventKind, Revision};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::{Interval, Sleep};

use super::encode::{Format, Include, Partial, table};
use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::registry::{ListOptions, Registry};
use crate::watchcache::{CacheError, Cached, Event, WatchStart, event_line, watch_type};

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
    /// Whether objects keep `metadata.managedFields`: not for the server's own components,
    /// which never read them and would parse them from every event.
    pub managed_fields: bool,
}

/// Starts a watch and returns the streaming response.
///
/// The response body pulls events straight from the cache's broadcast as the connection asks
/// for more, with no task or channel in between: a change fans out to every watcher, so each
/// hop per watcher counts. A client that goes away drops the body, and with it the watch.
pub async fn serve(registry: Arc<Registry>, req: WatchRequest) -> Response {
    let prefix = req.def.prefix_in(req.namespace.as_deref());
    let rv = req.list.resource_version.clone().unwrap_or_default();
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
    let body = match start {
        Ok(start) => {
            let stream = Stream::new(req, prefix, start);
            Body::from_stream(futures::stream::unfold(stream, |mut stream| async move {
                let line = stream.next().await?;
                Some((Ok::<_, Infallible>(line), stream))
            }))
        }
        Err(e) => Body::from(json_event("ERROR", &e.status())),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}

/// One watch's position: the past events still to send, then the live ones.
struct Stream {
    req: WatchRequest,
    /// The store prefix of the watched objects.
    prefix: String,
    sent_headers: bool,
    past: std::vec::IntoIter<Arc<Event>>,
    /// The revision of the initial-events-end bookmark, until it is sent.
    initial_end: Option<Revision>,
    /// The newest revision sent or skipped.
    revision: Revision,
    live: broadcast::Receiver<Arc<Event>>,
    deadline: Pin<Box<Sleep>>,
    ticker: Interval,
    ended: bool,
}

impl Stream {
    fn new(req: WatchRequest, prefix: String, start: WatchStart) -> Stream {
        let initial_end = (req.initial_events == Some(true)).then_some(start.revision);
        let deadline = Box::pin(tokio::time::sleep(req.timeout.unwrap_or(DEFAULT_TIMEOUT)));
        let ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        Stream {
            req,
            prefix,
            sent_headers: false,
            past: start.past.into_iter(),
            initial_end,
            revision: start.revision,
            live: start.live,
            deadline,
            ticker,
            ended: false,
        }
    }

    /// The next line to send, or `None` when the watch is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        while let Some(ev) = self.past.next() {
            if let Some(line) = self.emit(&ev) {
                return Some(line);
            }
        }
        if let Some(revision) = self.initial_end.take() {
            return Some(self.bookmark(revision, true));
        }
        loop {
            tokio::select! {
                _ = &mut self.deadline => {
                    self.ended = true;
                    return self.req.bookmarks.then(|| self.bookmark(self.revision, false));
                }
                _ = self.ticker.tick(), if self.req.bookmarks => return Some(self.bookmark(self.revision, false)),
                msg = self.live.recv() => match msg {
                    Ok(ev) if ev.revision <= self.revision => {}
                    Ok(ev) => {
                        self.revision = ev.revision;
                        if let Some(line) = self.emit(&ev) {
                            return Some(line);
                        }
                    }
                    // A watcher that fell this far behind ends; its client re-watches from the
                    // last revision it saw, which the cache still holds.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }

    /// The line for one change, if it concerns this watch.
    fn emit(&mut self, ev: &Event) -> Option<Bytes> {
        if !ev.key.starts_with(&self.prefix) {
            return None;
        }
        let def = &self.req.def;
        let object = def.shown(ev.object.clone());
        let prev = ev.prev.clone().map(|p| def.shown(p));
        let now = self.matches(&object);
        let before = prev.as_deref().is_some_and(|p| self.matches(p));
        let kind = match (ev.kind, before, now) {
            (EventKind::Delete, true, _) => "DELETED",
            (EventKind::Delete, false, _) => return None,
            (EventKind::Create, _, true) => "ADDED",
            (EventKind::Update, true, true) => "MODIFIED",
            (EventKind::Update, false, true) => "ADDED",
            (EventKind::Update, true, false) => "DELETED",
            _ => return None,
        };
        // An object that stopped matching is reported gone in its last matching state.
        let left = kind == "DELETED" && ev.kind == EventKind::Update;
        let stamped = left.then(|| stamp(prev.as_deref().map(|p| &**p), ev.revision));
        Some(match (self.req.format, &stamped) {
            // The usual case: the same line for every watcher of this change.
            (Format::Object, None) if def.view.is_none() && kind == watch_type(ev.kind) => {
                match self.req.managed_fields {
                    true => ev.line(),
                    false => ev.trimmed_line(),
                }
            }
            (Format::Object, None) => match self.req.managed_fields {
                true => event_line(kind, [object.json()]),
                false => event_line(kind, object.json_without_managed_fields()),
            },
            (Format::Object, Some(gone)) => json_event(kind, gone),
            (Format::Metadata, _) => {
                // Only the metadata is read, so an object never parsed is not parsed whole.
                let metadata = match &stamped {
                    Some(gone) => gone.get("metadata").map(Cow::Borrowed),
                    None => object.at(&["metadata"]),
                };
                json_event(
                    kind,
                    &Partial::of_metadata(metadata.as_deref(), self.req.managed_fields),
                )
            }
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
                json_event(kind, &body)
            }
        })
    }

    fn matches(&self, obj: &Cached) -> bool {
        self.req.list.selects(obj)
    }

    fn bookmark(&self, revision: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.req.def.kind, "apiVersion": self.req.def.api_version(), "metadata": meta});
        json_event("BOOKMARK", &object)
    }
}

/// One event line around an object serialized here.
fn json_event(kind: &str, object: &(impl Serialize + Sync)) -> Bytes {
    event_line(kind, [&serde_json::to_vec(object).unwrap_or_default()])
}

/// The previous state of an object that left the selection, stamped with the revision at which it left.
fn stamp(prev: Option<&Value>, revision: Revision) -> Value {
    let mut obj = prev.cloned().unwrap_or(Value::Null);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    obj
}
