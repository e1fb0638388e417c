//! Which artifact URIs a caller may point a model at: uploads (this platform's artifact
//! store), `s3://`, `https://` (and `http://` where the operator allows it) to public addresses
//! unless the operator allows private ones, and `file://` (the platform's own disk) for admins
//! only.

use runtime::fetch_policy::{FetchPolicy, PolicyError};

use super::{ArtifactStore, RegistryError};
use crate::auth::Caller;

/// Checks `uri` for `caller` on `project`. A URL is checked against the fetch policy here, so
/// that a model that could never be fetched is refused at once; the runtime checks it again
/// when it connects (a name may resolve differently later).
pub async fn check(
    artifacts: &ArtifactStore,
    policy: &FetchPolicy,
    caller: &Caller,
    project: &str,
    uri: &str,
) -> Result<(), RegistryError> {
    if uri.is_empty() || artifacts.holds(uri) || uri.starts_with("s3://") {
        return Ok(());
    }
    if uri.starts_with("https://") || uri.starts_with("http://") {
        let url = reqwest::Url::parse(uri)
            .map_err(|e| RegistryError::Invalid(format!("artifactUri `{uri}` is not a valid URL: {e}")))?;
        return match policy.check_resolved(&url).await {
            // A name that does not resolve from here may from the replicas' network.
            Ok(()) | Err(PolicyError::Unresolved { .. }) => Ok(()),
            Err(e) => Err(RegistryError::Invalid(format!("artifactUri: {e}"))),
        };
    }
    if uri.starts_with("file://") || uri.starts_with('/') {
        return if caller.is_admin_of(project) {
            Ok(())
        } else {
            Err(RegistryError::Forbidden(format!(
                "artifactUri `{uri}` reads the platform's own disk, which only admins may do; upload the file (POST .../artifacts) instead"
            )))
        };
    }
    Err(RegistryError::Invalid(format!(
        "artifactUri `{uri}` is not supported: use an uploaded artifact, s3://, https:// or (admins) file://"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    async fn problem(policy: FetchPolicy, uri: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = ArtifactStore::open(&dir.path().display().to_string()).await.unwrap();
        let editor = Caller {
            user_id: 1,
            username: "e".into(),
            token_id: "t".into(),
            token_project: None,
            roles: vec![("p".into(), Role::Editor)],
        };
        check(&artifacts, &policy, &editor, "p", uri).await.err().map(|e| e.to_string())
    }

    #[tokio::test]
    async fn urls_must_be_https_to_public_addresses_unless_the_operator_allows_more() {
        let strict = FetchPolicy::default();
        assert!(
            problem(strict, "http://203.0.113.9/m.onnx").await.unwrap().contains("--artifact-allow-http")
        );
        for private in [
            "https://169.254.169.254/latest",
            "https://127.0.0.1:8443/m",
            "https://[::1]/m",
            "https://10.1.2.3/m",
        ] {
            let why = problem(strict, private).await.unwrap_or_else(|| panic!("{private} was accepted"));
            assert!(why.contains("--artifact-allow-private-networks"), "{why}");
        }
        assert!(problem(strict, "https://localhost/m.onnx").await.unwrap().contains("loopback"));
        assert_eq!(problem(strict, "https://203.0.113.9/m.onnx").await, None);
        assert_eq!(problem(strict, "s3://bucket/m.onnx").await, None);
        let relaxed = FetchPolicy { allow_http: true, allow_private: true };
        assert_eq!(problem(relaxed, "http://127.0.0.1:9000/m.onnx").await, None);
        assert!(problem(relaxed, "https://exa mple.com/m").await.unwrap().contains("not a valid URL"));
    }
}
