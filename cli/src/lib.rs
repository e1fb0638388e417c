//! `platform-cli`: the command-line client of the platform, with the verbs and flags of
//! `gcloud ai`. Commands parse their flags into the API's types (pure, in `flags` and in each
//! command's request builder), call the REST API through `client`, and print through `output`.

pub mod client;
pub mod commands;
pub mod config;
pub mod flags;
pub mod output;
pub mod progress;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use client::{Client, ClientError, Settings};
use config::{Config, ConfigError};
use output::{Format, OutputError};

/// Deploy and serve models on the platform from a terminal or a script, with the verbs of
/// `gcloud ai`.
#[derive(Debug, Parser)]
#[command(name = "platform-cli", version, propagate_version = true, after_help = MAIN_EXAMPLE)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

const MAIN_EXAMPLE: &str = "\
Example:
  platform-cli auth login --server https://localhost:8443 --ca-cert platform-data/tls/ca.pem
  platform-cli models import --display-name mlp --artifact tests/models/mlp.onnx
  platform-cli endpoints create --display-name mlp --endpoint-id mlp
  platform-cli endpoints deploy-model mlp --model mlp --machine-type e2-small
  platform-cli endpoints predict mlp --json-request request.json";

/// Flags every command takes; each has a `PLATFORM_*` variable and falls back to the saved
/// configuration.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The platform's URL, such as https://localhost:8443.
    #[arg(long, global = true, env = "PLATFORM_SERVER")]
    pub server: Option<String>,
    /// The project (default `default`).
    #[arg(long, global = true, env = "PLATFORM_PROJECT")]
    pub project: Option<String>,
    /// The location (default `local`).
    #[arg(long = "region", visible_alias = "location", global = true, env = "PLATFORM_LOCATION")]
    pub location: Option<String>,
    /// A PEM file with the CA that signed the server's certificate (`DATA_DIR/tls/ca.pem`).
    #[arg(long, global = true, env = "PLATFORM_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// An API token to use instead of the saved one.
    #[arg(long, global = true, env = "PLATFORM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The configuration file (default: the user's config directory, platform/config.yaml).
    #[arg(long, global = true, env = "PLATFORM_CONFIG")]
    pub config: Option<PathBuf>,
    /// How to print results.
    #[arg(long, global = true, env = "PLATFORM_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in, print the token, log out.
    #[command(subcommand)]
    Auth(commands::auth::AuthCommand),
    /// Upload, list, describe and delete models and their versions.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
    /// Create endpoints, deploy models on them, split traffic and predict.
    #[command(subcommand)]
    Endpoints(commands::endpoints::EndpointsCommand),
    /// Read, edit, apply and roll back the Kubernetes manifests of deployed models.
    #[command(subcommand)]
    Manifests(commands::manifests::ManifestsCommand),
    /// Follow long-running operations.
    #[command(subcommand)]
    Operations(commands::operations::OperationsCommand),
}

/// Everything that can go wrong in a command, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Flag(#[from] flags::FlagError),
    #[error(transparent)]
    Name(#[from] api::NameError),
    #[error("{0}")]
    Input(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// Flags, variables, the saved configuration and defaults, in that order. Pure.
pub fn resolve(global: &Global, config: &Config) -> Settings {
    Settings {
        server: global.server.clone().or_else(|| config.server.clone()),
        token: global.token.clone().or_else(|| config.token.clone()),
        project: global
            .project
            .clone()
            .or_else(|| config.project.clone())
            .unwrap_or_else(|| api::DEFAULT_PROJECT.to_string()),
        location: global
            .location
            .clone()
            .or_else(|| config.location.clone())
            .unwrap_or_else(|| api::DEFAULT_LOCATION.to_string()),
        ca_cert: global.ca_cert.clone().or_else(|| config.ca_cert.clone()),
    }
}

/// What a command runs with: its settings, the output format and the configuration file.
pub struct Context {
    pub settings: Settings,
    pub format: Format,
    pub config_path: PathBuf,
    pub config: Config,
    pub global: Global,
}

impl Context {
    pub fn new(global: Global) -> Result<Context, CliError> {
        let config_path = match &global.config {
            Some(path) => path.clone(),
            None => config::default_path()?,
        };
        let config = Config::load(&config_path)?;
        let settings = resolve(&global, &config);
        Ok(Context { settings, format: global.format, config_path, config, global })
    }

    /// A client with a token.
    pub fn client(&self) -> Result<Client, CliError> {
        Ok(Client::new(&self.settings, true)?)
    }

    /// Prints `text` on stdout, control characters escaped; a closed pipe (`| head`) is not an
    /// error.
    pub fn print(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        match out.write_all(output::terminal_safe(text).as_bytes()).and_then(|_| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(CliError::Io { what: "cannot write to stdout".into(), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Context::new(cli.global)?;
    match cli.command {
        Command::Auth(c) => commands::auth::run(ctx, c).await,
        Command::Models(c) => commands::models::run(&ctx, c).await,
        Command::Endpoints(c) => commands::endpoints::run(&ctx, c).await,
        Command::Manifests(c) => commands::manifests::run(&ctx, c).await,
        Command::Operations(c) => commands::operations::run(&ctx, c).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, String)>) {
            if cmd.get_subcommands().next().is_none() {
                out.push((path.clone(), cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default()));
            }
            for sub in cmd.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut all = Vec::new();
        leaves(&Cli::command(), "platform-cli".into(), &mut all);
        assert!(all.len() > 20, "{all:?}");
        for (path, help) in all {
            let words: Vec<&str> = path.split(' ').collect();
            assert!(help.contains("Example"), "`{path}` has no example");
            assert!(help.contains(&words.join(" ")), "the example of `{path}` does not use it:\n{help}");
        }
    }

    #[test]
    fn flags_win_over_the_saved_configuration_which_wins_over_defaults() {
        let cli = Cli::try_parse_from(["platform-cli", "--project", "team-a", "models", "list"]).unwrap();
        let config = Config {
            server: Some("https://saved:1".into()),
            project: Some("saved-project".into()),
            location: Some("eu".into()),
            ..Config::default()
        };
        let settings = resolve(&cli.global, &config);
        assert_eq!(settings.project, "team-a");
        assert_eq!(settings.location, "eu");
        assert_eq!(settings.server.as_deref(), Some("https://saved:1"));
        let bare = resolve(&cli.global, &Config::default());
        assert_eq!(bare.location, "local");
        assert_eq!(bare.server, None);
    }

    #[test]
    fn global_flags_go_after_the_command_too() {
        let cli =
            Cli::try_parse_from(["platform-cli", "models", "list", "--region", "eu", "--format", "json"])
                .unwrap();
        assert_eq!(cli.global.location.as_deref(), Some("eu"));
        assert_eq!(cli.global.format, Format::Json);
        let cli = Cli::try_parse_from(["platform-cli", "models", "list", "--location", "us"]).unwrap();
        assert_eq!(cli.global.location.as_deref(), Some("us"));
    }
}
