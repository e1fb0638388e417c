//! `platform`: the control plane. `platform runtime` runs the prebuilt ONNX runtime from this
//! same executable, so that the local backend needs no second binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control_plane::manifests::install;

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
        /// Print what removes the installation instead: the `kubectl` commands, in order.
        #[arg(long, conflicts_with = "kustomize")]
        uninstall: bool,
        /// Write the installation as a kustomize base into this directory instead of printing it.
        #[arg(long, value_name = "DIR")]
        kustomize: Option<PathBuf>,
    },
    /// Tell what the cluster of the current kubeconfig context still lacks before models can be
    /// deployed: the namespace and Secrets, the platform's RBAC, cert-manager and its issuer, an
    /// ingress class, the metrics API. Exits 1 when something is missing.
    Check {
        /// The values the platform was installed with.
        #[arg(long)]
        values: Option<PathBuf>,
    },
}

/// Install values from `--values FILE`, or the defaults.
fn read_values(path: Option<&std::path::Path>) -> anyhow::Result<install::Values> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    Ok(install::Values::from_yaml(&text)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime::init_logging();
    match cli.command {
        Command::Serve(config) => control_plane::serve::run(*config).await,
        Command::Runtime(config) => runtime::serve(*config, runtime::shutdown_signal()).await,
        Command::InstallManifests { values, uninstall, kustomize } => {
            let values = read_values(values.as_deref())?;
            let installation = install::install(&values);
            if uninstall {
                print!("{}", install::uninstall::script(&values, &installation));
            } else if let Some(dir) = kustomize {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                for (file, text) in install::kustomize::base(&installation)? {
                    let path = dir.join(file);
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                }
            } else {
                print!("{}", installation.to_yaml()?);
            }
            Ok(())
        }
        Command::Check { values } => {
            let values = read_values(values.as_deref())?;
            let findings = control_plane::backend::kubernetes::check::run(&values).await?;
            for finding in &findings {
                println!("{finding}");
            }
            let missing = findings.iter().filter(|f| !f.ok).count();
            if missing > 0 {
                println!(
                    "\n{missing} thing(s) missing: models cannot be deployed reliably until they are fixed."
                );
                std::process::exit(1);
            }
            println!("\nEverything the platform needs is there.");
            Ok(())
        }
    }
}
