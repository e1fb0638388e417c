//! API tokens: HS256 JWTs signed with a key kept in the data directory (or given by flag).
//! Each token carries an id (`jti`) stored in the database, so tokens can be listed and revoked.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;

const ISSUER: &str = "platform";
/// Seconds a token is still accepted after its `exp`, for clocks a little apart.
pub const LEEWAY_SECS: u64 = 5;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The username, for logs and messages.
    pub name: String,
    /// The token id.
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    /// The project the token is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proj: Option<String>,
}

/// The signing key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A new random id for a token.
pub fn new_token_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> TokenKeys {
        TokenKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    /// Reads the key at `path`, creating a random one (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<TokenKeys> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => Ok(TokenKeys::from_secret(&secret)),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds fewer than 32 bytes; a signing key needs at least 32", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 64];
                rand::fill(&mut secret[..]);
                crate::auth::private_file::write(path, &secret)?;
                Ok(TokenKeys::from_secret(&secret))
            }
            Err(e) => Err(e),
        }
    }

    /// Signs a token for `user`, valid for `ttl`, optionally limited to `project`.
    pub fn issue(
        &self,
        user_id: i64,
        username: &str,
        token_id: &str,
        ttl: Duration,
        project: Option<&str>,
    ) -> Result<(String, Claims), AuthError> {
        let iat = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user_id.to_string(),
            name: username.into(),
            jti: token_id.into(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            proj: project.map(str::to_string),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let keys = TokenKeys::from_secret(&[7u8; 32]);
        let (token, claims) = keys.issue(3, "ana", "abc", Duration::from_secs(60), Some("ml")).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims);
        assert_eq!(claims.proj.as_deref(), Some("ml"));
        let other = TokenKeys::from_secret(&[8u8; 32]);
        assert!(matches!(other.verify(&token), Err(AuthError::InvalidToken(_))));
        assert!(keys.verify("not.a.token").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = TokenKeys::from_secret(&[7u8; 32]);
        let mut claims = keys.issue(1, "a", "t", Duration::from_secs(60), None).unwrap().1;
        claims.exp = now() - 3600;
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        let err = keys.verify(&token).unwrap_err().to_string();
        assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.key");
        let a = TokenKeys::load_or_create(&path).unwrap();
        let (token, _) = a.issue(1, "a", "t", Duration::from_secs(60), None).unwrap();
        let b = TokenKeys::load_or_create(&path).unwrap();
        assert!(b.verify(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
