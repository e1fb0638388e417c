//! First start: with no user in the database, create `admin` with a role on every project, a
//! password (`PLATFORM_ADMIN_PASSWORD`, or a random one, as Grafana and Keycloak do) and an API
//! token, print both once, and keep the token in `{data-dir}/admin-token` (mode 0600).

use std::path::Path;
use std::time::Duration;

use crate::auth::password;
use crate::rest::{ApiError, App};

/// The first admin's credentials, when this start created them.
pub struct FirstAdmin {
    pub username: String,
    pub password: String,
    pub token: String,
}

/// A token for the first admin lives this long; revoke it once you have your own.
const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Creates the first admin if the database has no user yet.
pub async fn create(
    app: &App,
    data_dir: &Path,
    given_password: Option<String>,
) -> Result<Option<FirstAdmin>, ApiError> {
    if app.store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = given_password.filter(|p| !p.is_empty()).unwrap_or_else(password::generate);
    let plain = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    let user = app.store.create_user("admin", &hash).await?;
    app.store.set_role(user.id, "*", "admin").await?;
    let issued =
        crate::rest::issue_token(app, user.id, "admin", None, "first admin token", ADMIN_TOKEN_TTL).await?;
    let path = data_dir.join("admin-token");
    crate::auth::private_file::write(&path, format!("{}\n", issued.token).as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(FirstAdmin { username: user.username, password, token: issued.token }))
}
