//! An etcd-shaped revisioned key-value space: the only persistent state of a kate cluster.
//!
//! The store knows nothing of Kubernetes. Keys are strings such as `/registry/pods/default/web`,
//! values are opaque bytes. Every successful write advances one global revision; each key
//! remembers the revision that created it and the one that last modified it, and writes can be
//! made conditional on that modification revision (compare-and-swap), which is how the apiserver
//! implements optimistic concurrency. History is kept until it is compacted, so clients can read
//! a prefix as it was at a recent revision and watch every change after one.
//!
//! [`Store`] is the trait every backend implements; [`sqlite::SqliteStore`] is the embedded
//! default. The [`suite`] module holds the behavioural tests that any backend must pass, and
//! [`compactor`] discards old history in the background.

pub mod compactor;
pub mod sqlite;
pub mod suite;

use std::future::Future;
use std::pin::Pin;

/// A global, monotonically increasing revision number; 0 means "none".
pub type Revision = i64;

/// A boxed future, so that [`Store`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The stored bytes (for a deletion event: the last value before deletion).
    pub value: Vec<u8>,
    /// The revision at which the key was created.
    pub create_revision: Revision,
    /// The revision of the last change to the key (for a deletion event: the deletion's revision).
    pub mod_revision: Revision,
}

/// What happened to a key in a [`WatchEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before this revision.
    Create,
    /// The key existed and got a new value.
    Update,
    /// The key was removed.
    Delete,
}

/// One change, delivered to watchers in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The kind of change.
    pub kind: EventKind,
    /// The key after the change (for deletes: the last value, with `mod_revision` = deletion revision).
    pub kv: KeyValue,
    /// The key before the change, for updates and deletes.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The answer to a [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Matching keys in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: Revision,
    /// True when `limit` cut the result short: continue after the last key returned.
    pub more: bool,
}

/// A request to read keys under a prefix.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    /// Only keys that start with this prefix.
    pub prefix: String,
    /// Only keys strictly greater than this one (for paging); empty means from the start.
    pub start_after: String,
    /// Read as of this revision; 0 means the current revision.
    pub revision: Revision,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

/// Errors a store returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A create found the key already present.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// An update or delete found the key missing.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap found a different modification revision; carries the current value.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The current value.
        current: Box<KeyValue>,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction revision: revisions at or below it are gone.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future; current is {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The backend failed (disk, database, connection).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

/// Result type of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A stream of changes under a prefix, in revision order.
///
/// Events come in batches (all events of one revision range); the stream ends with
/// `Err(Error::Compacted)` if the watcher fell so far behind that history it still needed was
/// compacted, after which it must re-list.
pub type WatchReceiver = tokio::sync::mpsc::Receiver<Result<Vec<WatchEvent>>>;

/// The revisioned key-value space every backend implements.
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>>;

    /// Reads keys under a prefix, in key order, optionally at a past revision and paged.
    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResult>>;

    /// Creates a key that must not exist; returns the new revision.
    fn create(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<KeyValue>>;

    /// Replaces the value of an existing key whose `mod_revision` must equal `expected`
    /// (0 = unconditional); returns the stored key.
    fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> BoxFuture<'_, Result<KeyValue>>;

    /// Deletes an existing key whose `mod_revision` must equal `expected` (0 = unconditional);
    /// returns the deleted value with `mod_revision` set to the deletion's revision.
    fn delete(&self, key: &str, expected: Revision) -> BoxFuture<'_, Result<KeyValue>>;

    /// Streams every change under `prefix` with a revision greater than `after`.
    fn watch(&self, prefix: &str, after: Revision) -> BoxFuture<'_, Result<WatchReceiver>>;

    /// The current revision.
    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Discards history at and below `revision` (the latest value of each live key is kept).
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// The revision at and below which history has been discarded.
    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>>;
}
