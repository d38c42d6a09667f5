//! One SQLite database (WAL) holds the store, the queues and the schedules, so that a
//! notification, its trigger and its deliveries change together or not at all.

use rusqlite::Connection;
use std::path::Path;

use notify_core::ports::StoreError;
use notify_core::ports::error_chain;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_token_generations (
    user_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS categories (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preferences (
    user_id TEXT NOT NULL,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    PRIMARY KEY (user_id, category, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS preferences_by_category ON preferences(category, user_id);
CREATE TABLE IF NOT EXISTS templates (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    member_count INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id, group_id);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    send_at INTEGER NOT NULL,
    fanned_out INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_by_status ON notifications(status, id);
CREATE TABLE IF NOT EXISTS fanned_segments (
    notification_id TEXT NOT NULL,
    segment INTEGER NOT NULL,
    PRIMARY KEY (notification_id, segment)
) WITHOUT ROWID;
-- A fanned-out page of a group send as first recorded (`FannedOutPage`).
CREATE TABLE IF NOT EXISTS fanned_out_pages (
    notification_id TEXT NOT NULL,
    page TEXT NOT NULL,
    members TEXT NOT NULL,
    next_cursor TEXT,
    PRIMARY KEY (notification_id, page)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT,
    address TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    sent_at INTEGER,
    provider_message_id TEXT,
    lease_until INTEGER,
    PRIMARY KEY (notification_id, recipient, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries(notification_id, status);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready',
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(queue, state, visible_at);
CREATE TABLE IF NOT EXISTS schedules (
    notification_id TEXT PRIMARY KEY,
    due_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS schedules_by_due ON schedules(due_at);
CREATE TABLE IF NOT EXISTS inbox (
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    notification_id TEXT NOT NULL,
    body TEXT NOT NULL,
    seen_at INTEGER,
    read_at INTEGER,
    archived_at INTEGER,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS inbox_by_notification ON inbox(user_id, notification_id);
CREATE TABLE IF NOT EXISTS push_subscriptions (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;
"#;

/// When a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced at every commit: survives a power cut. For what answers a 202.
    Full,
    /// Synced at checkpoints: survives a killed process, and a power cut may lose the last
    /// commits. For the workers: a lost claim or outcome means at worst one repeated send,
    /// the same as a crash in the middle of a provider call.
    Normal,
}

/// One connection to the database, shared by the adapters that use it, owned by one thread.
///
/// Group commit: the thread takes every call that is waiting, runs them in one transaction
/// (each in a savepoint of its own, so that a call that fails undoes only its own writes), and
/// answers them after the one commit. Under `Durability::Full` that is one fsync for a burst of
/// requests instead of one each, and no caller hears "done" before its writes are on disk.
#[derive(Clone)]
pub struct Db {
    calls: std::sync::mpsc::Sender<Call>,
}

/// A call runs on the connection and says whether it succeeded; its answer waits for the commit.
type Call = Box<dyn FnOnce(&mut Connection) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// Most calls in one transaction: bounds how long the first of them waits for its answer.
const MAX_BATCH: usize = 256;

/// `query_row` and `execute` through the connection's statement cache (`STATEMENT_CACHE`):
/// rusqlite's own parse and plan the statement at every call.
pub(crate) trait Cached {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// A statement of the group commit's own (a savepoint per call, four a batch), through the
/// statement cache like every other.
fn run(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.cached_execute(sql, []).map(drop)
}

/// Statements each connection keeps prepared. rusqlite keeps 16 by default, fewer than a send
/// runs through (the queue's, the fanout's, dispatch's, the group commit's own): past that the
/// least recently used are parsed and planned again, which was a tenth of the database
/// thread's time under a burst of single sends.
const STATEMENT_CACHE: usize = 256;

fn serve(mut conn: Connection, calls: std::sync::mpsc::Receiver<Call>) {
    while let Ok(first) = calls.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        // IMMEDIATE: take the write lock now (waiting out the other connection's busy timeout),
        // not at the first write, where SQLite could only fail the whole batch.
        if let Err(e) = run(&conn, "BEGIN IMMEDIATE") {
            // Run nothing: dropped calls answer "unavailable".
            tracing::error!(error = %error_chain(&e), calls = batch.len(), "could not begin a transaction");
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        for call in batch {
            if let Err(e) = run(&conn, "SAVEPOINT call") {
                tracing::error!(error = %error_chain(&e), "could not open a savepoint");
                continue;
            }
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&mut conn)));
            let ok = matches!(outcome, Ok((true, _)));
            let undo = if ok {
                run(&conn, "RELEASE call")
            } else {
                run(&conn, "ROLLBACK TO call").and_then(|()| run(&conn, "RELEASE call"))
            };
            if let Err(e) = undo {
                tracing::error!(error = %error_chain(&e), "could not close a savepoint");
            }
            // A call that panicked has no answer: its caller sees the database as unavailable.
            if let Ok((_, answer)) = outcome {
                answers.push(answer);
            }
        }
        let committed = run(&conn, "COMMIT").map_err(db_err);
        if committed.is_err() {
            let _ = run(&conn, "ROLLBACK");
        }
        for answer in answers {
            answer(
                committed
                    .as_ref()
                    .err()
                    .map(|e| StoreError::unavailable("sqlite COMMIT", e.to_string())),
            );
        }
    }
}

impl Db {
    fn start(conn: Connection) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (calls, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || serve(conn, receiver))
            .expect("start the database thread");
        Self { calls }
    }

    pub fn open(path: &Path, durability: Durability) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {synchronous};
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;"
        ))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self::start(conn))
    }

    pub fn open_in_memory() -> Result<Self, rusqlite::Error> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self::start(conn))
    }

    /// After a crash, the leases of the dead process (received jobs, claimed deliveries) would
    /// only free themselves when they time out. One process owns the database (see
    /// `notifyd`'s lock file), so at start every lease is stale: release them all now.
    pub async fn release_stale_leases(&self) -> Result<(usize, usize), StoreError> {
        let now = millis(jiff::Timestamp::now());
        self.call(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let jobs = tx
                .cached_execute("UPDATE jobs SET leased = 0, visible_at = min(visible_at, ?1) WHERE leased = 1", rusqlite::params![now])
                .map_err(db_err)?;
            let deliveries = tx
                .cached_execute("UPDATE deliveries SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL", [])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok((jobs, deliveries))
        })
        .await
    }

    /// Runs `f` with the connection on the database thread, inside a transaction it may share
    /// with other calls; answers once that transaction is committed. `f` may open savepoints
    /// (`Connection::savepoint`), not transactions.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // The caller's span (a request, a notification's dispatch) goes with the call, so that
        // what the database thread logs for it says whose call it was.
        let span = tracing::Span::current();
        let call: Call = Box::new(move |conn| {
            let result = span.in_scope(|| f(conn));
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |commit_error| {
                let _ = sender.send(match commit_error {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            (ok, answer)
        });
        self.calls
            .send(call)
            .map_err(|_| StoreError::unavailable("sqlite", "the database thread stopped"))?;
        receiver
            .await
            .map_err(|_| StoreError::unavailable("sqlite", "a database call failed"))?
    }
}

/// SQLite errors are never the caller's fault here: report them as unavailability.
pub fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("sqlite", e)
}

pub fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("stored JSON: {e}"))
}

pub fn millis(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

pub fn from_millis(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
