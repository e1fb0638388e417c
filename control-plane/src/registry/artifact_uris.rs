//! Which artifact URIs a caller may point a model at: uploads (this platform's artifact
//! store), `s3://`, `https://` and `http://`, and `file://` (the platform's own disk) for
//! admins only.

use super::{ArtifactStore, RegistryError};
use crate::auth::Caller;

/// Checks `uri` for `caller` on `project`.
pub fn check(
    artifacts: &ArtifactStore,
    caller: &Caller,
    project: &str,
    uri: &str,
) -> Result<(), RegistryError> {
    if uri.is_empty() || artifacts.holds(uri) {
        return Ok(());
    }
    if uri.starts_with("s3://") || uri.starts_with("https://") || uri.starts_with("http://") {
        return Ok(());
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
