//! Watch caches of Services and EndpointSlices shared by a sync loop, with a wake-up on change.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Error;

/// Reflector stores of every Service and EndpointSlice, kept current by background watches.
pub(crate) struct Cache {
    /// Every Service.
    pub services: Store<Service>,
    /// Every EndpointSlice.
    pub slices: Store<EndpointSlice>,
    /// Signalled after each change (a permit is kept while nobody waits).
    pub changed: Arc<Notify>,
    ended: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cache {
    /// Starts the watches on the runtime's tasks; they retry with backoff on errors.
    pub fn start(client: kube::Client) -> Cache {
        let (services, service_writer) = reflector::store::<Service>();
        let (slices, slice_writer) = reflector::store::<EndpointSlice>();
        let changed = Arc::new(Notify::new());
        let ended = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(feed(
                reflector::reflector(
                    service_writer,
                    watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
                ),
                changed.clone(),
                ended.clone(),
            )),
            tokio::spawn(feed(
                reflector::reflector(
                    slice_writer,
                    watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()),
                ),
                changed.clone(),
                ended.clone(),
            )),
        ];
        Cache {
            services,
            slices,
            changed,
            ended,
            tasks,
        }
    }

    /// Waits until both stores hold their first complete list.
    pub async fn ready(&self) -> Result<(), Error> {
        self.services.wait_until_ready().await.map_err(|_| Error::WatchEnded)?;
        self.slices.wait_until_ready().await.map_err(|_| Error::WatchEnded)
    }

    /// Resolves (with an error) when a watch stops for good.
    pub async fn ended(&self) -> Result<(), Error> {
        self.ended.notified().await;
        Err(Error::WatchEnded)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Drives one watch, signalling `changed` after every event.
async fn feed<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    changed: Arc<Notify>,
    ended: Arc<Notify>,
) {
    stream
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::debug!(error = %e, "service proxy watch failed; retrying"),
            }
            std::future::ready(())
        })
        .await;
    ended.notify_one();
}
