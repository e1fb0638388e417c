//! `operations describe | list | wait | cancel`.

use clap::Subcommand;

use super::{ListArgs, describe, list_all};
use crate::output;
use crate::{CliError, Context};

#[derive(Debug, Subcommand)]
pub enum OperationsCommand {
    /// Show an operation: its progress, and its result or error once done.
    #[command(after_help = "Example:\n  platform-cli operations describe 1234567890")]
    Describe {
        /// The operation: its id or full name.
        operation: String,
    },
    /// List the operations of the project and location.
    #[command(after_help = "Example:\n  platform-cli operations list --filter done=false")]
    List(ListArgs),
    /// Wait for an operation to finish (with a spinner on a terminal); fails if the operation did.
    #[command(after_help = "Example:\n  platform-cli operations wait 1234567890")]
    Wait {
        /// The operation: its id or full name.
        operation: String,
    },
    /// Ask for an operation to be cancelled.
    #[command(after_help = "Example:\n  platform-cli operations cancel 1234567890")]
    Cancel {
        /// The operation: its id or full name.
        operation: String,
    },
}

/// `v1/projects/p/locations/l/operations/ID` of an operation id, or of a full name such as the
/// ones `--async` prints (which may be nested under a resource). Pure.
pub fn operation_path(reference: &str, parent: &api::LocationName) -> Result<String, CliError> {
    let segment_ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_@".contains(c));
    let parts: Vec<&str> = reference.split('/').collect();
    let is_name = parts.len() >= 6
        && parts.len().is_multiple_of(2)
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[parts.len() - 2] == "operations"
        && parts.iter().all(|p| segment_ok(p));
    if is_name {
        Ok(format!("v1/{reference}"))
    } else if parts.len() == 1 && segment_ok(reference) {
        Ok(format!("v1/{parent}/operations/{reference}"))
    } else {
        Err(CliError::Input(format!(
            "`{reference}` is not an operation: use its id or projects/P/locations/L/.../operations/ID"
        )))
    }
}

pub async fn run(ctx: &Context, command: OperationsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    let parent = &client.parent;
    match command {
        OperationsCommand::Describe { operation } => {
            let op: api::Operation = client.get(&operation_path(&operation, parent)?, &[]).await?;
            describe(ctx, &op)
        }
        OperationsCommand::List(list) => {
            let ops =
                list_all(&client, &client.path("operations"), &list, |r: api::ListOperationsResponse| {
                    (r.operations, r.next_page_token)
                })
                .await?;
            ctx.print(&output::render(ctx.format, &ops, |o| output::operations(o))?)
        }
        OperationsCommand::Wait { operation } => {
            let op: api::Operation = client.get(&operation_path(&operation, parent)?, &[]).await?;
            let op = client.wait(op).await?;
            describe(ctx, &op)
        }
        OperationsCommand::Cancel { operation } => {
            let path = operation_path(&operation, parent)?;
            let _: serde_json::Value = client.post(&format!("{path}:cancel"), &serde_json::json!({})).await?;
            ctx.print(&format!("Asked to cancel {}.\n", path.trim_start_matches("v1/")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_id_or_in_full() {
        let parent = api::LocationName::new("default", "local").unwrap();
        assert_eq!(
            operation_path("42", &parent).unwrap(),
            "v1/projects/default/locations/local/operations/42"
        );
        let nested = "projects/p/locations/l/endpoints/ep/operations/7";
        assert_eq!(operation_path(nested, &parent).unwrap(), format!("v1/{nested}"));
        assert!(operation_path("../../auth/tokens", &parent).is_err());
        assert!(operation_path("projects/p/locations/l/models/m", &parent).is_err());
        assert!(operation_path("42?x=1", &parent).is_err());
    }
}
