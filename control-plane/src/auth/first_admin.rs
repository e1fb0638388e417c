//! First start: with no user in the database, create `admin` with a role on every project, a
//! password (`PLATFORM_ADMIN_PASSWORD`, or a random one, as Grafana and Keycloak do) and an API
//! token, print both once, and keep the token in `{data-dir}/admin-token` (mode 0600). The token
//! lives as long as any (`--token-ttl`); log in with the password for a new one.

use std::path::Path;

use super::accounts::hash_blocking;
use super::{Accounts, AuthError, Role, password};
use crate::store::Store;

/// The first admin's credentials, when this start created them.
pub struct FirstAdmin {
    pub username: String,
    pub password: String,
    pub token: String,
}

/// Creates the first admin if the database has no user yet.
pub async fn create(
    store: &dyn Store,
    accounts: &Accounts,
    data_dir: &Path,
    given_password: Option<String>,
) -> Result<Option<FirstAdmin>, AuthError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = given_password.filter(|p| !p.is_empty()).unwrap_or_else(password::generate);
    let user = store.create_user("admin", &hash_blocking(&password).await?).await?;
    store.set_role(user.id, "*", Role::Admin).await?;
    let issued = accounts.issue(&user, None, "first admin token", accounts.token_ttl()).await?;
    let path = data_dir.join("admin-token");
    super::private_file::write(&path, format!("{}\n", issued.token).as_bytes())
        .map_err(|e| AuthError::Internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(FirstAdmin { username: user.username, password, token: issued.token }))
}
