//! `platform-runtime`: serves one ONNX model over HTTP (Vertex predict and Open Inference
//! Protocol V2). See `platform-runtime --help`.

use clap::Parser;

/// Serves one ONNX model: Vertex AI predict (`POST $AIP_PREDICT_ROUTE`), health
/// (`GET $AIP_HEALTH_ROUTE`), the Open Inference Protocol V2 (`/v2/...`) and Prometheus
/// metrics (`/metrics`). Every flag can also be set by the environment variable shown.
#[derive(Parser)]
#[command(name = "platform-runtime", version)]
struct Cli {
    #[command(flatten)]
    runtime: runtime::RuntimeConfig,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    runtime::init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("platform-runtime: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::serve(cli.runtime, runtime::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("platform-runtime: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
