//! The [`Store`] handle: opening a store URL, the connection pools, and the one way to write.
//!
//! Both databases go through sqlx's `Any` driver, so every query is one SQL text for both.
//!
//! **SQLite durability.** The file is in WAL mode with `synchronous=NORMAL` (the default) or
//! `FULL` (`sqlite://PATH?synchronous=full`). With WAL, a commit is complete once its frames are
//! written to the `-wal` file; NORMAL skips the fsync at each commit, so the data sits in the
//! operating system's page cache when the call returns. A killed process (kill -9, a panic, an
//! OOM kill) cannot lose it: the kernel still writes it out, and the next open replays the WAL.
//! Only a power cut or kernel crash can drop the last commits (never corrupt the file). FULL
//! adds an fsync per commit and survives those too, at the price of one disk flush per write
//! (SQLite alone on this machine: 280 to 1 300 commits/s, varying between runs, against
//! ~35 000 with NORMAL). Deployments that need power-loss durability and throughput use
//! PostgreSQL.
//!
//! **Writers.** SQLite allows one writer at a time. The store writes through one connection
//! (see `writer.rs`) and opens each write transaction with `BEGIN IMMEDIATE`, so writers in
//! this process queue without lock errors, and writers in other processes (a `loopc forget`
//! next to a running server) wait on SQLite's busy timeout rather than failing half-way. Reads
//! use a separate small pool and see every committed write (WAL readers do not block the
//! writer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

use super::error::{mask_password, StoreError};
use super::ids::IdGenerator;
use super::migrate;
use super::redact::Redactor;
use super::writer::{WriteTx, Writer};

/// Which database a store lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or memory) in this process.
    Sqlite,
    /// A PostgreSQL server, possibly shared by several loopc processes.
    Postgres,
}

/// How SQLite flushes a commit (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Synchronous {
    Normal,
    Full,
}

/// A parsed store URL.
#[derive(Debug, PartialEq)]
enum Target {
    SqliteFile { path: PathBuf, synchronous: Synchronous },
    SqliteMemory,
    Postgres { url: String },
}

/// The runs, feedback, artifact versions and audit events of one deployment.
///
/// Cheap to clone (pools are shared); `Send + Sync`. Every write is one transaction, and a
/// method returns only after its commit. Everything written is redacted first
/// ([`super::redact`]).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    write: Writer,
    pub(super) redactor: Redactor,
    pub(super) ids: Arc<IdGenerator>,
}

/// How long a SQLite writer waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl { url: mask_password(url), reason: reason.to_string() };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres { url: url.to_string() });
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(bad("unknown scheme"));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" {
        return Ok(Target::SqliteMemory);
    }
    if path.is_empty() {
        return Err(bad("no file path after `sqlite://`"));
    }
    let mut synchronous = Synchronous::Normal;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair {
            "synchronous=normal" => synchronous = Synchronous::Normal,
            "synchronous=full" => synchronous = Synchronous::Full,
            other => return Err(bad(&format!("unknown option `{other}` (known: `synchronous=normal`, `synchronous=full`)"))),
        }
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().map_err(|_| bad("the path is not UTF-8 after percent-decoding"))?;
    Ok(Target::SqliteFile { path: PathBuf::from(decoded.as_ref()), synchronous })
}

/// The `sqlite://` URL sqlx reads for `path` (absolute, percent-encoded, created if missing).
fn sqlx_sqlite_url(path: &Path) -> String {
    const ENCODE: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');
    let encoded = percent_encoding::percent_encode(path.as_os_str().as_encoded_bytes(), ENCODE);
    format!("sqlite://{encoded}?mode=rwc")
}

/// The per-connection settings of every SQLite connection.
fn sqlite_pragmas(synchronous: Synchronous) -> [String; 3] {
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    [format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis()), format!("PRAGMA synchronous = {sync}"), "PRAGMA foreign_keys = ON".to_string()]
}

/// A pool of SQLite connections with the store's settings. Connections are not pinged on
/// checkout: a local file connection does not go stale.
fn sqlite_pool(synchronous: Synchronous, max: u32) -> AnyPoolOptions {
    let pragmas = sqlite_pragmas(synchronous).join("; ");
    AnyPoolOptions::new().max_connections(max).test_before_acquire(false).after_connect(move |conn, _| {
        let pragmas = pragmas.clone();
        Box::pin(async move {
            conn.execute(pragmas.as_str()).await?;
            Ok(())
        })
    })
}

/// Puts the file in WAL mode. Switching needs an exclusive lock that SQLite's busy timeout does
/// not wait for, so replicas opening one new file together would see "database is locked":
/// retry on `SQLITE_BUSY` until the busy timeout. Once the file is in WAL mode the pragma needs
/// no lock and succeeds at once.
async fn enable_wal(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.map(drop),
        }
    }
}

/// Whether SQLite refused for a lock another connection holds (`SQLITE_BUSY` and its extended
/// codes, whose low byte is 5).
fn is_busy(e: &sqlx::Error) -> bool {
    let code = match e {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    };
    code.and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
}

impl Store {
    /// Opens (and on first use creates) the store at `url`, bringing its schema up to date.
    ///
    /// - `sqlite://PATH` (relative to the working directory; `sqlite:///abs/path` for an
    ///   absolute one): the file and its parent directories are created on first use. Add
    ///   `?synchronous=full` to fsync every commit (see the module doc).
    /// - `sqlite::memory:`: a private in-memory store, gone when the last clone is dropped.
    /// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]`: a PostgreSQL database that
    ///   several loopc processes may share (up to 10 connections per store); migrations take a
    ///   lock, so replicas may start together.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let store = match parse_url(url)? {
            Target::SqliteFile { path, synchronous } => Self::open_sqlite_file(url, &path, synchronous).await?,
            Target::SqliteMemory => {
                // Every sqlx connection to `:memory:` is a new database: one connection, kept forever.
                let pool = sqlite_pool(Synchronous::Normal, 1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect("sqlite::memory:")
                    .await
                    .map_err(|source| StoreError::Connect { url: url.to_string(), source })?;
                Store { backend: Backend::Sqlite, read: pool.clone(), write: Writer::sqlite_memory(pool), redactor: Redactor::new(), ids: Arc::default() }
            }
            Target::Postgres { url: pg } => {
                let options: AnyConnectOptions = pg.parse().map_err(|e: sqlx::Error| StoreError::BadUrl { url: mask_password(&pg), reason: e.to_string() })?;
                // One direct attempt first: a refused or misconfigured connection is reported at
                // once instead of being retried until the pool's acquire timeout.
                let probe = sqlx::AnyConnection::connect_with(&options).await.map_err(|source| StoreError::Connect { url: mask_password(&pg), source })?;
                probe.close().await.map_err(|source| StoreError::Connect { url: mask_password(&pg), source })?;
                let pool = AnyPoolOptions::new().max_connections(10).connect_lazy_with(options);
                Store { backend: Backend::Postgres, read: pool.clone(), write: Writer::postgres(pool), redactor: Redactor::new(), ids: Arc::default() }
            }
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    async fn open_sqlite_file(url: &str, path: &Path, synchronous: Synchronous) -> Result<Store, StoreError> {
        let path = std::path::absolute(path).map_err(|source| StoreError::CreateDir { path: path.to_path_buf(), source })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        }
        let sqlx_url = sqlx_sqlite_url(&path);
        let connect_err = |source| StoreError::Connect { url: url.to_string(), source };
        // The writer connects first and directly, so an unopenable path fails here with the
        // driver's message. WAL is a property of the file: set once, before the readers open.
        let mut writer = sqlx::AnyConnection::connect(&sqlx_url).await.map_err(connect_err)?;
        // `query(..).execute` rather than `Executor::execute(&str)` or `raw_sql`: those make
        // `Store::open` fail to be `Send` (a higher-ranked lifetime limitation of the compiler).
        for pragma in sqlite_pragmas(synchronous) {
            sqlx::query(&pragma).execute(&mut writer).await.map_err(connect_err)?;
        }
        enable_wal(&mut writer).await.map_err(connect_err)?;
        let options: AnyConnectOptions = sqlx_url.parse().map_err(connect_err)?;
        let read = sqlite_pool(synchronous, 4).connect_lazy_with(options);
        Ok(Store { backend: Backend::Sqlite, read, write: Writer::sqlite(writer), redactor: Redactor::new(), ids: Arc::default() })
    }

    /// Which database this store is in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts the transaction every write goes through (see [`Writer::begin`]). Dropping it
    /// without `commit` rolls it back.
    pub(super) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(self.write.begin().await?)
    }

    /// The pool reads go through; never used for writes.
    pub(super) fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// Closes every connection; later calls on any clone fail. Waits for the pools to drain.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only if every public future of the store can move between threads (spawned
    /// tasks, axum handlers). The body never runs.
    #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
    fn every_store_future_is_send(store: Store) {
        fn send<T: Send>(_: T) {}
        let url = String::new();
        send(Store::open(&url));
        send(store.record_run(todo!()));
        send(store.run(todo!()));
        send(store.runs(todo!()));
        send(store.add_feedback(todo!()));
        send(store.feedback(todo!()));
        send(store.record_artifact(todo!()));
        send(store.artifacts(""));
        send(store.artifact(""));
        send(store.audit(todo!(), "", todo!()));
        send(store.audit_events(None));
        send(store.forget_user(""));
        send(store.expire(todo!()));
        send(store.stats());
        send(store.close());
        send(super::super::bench_feedback_writes(&store, 1, 1));
    }

    #[tokio::test]
    async fn the_durability_setting_of_the_url_reaches_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        for (query, expected) in [("", 1), ("?synchronous=normal", 1), ("?synchronous=full", 2)] {
            let url = format!("sqlite://{}{query}", dir.path().join(format!("s{expected}{}.db", query.len())).display());
            let store = Store::open(&url).await.unwrap();
            let mut tx = store.begin_write().await.unwrap();
            let row = sqlx::query("PRAGMA synchronous").fetch_one(&mut *tx).await.unwrap();
            assert_eq!(sqlx::Row::try_get::<i64, _>(&row, 0).unwrap(), expected, "{url}");
            let row = sqlx::query("PRAGMA journal_mode").fetch_one(&mut *tx).await.unwrap();
            assert_eq!(sqlx::Row::try_get::<String, _>(&row, 0).unwrap(), "wal");
            tx.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_write_transaction_dropped_without_commit_releases_the_write_lock_for_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let (server, other) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
        let mut tx = server.begin_write().await.unwrap();
        sqlx::query("INSERT INTO counters (program, unconsented_runs) VALUES ('dropped', 1)").execute(&mut *tx).await.unwrap();
        // A request that fails after its transaction began, and then nothing more from the
        // server: another process (a second store on the file) must still be able to write.
        drop(tx);
        let mut tx = other.begin_write().await.expect("the dropped transaction's write lock was released");
        sqlx::query("INSERT INTO counters (program, unconsented_runs) VALUES ('kept', 1)").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let rows = sqlx::query("SELECT program FROM counters").fetch_all(server.reader()).await.unwrap();
        let programs: Vec<String> = rows.iter().map(|r| sqlx::Row::try_get(r, 0).unwrap()).collect();
        assert_eq!(programs, ["kept"]);
    }

    #[tokio::test]
    async fn a_write_transaction_dropped_without_commit_leaves_nothing_and_the_next_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        let insert = "INSERT INTO counters (program, unconsented_runs) VALUES ($1, 1)";
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query(insert).bind("dropped").execute(&mut *tx).await.unwrap();
        drop(tx);
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query(insert).bind("kept").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let rows = sqlx::query("SELECT program FROM counters").fetch_all(store.reader()).await.unwrap();
        let programs: Vec<String> = rows.iter().map(|r| sqlx::Row::try_get(r, 0).unwrap()).collect();
        assert_eq!(programs, ["kept"]);
    }

    #[test]
    fn store_urls_are_read_into_their_targets() {
        let file = |p: &str, synchronous| Some(Target::SqliteFile { path: PathBuf::from(p), synchronous });
        let parse_url = |url: &str| parse_url(url).ok();
        assert_eq!(parse_url("sqlite://data/loopc.db"), file("data/loopc.db", Synchronous::Normal));
        assert_eq!(parse_url("sqlite:///var/lib/loopc/store.db?synchronous=full"), file("/var/lib/loopc/store.db", Synchronous::Full));
        assert_eq!(parse_url("sqlite:store.db"), file("store.db", Synchronous::Normal));
        assert_eq!(parse_url("sqlite:///tmp/a%20b.db"), file("/tmp/a b.db", Synchronous::Normal));
        assert_eq!(parse_url("sqlite::memory:"), Some(Target::SqliteMemory));
        assert_eq!(parse_url("postgresql://u:p@h/db"), Some(Target::Postgres { url: "postgresql://u:p@h/db".into() }));
    }

    #[test]
    fn unusable_store_urls_say_what_is_wrong() {
        for (url, says) in [
            ("mysql://h/db", "unknown scheme"),
            ("store.db", "unknown scheme"),
            ("sqlite://", "no file path"),
            ("sqlite://x.db?journal=off", "unknown option `journal=off`"),
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn sqlite_paths_with_url_characters_are_encoded_for_sqlx() {
        assert_eq!(sqlx_sqlite_url(Path::new("/tmp/a b#?%.db")), "sqlite:///tmp/a%20b%23%3F%25.db?mode=rwc");
    }
}
