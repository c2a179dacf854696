//! Schema, connection setup and the small queries shared by the reader and the writer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension};

use crate::{Error, KeyValue, Result, Revision};

/// How long a connection waits for a lock before giving up; WAL makes waits rare (checkpoints,
/// recovery after a crash), so this is only a safety net.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `created`/`deleted` are flags; a tombstone keeps the deleted value so that delete events and
/// reads of history can return it. `prev_revision` is the id of the key's previous row (0 for a
/// creation): it gives watch events their `prev` and lets compaction find superseded rows
/// without scanning the whole table.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Meta key of the compaction revision that readers must respect.
pub(super) const META_COMPACT_REVISION: &str = "compact_revision";
/// Meta key of the revision up to which compaction has actually deleted rows; lags
/// [`META_COMPACT_REVISION`] while a compaction is running or was interrupted by a restart.
pub(super) const META_COMPACT_CURSOR: &str = "compact_cursor";

/// Wraps any database failure as a backend error.
pub(super) fn backend(err: impl std::fmt::Display) -> Error {
    Error::Backend(err.to_string())
}

/// Opens a connection with the settings both the writer and the readers use.
fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    // Without the planner's stability guarantee, SQLite (built with STAT4) recompiles a cached
    // statement whenever a bound key changes, on the chance that another plan suits the new
    // value; every statement here has one good plan, and recompiling cost a tenth of the
    // writer's time.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(backend)?;
    Ok(conn)
}

/// Opens the connection the writer thread owns and makes sure the schema exists.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = open(path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!("cannot enable WAL journal mode (got {mode})")));
    }
    // FULL fsyncs the WAL on every commit: an acknowledged write must survive power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
    conn.execute_batch(SCHEMA).map_err(backend)?;
    Ok(conn)
}

/// Has the writer's connection report the WAL's size, in pages, into `wal_pages` after each
/// commit. This replaces SQLite's automatic checkpoint, which would run inside the commit that
/// crosses its threshold and so hold back that commit's acknowledgement and watch event; the
/// writer checkpoints itself once they are out (see `writer`).
pub(super) fn report_wal_size(conn: &mut Connection, wal_pages: Arc<AtomicU32>) -> Result<()> {
    let hook = move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
        wal_pages.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    };
    conn.wal_hook(Some(hook)).map_err(backend)
}

/// Copies the WAL's committed pages into the database file, as far as readers allow.
pub(super) fn checkpoint(conn: &Connection) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(backend)
}

/// Opens a connection for the read pool; `query_only` guards against a reader ever writing.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open(path)?;
    conn.pragma_update(None, "query_only", true).map_err(backend)?;
    Ok(conn)
}

/// The newest revision ever assigned: `sqlite_sequence` remembers it even when compaction has
/// deleted the newest rows.
pub(super) fn current_revision(conn: &Connection) -> Result<Revision> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'kv'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(backend)
}

/// The live value of a key, or `None` if it never existed or its newest row is a tombstone.
pub(super) fn live(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    let sql = "SELECT id, deleted, create_revision, value FROM kv
               WHERE name = ?1 ORDER BY id DESC LIMIT 1";
    let latest = conn
        .prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                let kv = KeyValue {
                    key: key.to_owned(),
                    value: row.get(3)?,
                    create_revision: row.get(2)?,
                    mod_revision: row.get(0)?,
                };
                Ok((kv, row.get::<_, bool>(1)?))
            })
            .optional()
        })
        .map_err(backend)?;
    Ok(latest.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
}

/// Reads an integer from the meta table; absent means 0.
pub(super) fn meta(conn: &Connection, key: &str) -> Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(backend)
}

/// Writes an integer to the meta table.
pub(super) fn set_meta(conn: &Connection, key: &str, value: Revision) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute(rusqlite::params![key, value]))
        .map(drop)
        .map_err(backend)
}

/// The smallest byte string greater than every key that starts with `prefix`.
///
/// Valid UTF-8 never contains the byte 0xFF, so bumping the last byte cannot overflow and
/// `[0xFF]` bounds every key. The result may be invalid UTF-8, which is why queries compare
/// against it with `CAST(? AS TEXT)` on a blob: SQLite then compares raw bytes.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0xFF]);
        assert_eq!(prefix_end("é"), vec![0xC3, 0xAA]);
    }
}
