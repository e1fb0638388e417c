//! Where a model comes from: a local path, `file://`, `s3://`, `https://` or `http://`.
//!
//! Remote models are downloaded into a cache keyed by content: blobs are stored under their
//! sha256, and each URI remembers the validator (ETag or Last-Modified and size) of the blob
//! it last gave. A restart, or a second replica on the same machine, finds the blob without
//! downloading it again as long as the object has not changed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fetch_policy::FetchPolicy;
use tokio::io::AsyncWriteExt;

/// File name meant when a URI names a directory or prefix.
pub const MODEL_FILE: &str = "model.onnx";

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{0}` is not a model location: use a path, file://, s3://bucket/key, https:// or http://")]
    BadUri(String),
    #[error("model file {0} does not exist")]
    Missing(String),
    #[error("cannot read {uri}: {message}")]
    Remote { uri: String, message: String },
    #[error("model cache {path}: {source}")]
    Cache { path: String, source: std::io::Error },
}

/// A parsed model location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    Local(PathBuf),
    S3 { bucket: String, key: String },
    Http(String),
}

impl ModelUri {
    /// Parses a location; remote ones not ending in `.onnx` mean `model.onnx` under them.
    pub fn parse(uri: &str) -> Result<ModelUri, SourceError> {
        let bad = || SourceError::BadUri(uri.to_string());
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad());
            }
            return Ok(ModelUri::S3 { bucket: bucket.to_string(), key: file_key(key) });
        }
        if uri.starts_with("https://") || uri.starts_with("http://") {
            let url = reqwest::Url::parse(uri).map_err(|_| bad())?;
            if url.path().ends_with(".onnx") {
                return Ok(ModelUri::Http(url.to_string()));
            }
            let mut url = url;
            let path = format!("{}/{MODEL_FILE}", url.path().trim_end_matches('/'));
            url.set_path(&path);
            return Ok(ModelUri::Http(url.to_string()));
        }
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(ModelUri::Local(PathBuf::from(path)));
        }
        if uri.is_empty() || uri.contains("://") {
            return Err(bad());
        }
        Ok(ModelUri::Local(PathBuf::from(uri)))
    }
}

fn file_key(key: &str) -> String {
    if key.ends_with(".onnx") {
        key.to_string()
    } else if key.is_empty() || key.ends_with('/') {
        format!("{key}{MODEL_FILE}")
    } else {
        format!("{key}/{MODEL_FILE}")
    }
}

/// Returns a local path of the model at `uri`, downloading it into `cache_dir` if needed.
pub async fn fetch(uri: &str, cache_dir: &Path, policy: &FetchPolicy) -> Result<PathBuf, SourceError> {
    match ModelUri::parse(uri)? {
        ModelUri::Local(path) => {
            let path = if path.is_dir() { path.join(MODEL_FILE) } else { path };
            if !path.is_file() {
                return Err(SourceError::Missing(path.display().to_string()));
            }
            Ok(path)
        }
        ModelUri::Http(url) => Cache::open(cache_dir).await?.fetch_http(&url, policy).await,
        ModelUri::S3 { bucket, key } => Cache::open(cache_dir).await?.fetch_s3(uri, &bucket, &key).await,
    }
}

/// The content-keyed download cache.
struct Cache {
    dir: PathBuf,
}

fn cache_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Cache { path: path.display().to_string(), source }
}

impl Cache {
    async fn open(dir: &Path) -> Result<Cache, SourceError> {
        for sub in ["blobs", "refs", "tmp"] {
            let d = dir.join(sub);
            tokio::fs::create_dir_all(&d).await.map_err(cache_err(&d))?;
        }
        Ok(Cache { dir: dir.to_path_buf() })
    }

    fn ref_path(&self, uri: &str) -> PathBuf {
        self.dir.join("refs").join(hex::encode(Sha256::digest(uri.as_bytes())))
    }

    /// The cached blob of `uri` if it was stored under the same `validator`.
    async fn lookup(&self, uri: &str, validator: &str) -> Option<PathBuf> {
        let text = tokio::fs::read_to_string(self.ref_path(uri)).await.ok()?;
        let (stored, digest) = text.trim_end().rsplit_once('\n')?;
        let blob = self.dir.join("blobs").join(digest);
        (stored == validator && blob.is_file()).then_some(blob)
    }

    /// Streams `chunks` into a blob named by its sha256 and records it for `uri`.
    async fn store<S, E>(&self, uri: &str, validator: &str, mut chunks: S) -> Result<PathBuf, SourceError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            hex::encode(Sha256::digest(uri.as_bytes()))
        ));
        let mut file = tokio::fs::File::create(&tmp).await.map_err(cache_err(&tmp))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| SourceError::Remote { uri: uri.to_string(), message: e.to_string() })?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(cache_err(&tmp))?;
        }
        file.flush().await.map_err(cache_err(&tmp))?;
        file.sync_all().await.map_err(cache_err(&tmp))?;
        drop(file);
        let digest = hex::encode(hasher.finalize());
        let blob = self.dir.join("blobs").join(&digest);
        tokio::fs::rename(&tmp, &blob).await.map_err(cache_err(&blob))?;
        if !validator.is_empty() {
            let refp = self.ref_path(uri);
            let tmp_ref = refp.with_extension(format!("tmp{}", std::process::id()));
            tokio::fs::write(&tmp_ref, format!("{validator}\n{digest}\n"))
                .await
                .map_err(cache_err(&tmp_ref))?;
            tokio::fs::rename(&tmp_ref, &refp).await.map_err(cache_err(&refp))?;
        }
        tracing::info!(uri, sha256 = %digest, "model downloaded into the cache");
        Ok(blob)
    }

    async fn fetch_http(&self, url: &str, policy: &FetchPolicy) -> Result<PathBuf, SourceError> {
        let remote = |message: String| SourceError::Remote { uri: url.to_string(), message };
        let parsed = reqwest::Url::parse(url).map_err(|e| remote(e.to_string()))?;
        policy.check_url(&parsed).map_err(|e| remote(e.to_string()))?;
        let client = policy.client();
        let head = client.head(url).send().await.map_err(|e| remote(format!("{e:#}")))?;
        let validator =
            if head.status().is_success() { http_validator(head.headers()) } else { String::new() };
        if !validator.is_empty()
            && let Some(blob) = self.lookup(url, &validator).await
        {
            tracing::info!(uri = url, "model found in the cache");
            return Ok(blob);
        }
        let resp = client.get(url).send().await.map_err(|e| remote(format!("{e:#}")))?;
        if !resp.status().is_success() {
            return Err(remote(format!("the server answered {}", resp.status())));
        }
        let validator = http_validator(resp.headers());
        self.store(url, &validator, resp.bytes_stream()).await
    }

    async fn fetch_s3(&self, uri: &str, bucket: &str, key: &str) -> Result<PathBuf, SourceError> {
        let remote = |message: String| SourceError::Remote { uri: format!("s3://{bucket}/{key}"), message };
        let client = s3_client().await;
        let head = client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| remote(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let validator =
            format!("{}|{}", head.e_tag().unwrap_or_default(), head.content_length().unwrap_or_default());
        if let Some(blob) = self.lookup(uri, &validator).await {
            tracing::info!(uri, "model found in the cache");
            return Ok(blob);
        }
        let object = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| remote(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let validator =
            format!("{}|{}", object.e_tag().unwrap_or_default(), object.content_length().unwrap_or_default());
        let body = object.body;
        let stream = futures_util::stream::unfold(body, |mut body| async move {
            body.try_next().await.transpose().map(|chunk| (chunk, body))
        });
        self.store(uri, &validator, Box::pin(stream)).await
    }
}

/// ETag, else Last-Modified, with the length: what says an HTTP object is unchanged.
fn http_validator(headers: &reqwest::header::HeaderMap) -> String {
    let get =
        |name: reqwest::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let tag = get(reqwest::header::ETAG);
    let tag = if tag.is_empty() { get(reqwest::header::LAST_MODIFIED) } else { tag };
    if tag.is_empty() { String::new() } else { format!("{tag}|{}", get(reqwest::header::CONTENT_LENGTH)) }
}

/// An S3 client from the standard AWS environment. A custom endpoint (`AWS_ENDPOINT_URL`,
/// as MinIO and other S3-compatible stores need) uses path-style addressing.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1"))
        .load()
        .await;
    let custom_endpoint = shared.endpoint_url().is_some();
    let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom_endpoint).build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_prefixes_mean_model_onnx() {
        assert_eq!(
            ModelUri::parse("s3://bucket/models/mlp").unwrap(),
            ModelUri::S3 { bucket: "bucket".into(), key: "models/mlp/model.onnx".into() }
        );
        assert_eq!(
            ModelUri::parse("s3://bucket/m.onnx").unwrap(),
            ModelUri::S3 { bucket: "bucket".into(), key: "m.onnx".into() }
        );
        assert_eq!(
            ModelUri::parse("s3://bucket").unwrap(),
            ModelUri::S3 { bucket: "bucket".into(), key: "model.onnx".into() }
        );
        assert_eq!(
            ModelUri::parse("https://host/a/").unwrap(),
            ModelUri::Http("https://host/a/model.onnx".into())
        );
        assert_eq!(ModelUri::parse("file:///tmp/x.onnx").unwrap(), ModelUri::Local("/tmp/x.onnx".into()));
        assert_eq!(ModelUri::parse("rel/x.onnx").unwrap(), ModelUri::Local("rel/x.onnx".into()));
        assert!(ModelUri::parse("gs://bucket/x").is_err());
        assert!(ModelUri::parse("s3:///x").is_err());
        assert!(ModelUri::parse("").is_err());
    }

    #[tokio::test]
    async fn a_missing_local_file_is_a_clear_error() {
        let err = fetch(
            "/nonexistent/dir/model.onnx",
            Path::new("/tmp"),
            &crate::fetch_policy::FetchPolicy::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir/model.onnx does not exist"), "{err}");
    }
}
