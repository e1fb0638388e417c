//! Browser sessions kept in the platform's own database: tower-sessions' `SessionStore` over
//! the store's sessions table, so that sessions survive a restart and every API process sees
//! the same ones. Expired sessions are never loaded and are swept now and then.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error};

use crate::store::{SessionRecord, Store, Timestamp};

/// The session key that holds the signed-in user's id (the console writes it; the store keeps
/// it in a column of its own, so that a user's sessions can be ended).
pub const USER_KEY: &str = "user_id";

/// How often expired sessions are deleted.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(600);

/// Sessions of the console in the platform's database.
#[derive(Clone)]
pub struct SessionRecords {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for SessionRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionRecords")
    }
}

impl SessionRecords {
    pub fn new(store: Arc<dyn Store>) -> SessionRecords {
        SessionRecords { store }
    }

    /// Deletes expired sessions every [`SWEEP_PERIOD`] until `stop` resolves.
    pub async fn sweep(self, stop: impl std::future::Future<Output = ()>) {
        let sweeping = async {
            loop {
                match self.store.delete_expired_sessions(Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "expired sessions deleted"),
                    Err(e) => tracing::warn!(error = %e, "cannot delete expired sessions"),
                }
                tokio::time::sleep(SWEEP_PERIOD).await;
            }
        };
        tokio::select! {
            () = sweeping => {}
            () = stop => {}
        }
    }
}

/// The stored form of a session record.
fn encode(record: &Record) -> session_store::Result<SessionRecord> {
    let data = serde_json::to_string(record).map_err(|e| Error::Encode(e.to_string()))?;
    let user_id = record.data.get(USER_KEY).and_then(serde_json::Value::as_i64);
    Ok(SessionRecord {
        id: record.id.to_string(),
        user_id,
        data,
        expires_at: Timestamp::from(record.expiry_date),
    })
}

/// A session record from its stored form; one that does not decode is an error, never a
/// fresh session.
fn decode(stored: &SessionRecord) -> session_store::Result<Record> {
    serde_json::from_str(&stored.data)
        .map_err(|e| Error::Decode(format!("the stored session cannot be read: {e}")))
}

fn backend(e: crate::store::StoreError) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait]
impl tower_sessions::SessionStore for SessionRecords {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            match self.store.create_session(&encode(record)?).await {
                Ok(()) => return Ok(()),
                // An id collision (128 random bits): draw another.
                Err(e) if e.is_already_exists() => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store.save_session(&encode(record)?).await.map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self.store.load_session(&id.to_string(), Timestamp::now()).await.map_err(backend)? {
            Some(stored) => decode(&stored).map(Some),
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store.delete_session(&id.to_string()).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use tower_sessions::SessionStore as _;

    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_expired_ones_are_gone() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let sessions = SessionRecords::new(store.clone());
        let mut record = Record {
            id: Id::default(),
            data: [("user".to_string(), serde_json::json!(7))].into_iter().collect(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        sessions.create(&mut record).await.unwrap();
        let loaded = sessions.load(&record.id).await.unwrap().unwrap();
        assert_eq!(loaded.data, record.data);
        let expired = Record {
            expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
            ..record.clone()
        };
        sessions.save(&expired).await.unwrap();
        assert!(sessions.load(&record.id).await.unwrap().is_none(), "an expired session is not loaded");
        sessions.save(&record).await.unwrap();
        sessions.delete(&record.id).await.unwrap();
        assert!(sessions.load(&record.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_a_new_session() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let id = Id::default();
        let far = Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 3_600_000_000).unwrap();
        store
            .save_session(&SessionRecord {
                id: id.to_string(),
                user_id: None,
                data: "not json".into(),
                expires_at: far,
            })
            .await
            .unwrap();
        let err = SessionRecords::new(store).load(&id).await.unwrap_err();
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }
}
