//! `platform`: the control plane. `platform runtime` runs the prebuilt ONNX runtime from this
//! same executable, so that the local backend needs no second binary.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "platform", version, about = "Self-hosted model serving platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: REST API, controller and gateway, over HTTPS.
    Serve(control_plane::config::ServeConfig),
    /// Serve one ONNX model with the prebuilt runtime (what `platform-runtime` does).
    Runtime(runtime::RuntimeConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime::init_logging();
    match cli.command {
        Command::Serve(config) => control_plane::serve::run(config).await,
        Command::Runtime(config) => runtime::serve(config, runtime::shutdown_signal()).await,
    }
}
