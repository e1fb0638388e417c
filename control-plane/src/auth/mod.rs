//! Who is calling and what they may do: users with argon2-hashed passwords, a role per
//! project, and API tokens that are JWTs with an id (for listing and revocation). [`Accounts`]
//! is the service every door calls: it authenticates bearer tokens and manages users and tokens.

pub mod accounts;
pub mod first_admin;
pub mod password;
pub mod private_file;
pub mod sessions;
pub mod throttle;
pub mod token;

pub use api::Role;

use crate::store::StoreError;
pub use accounts::Accounts;

/// Why a caller was turned away.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this request needs a token: send `Authorization: Bearer <token>` (get one with POST /v1/auth/token)"
    )]
    MissingToken,
    #[error("the token is not valid: {0}")]
    InvalidToken(String),
    #[error("the token has been revoked")]
    Revoked,
    #[error("the username or password is wrong")]
    BadCredentials,
    #[error("`{user}` lacks the {needed} role on project `{project}`")]
    Forbidden { user: String, needed: Role, project: String },
    #[error("this token is limited to project `{allowed}` and cannot act on project `{project}`")]
    WrongProject { allowed: String, project: String },
    /// Too many failed logins for this username or from this address.
    #[error("too many failed logins; try again in {} seconds", .retry_after.as_secs().max(1))]
    Throttled { retry_after: std::time::Duration },
    /// Only admins of every project (`*`) manage users.
    #[error("only admins of every project (`*`) manage users")]
    NotUserAdmin,
    /// A username, password or role that breaks the rules; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or signing failed (never the caller's fault).
    #[error("{0}")]
    Internal(String),
}

impl api::Coded for AuthError {
    fn code(&self) -> api::Code {
        use api::Code;
        match self {
            AuthError::MissingToken
            | AuthError::InvalidToken(_)
            | AuthError::Revoked
            | AuthError::BadCredentials => Code::Unauthenticated,
            AuthError::Forbidden { .. } | AuthError::WrongProject { .. } | AuthError::NotUserAdmin => {
                Code::PermissionDenied
            }
            AuthError::Invalid(_) => Code::InvalidArgument,
            AuthError::Throttled { .. } => Code::ResourceExhausted,
            AuthError::Store(e) => e.code(),
            AuthError::Internal(_) => Code::Internal,
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            AuthError::Throttled { retry_after } => {
                Some(u32::try_from(retry_after.as_secs().max(1)).unwrap_or(u32::MAX))
            }
            _ => None,
        }
    }
}

/// An authenticated caller with their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    pub token_id: String,
    /// The project the token is limited to, if any.
    pub token_project: Option<String>,
    /// The caller's role on each project; a role on `*` holds on every project.
    pub roles: Vec<(String, Role)>,
}

impl Caller {
    /// The caller's role on `project`, if any, within the token's limits.
    pub fn role_on(&self, project: &str) -> Option<Role> {
        if self.token_project.as_deref().is_some_and(|p| p != project) {
            return None;
        }
        self.roles.iter().filter(|(p, _)| p == project || p == "*").map(|(_, r)| *r).max()
    }

    /// Succeeds when the caller holds `needed` on `project`; says what is missing otherwise.
    pub fn require(&self, needed: Role, project: &str) -> Result<(), AuthError> {
        if let Some(allowed) = &self.token_project
            && allowed != project
        {
            return Err(AuthError::WrongProject { allowed: allowed.clone(), project: project.to_string() });
        }
        match self.role_on(project) {
            Some(role) if role.grants(needed) => Ok(()),
            _ => Err(AuthError::Forbidden {
                user: self.username.clone(),
                needed,
                project: project.to_string(),
            }),
        }
    }

    pub fn is_admin_of(&self, project: &str) -> bool {
        self.role_on(project).is_some_and(|r| r.grants(Role::Admin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[(&str, Role)], token_project: Option<&str>) -> Caller {
        Caller {
            user_id: 1,
            username: "ana".into(),
            token_id: "t".into(),
            token_project: token_project.map(str::to_string),
            roles: roles.iter().map(|(p, r)| (p.to_string(), *r)).collect(),
        }
    }

    #[test]
    fn roles_include_the_lower_ones_and_stop_at_their_project() {
        let c = caller(&[("ml", Role::Editor)], None);
        assert!(c.require(Role::Viewer, "ml").is_ok());
        assert!(c.require(Role::Predictor, "ml").is_ok());
        assert_eq!(
            c.require(Role::Admin, "ml").unwrap_err().to_string(),
            "`ana` lacks the admin role on project `ml`"
        );
        assert!(c.require(Role::Viewer, "other").is_err());
        let p = caller(&[("ml", Role::Predictor)], None);
        assert!(p.require(Role::Predictor, "ml").is_ok());
        assert!(p.require(Role::Viewer, "ml").is_err());
    }

    #[test]
    fn a_project_token_cannot_touch_another_project() {
        let admin = caller(&[("*", Role::Admin)], Some("ml"));
        assert!(admin.require(Role::Admin, "ml").is_ok());
        assert!(matches!(
            admin.require(Role::Viewer, "finance").unwrap_err(),
            AuthError::WrongProject { allowed, project } if allowed == "ml" && project == "finance"
        ));
        assert!(caller(&[("*", Role::Admin)], None).require(Role::Admin, "finance").is_ok());
    }
}
