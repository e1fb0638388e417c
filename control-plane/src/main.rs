//! `platform`: the control plane. `platform runtime` runs the prebuilt ONNX runtime from this
//! same executable, so that the local backend needs no second binary.

use std::path::PathBuf;

use anyhow::Context;
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
    Serve(Box<control_plane::config::ServeConfig>),
    /// Serve one ONNX model with the prebuilt runtime (what `platform-runtime` does).
    Runtime(Box<runtime::RuntimeConfig>),
    /// Print the YAML that installs the platform on a Kubernetes cluster
    /// (`platform install-manifests | kubectl apply -f -`).
    InstallManifests {
        /// YAML values: namespace, images, hosts, Secret names, replicas (see docs/kubernetes.md).
        #[arg(long)]
        values: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime::init_logging();
    match cli.command {
        Command::Serve(config) => control_plane::serve::run(*config).await,
        Command::Runtime(config) => runtime::serve(*config, runtime::shutdown_signal()).await,
        Command::InstallManifests { values } => {
            let text = match &values {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => String::new(),
            };
            let values = control_plane::manifests::install::Values::from_yaml(&text)?;
            print!("{}", control_plane::manifests::install::install(&values).to_yaml()?);
            Ok(())
        }
    }
}
