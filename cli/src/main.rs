//! `platform-cli`: the command-line client of the platform (gcloud-like verbs).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = platform_cli::Cli::parse();
    match platform_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Every error says its causes in its own message.
            eprintln!("error: {}", platform_cli::output::terminal_safe(&e.to_string()));
            std::process::ExitCode::FAILURE
        }
    }
}
