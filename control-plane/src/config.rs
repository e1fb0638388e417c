//! Flags of `platform serve`, each with a `PLATFORM_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::manifests::config::{CLUSTER_ISSUER_ANNOTATION, PlacementError};
use crate::manifests::{Placement, RenderConfig};

/// What a `platform serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeRole {
    All,
    Api,
    Gateway,
}

/// Where replicas run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Local,
    Kubernetes,
}

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

    /// Where uploaded artifacts go: a directory or `s3://bucket/prefix` (credentials and
    /// endpoint from the standard AWS environment, e.g. `AWS_ENDPOINT_URL`). Default:
    /// `{data-dir}/artifacts`.
    #[arg(long, env = "PLATFORM_ARTIFACT_STORE")]
    pub artifact_store: Option<String>,

    /// The prebuilt ONNX runtime's image. Models without a container spec, or with this image,
    /// run the runtime (the local backend runs it as `platform runtime`).
    #[arg(long, env = "PLATFORM_RUNTIME_IMAGE", default_value = concat!("platform-runtime:", env!("CARGO_PKG_VERSION")))]
    pub runtime_image: String,

    /// The URL clients reach the platform at (for `predictUri`). Default: from `--listen`.
    #[arg(long, env = "PLATFORM_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A second listener, plain HTTP, that also serves endpoints with `access: PRIVATE`. Bind
    /// it to an internal address only.
    #[arg(long, env = "PLATFORM_PRIVATE_LISTEN")]
    pub private_listen: Option<SocketAddr>,

    /// Largest request body of the API and `:predict` (Vertex allows 1.5 MB).
    #[arg(long, env = "PLATFORM_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,

    /// Largest artifact upload.
    #[arg(long, env = "PLATFORM_MAX_ARTIFACT_BYTES", default_value_t = 10 << 30)]
    pub max_artifact_bytes: u64,

    /// Allow `http://` artifact URIs (by default only `https://`): checked when a model is
    /// registered and by the runtime when it fetches the model.
    #[arg(long, env = runtime::fetch_policy::ALLOW_HTTP_ENV)]
    pub artifact_allow_http: bool,

    /// Allow artifact URIs that reach loopback, link-local (cloud metadata), private or other
    /// non-public addresses (by default refused: a model URL must not reach the platform's own
    /// network).
    #[arg(long, env = runtime::fetch_policy::ALLOW_PRIVATE_ENV)]
    pub artifact_allow_private_networks: bool,

    /// Most connections open at once on all listeners; one more is closed on arrival. 0: three
    /// quarters of the file descriptors this process may open.
    #[arg(long, env = "PLATFORM_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// A connection on which nothing moves for this long, while no request is being answered, is
    /// closed (idle keep-alive connections, unfinished TLS handshakes).
    #[arg(long, env = "PLATFORM_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How long a client may take to send a request's headers (also the TLS handshake).
    #[arg(long, env = "PLATFORM_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a client may take to send a request's body (for artifact uploads: between two
    /// pieces of it); then it gets 408.
    #[arg(long, env = "PLATFORM_BODY_READ_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// How long a prediction may wait for a replica's slot and its answer before the caller gets
    /// 504, on endpoints that set no `clientConnectionConfig.inferenceTimeout`.
    #[arg(long, env = "PLATFORM_PREDICT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub predict_timeout: Duration,

    /// How many predictions may wait per deployed model while each of its replicas serves its
    /// `containerConcurrency` requests (more are answered 429 with `Retry-After`; a queued request
    /// waits at most the predict timeout), and how many may be held while it has no ready replica
    /// (more are answered 503 with `Retry-After`).
    #[arg(long, env = "PLATFORM_MAX_QUEUED_REQUESTS", default_value_t = 100)]
    pub max_queued_requests: usize,

    /// How many sampled predictions of request-response logging
    /// (`predictRequestResponseLoggingConfig`) are kept per endpoint in the platform's database;
    /// older ones are deleted as new ones are written.
    #[arg(long, env = "PLATFORM_PREDICTION_LOG_RETENTION", default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub prediction_log_retention: u32,

    /// How long a deploy may take to get its minimum replicas ready, unless the model's
    /// `containerSpec.deploymentTimeout` says otherwise; then it fails and is cleaned up.
    #[arg(long, env = "PLATFORM_DEPLOY_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub deploy_timeout: Duration,

    /// How many times a replica of a deploy may crash before it is ever ready; then the deploy
    /// fails with the replica's output instead of waiting for its deployment timeout.
    #[arg(long, env = "PLATFORM_DEPLOY_MAX_RESTARTS", default_value_t = 3)]
    pub deploy_max_restarts: u32,

    /// Machine types (YAML or JSON, see docs/concepts.md). Default: the built-in catalog of
    /// Vertex names (n1-standard-2, e2-small, g2-standard-4, ...).
    #[arg(long, env = "PLATFORM_MACHINE_TYPES")]
    pub machine_types: Option<PathBuf>,

    /// Estimated prices of machine types shown in the console (YAML: currency, vcpuHour,
    /// gibHour, acceleratorHour, machineTypeHour; see docs/console.md). Default: close to
    /// Vertex AI's list prices in USD.
    #[arg(long, env = "PLATFORM_MACHINE_PRICES")]
    pub machine_prices: Option<PathBuf>,

    /// How long a console session lasts without a request.
    #[arg(long, env = "PLATFORM_SESSION_IDLE_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub session_idle_timeout: Duration,

    /// How long a console session lasts at most after signing in.
    #[arg(long, env = "PLATFORM_SESSION_MAX_AGE", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_max_age: Duration,

    /// Factor on this machine's CPUs that replicas may reserve (local backend); 1 = no overcommit.
    #[arg(long, env = "PLATFORM_CPU_OVERCOMMIT", default_value_t = 1.0)]
    pub cpu_overcommit: f64,

    /// How long a prediction may wait for a replica of a deployed model that has none ready (one
    /// scaled to zero, or still starting) before the caller gets 503.
    #[arg(long, env = "PLATFORM_COLD_START_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub cold_start_timeout: Duration,

    /// How long the autoscaler waits before taking replicas away (and, for deployed models with
    /// `minReplicaCount` 0, how long without requests before scaling to zero).
    #[arg(long, env = "PLATFORM_SCALE_DOWN_DELAY", default_value = "5m", value_parser = humantime::parse_duration)]
    pub scale_down_delay: Duration,

    /// Where replicas run: `local` (processes on this machine) or `kubernetes` (the cluster of
    /// the in-cluster service account or the kubeconfig).
    #[arg(long, env = "PLATFORM_BACKEND", value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,

    /// What this process does: `all` (the embedded default); `api` (REST API and controller,
    /// on Kubernetes); `gateway` (serves predictions from routes it reads from the database and
    /// the backend; scale it separately).
    #[arg(long, env = "PLATFORM_ROLE", value_enum, default_value_t = ServeRole::All)]
    pub role: ServeRole,

    /// Let admins run a model's `command` as a process on this machine
    /// (`containerSpec.hostProcess`) instead of its image in a container engine. Such a replica
    /// is sandboxed (its own unprivileged user when the platform runs as root, no access to the
    /// data directory, a cleared environment, its machine type's limits; see docs/security.md),
    /// but it is not a container. Local backend only; off by default.
    #[arg(long, env = "PLATFORM_ALLOW_HOST_PROCESSES")]
    pub allow_host_processes: bool,

    /// The container engine that runs models' own images on the local backend: `podman`,
    /// `docker`, the path of either, `auto` (the first of docker and podman whose `info`
    /// answers) or `none` (only the prebuilt runtime and host processes run).
    #[arg(long, env = "PLATFORM_CONTAINER_ENGINE", default_value = "auto")]
    pub container_engine: String,

    /// Extra arguments of every container `run` on the local backend (for example
    /// `--runtime=runc` or `--ulimit=nofile=1024:1024`), after the platform's own.
    #[arg(
        long = "container-run-arg",
        env = "PLATFORM_CONTAINER_RUN_ARGS",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub container_run_args: Vec<String>,

    /// The `nvidia-smi` that lists this machine's GPUs for the local backend (GPUs are counted
    /// as capacity and given whole to replicas of accelerator machine types).
    #[arg(long, env = "PLATFORM_NVIDIA_SMI", default_value = "nvidia-smi")]
    pub nvidia_smi: std::path::PathBuf,

    /// Namespace of the `kubernetes` backend. Default: the credentials' namespace.
    #[arg(long, env = "PLATFORM_NAMESPACE")]
    pub namespace: Option<String>,

    /// Host of each endpoint's Ingress (kubernetes backend); `{endpoint}`, `{project}` and
    /// `{location}` are replaced by DNS-safe forms of the endpoint's id, project and location.
    #[arg(long, env = "PLATFORM_ENDPOINT_HOST_PATTERN", default_value = "{endpoint}.endpoints.example.com")]
    pub endpoint_host_pattern: String,

    /// IngressClass of the endpoints' Ingresses. Default: the cluster's default class.
    #[arg(long, env = "PLATFORM_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// cert-manager ClusterIssuer that signs the endpoints' certificates; `none` when the
    /// certificates come from elsewhere (the Ingress then names a Secret you provide).
    #[arg(long, env = "PLATFORM_CLUSTER_ISSUER", default_value = "letsencrypt")]
    pub cluster_issuer: String,

    /// A Secret whose keys become every model pod's environment, for example S3 credentials
    /// (`AWS_ACCESS_KEY_ID`, ...) that read `AIP_STORAGE_URI`. Give models a read-only key.
    #[arg(long, env = "PLATFORM_MODEL_SECRET")]
    pub model_secret: Option<String>,

    /// Kubernetes: how long a stopping model pod sleeps in its `preStop` hook, out of the
    /// Service's endpoints, before its server gets SIGTERM; `0s` renders no hook (the native
    /// sleep action needs Kubernetes 1.30 or later). The pods' termination grace period is this
    /// plus the predict timeout, so that requests in flight finish.
    #[arg(long, env = "PLATFORM_PRE_STOP_SLEEP", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pre_stop_sleep: Duration,

    /// `imagePullPolicy` of model pods.
    #[arg(long, env = "PLATFORM_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,

    /// Node labels GPU pods require, `key=value,...` (`{accelerator}` in a value becomes the
    /// accelerator type, e.g. `cloud.google.com/gke-accelerator={accelerator}`); `none` for none.
    #[arg(long, env = "PLATFORM_GPU_NODE_SELECTOR", default_value = "none")]
    pub gpu_node_selector: Vec<String>,

    /// Taints of GPU nodes that GPU pods tolerate, `key[=value][:Effect],...`; `none` for none.
    #[arg(long, env = "PLATFORM_GPU_TOLERATIONS", default_value = "nvidia.com/gpu:NoSchedule")]
    pub gpu_tolerations: Vec<String>,

    /// Node labels of spot nodes, for deployed models with `dedicatedResources.spot`; `none`
    /// (with `--spot-tolerations none`) when the cluster has no spot nodes: `spot` is refused.
    #[arg(long, env = "PLATFORM_SPOT_NODE_SELECTOR", default_value = "cloud.google.com/gke-spot=true")]
    pub spot_node_selector: Vec<String>,

    /// Taints of spot nodes that spot pods tolerate, `key[=value][:Effect],...`.
    #[arg(
        long,
        env = "PLATFORM_SPOT_TOLERATIONS",
        default_value = "cloud.google.com/gke-spot=true:NoSchedule"
    )]
    pub spot_tolerations: Vec<String>,

    /// The platform's own Kubernetes service account (the install sets it): a deployed model's
    /// `serviceAccount` may not be this one.
    #[arg(long, env = "PLATFORM_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,

    /// How long the controllers' lead lasts unless renewed (a Lease on the kubernetes backend, a
    /// PostgreSQL advisory lock otherwise): when the leading API process stops, another takes
    /// over within this time. It is renewed every third of it.
    #[arg(long, env = "PLATFORM_LEADER_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_lease_duration: Duration,

    /// How often the controller checks replicas without being asked.
    #[arg(long, env = "PLATFORM_RECONCILE_PERIOD", default_value = "1s", value_parser = humantime::parse_duration)]
    pub reconcile_period: Duration,
}

impl ServeConfig {
    /// How deployed models and endpoints are rendered (the namespace is the backend's).
    pub fn render_config(&self) -> Result<RenderConfig, PlacementError> {
        let gpu = Placement::from_flags(&self.gpu_node_selector, &self.gpu_tolerations)
            .map_err(|e| PlacementError(format!("--gpu-node-selector/--gpu-tolerations: {e}")))?;
        let spot = Placement::from_flags(&self.spot_node_selector, &self.spot_tolerations)
            .map_err(|e| PlacementError(format!("--spot-node-selector/--spot-tolerations: {e}")))?;
        let mut cfg = RenderConfig {
            runtime_image: self.runtime_image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            gpu,
            spot,
            artifact_credentials_secret: self.model_secret.clone().filter(|s| !s.is_empty()),
            platform_service_account: self.service_account.clone().filter(|s| !s.is_empty()),
            artifact_fetch: self.fetch_policy(),
            termination_grace_period_seconds: seconds(self.predict_timeout),
            pre_stop_sleep_seconds: seconds(self.pre_stop_sleep),
            ..RenderConfig::default()
        };
        cfg.ingress.host_pattern = self.endpoint_host_pattern.clone();
        cfg.ingress.class_name = self.ingress_class.clone().filter(|c| !c.is_empty());
        let issuer = self.cluster_issuer.trim();
        cfg.ingress.cert_manager_annotation = (!issuer.is_empty() && issuer != "none")
            .then(|| (CLUSTER_ISSUER_ANNOTATION.to_string(), issuer.to_string()));
        Ok(cfg)
    }

    /// Where models may be fetched from over HTTP.
    pub fn fetch_policy(&self) -> runtime::fetch_policy::FetchPolicy {
        runtime::fetch_policy::FetchPolicy {
            allow_http: self.artifact_allow_http,
            allow_private: self.artifact_allow_private_networks,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("platform.db").display()))
    }

    pub fn artifact_store(&self) -> String {
        self.artifact_store.clone().unwrap_or_else(|| self.data_dir.join("artifacts").display().to_string())
    }

    /// `--public-url`, or `https://localhost:PORT` for a loopback or unspecified listener.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let scheme = if self.insecure_http { "http" } else { "https" };
        let ip = self.listen.ip();
        let host =
            if ip.is_loopback() || ip.is_unspecified() { "localhost".to_string() } else { ip.to_string() };
        format!("{scheme}://{host}:{}", self.listen.port())
    }

    pub fn jwt_key_file(&self) -> PathBuf {
        self.jwt_key_file.clone().unwrap_or_else(|| self.data_dir.join("jwt.key"))
    }
}

/// Whole seconds, rounded up (Kubernetes counts in seconds).
fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}
