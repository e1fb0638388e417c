//! The accounts service: who is calling (bearer tokens, with a short cache so that `:predict`
//! does not query the database), passwords for tokens, and the management of users and tokens.
//! Every door calls it; it holds every rule about users, roles and tokens.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use api::{ListTokensResponse, Role, TokenInfo, TokenRequest, TokenResponse};

use super::throttle::Throttle;
use super::token::{TokenKeys, new_token_id};
use super::{AuthError, Caller, password};
use crate::store::{ApiToken, Store, Timestamp, User};

/// How long a token's roles are remembered (a role change takes effect within this time; a
/// revocation through this process at once).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);
/// More cached callers than this and the expired ones are dropped.
const AUTH_CACHE_SWEEP: usize = 10_000;
/// The `token_id` of callers signed in to the console with a session rather than a token.
pub const SESSION_TOKEN_ID: &str = "console-session";
/// The longest token description.
const MAX_DESCRIPTION: usize = 200;
/// The shortest password a user may set.
const MIN_PASSWORD: usize = 8;

/// Users, roles and tokens.
pub struct Accounts {
    store: Arc<dyn Store>,
    keys: TokenKeys,
    token_ttl: Duration,
    /// Authenticated callers by bearer token.
    cache: Mutex<HashMap<String, CachedCaller>>,
    /// Recent failed logins.
    throttle: Throttle,
}

impl Accounts {
    /// `token_ttl`: how long tokens from a password login stay valid.
    pub fn new(store: Arc<dyn Store>, keys: TokenKeys, token_ttl: Duration) -> Accounts {
        Accounts { store, keys, token_ttl, cache: Mutex::new(HashMap::new()), throttle: Throttle::default() }
    }

    /// How long tokens from a password login stay valid.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// The caller behind an `Authorization` header value (`Bearer <token>`).
    pub async fn authenticate_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::InvalidToken("use `Authorization: Bearer <token>`".into()))?;
        self.authenticate(token.trim()).await
    }

    /// The caller behind a token: signature and expiry, not revoked, and their roles.
    ///
    /// Remembered for a few seconds per token, so that `:predict` neither verifies the
    /// signature nor queries the database per request (a token string that verified a moment
    /// ago still does; only its expiry is checked again). Under steady use, one request looks
    /// the caller up again once half that time has passed while the others go on with the
    /// remembered one, so that the entry does not expire under every request at once.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let stale = match self.cached(token) {
            Some(Cached::Fresh(caller)) => return Ok(caller),
            Some(Cached::Refresh(caller)) => Some(caller),
            None => None,
        };
        let claims = self.keys.verify(token)?;
        let looked_up = self.caller_of_token(&claims.jti).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match looked_up {
            Ok(caller) => {
                if cache.len() > AUTH_CACHE_SWEEP {
                    cache.retain(|_, c| c.at.elapsed() < AUTH_CACHE_TTL);
                }
                let entry = CachedCaller {
                    caller: caller.clone(),
                    at: Instant::now(),
                    expires: claims.exp,
                    refreshing: false,
                };
                cache.insert(token.to_string(), entry);
                Ok(caller)
            }
            Err(e) => match stale {
                // The database did not answer: the remembered caller holds until its time is up.
                Some(caller) if !matches!(e, AuthError::Revoked | AuthError::InvalidToken(_)) => {
                    if let Some(c) = cache.get_mut(token) {
                        c.refreshing = false;
                    }
                    Ok(caller)
                }
                _ => {
                    cache.remove(token);
                    Err(e)
                }
            },
        }
    }

    /// The remembered caller of a token, unless it is too old or the token has expired.
    fn cached(&self, token: &str) -> Option<Cached> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get_mut(token)?;
        let age = hit.at.elapsed();
        if age >= AUTH_CACHE_TTL || now_unix() > hit.expires.saturating_add(super::token::LEEWAY_SECS) {
            return None;
        }
        if age >= AUTH_CACHE_TTL / 2 && !hit.refreshing {
            hit.refreshing = true;
            return Some(Cached::Refresh(hit.caller.clone()));
        }
        Some(Cached::Fresh(hit.caller.clone()))
    }

    async fn caller_of_token(&self, token_id: &str) -> Result<Caller, AuthError> {
        let record = self.store.get_api_token(token_id).await.map_err(|e| {
            if e.is_not_found() { AuthError::InvalidToken("unknown token id".into()) } else { e.into() }
        })?;
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        let user = self.store.get_user(record.user_id).await?;
        if user.disabled {
            return Err(AuthError::Revoked);
        }
        let roles =
            self.store.list_memberships(user.id).await?.into_iter().map(|m| (m.project, m.role)).collect();
        Ok(Caller {
            user_id: user.id,
            username: user.username,
            token_id: record.id,
            token_project: record.project,
            roles,
        })
    }

    /// Exchanges a username and password for a token. `client` is the caller's address: failed
    /// logins are throttled per username and per address. An unknown user, a disabled one and
    /// a wrong password get the same answer after the same work.
    pub async fn login(
        &self,
        req: &TokenRequest,
        client: Option<IpAddr>,
    ) -> Result<TokenResponse, AuthError> {
        if let Some(project) = &req.project {
            api::check_project(project).map_err(|e| AuthError::Invalid(e.to_string()))?;
        }
        api::check_description("description", &req.description).map_err(|e| AuthError::Invalid(e.0))?;
        let user = self.check_password(&req.username, &req.password, client).await?;
        self.issue(&user, req.project.as_deref(), &req.description, self.token_ttl).await
    }

    /// The user with this username and password (a token request, or a console sign-in).
    /// `client` is the caller's address: failed attempts are throttled per username and per
    /// address. An unknown user, a disabled one and a wrong password get the same answer after
    /// the same work.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        if let Some(retry_after) = self.throttle.wait(username, client, Instant::now()) {
            return Err(AuthError::Throttled { retry_after });
        }
        let user = match self.store.get_user_by_name(username).await {
            Ok(user) => Some(user),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        // argon2 is deliberately slow: keep it off the async workers. Unknown users are checked
        // against a hash of nothing, so that the answer takes as long.
        let given = password.to_string();
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let matches = tokio::task::spawn_blocking(move || match stored {
            Some(hash) => password::verify(&given, &hash),
            None => {
                password::verify(&given, unknown_user_hash());
                false
            }
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
        match user {
            Some(user) if matches && !user.disabled => {
                self.throttle.succeeded(username);
                Ok(user)
            }
            _ => {
                self.throttle.failed(username, client, Instant::now());
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// The caller behind a console session of `user_id`, with the user's current roles (a
    /// role change or a deleted user takes effect on the next page).
    pub async fn session_caller(&self, user_id: i64) -> Result<Caller, AuthError> {
        let user = self.store.get_user(user_id).await.map_err(|e| {
            if e.is_not_found() {
                AuthError::InvalidToken("the session's user is gone".into())
            } else {
                e.into()
            }
        })?;
        if user.disabled {
            return Err(AuthError::InvalidToken("the session's user is disabled".into()));
        }
        let roles =
            self.store.list_memberships(user.id).await?.into_iter().map(|m| (m.project, m.role)).collect();
        Ok(Caller {
            user_id: user.id,
            username: user.username,
            token_id: SESSION_TOKEN_ID.to_string(),
            token_project: None,
            roles,
        })
    }

    /// A new token for the caller, shown once. A caller whose token is limited to a project
    /// gets a token limited to that project, never a wider one.
    pub async fn create_token(
        &self,
        caller: &Caller,
        req: &api::CreateTokenRequest,
    ) -> Result<TokenResponse, AuthError> {
        let project = match (&caller.token_project, &req.project) {
            (Some(allowed), Some(asked)) if allowed != asked => {
                return Err(AuthError::WrongProject { allowed: allowed.clone(), project: asked.clone() });
            }
            (Some(allowed), _) => Some(allowed.clone()),
            (None, asked) => asked.clone(),
        };
        if let Some(project) = &project {
            api::check_project(project).map_err(|e| AuthError::Invalid(e.to_string()))?;
        }
        api::check_description("description", &req.description).map_err(|e| AuthError::Invalid(e.0))?;
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(AuthError::Invalid(format!(
                "the description has more than {MAX_DESCRIPTION} characters"
            )));
        }
        let user = self.store.get_user(caller.user_id).await?;
        let token = self.issue(&user, project.as_deref(), &req.description, self.token_ttl).await?;
        tracing::info!(user = %caller.username, token = %token.token_id, "token created");
        Ok(token)
    }

    /// Issues and records a token for a user, valid for `ttl`.
    pub async fn issue(
        &self,
        user: &User,
        project: Option<&str>,
        description: &str,
        ttl: Duration,
    ) -> Result<TokenResponse, AuthError> {
        let id = new_token_id();
        let (token, claims) = self.keys.issue(user.id, &user.username, &id, ttl, project)?;
        let expires = i64::try_from(claims.exp)
            .ok()
            .and_then(|s| Timestamp::from_unix_micros(s.saturating_mul(1_000_000)));
        let record = ApiToken {
            id: id.clone(),
            user_id: user.id,
            project: project.map(str::to_string),
            description: description.to_string(),
            created_at: Timestamp::now(),
            expires_at: expires,
            revoked_at: None,
        };
        self.store.insert_api_token(&record).await?;
        Ok(TokenResponse {
            token,
            token_id: id,
            expire_time: expires.map(|t| t.to_string()).unwrap_or_default(),
        })
    }

    /// The caller's own tokens.
    pub async fn list_tokens(&self, caller: &Caller) -> Result<ListTokensResponse, AuthError> {
        let tokens = self
            .store
            .list_api_tokens(caller.user_id)
            .await?
            .into_iter()
            .map(|t| TokenInfo {
                token_id: t.id,
                project: t.project,
                description: t.description,
                create_time: t.created_at.to_string(),
                expire_time: t.expires_at.map(|e| e.to_string()).unwrap_or_default(),
                revoke_time: t.revoked_at.map(|r| r.to_string()).unwrap_or_default(),
            })
            .collect();
        Ok(ListTokensResponse { tokens })
    }

    /// Revokes one of the caller's tokens (admins of `*`: anyone's). Another user's token is
    /// "not found" to everyone else, so ids cannot be probed.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<(), AuthError> {
        let token = self.store.get_api_token(id).await?;
        if token.user_id != caller.user_id && !caller.is_admin_of("*") {
            return Err(crate::store::StoreError::NotFound { kind: "API token", name: id.to_string() }.into());
        }
        self.store.revoke_api_token(id).await?;
        self.forget_token(id);
        Ok(())
    }

    /// Creates a user with roles (admins of `*` only).
    pub async fn create_user(
        &self,
        caller: &Caller,
        req: &api::CreateUserRequest,
    ) -> Result<api::User, AuthError> {
        require_user_admin(caller)?;
        check_username(&req.username)?;
        let roles = parse_roles(&req.roles, false)?;
        let user = self.store.create_user(&req.username, &hash(&req.password).await?).await?;
        for (project, role) in roles {
            if let Some(role) = role {
                self.store.set_role(user.id, &project, role).await?;
            }
        }
        tracing::info!(user = %user.username, by = %caller.username, "user created");
        self.view(&user).await
    }

    /// Every user with their roles (admins of `*` only).
    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<api::User>, AuthError> {
        require_user_admin(caller)?;
        let mut users = Vec::new();
        for user in self.store.list_users().await? {
            users.push(self.view(&user).await?);
        }
        Ok(users)
    }

    /// A user with their roles: anyone may read themselves, admins of `*` anyone.
    pub async fn get_user(&self, caller: &Caller, username: &str) -> Result<api::User, AuthError> {
        if username != caller.username {
            require_user_admin(caller)?;
        }
        let user = self.store.get_user_by_name(username).await?;
        self.view(&user).await
    }

    /// A new password and/or roles (admins of `*` only); an empty role removes the user from
    /// that project.
    pub async fn update_user(
        &self,
        caller: &Caller,
        username: &str,
        req: &api::UpdateUserRequest,
    ) -> Result<api::User, AuthError> {
        require_user_admin(caller)?;
        let roles = parse_roles(&req.roles, true)?;
        let user = self.store.get_user_by_name(username).await?;
        if let Some(pw) = &req.password {
            self.store.set_password_hash(user.id, &hash(pw).await?).await?;
        }
        if let Some(disabled) = req.disabled {
            self.store.set_disabled(user.id, disabled).await?;
        }
        if req.password.is_some() || req.disabled == Some(true) {
            // A new password or a disabled user ends everything the old one opened.
            let revoked = self.store.revoke_user_tokens(user.id).await?;
            let sessions = self.store.delete_user_sessions(user.id).await?;
            tracing::info!(user = %user.username, revoked, sessions, by = %caller.username, "tokens revoked and sessions ended");
        }
        for (project, role) in roles {
            match role {
                Some(role) => {
                    self.store.set_role(user.id, &project, role).await?;
                }
                None => self.store.remove_membership(user.id, &project).await?,
            }
        }
        self.forget_user(user.id);
        self.view(&self.store.get_user(user.id).await?).await
    }

    async fn view(&self, user: &User) -> Result<api::User, AuthError> {
        let roles = self
            .store
            .list_memberships(user.id)
            .await?
            .into_iter()
            .map(|m| (m.project, m.role.to_string()))
            .collect();
        Ok(api::User {
            username: user.username.clone(),
            roles,
            create_time: user.created_at.to_string(),
            disabled: user.disabled,
        })
    }

    /// Forgets a token's cached caller (after revocation).
    fn forget_token(&self, token_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.caller.token_id != token_id);
        }
    }

    /// Forgets the cached callers of a user (after their roles or password changed).
    fn forget_user(&self, user_id: i64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.caller.user_id != user_id);
        }
    }
}

/// A caller remembered for a token.
struct CachedCaller {
    caller: Caller,
    /// When it was looked up.
    at: Instant,
    /// The token's `exp` (seconds since the epoch).
    expires: u64,
    /// Whether a request is looking it up again.
    refreshing: bool,
}

/// A remembered caller: good as it is, or to be looked up again by this request.
enum Cached {
    Fresh(Caller),
    Refresh(Caller),
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn require_user_admin(caller: &Caller) -> Result<(), AuthError> {
    caller.require(Role::Admin, "*").map_err(|_| AuthError::NotUserAdmin)
}

fn check_username(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "username `{name}` is invalid: use 1 to 64 letters, digits, `.`, `-`, `_` and `@`"
        )))
    }
}

/// Roles by project, checked; `None` (an empty role, where allowed) removes a membership.
fn parse_roles(
    roles: &BTreeMap<String, String>,
    allow_empty: bool,
) -> Result<Vec<(String, Option<Role>)>, AuthError> {
    roles
        .iter()
        .map(|(project, role)| {
            if project != "*" {
                api::check_project(project).map_err(|e| AuthError::Invalid(e.to_string()))?;
            }
            match Role::parse(role) {
                Some(r) => Ok((project.clone(), Some(r))),
                None if allow_empty && role.is_empty() => Ok((project.clone(), None)),
                None => Err(AuthError::Invalid(format!(
                    "role `{role}` (project `{project}`) is not a role: use viewer, editor, admin or predictor"
                ))),
            }
        })
        .collect()
}

/// A hash no password matches, checked for unknown usernames so that they take as long to
/// refuse as a wrong password.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash(&super::password::generate()).unwrap_or_default())
}

/// The argon2 hash of a new password a user chose, which must be long enough.
async fn hash(pw: &str) -> Result<String, AuthError> {
    if pw.chars().count() < MIN_PASSWORD {
        return Err(AuthError::Invalid(format!("the password needs at least {MIN_PASSWORD} characters")));
    }
    hash_blocking(pw).await
}

/// The argon2 hash of a password, computed off the async workers.
pub(super) async fn hash_blocking(pw: &str) -> Result<String, AuthError> {
    let plain = pw.to_string();
    tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(|e| AuthError::Internal(format!("cannot hash the password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accounts() -> (Accounts, Arc<dyn Store>) {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let keys = TokenKeys::from_secret(&[9u8; 32]);
        (Accounts::new(store.clone(), keys, Duration::from_secs(3600)), store)
    }

    async fn user(store: &Arc<dyn Store>, name: &str, roles: &[(&str, Role)]) -> User {
        let user = store.create_user(name, &hash_blocking("correct-horse").await.unwrap()).await.unwrap();
        for (project, role) in roles {
            store.set_role(user.id, project, *role).await.unwrap();
        }
        user
    }

    #[tokio::test]
    async fn a_session_caller_has_the_users_current_roles() {
        let (accounts, store) = accounts().await;
        let ana = user(&store, "ana", &[("ml", Role::Editor)]).await;
        assert!(matches!(
            accounts.check_password("ana", "wrong-horse", None).await,
            Err(AuthError::BadCredentials)
        ));
        assert!(matches!(
            accounts.check_password("bob", "correct-horse", None).await,
            Err(AuthError::BadCredentials)
        ));
        assert_eq!(accounts.check_password("ana", "correct-horse", None).await.unwrap().id, ana.id);
        let caller = accounts.session_caller(ana.id).await.unwrap();
        assert_eq!(caller.role_on("ml"), Some(Role::Editor));
        store.set_role(ana.id, "ml", Role::Viewer).await.unwrap();
        assert_eq!(accounts.session_caller(ana.id).await.unwrap().role_on("ml"), Some(Role::Viewer));
        assert!(matches!(accounts.session_caller(999).await, Err(AuthError::InvalidToken(_))));
        store.set_disabled(ana.id, true).await.unwrap();
        assert!(
            matches!(accounts.session_caller(ana.id).await, Err(AuthError::InvalidToken(_))),
            "a disabled user's session ends"
        );
    }

    #[tokio::test]
    async fn created_tokens_work_once_shown_and_stay_within_the_callers_project() {
        let (accounts, store) = accounts().await;
        let ana = user(&store, "ana", &[("ml", Role::Editor)]).await;
        let caller = accounts.session_caller(ana.id).await.unwrap();
        let req = api::CreateTokenRequest { project: None, description: "ci".into() };
        let created = accounts.create_token(&caller, &req).await.unwrap();
        let as_token = accounts.authenticate(&created.token).await.unwrap();
        assert_eq!((as_token.user_id, as_token.role_on("ml")), (ana.id, Some(Role::Editor)));
        let listed = accounts.list_tokens(&caller).await.unwrap().tokens;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].token_id.as_str(), listed[0].description.as_str()),
            (created.token_id.as_str(), "ci")
        );

        // A token limited to `ml` cannot mint one for another project, and mints `ml` ones.
        let limited = Caller { token_project: Some("ml".into()), ..caller.clone() };
        let other = api::CreateTokenRequest { project: Some("finance".into()), description: String::new() };
        assert!(matches!(accounts.create_token(&limited, &other).await, Err(AuthError::WrongProject { .. })));
        let minted = accounts.create_token(&limited, &req).await.unwrap();
        assert_eq!(accounts.authenticate(&minted.token).await.unwrap().token_project.as_deref(), Some("ml"));
        let long = api::CreateTokenRequest { project: None, description: "x".repeat(201) };
        assert!(matches!(accounts.create_token(&caller, &long).await, Err(AuthError::Invalid(_))));

        accounts.revoke_token(&caller, &created.token_id).await.unwrap();
        assert!(matches!(accounts.authenticate(&created.token).await, Err(AuthError::Revoked)));
    }

    #[tokio::test]
    async fn only_admins_of_every_project_list_users() {
        let (accounts, store) = accounts().await;
        let root = user(&store, "root", &[("*", Role::Admin)]).await;
        let ana = user(&store, "ana", &[("ml", Role::Admin)]).await;
        let admin = accounts.session_caller(root.id).await.unwrap();
        let users = accounts.list_users(&admin).await.unwrap();
        assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["ana", "root"]);
        assert_eq!(users[0].roles.get("ml").map(String::as_str), Some("admin"));
        let project_admin = accounts.session_caller(ana.id).await.unwrap();
        assert!(matches!(accounts.list_users(&project_admin).await, Err(AuthError::NotUserAdmin)));
    }

    #[tokio::test]
    async fn a_new_password_ends_the_users_console_sessions() {
        let (accounts, store) = accounts().await;
        let root = user(&store, "root", &[("*", Role::Admin)]).await;
        let ana = user(&store, "ana", &[("ml", Role::Editor)]).await;
        let far = Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 3_600_000_000).unwrap();
        let session = crate::store::SessionRecord {
            id: "s".into(),
            user_id: Some(ana.id),
            data: "{}".into(),
            expires_at: far,
        };
        store.create_session(&session).await.unwrap();
        let admin = accounts.session_caller(root.id).await.unwrap();
        let roles_only = api::UpdateUserRequest {
            roles: [("ml".to_string(), "viewer".to_string())].into(),
            ..Default::default()
        };
        accounts.update_user(&admin, "ana", &roles_only).await.unwrap();
        assert!(
            store.load_session("s", Timestamp::now()).await.unwrap().is_some(),
            "a role change keeps the session"
        );
        let new_password =
            api::UpdateUserRequest { password: Some("another-horse".into()), ..Default::default() };
        accounts.update_user(&admin, "ana", &new_password).await.unwrap();
        assert!(store.load_session("s", Timestamp::now()).await.unwrap().is_none(), "a new password ends it");
    }
}
