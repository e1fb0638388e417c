//! Flags of `platform serve`, each with a `PLATFORM_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// How `platform serve` runs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Where the platform keeps its database, certificates, keys and replica logs.
    #[arg(long, env = "PLATFORM_DATA_DIR", default_value = "./platform-data")]
    pub data_dir: PathBuf,

    /// Address of the HTTPS listener (REST API and `:predict`).
    #[arg(long, env = "PLATFORM_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`. Default: SQLite in the
    /// data directory.
    #[arg(long, env = "PLATFORM_DATABASE_URL")]
    pub database_url: Option<String>,

    /// TLS certificate chain (PEM). Default: a certificate signed by a CA generated on first
    /// start into `{data-dir}/tls/` (trust `{data-dir}/tls/ca.pem`).
    #[arg(long, env = "PLATFORM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of `--tls-cert`.
    #[arg(long, env = "PLATFORM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve plain HTTP, for use behind a proxy that terminates TLS.
    #[arg(long, env = "PLATFORM_INSECURE_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure_http: bool,

    /// Key that signs API tokens. Default: `{data-dir}/jwt.key`, created on first start.
    #[arg(long, env = "PLATFORM_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,

    /// How long tokens from `POST /v1/auth/token` stay valid (for example `12h`, `30d`).
    #[arg(long, env = "PLATFORM_TOKEN_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
}

impl ServeConfig {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("platform.db").display()))
    }

    pub fn jwt_key_file(&self) -> PathBuf {
        self.jwt_key_file.clone().unwrap_or_else(|| self.data_dir.join("jwt.key"))
    }
}
