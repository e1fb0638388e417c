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

type Db = sqlx::Postgres;
type ThisStore = PostgresStore;
const BACKEND: &str = "postgres";
const BEGIN_WRITE: &str = "BEGIN";

// The SQL shared with the SQLite store, compiled here for PostgreSQL.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
