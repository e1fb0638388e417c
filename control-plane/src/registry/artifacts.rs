//! The artifact store: where uploaded model files go. A directory (the embedded default,
//! `{data-dir}/artifacts`) or an S3 prefix (`s3://bucket/prefix`, aws-sdk-s3 configured from the
//! standard AWS environment). Uploads stream through: bytes are hashed (sha256) and written as
//! they arrive, never buffered whole (S3 uploads go up in 8 MiB multipart parts).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Size of the parts of an S3 multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact is larger than the limit of {limit} bytes; raise --max-artifact-bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("the artifact is empty")]
    Empty,
    #[error("invalid artifact store `{0}`: use a directory or s3://bucket/prefix")]
    InvalidStore(String),
    #[error("cannot write the artifact: {0}")]
    Storage(String),
    #[error(
        "filename `{0}` is invalid: use up to 200 letters, digits, `.`, `-` and `_`, not starting with `.`"
    )]
    InvalidFilename(String),
}

impl api::Coded for ArtifactError {
    fn code(&self) -> api::Code {
        match self {
            ArtifactError::TooLarge { .. } => api::Code::ResourceExhausted,
            ArtifactError::Interrupted(_) | ArtifactError::Empty | ArtifactError::InvalidFilename(_) => {
                api::Code::InvalidArgument
            }
            ArtifactError::InvalidStore(_) | ArtifactError::Storage(_) => api::Code::Internal,
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            ArtifactError::TooLarge { .. } => 413,
            _ => self.code().http_status(),
        }
    }
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub uri: String,
    pub sha256: String,
    pub size_bytes: u64,
}

/// Where artifacts are stored.
#[derive(Debug, Clone)]
pub enum ArtifactStore {
    Local { root: PathBuf },
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

impl ArtifactStore {
    /// `s3://bucket/prefix` or a directory path.
    pub async fn open(spec: &str) -> Result<ArtifactStore, ArtifactError> {
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ArtifactError::InvalidStore(spec.to_string()));
            }
            let client = runtime::source::s3_client().await;
            return Ok(ArtifactStore::S3 {
                client,
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if spec.contains("://") && !spec.starts_with("file://") {
            return Err(ArtifactError::InvalidStore(spec.to_string()));
        }
        let root = PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec));
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| ArtifactError::Storage(format!("cannot create {}: {e}", root.display())))?;
        let root = tokio::fs::canonicalize(&root)
            .await
            .map_err(|e| ArtifactError::Storage(format!("cannot resolve {}: {e}", root.display())))?;
        Ok(ArtifactStore::Local { root })
    }

    /// The URI prefix of everything this store holds.
    pub fn uri_prefix(&self) -> String {
        match self {
            ArtifactStore::Local { root } => format!("file://{}/", root.display()),
            ArtifactStore::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}/"),
            ArtifactStore::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}/"),
        }
    }

    /// The id of the upload `uri` names, when it names one of this store.
    pub fn artifact_id<'a>(&self, uri: &'a str) -> Option<&'a str> {
        if !self.holds(uri) {
            return None;
        }
        uri[self.uri_prefix().len()..].split('/').next().filter(|id| !id.is_empty())
    }

    /// Whether `uri` names something in this store (callers may reference those freely).
    pub fn holds(&self, uri: &str) -> bool {
        uri.starts_with(&self.uri_prefix()) && !uri.contains("/../")
    }

    /// Streams `body` into `{id}/{filename}`, hashing as it goes.
    pub async fn put<S, E>(
        &self,
        id: &str,
        filename: &str,
        body: S,
        limit: u64,
    ) -> Result<Stored, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let relative = format!("{id}/{filename}");
        match self {
            ArtifactStore::Local { root } => put_local(root, &relative, body, limit).await,
            ArtifactStore::S3 { client, bucket, prefix } => {
                let key = if prefix.is_empty() { relative } else { format!("{prefix}/{relative}") };
                put_s3(client, bucket, &key, body, limit).await
            }
        }
    }

    /// The bytes of an artifact of this store, at most `limit` of them.
    pub async fn read(&self, uri: &str, limit: u64) -> Result<Vec<u8>, ArtifactError> {
        let relative = uri
            .strip_prefix(&self.uri_prefix())
            .filter(|_| self.holds(uri))
            .ok_or_else(|| ArtifactError::Storage(format!("{uri} is not in this artifact store")))?;
        let bytes = match self {
            ArtifactStore::Local { root } => tokio::fs::read(root.join(relative))
                .await
                .map_err(|e| ArtifactError::Storage(format!("cannot read {uri}: {e}")))?,
            ArtifactStore::S3 { client, bucket, .. } => {
                let key = uri.strip_prefix(&format!("s3://{bucket}/")).unwrap_or(relative);
                let object = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| {
                    ArtifactError::Storage(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                })?;
                let body = object.body.collect().await.map_err(|e| ArtifactError::Storage(e.to_string()))?;
                body.into_bytes().to_vec()
            }
        };
        if bytes.len() as u64 > limit {
            return Err(ArtifactError::TooLarge { limit });
        }
        Ok(bytes)
    }

    /// Removes an artifact of this store (a duplicate upload). Missing is not an error.
    pub async fn delete(&self, uri: &str) -> Result<(), ArtifactError> {
        if !self.holds(uri) {
            return Ok(());
        }
        let relative = &uri[self.uri_prefix().len()..];
        match self {
            ArtifactStore::Local { root } => {
                let path = root.join(relative);
                let _ = tokio::fs::remove_file(&path).await;
                if let Some(dir) = path.parent() {
                    let _ = tokio::fs::remove_dir(dir).await;
                }
                Ok(())
            }
            ArtifactStore::S3 { client, bucket, .. } => {
                let key = uri.strip_prefix(&format!("s3://{bucket}/")).unwrap_or(relative);
                client.delete_object().bucket(bucket).key(key).send().await.map(|_| ()).map_err(|e| {
                    ArtifactError::Storage(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                })
            }
        }
    }
}

/// A safe file name for an upload: letters, digits, `.`, `-`, `_`; `model.onnx` by default.
pub fn clean_filename(name: Option<&str>) -> Result<String, ArtifactError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("model.onnx");
    let ok = name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(name.to_string()) } else { Err(ArtifactError::InvalidFilename(name.to_string())) }
}

async fn put_local<S, E>(
    root: &Path,
    relative: &str,
    mut body: S,
    limit: u64,
) -> Result<Stored, ArtifactError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let path = root.join(relative);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    let storage = |e: std::io::Error| ArtifactError::Storage(format!("{}: {e}", path.display()));
    tokio::fs::create_dir_all(&dir).await.map_err(storage)?;
    let partial = path.with_extension("partial");
    let result = async {
        let mut file = tokio::fs::File::create(&partial).await.map_err(storage)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ArtifactError::Interrupted(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ArtifactError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(storage)?;
        }
        if size == 0 {
            return Err(ArtifactError::Empty);
        }
        file.sync_all().await.map_err(storage)?;
        // The model file itself is readable by any user that can reach it: its directories stay
        // the platform's own (umask 077), and a container, which runs as a user of its own,
        // reads it through a read-only bind mount.
        tokio::fs::set_permissions(&partial, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .await
            .map_err(storage)?;
        tokio::fs::rename(&partial, &path).await.map_err(storage)?;
        Ok(Stored {
            uri: format!("file://{}", path.display()),
            sha256: hex::encode(hasher.finalize()),
            size_bytes: size,
        })
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
        let _ = tokio::fs::remove_dir(&dir).await;
    }
    result
}

async fn put_s3<S, E>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    mut body: S,
    limit: u64,
) -> Result<Stored, ArtifactError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

    let s3 = |e: &dyn std::fmt::Display| ArtifactError::Storage(format!("s3://{bucket}/{key}: {e}"));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer: Vec<u8> = Vec::with_capacity(PART_BYTES);
    let mut upload_id: Option<String> = None;
    let mut parts: Vec<CompletedPart> = Vec::new();

    let result: Result<(), ArtifactError> = async {
        loop {
            let next = body.next().await;
            let finished = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|e| ArtifactError::Interrupted(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(ArtifactError::TooLarge { limit });
                }
                hasher.update(&chunk);
                buffer.extend_from_slice(&chunk);
            }
            if finished && upload_id.is_none() {
                if size == 0 {
                    return Err(ArtifactError::Empty);
                }
                // Small enough for one request.
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(std::mem::take(&mut buffer)))
                    .send()
                    .await
                    .map_err(|e| s3(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
                return Ok(());
            }
            if buffer.len() >= PART_BYTES || (finished && !buffer.is_empty()) {
                let id = match &upload_id {
                    Some(id) => id.clone(),
                    None => {
                        let created = client
                            .create_multipart_upload()
                            .bucket(bucket)
                            .key(key)
                            .send()
                            .await
                            .map_err(|e| s3(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
                        let id = created.upload_id().unwrap_or_default().to_string();
                        upload_id = Some(id.clone());
                        id
                    }
                };
                let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let part = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(number)
                    .body(ByteStream::from(std::mem::replace(&mut buffer, Vec::with_capacity(PART_BYTES))))
                    .send()
                    .await
                    .map_err(|e| s3(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            if finished {
                let id = upload_id.clone().unwrap_or_default();
                client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder().set_parts(Some(parts.clone())).build(),
                    )
                    .send()
                    .await
                    .map_err(|e| s3(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        if let Some(id) = upload_id {
            let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send().await;
        }
        return Err(e);
    }
    Ok(Stored {
        uri: format!("s3://{bucket}/{key}"),
        sha256: hex::encode(hasher.finalize()),
        size_bytes: size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn local_uploads_are_hashed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let stored = store.put("a1", "model.onnx", chunks(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(stored.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(stored.size_bytes, 11);
        assert!(store.holds(&stored.uri));
        let path = stored.uri.strip_prefix("file://").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"hello world");

        let err = store.put("a2", "m.onnx", chunks(&[b"0123456789", b"0123456789"]), 15).await.unwrap_err();
        assert!(matches!(err, ArtifactError::TooLarge { limit: 15 }));
        assert!(!dir.path().join("a2").exists(), "a refused upload leaves nothing behind");
        assert!(matches!(store.put("a3", "m.onnx", chunks(&[]), 15).await, Err(ArtifactError::Empty)));

        store.delete(&stored.uri).await.unwrap();
        assert!(!std::path::Path::new(path).exists());
        assert!(!store.holds("file:///etc/passwd"));
    }

    #[test]
    fn filenames_cannot_escape() {
        assert_eq!(clean_filename(None).unwrap(), "model.onnx");
        assert_eq!(clean_filename(Some("iris-v2.onnx")).unwrap(), "iris-v2.onnx");
        for bad in ["../x", ".hidden", "a/b", "a b"] {
            assert!(clean_filename(Some(bad)).is_err(), "{bad}");
        }
    }
}
