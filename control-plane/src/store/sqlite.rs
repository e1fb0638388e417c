//! The SQLite store: the embedded default, one file in the data directory.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Result, StoreError};

/// The store on SQLite: WAL journal, foreign keys on, a busy timeout so that writers queue
/// instead of failing; write transactions are `BEGIN IMMEDIATE`, so they never deadlock on
/// upgrading a read lock.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl SqliteStore {
    /// Opens (creating when missing, with its directory) the database at `database_url`
    /// (`sqlite://PATH?mode=rwc`, `sqlite:PATH`, `sqlite::memory:`) and migrates it.
    pub async fn open(database_url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
        if !in_memory
            && let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::InvalidArgument(format!("cannot create the directory {}: {e}", dir.display()))
            })?;
        }
        // An in-memory database lives as long as a connection to it; one connection keeps it.
        let max_connections = if in_memory { 1 } else { 8 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory { None } else { Some(Duration::from_secs(600)) })
            .max_lifetime(if in_memory { None } else { Some(Duration::from_secs(3600)) })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

type Db = sqlx::Sqlite;
type ThisStore = SqliteStore;
const BACKEND: &str = "sqlite";
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

// The SQL shared with the PostgreSQL store, compiled here for SQLite.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

#[async_trait::async_trait]
impl super::Signals for SqliteStore {
    /// SQLite belongs to one process (the data directory's lock): nobody else to tell.
    async fn notify(&self, _signal: super::Signal) -> Result<()> {
        Ok(())
    }

    async fn listen(&self, _signal: super::Signal) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        Ok(None)
    }
}
