//! The HTTP client of the platform's REST API: the bearer token, the platform's CA as a trusted
//! root (TLS is always verified), errors in the server's words, streamed artifact uploads and
//! waiting for long-running operations.

use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;

use crate::progress;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no server is configured: run `platform-cli auth login --server URL`, or pass --server")]
    NoServer,
    #[error("not logged in: run `platform-cli auth login`, or pass --token (PLATFORM_TOKEN)")]
    NoToken,
    #[error(
        "`{0}` is not a server URL: use https://HOST:PORT (or http:// for a server run with --insecure-http)"
    )]
    BadServer(String),
    #[error("{path}: {message}")]
    CaCert { path: String, message: String },
    /// The server's own error, as it wrote it.
    #[error("{}{message}", status_prefix(.status))]
    Api { http: u16, status: String, message: String },
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("operation {name} failed: {message} (code {code})")]
    OperationFailed { name: String, code: i32, message: String },
    #[error("the server's answer to {url} is not what was expected: {message}")]
    Decode { url: String, message: String },
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error(transparent)]
    Name(#[from] api::NameError),
}

fn status_prefix(status: &str) -> String {
    if status.is_empty() { String::new() } else { format!("{status}: ") }
}

/// Where and as whom to call, after flags, `PLATFORM_*` variables and the saved configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub server: Option<String>,
    pub token: Option<String>,
    pub project: String,
    pub location: String,
    /// A PEM file with the CA to trust in addition to the system's roots.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// A client of one server, for one project and location.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    pub parent: api::LocationName,
}

impl Client {
    /// A client that sends the token with every request; `require_token` is false only for
    /// `auth login`, which asks for a token.
    pub fn new(settings: &Settings, require_token: bool) -> Result<Client, ClientError> {
        let server = settings.server.as_deref().ok_or(ClientError::NoServer)?;
        let base = server_base(server)?;
        if require_token && settings.token.is_none() {
            return Err(ClientError::NoToken);
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = &settings.ca_cert {
            let shown = path.display().to_string();
            let pem =
                std::fs::read(path).map_err(|source| ClientError::File { path: shown.clone(), source })?;
            builder = builder.add_root_certificate(ca_certificate(&shown, &pem)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Transport { url: base.clone(), message: error_chain(&e) })?;
        let parent = api::LocationName::new(&settings.project, &settings.location)?;
        Ok(Client { http, base, token: settings.token.clone(), parent })
    }

    /// The URL of an API path such as `v1/projects/p/locations/l/models`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// `v1/projects/{p}/locations/{l}/{rest}`.
    pub fn path(&self, rest: &str) -> String {
        format!("v1/{}/{}", self.parent, rest)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_with(method, path, &[])
    }

    /// A request with query parameters, escaped.
    fn request_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let url = self.url(path);
        let builder = match reqwest::Url::parse(&url) {
            Ok(mut parsed) => {
                if !query.is_empty() {
                    parsed.query_pairs_mut().extend_pairs(query);
                }
                self.http.request(method, parsed)
            }
            // Not reachable with a checked base; reqwest reports the bad URL when sent.
            Err(_) => self.http.request(method, url),
        };
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.json(self.request_with(reqwest::Method::GET, path, query)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.post_with(path, &[], body).await
    }

    pub async fn post_with<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(self.request_with(reqwest::Method::POST, path, query).json(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(self.request_with(reqwest::Method::PATCH, path, query).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(self.request(reqwest::Method::DELETE, path)).await
    }

    /// GETs a resource that is not JSON, such as YAML, asking for `accept`; returns its body.
    pub async fn get_text(&self, path: &str, accept: &str) -> Result<String, ClientError> {
        let req = self.request(reqwest::Method::GET, path).header(ACCEPT, accept);
        let (url, res) = self.send(req).await?;
        res.text().await.map_err(|e| ClientError::Transport { url, message: error_chain(&e) })
    }

    /// GETs newline-delimited JSON and hands each value to `each` as its line arrives (a
    /// followed stream ends only when the server closes it).
    pub async fn get_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        mut each: impl FnMut(T) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let (url, mut res) = self.send(self.request_with(reqwest::Method::GET, path, query)).await?;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = res
                .chunk()
                .await
                .map_err(|e| ClientError::Transport { url: url.clone(), message: error_chain(&e) })?;
            let done = chunk.is_none();
            pending.extend_from_slice(chunk.as_deref().unwrap_or_default());
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value = serde_json::from_slice(&line)
                    .map_err(|e| ClientError::Decode { url: url.clone(), message: e.to_string() })?;
                each(value)?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// PUTs `body` unchanged as `content_type`; the answer is JSON.
    pub async fn put_body<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let req = self
            .request_with(reqwest::Method::PUT, path, query)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.json(req).await
    }

    /// Sends `body` unchanged with `headers` and returns the answer's content type and body.
    pub async fn raw(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(Option<String>, bytes::Bytes), ClientError> {
        let mut req = self.request(reqwest::Method::POST, path).body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let (url, res) = self.send(req).await?;
        let content_type = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = res.bytes().await.map_err(|e| ClientError::Transport { url, message: error_chain(&e) })?;
        Ok((content_type, body))
    }

    /// Uploads a local file as an artifact, streamed from disk with a progress bar on a terminal.
    pub async fn upload_artifact(&self, file: &Path) -> Result<api::Artifact, ClientError> {
        let shown = file.display().to_string();
        let io_err = |source| ClientError::File { path: shown.clone(), source };
        let opened = tokio::fs::File::open(file).await.map_err(io_err)?;
        let size = opened.metadata().await.map_err(io_err)?.len();
        let filename = file.file_name().and_then(|n| n.to_str()).unwrap_or("artifact").to_string();
        let bar = progress::bytes(size, &format!("Uploading {filename}"));
        let chunks = futures_util::stream::try_unfold((opened, bar.clone()), |(mut file, bar)| async move {
            let mut buf = vec![0u8; 256 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            buf.truncate(n);
            bar.inc(n as u64);
            Ok(Some((bytes::Bytes::from(buf), (file, bar))))
        });
        let req = self
            .request_with(reqwest::Method::POST, &self.path("artifacts"), &[("filename", filename.clone())])
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(chunks.map_err(std::io::Error::other)));
        let result = self.json(req).await;
        bar.finish_and_clear();
        result
    }

    /// Waits until `op` is done, with a spinner on a terminal; a failed operation is an error.
    pub async fn wait(&self, mut op: api::Operation) -> Result<api::Operation, ClientError> {
        let spinner = progress::spinner(&waiting_message(&op));
        while !op.done {
            let wait = api::WaitOperationRequest { timeout: Some(api::Duration::from_secs(30)) };
            op = match self.post(&format!("v1/{}:wait", op.name), &wait).await {
                Ok(op) => op,
                Err(e) => {
                    spinner.finish_and_clear();
                    return Err(e);
                }
            };
            spinner.set_message(waiting_message(&op));
        }
        spinner.finish_and_clear();
        match op.error {
            Some(status) => Err(ClientError::OperationFailed {
                name: op.name,
                code: status.code,
                message: status.message,
            }),
            None => Ok(op),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(String, reqwest::Response), ClientError> {
        let res = req.send().await.map_err(|e| {
            let url = e.url().map(|u| u.to_string()).unwrap_or_else(|| self.base.clone());
            ClientError::Transport { url, message: transport_message(&e.without_url()) }
        })?;
        let url = res.url().to_string();
        if res.status().is_success() {
            return Ok((url, res));
        }
        let http = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        Err(api_error(http, &text))
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let (url, res) = self.send(req).await?;
        let body = res
            .bytes()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: error_chain(&e) })?;
        let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
        serde_json::from_slice(body).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }
}

/// The server URL without a trailing slash; only `https://` and `http://` are URLs of a server.
pub fn server_base(server: &str) -> Result<String, ClientError> {
    let trimmed = server.trim().trim_end_matches('/');
    let ok = reqwest::Url::parse(trimmed)
        .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some() && u.query().is_none());
    if ok { Ok(trimmed.to_string()) } else { Err(ClientError::BadServer(server.to_string())) }
}

/// Parses a PEM file of CA certificates.
pub fn ca_certificate(path: &str, pem: &[u8]) -> Result<reqwest::Certificate, ClientError> {
    let not_pem = || ClientError::CaCert {
        path: path.to_string(),
        message: "not a PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
    };
    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(not_pem());
    }
    reqwest::Certificate::from_pem(pem)
        .map_err(|e| ClientError::CaCert { path: path.into(), message: e.to_string() })
}

/// The server's `{"error": {...}}` as an error; any other body is quoted (shortened).
pub fn api_error(http: u16, body: &str) -> ClientError {
    match serde_json::from_str::<api::ErrorBody>(body) {
        Ok(b) => ClientError::Api { http, status: b.error.status, message: b.error.message },
        Err(_) => {
            let text: String = body.trim().chars().take(300).collect();
            let message =
                if text.is_empty() { format!("HTTP {http}") } else { format!("HTTP {http}: {text}") };
            ClientError::Api { http, status: String::new(), message }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !message.contains(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        source = s.source();
    }
    message
}

/// A transport error with its causes, and what to do when the certificate is not trusted.
fn transport_message(e: &reqwest::Error) -> String {
    let message = error_chain(e);
    let lower = message.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        format!(
            "{message}\nThe server's certificate is not trusted: pass --ca-cert with the platform's CA \
             (DATA_DIR/tls/ca.pem), which `auth login` saves for later commands"
        )
    } else {
        message
    }
}

/// `Deploying model (operation 123, 40%)` from the operation's metadata `@type` and progress.
pub fn waiting_message(op: &api::Operation) -> String {
    let kind = op
        .metadata
        .as_ref()
        .and_then(|m| m.get("@type"))
        .and_then(|t| t.as_str())
        .map(|t| t.trim_start_matches(api::TYPE_PREFIX).trim_end_matches("OperationMetadata"))
        .filter(|k| !k.is_empty())
        .map(words)
        .unwrap_or_else(|| "Waiting".to_string());
    let id = op.name.rsplit('/').next().unwrap_or(&op.name);
    let percent = op.metadata.as_ref().and_then(|m| m.get("progressPercent")).and_then(|p| p.as_i64());
    match percent {
        Some(p) => format!("{kind} (operation {id}, {p}%)"),
        None => format!("{kind} (operation {id})"),
    }
}

/// `DeployModel` to `Deploy model`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_errors_keep_their_status_and_message() {
        let e =
            api_error(404, r#"{"error":{"code":404,"message":"model `x` not found","status":"NOT_FOUND"}}"#);
        assert_eq!(e.to_string(), "NOT_FOUND: model `x` not found");
        assert!(matches!(e, ClientError::Api { http: 404, .. }));
        assert_eq!(api_error(502, "Bad Gateway\n").to_string(), "HTTP 502: Bad Gateway");
        assert_eq!(api_error(500, "").to_string(), "HTTP 500");
    }

    #[test]
    fn servers_are_http_or_https_urls() {
        assert_eq!(server_base("https://localhost:8443/").unwrap(), "https://localhost:8443");
        assert_eq!(server_base("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert!(server_base("localhost:8443").is_err());
        assert!(server_base("ftp://host").is_err());
        assert!(server_base("https://host/?a=b").is_err());
    }

    #[test]
    fn a_file_that_is_not_pem_is_refused_before_any_request() {
        let e = ca_certificate("ca.pem", b"hello").unwrap_err().to_string();
        assert!(e.starts_with("ca.pem: not a PEM certificate"), "{e}");
    }

    #[test]
    fn waiting_messages_say_what_is_happening() {
        let op = api::Operation {
            name: "projects/p/locations/l/operations/42".into(),
            metadata: Some(json!({
                "@type": format!("{}DeployModelOperationMetadata", api::TYPE_PREFIX),
                "progressPercent": 40
            })),
            ..Default::default()
        };
        assert_eq!(waiting_message(&op), "Deploy model (operation 42, 40%)");
        let bare = api::Operation { name: "operations/7".into(), ..Default::default() };
        assert_eq!(waiting_message(&bare), "Waiting (operation 7)");
    }

    #[test]
    fn clients_need_a_server_and_usually_a_token() {
        let settings = Settings { project: "default".into(), location: "local".into(), ..Default::default() };
        assert!(matches!(Client::new(&settings, true), Err(ClientError::NoServer)));
        let settings = Settings { server: Some("https://localhost:1".into()), ..settings };
        assert!(matches!(Client::new(&settings, true), Err(ClientError::NoToken)));
        let client = Client::new(&settings, false).unwrap();
        assert_eq!(
            client.url(&client.path("models")),
            "https://localhost:1/v1/projects/default/locations/local/models"
        );
        let bad = Settings { project: "Bad Project".into(), ..settings };
        let e = Client::new(&bad, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("project `Bad Project` is invalid"), "{e}");
    }
}
