//! The PostgreSQL store, for production.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::Result;

/// The store on PostgreSQL. Transactions that read before they write lock the parent row
/// first (an `UPDATE` of the model, endpoint or deployed model), so concurrent writers to one
/// resource serialize under the default READ COMMITTED isolation.
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl PostgresStore {
    /// Connects to `database_url` (`postgres://user:password@host:port/database`) and
    /// migrates the database.
    pub async fn open(database_url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(database_url)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait::async_trait]
impl super::Signals for PostgresStore {
    async fn notify(&self, signal: super::Signal) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')").bind(signal.channel()).execute(&self.pool).await?;
        Ok(())
    }

    /// LISTEN on a connection of its own, in a task that lives while the receiver does. A lost
    /// connection is reopened (sqlx's listener does it on the next receive), and the receiver
    /// then gets one signal, since some may have been missed meanwhile.
    async fn listen(&self, signal: super::Signal) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(signal.channel()).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let received = listener.try_recv().await;
                if let Err(e) = &received {
                    tracing::warn!(channel = signal.channel(), error = %e, "lost the notification connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // A full channel already holds a signal that is not yet taken.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}

type Db = sqlx::Postgres;
type ThisStore = PostgresStore;
const BACKEND: &str = "postgres";
const BEGIN_WRITE: &str = "BEGIN";

// The SQL shared with the SQLite store, compiled here for PostgreSQL.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// A session-level advisory lock on its own connection: the controllers' claim when several
/// platforms share one PostgreSQL. The lock lasts as long as the connection, so a platform that
/// dies (even `kill -9`) gives it up when PostgreSQL notices the connection is gone.
pub struct AdvisoryLock {
    options: PgConnectOptions,
    key: i64,
    /// The connection, and whether it holds the lock.
    held: tokio::sync::Mutex<Option<(sqlx::PgConnection, bool)>>,
}

impl AdvisoryLock {
    /// The lock `key` on the database of `database_url`.
    pub fn new(database_url: &str, key: i64) -> Result<AdvisoryLock> {
        let options = PgConnectOptions::from_str(database_url)?;
        Ok(AdvisoryLock { options, key, held: tokio::sync::Mutex::new(None) })
    }

    /// Takes the lock, or checks that its connection still holds it; whether it is held now.
    pub async fn try_hold(&self) -> Result<bool> {
        use sqlx::Connection;
        let mut guard = self.held.lock().await;
        if let Some((conn, true)) = guard.as_mut() {
            if let Err(e) = conn.ping().await {
                *guard = None;
                return Err(e.into());
            }
            return Ok(true);
        }
        if guard.is_none() {
            *guard = Some((sqlx::PgConnection::connect_with(&self.options).await?, false));
        }
        let Some((conn, held)) = guard.as_mut() else { return Ok(false) };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(conn)
            .await
        {
            Ok(got) => {
                *held = got;
                Ok(got)
            }
            Err(e) => {
                *guard = None;
                Err(e.into())
            }
        }
    }

    /// Gives the lock up by closing its connection.
    pub async fn release(&self) {
        use sqlx::Connection;
        if let Some((conn, _)) = self.held.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}
