//! Command-line flags and environment of `platform-runtime`.
//!
//! The environment follows the Vertex AI custom-container contract (`AIP_*`), so the same
//! binary runs unchanged under the platform, under Vertex AI or by hand. Flags override env.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The variable that names the model in the Open Inference Protocol routes, and its default.
pub const MODEL_NAME_ENV: &str = "PLATFORM_MODEL_NAME";
pub const DEFAULT_MODEL_NAME: &str = "model";

/// Everything `platform-runtime` can be told. Shared by the `platform-runtime` binary and the
/// `platform runtime` subcommand.
#[derive(Debug, Clone, Args)]
pub struct RuntimeConfig {
    /// The ONNX model to serve: a local path, `file://`, `s3://bucket/key`, `https://` or
    /// `http://` URI. A directory or prefix (any URI not ending in `.onnx`) means `model.onnx`
    /// inside it. S3 is configured from the standard AWS variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_REGION`, ...); a custom endpoint uses path-style addressing.
    #[arg(long, env = "AIP_STORAGE_URI", value_name = "URI")]
    pub model: String,

    /// Allow `http://` model URLs (by default only `https://`).
    #[arg(long, env = "PLATFORM_ARTIFACT_ALLOW_HTTP")]
    pub artifact_allow_http: bool,

    /// Allow model URLs that reach loopback, link-local (cloud metadata) or private addresses
    /// (by default only public addresses).
    #[arg(long, env = "PLATFORM_ARTIFACT_ALLOW_PRIVATE_NETWORKS")]
    pub artifact_allow_private_networks: bool,

    /// Port to listen on.
    #[arg(long, env = "AIP_HTTP_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "PLATFORM_RUNTIME_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Route of Vertex-style predictions: `POST {"instances": [...]}`.
    #[arg(long, env = "AIP_PREDICT_ROUTE", default_value = "/predict")]
    pub predict_route: String,

    /// Route of the health check: 200 once the model is loaded and warmed up, 503 before.
    #[arg(long, env = "AIP_HEALTH_ROUTE", default_value = "/health")]
    pub health_route: String,

    /// Name of the model in the Open Inference Protocol routes (`/v2/models/{name}/...`).
    #[arg(long, env = MODEL_NAME_ENV, default_value = DEFAULT_MODEL_NAME)]
    pub model_name: String,

    /// Largest batch that dynamic batching forms from concurrent requests. 1 turns batching off.
    /// Batching is also off when the model has no free batch dimension.
    #[arg(long, env = "PLATFORM_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,

    /// How long the first request of a batch may wait for others to join it (for example
    /// `0ms`, `500us`, `2ms`). With 0, a batch takes whatever is queued when a worker is free,
    /// which adds no latency when idle and batches naturally under load.
    #[arg(long, env = "PLATFORM_BATCH_TIMEOUT", default_value = "0ms", value_parser = humantime::parse_duration)]
    pub batch_timeout: Duration,

    /// Inference workers (concurrent batches). Default: the number of CPU cores.
    #[arg(long, env = "PLATFORM_WORKERS")]
    pub workers: Option<usize>,

    /// Requests that may wait for a worker before new ones are refused with 429.
    #[arg(long, env = "PLATFORM_MAX_QUEUE", default_value_t = 1024)]
    pub max_queue: usize,

    /// Most instances accepted in one request.
    #[arg(long, env = "PLATFORM_MAX_INSTANCES", default_value_t = 1024)]
    pub max_instances: usize,

    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "PLATFORM_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The engine that runs the model: `tract` (built in), `onnxruntime` (needs
    /// `--onnxruntime-lib`), or `auto`: tract when the model loads and answers a sample there,
    /// else onnxruntime (onnxruntime first when the machine has an accelerator). The log and
    /// `/metrics` (`runtime_engine_info`) say which one serves.
    #[arg(long, env = "PLATFORM_ENGINE", value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,

    /// The onnxruntime library: `libonnxruntime.so` or the directory holding it, for example
    /// the `onnxruntime/capi` directory of the `onnxruntime` Python wheel (or of
    /// `onnxruntime-gpu` for the CUDA execution provider). Loaded at start, only when the
    /// onnxruntime engine is used.
    #[arg(long, env = "PLATFORM_ONNXRUNTIME_LIB", value_name = "PATH")]
    pub onnxruntime_lib: Option<PathBuf>,

    /// Most compiled tract plans kept, one per distinct set of input shapes (batch sizes,
    /// image sizes, sequence lengths); the least recently used is dropped beyond it.
    #[arg(long, env = "PLATFORM_SHAPE_CACHE_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub shape_cache_size: u32,

    /// The machine's accelerator (set by the platform from the machine type, for example
    /// `NVIDIA_L4`): the onnxruntime engine then asks for its CUDA execution provider, and runs
    /// on the CPU (saying so in the log and in `/metrics`) when the library has none.
    #[arg(long, env = "AIP_ACCELERATOR_TYPE", value_name = "TYPE")]
    pub accelerator: Option<String>,

    /// Where downloaded models are cached, keyed by content. Default:
    /// `$XDG_CACHE_HOME/platform-runtime` or `~/.cache/platform-runtime`.
    #[arg(long, env = "PLATFORM_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The engines `--engine` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Tract,
    Onnxruntime,
    Auto,
}

impl RuntimeConfig {
    /// Where models may be fetched from over HTTP.
    pub fn fetch_policy(&self) -> crate::fetch_policy::FetchPolicy {
        crate::fetch_policy::FetchPolicy {
            allow_http: self.artifact_allow_http,
            allow_private: self.artifact_allow_private_networks,
        }
    }

    /// The accelerator, unless unset or unspecified.
    pub fn accelerator(&self) -> Option<&str> {
        self.accelerator.as_deref().filter(|a| !a.is_empty() && *a != "ACCELERATOR_TYPE_UNSPECIFIED")
    }

    /// Number of inference workers, resolved against this machine.
    pub fn workers(&self) -> usize {
        self.workers
            .filter(|w| *w > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The model cache directory, resolved against the environment.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("platform-runtime");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".cache").join("platform-runtime");
        }
        std::env::temp_dir().join("platform-runtime-cache")
    }
}
