//! `auth login | print-token | logout`.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};

use crate::client::{Client, ca_certificate, server_base};
use crate::{CliError, Context};

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Get an API token with a username and password (or save a given --token), and save the
    /// server, token, project, location and CA certificate for later commands.
    #[command(after_help = "\
Example:
  platform-cli auth login --server https://localhost:8443 --ca-cert platform-data/tls/ca.pem
  echo \"$PASSWORD\" | platform-cli auth login --server https://localhost:8443 --username admin --password-stdin
  platform-cli auth login --server https://localhost:8443 --token \"$(cat platform-data/admin-token)\"")]
    Login(LoginArgs),
    /// Print the token in use, for `curl -H \"Authorization: Bearer $(platform-cli auth print-token)\"`.
    #[command(after_help = "\
Example:
  curl --cacert ca.pem -H \"Authorization: Bearer $(platform-cli auth print-token)\" https://localhost:8443/v1/auth/tokens")]
    PrintToken,
    /// Revoke the saved token (when `auth login` made it) and forget it.
    #[command(after_help = "Example:\n  platform-cli auth logout")]
    Logout,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The username; asked for when not given.
    #[arg(long, env = "PLATFORM_USERNAME")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
    /// What the token is for, shown when tokens are listed.
    #[arg(long, default_value = "platform-cli")]
    pub description: String,
}

pub async fn run(ctx: Context, command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Login(args) => login(ctx, args).await,
        AuthCommand::PrintToken => {
            let token = ctx.settings.token.clone().ok_or(crate::client::ClientError::NoToken)?;
            ctx.print(&format!("{token}\n"))
        }
        AuthCommand::Logout => logout(ctx).await,
    }
}

async fn login(mut ctx: Context, args: LoginArgs) -> Result<(), CliError> {
    let server = ctx.settings.server.clone().ok_or(crate::client::ClientError::NoServer)?;
    let server = server_base(&server)?;
    let pem = match &ctx.global.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|source| CliError::Io { what: format!("--ca-cert {}", path.display()), source })?;
            ca_certificate(&path.display().to_string(), &pem)?;
            Some(pem)
        }
        None => None,
    };
    let given_token = ctx.global.token.clone();
    let (token, token_id, who) = match given_token {
        Some(token) => {
            // Check the token before saving it: listing the caller's tokens needs any valid one.
            let settings = crate::client::Settings { token: Some(token.clone()), ..ctx.settings.clone() };
            let client = Client::new(&settings, true)?;
            let _: api::ListTokensResponse = client.get("v1/auth/tokens", &[]).await?;
            (token, None, None)
        }
        None => {
            let username = match args.username {
                Some(u) => u,
                None => prompt("Username: ")?,
            };
            let password = if args.password_stdin {
                first_line_of_stdin()?
            } else {
                rpassword::prompt_password("Password: ")
                    .map_err(|source| CliError::Io { what: "cannot read the password".into(), source })?
            };
            let settings = crate::client::Settings { token: None, ..ctx.settings.clone() };
            let client = Client::new(&settings, false)?;
            let req = api::TokenRequest {
                username: username.clone(),
                password,
                project: ctx.global.project.clone(),
                description: args.description,
            };
            let issued: api::TokenResponse = client.post("v1/auth/token", &req).await?;
            (issued.token, Some(issued.token_id), Some((username, issued.expire_time)))
        }
    };

    let config = &mut ctx.config;
    config.server = Some(server.clone());
    config.token = Some(token);
    config.token_id = token_id;
    if let Some(project) = &ctx.global.project {
        config.project = Some(project.clone());
    }
    if let Some(location) = &ctx.global.location {
        config.location = Some(location.clone());
    }
    if let Some(pem) = pem {
        config.keep_ca_cert(&ctx.config_path, &pem)?;
    }
    config.save(&ctx.config_path)?;
    let message = match who {
        Some((user, expires)) => {
            format!("Logged in to {server} as {user}; the token expires at {expires}.\n")
        }
        None => format!("Logged in to {server} with the given token.\n"),
    };
    ctx.print(&format!("{message}Saved to {}\n", ctx.config_path.display()))
}

async fn logout(mut ctx: Context) -> Result<(), CliError> {
    if ctx.config.token.is_none() {
        return ctx.print("Not logged in.\n");
    }
    if let Some(id) = ctx.config.token_id.clone() {
        // Revoking is a courtesy: a server that is gone must not keep the user logged in.
        let settings = crate::client::Settings { token: ctx.config.token.clone(), ..ctx.settings.clone() };
        let revoked = match Client::new(&settings, true) {
            Ok(client) => {
                client.delete::<serde_json::Value>(&format!("v1/auth/tokens/{id}")).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = revoked {
            eprintln!("warning: the token was not revoked on the server: {e}");
        }
    }
    ctx.config.token = None;
    ctx.config.token_id = None;
    ctx.config.save(&ctx.config_path)?;
    ctx.print("Logged out.\n")
}

fn prompt(question: &str) -> Result<String, CliError> {
    let io = |source| CliError::Io { what: "cannot read the username".into(), source };
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Input("give --username (stdin is not a terminal to ask on)".into()));
    }
    eprint!("{question}");
    std::io::stderr().flush().map_err(io)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(io)?;
    let answer = line.trim().to_string();
    if answer.is_empty() { Err(CliError::Input("no username given".into())) } else { Ok(answer) }
}

fn first_line_of_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| CliError::Io { what: "cannot read the password from stdin".into(), source })?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(CliError::Input("--password-stdin: stdin has no password".into()));
    }
    Ok(password)
}
