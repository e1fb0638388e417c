//! The commands, one module per group, each with its flags, its pure request builders and its
//! calls.

pub mod auth;
pub mod endpoints;
pub mod manifests;
pub mod models;
pub mod operations;

use std::io::Read;

use clap::Args;
use serde::Serialize;

use crate::client::Client;
use crate::output::{self, Format};
use crate::{CliError, Context};

/// `--async` on commands that start a long-running operation.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return as soon as the operation has started, printing it, instead of waiting for it.
    #[arg(long = "async")]
    pub no_wait: bool,
}

/// Filtering, ordering and paging of `list` commands.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// A filter such as `display_name=iris` or `labels.team=ml`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Fields to order by, such as `create_time desc`.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// How many to ask for per request.
    #[arg(long)]
    pub page_size: Option<u32>,
    /// At most this many in all.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl ListArgs {
    fn query(&self, page_token: &str) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(f) = &self.filter {
            q.push(("filter", f.clone()));
        }
        if let Some(o) = &self.sort_by {
            q.push(("orderBy", o.clone()));
        }
        if let Some(n) = self.page_size {
            q.push(("pageSize", n.to_string()));
        }
        if !page_token.is_empty() {
            q.push(("pageToken", page_token.to_string()));
        }
        q
    }
}

/// Fetches every page (up to `--limit`) of a list; `page` takes the items and the next token out
/// of one answer.
async fn list_all<R, T>(
    client: &Client,
    path: &str,
    args: &ListArgs,
    page: impl Fn(R) -> (Vec<T>, String),
) -> Result<Vec<T>, CliError>
where
    R: serde::de::DeserializeOwned,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(client.get::<R>(path, &args.query(&token)).await?);
        all.extend(items);
        if let Some(limit) = args.limit
            && all.len() >= limit
        {
            all.truncate(limit);
            break;
        }
        if next.is_empty() || next == token {
            break;
        }
        token = next;
    }
    Ok(all)
}

/// Waits for `op` unless `--async`; with `--async` prints the operation and returns `None`.
async fn finish(
    ctx: &Context,
    client: &Client,
    op: api::Operation,
    wait: &WaitArgs,
) -> Result<Option<api::Operation>, CliError> {
    if wait.no_wait {
        let text = output::render(ctx.format, &op, |op| output::operations(std::slice::from_ref(op)))?;
        ctx.print(&text)?;
        return Ok(None);
    }
    Ok(Some(client.wait(op).await?))
}

/// The `response` of a finished operation as `T` (its `@type` is left out).
fn response<T: serde::de::DeserializeOwned>(op: &api::Operation) -> Result<T, CliError> {
    let mut value = op.response.clone().unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.remove("@type");
    }
    serde_json::from_value(value).map_err(|e| {
        CliError::Input(format!("operation {} answered with an unexpected response: {e}", op.name))
    })
}

/// Prints a resource in full: YAML for the table format (like `gcloud ... describe`).
fn describe<T: Serialize>(ctx: &Context, value: &T) -> Result<(), CliError> {
    let format = if ctx.format == Format::Table { Format::Yaml } else { ctx.format };
    ctx.print(&output::serialize(format, value)?)
}

/// A one-line confirmation in the table format, or the finished operation for scripts.
fn done(ctx: &Context, op: &api::Operation, message: &str) -> Result<(), CliError> {
    match ctx.format {
        Format::Table => ctx.print(&format!("{message}\n")),
        format => ctx.print(&output::serialize(format, op)?),
    }
}

/// Reads a file, or stdin for `-`.
fn read_input(flag: &str, path: &str) -> Result<Vec<u8>, CliError> {
    let io = |source| CliError::Io { what: format!("{flag} {path}"), source };
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(io)
    }
}
