//! `platform-runtime`: the prebuilt serving runtime for ONNX models.
//!
//! It speaks the Vertex AI custom-container contract (`AIP_*` environment, predict and health
//! routes) and the Open Inference Protocol V2, runs models with tract, and merges concurrent
//! requests into batches. The `platform` binary links this library to run prebuilt-runtime
//! replicas from its own executable.

pub mod batching;
pub mod config;
pub mod fetch_policy;
pub mod metrics;
pub mod model;
pub mod onnx_ml;
pub mod protocol;
pub mod server;
pub mod source;

pub use config::RuntimeConfig;
pub use server::{serve, shutdown_signal};

/// Installs the `tracing` subscriber used by the runtime's binaries: human-readable logs on
/// stderr, or JSON lines with `PLATFORM_LOG_FORMAT=json`; level from `RUST_LOG` (default info).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("PLATFORM_LOG_FORMAT").is_ok_and(|v| v == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
