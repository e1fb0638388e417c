//! `manifests get | apply | revisions | rollback`: the Kubernetes manifests behind a deployed
//! model, read as YAML, edited, applied (after a dry run that shows the diff) and rolled back.

use clap::{Args, Subcommand};

use super::endpoints::{deployed_model_id, endpoint_path};
use super::read_input;
use crate::client::Client;
use crate::output::{self, Format};
use crate::{CliError, Context};

#[derive(Debug, Subcommand)]
pub enum ManifestsCommand {
    /// Print the manifests as multi-document YAML: one deployed model's (the ones to edit), or,
    /// without --deployed-model-id, every deployed model's and the endpoint's own objects.
    #[command(after_help = "\
Example:
  platform-cli manifests get mlp --deployed-model-id 1234567890 > mlp.yaml
  platform-cli manifests get mlp --format json")]
    Get(GetArgs),
    /// Apply edited manifests: first a dry run that shows the diff and warnings, then (without
    /// --dry-run) the edit, stored as a new revision. Problems are listed with their paths.
    #[command(after_help = "\
Example:
  platform-cli manifests get mlp --deployed-model-id 1234567890 > mlp.yaml
  $EDITOR mlp.yaml
  platform-cli manifests apply -f mlp.yaml mlp --deployed-model-id 1234567890 --dry-run
  platform-cli manifests apply -f mlp.yaml mlp --deployed-model-id 1234567890")]
    Apply(ApplyArgs),
    /// List a deployed model's revisions, oldest first: rendered by the platform, edited, or
    /// rolled back.
    #[command(after_help = "Example:\n  platform-cli manifests revisions mlp --deployed-model-id 1234567890")]
    Revisions(DeployedModelArgs),
    /// Make an earlier revision's manifests current again, as a new revision.
    #[command(after_help = "\
Example:
  platform-cli manifests rollback mlp --deployed-model-id 1234567890 --revision 1")]
    Rollback(RollbackArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// The deployed model whose manifests to print (without it: all of the endpoint's).
    #[arg(long, value_parser = deployed_model_id)]
    pub deployed_model_id: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeployedModelArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// The deployed model (may be left out when the endpoint has exactly one).
    #[arg(long, value_parser = deployed_model_id)]
    pub deployed_model_id: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The edited multi-document YAML, or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    #[command(flatten)]
    pub target: DeployedModelArgs,
    /// Only validate and show the diff and warnings; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: DeployedModelArgs,
    /// The revision whose manifests to bring back (see `manifests revisions`).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub revision: i64,
}

/// The deployed model an endpoint has when it has exactly one. Pure.
pub fn only_deployed_model(endpoint: &api::Endpoint, reference: &str) -> Result<String, CliError> {
    match endpoint.deployed_models.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CliError::Input(format!("endpoint `{reference}` has no deployed models"))),
        many => {
            let ids: Vec<&str> = many.iter().map(|d| d.id.as_str()).collect();
            Err(CliError::Input(format!(
                "endpoint `{reference}` has {} deployed models ({}): pass --deployed-model-id",
                many.len(),
                ids.join(", ")
            )))
        }
    }
}

/// `v1/.../endpoints/{e}/deployedModels/{d}`, looking the deployed model up when it is left out.
async fn deployed_model_path(client: &Client, target: &DeployedModelArgs) -> Result<String, CliError> {
    let endpoint = endpoint_path(&target.endpoint, &client.parent)?;
    let id = match &target.deployed_model_id {
        Some(id) => id.clone(),
        None => {
            let found: api::Endpoint = client.get(&endpoint, &[]).await?;
            only_deployed_model(&found, &target.endpoint)?
        }
    };
    Ok(format!("{endpoint}/deployedModels/{id}"))
}

/// What `apply` prints for people: the diff, the warnings and what became of the edit. Pure.
pub fn apply_summary(
    dry_run: &api::ApplyManifestsResponse,
    applied: Option<&api::ApplyManifestsResponse>,
) -> String {
    let mut out = String::new();
    if dry_run.diff.trim().is_empty() {
        out.push_str("The manifests are the same as the current revision's.\n");
    } else {
        out.push_str(&dry_run.diff);
        if !dry_run.diff.ends_with('\n') {
            out.push('\n');
        }
    }
    for warning in &dry_run.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    match applied {
        None => out.push_str("Dry run: nothing was changed.\n"),
        Some(api::ApplyManifestsResponse { revision: Some(r), .. }) => {
            out.push_str(&format!("Applied as revision {}.\n", r.revision))
        }
        Some(_) => out.push_str("No change: nothing was applied.\n"),
    }
    out
}

pub async fn run(ctx: &Context, command: ManifestsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match command {
        ManifestsCommand::Get(args) => {
            let endpoint = endpoint_path(&args.endpoint, &client.parent)?;
            let path = match &args.deployed_model_id {
                Some(id) => format!("{endpoint}/deployedModels/{id}/manifests"),
                None => format!("{endpoint}/manifests"),
            };
            match ctx.format {
                Format::Json => {
                    let text = client.get_text(&path, "application/json").await?;
                    let docs: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        CliError::Input(format!("the server's manifests are not the JSON expected: {e}"))
                    })?;
                    ctx.print(&output::serialize(Format::Json, &docs)?)
                }
                Format::Table | Format::Yaml => ctx.print(&client.get_text(&path, "application/yaml").await?),
            }
        }
        ManifestsCommand::Apply(args) => {
            let body = read_input("-f", &args.file)?;
            let path = format!("{}/manifests", deployed_model_path(&client, &args.target).await?);
            let dry: api::ApplyManifestsResponse = client
                .put_body(&path, &[("dryRun", "true".to_string())], "application/yaml", body.clone())
                .await?;
            let applied: Option<api::ApplyManifestsResponse> = if args.dry_run {
                None
            } else {
                Some(client.put_body(&path, &[], "application/yaml", body).await?)
            };
            match ctx.format {
                Format::Table => ctx.print(&apply_summary(&dry, applied.as_ref())),
                format => ctx.print(&output::serialize(format, applied.as_ref().unwrap_or(&dry))?),
            }
        }
        ManifestsCommand::Revisions(target) => {
            let path = format!("{}/revisions", deployed_model_path(&client, &target).await?);
            let list: api::ListRevisionsResponse = client.get(&path, &[]).await?;
            ctx.print(&output::render(ctx.format, &list.revisions, |r| output::revisions(r))?)
        }
        ManifestsCommand::Rollback(args) => {
            let path = format!(
                "{}/revisions/{}:rollback",
                deployed_model_path(&client, &args.target).await?,
                args.revision
            );
            let created: api::Revision = client.post(&path, &serde_json::json!({})).await?;
            match ctx.format {
                Format::Table => ctx.print(&format!(
                    "Rolled back to revision {}'s manifests as revision {}.\n",
                    args.revision, created.revision
                )),
                format => ctx.print(&output::serialize(format, &created)?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn command(args: &[&str]) -> Result<ManifestsCommand, clap::Error> {
        let cli = crate::Cli::try_parse_from(["platform-cli", "manifests"].iter().chain(args))?;
        match cli.command {
            crate::Command::Manifests(c) => Ok(c),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn apply_takes_a_file_an_endpoint_and_maybe_a_deployed_model() {
        match command(&["apply", "-f", "mlp.yaml", "ep", "--deployed-model-id", "12", "--dry-run"]).unwrap() {
            ManifestsCommand::Apply(a) => {
                assert_eq!(a.file, "mlp.yaml");
                assert_eq!(a.target.endpoint, "ep");
                assert_eq!(a.target.deployed_model_id.as_deref(), Some("12"));
                assert!(a.dry_run);
            }
            other => panic!("{other:?}"),
        }
        match command(&["apply", "--filename=-", "ep"]).unwrap() {
            ManifestsCommand::Apply(a) => {
                assert_eq!((a.file.as_str(), a.target.deployed_model_id), ("-", None))
            }
            other => panic!("{other:?}"),
        }
        assert!(command(&["apply", "ep"]).is_err(), "-f is required");
        assert!(command(&["apply", "-f", "x", "ep", "--deployed-model-id", "abc"]).is_err());
    }

    #[test]
    fn rollback_needs_a_positive_revision() {
        assert!(command(&["rollback", "ep", "--revision", "0"]).is_err());
        assert!(command(&["rollback", "ep"]).is_err());
        match command(&["rollback", "ep", "--revision", "3"]).unwrap() {
            ManifestsCommand::Rollback(a) => assert_eq!(a.revision, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_deployed_model_may_be_left_out_only_when_there_is_one() {
        let dm = |id: &str| api::DeployedModel { id: id.into(), ..Default::default() };
        let one = api::Endpoint { deployed_models: vec![dm("11")], ..Default::default() };
        assert_eq!(only_deployed_model(&one, "ep").unwrap(), "11");
        let none = api::Endpoint::default();
        assert!(only_deployed_model(&none, "ep").unwrap_err().to_string().contains("no deployed models"));
        let two = api::Endpoint { deployed_models: vec![dm("11"), dm("22")], ..Default::default() };
        let e = only_deployed_model(&two, "ep").unwrap_err().to_string();
        assert!(e.contains("2 deployed models (11, 22): pass --deployed-model-id"), "{e}");
    }

    #[test]
    fn apply_shows_the_diff_the_warnings_and_the_outcome() {
        let dry = api::ApplyManifestsResponse {
            diff: "-a: 1\n+a: 2".into(),
            warnings: vec!["the local backend ignores PodDisruptionBudgets".into()],
            dry_run: true,
            ..Default::default()
        };
        let text = apply_summary(&dry, None);
        assert_eq!(
            text,
            "-a: 1\n+a: 2\nwarning: the local backend ignores PodDisruptionBudgets\nDry run: nothing was changed.\n"
        );
        let applied = api::ApplyManifestsResponse {
            revision: Some(api::Revision { revision: 2, ..Default::default() }),
            ..dry.clone()
        };
        assert!(apply_summary(&dry, Some(&applied)).ends_with("Applied as revision 2.\n"));
        let same = api::ApplyManifestsResponse::default();
        let text = apply_summary(&same, Some(&same));
        assert!(
            text.starts_with("The manifests are the same")
                && text.ends_with("No change: nothing was applied.\n")
        );
    }
}
