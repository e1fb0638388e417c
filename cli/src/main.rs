//! `platform-cli`: the command-line client of the platform (gcloud-like verbs).

use clap::Parser;

/// The command-line client of the platform. Commands arrive with the control plane's API.
#[derive(Parser)]
#[command(name = "platform-cli", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
