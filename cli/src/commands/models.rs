//! `models import | list | describe | list-versions | delete | delete-version | set-aliases`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ListArgs, WaitArgs, describe, done, finish, list_all, response};
use crate::flags::{self, FlagError};
use crate::output;
use crate::{CliError, Context};

pub(crate) fn list(s: &str) -> Result<Vec<String>, String> {
    Ok(flags::split_list(s))
}
pub(crate) fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    flags::labels(s).map_err(|e| e.message)
}
fn env_vars(s: &str) -> Result<Vec<api::EnvVar>, String> {
    flags::env_vars(s).map_err(|e| e.message)
}
fn ports(s: &str) -> Result<Vec<api::Port>, String> {
    flags::ports(s).map_err(|e| e.message)
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Register a model: an ONNX file served by the prebuilt runtime, or your own container.
    /// Prints the model id and version.
    #[command(
        visible_alias = "upload",
        after_help = "\
Example:
  platform-cli models import --display-name mlp --model-id mlp --artifact tests/models/mlp.onnx
  platform-cli models import --display-name mlp --parent-model mlp --artifact mlp-v2.onnx --version-aliases candidate
  platform-cli models import --display-name my-server --container-image-uri registry/server:1.0 \\
      --container-command python,serve.py --container-env-vars MODEL=iris,WORKERS=2 \\
      --container-ports 8080 --container-predict-route /predict --container-health-route /health"
    )]
    Import(Box<ImportArgs>),
    /// List models (their default versions).
    #[command(
        after_help = "Example:\n  platform-cli models list --filter labels.team=ml --sort-by \"create_time desc\""
    )]
    List(ListArgs),
    /// Show a model version in full: MODEL, MODEL@VERSION or MODEL@ALIAS.
    #[command(after_help = "Example:\n  platform-cli models describe mlp@golden")]
    Describe {
        /// MODEL[@VERSION|@ALIAS], an id or a full resource name.
        model: String,
    },
    /// List the versions of a model.
    #[command(after_help = "Example:\n  platform-cli models list-versions mlp")]
    ListVersions {
        /// The model: its id or full name.
        model: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete a model with all its versions (none may be deployed).
    #[command(after_help = "Example:\n  platform-cli models delete mlp")]
    Delete {
        /// The model: its id or full name.
        model: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete one version of a model: MODEL@VERSION.
    #[command(after_help = "Example:\n  platform-cli models delete-version mlp@2")]
    DeleteVersion {
        /// MODEL@VERSION
        model_version: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Add aliases to a version or remove them; an alias moves from the version that held it.
    #[command(
        after_help = "Example:\n  platform-cli models set-aliases mlp@2 --add-aliases golden --remove-aliases candidate"
    )]
    SetAliases {
        /// MODEL@VERSION
        model_version: String,
        /// Aliases to give this version, comma-separated.
        #[arg(long, value_parser = list)]
        add_aliases: Option<::std::vec::Vec<String>>,
        /// Aliases to take from this version, comma-separated.
        #[arg(long, value_parser = list)]
        remove_aliases: Option<::std::vec::Vec<String>>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The model's name for people (required, at most 128 characters).
    #[arg(long)]
    pub display_name: String,
    /// A local model file to upload (streamed; an ONNX file for the prebuilt runtime).
    #[arg(long, conflicts_with = "artifact_uri")]
    pub artifact: Option<PathBuf>,
    /// Where the model's files already are (s3://, https://, or an uploaded artifact's URI).
    #[arg(long)]
    pub artifact_uri: Option<String>,
    /// Serve with your own image instead of the prebuilt ONNX runtime.
    #[arg(long)]
    pub container_image_uri: Option<String>,
    /// The container's entrypoint, comma-separated.
    #[arg(long, value_parser = list, requires = "container_image_uri")]
    pub container_command: Option<::std::vec::Vec<String>>,
    /// The container's arguments, comma-separated (`^:^a,b:c` splits on `:`).
    #[arg(long, value_parser = list, requires = "container_image_uri")]
    pub container_args: Option<::std::vec::Vec<String>>,
    /// Environment variables: NAME=VALUE,NAME2=VALUE2.
    #[arg(long, value_parser = env_vars, requires = "container_image_uri")]
    pub container_env_vars: Option<::std::vec::Vec<api::EnvVar>>,
    /// The port the container listens on (default 8080).
    #[arg(long, value_parser = ports, requires = "container_image_uri")]
    pub container_ports: Option<::std::vec::Vec<api::Port>>,
    /// The HTTP path of predictions in the container.
    #[arg(long, requires = "container_image_uri")]
    pub container_predict_route: Option<String>,
    /// The HTTP path of the container's health check.
    #[arg(long, requires = "container_image_uri")]
    pub container_health_route: Option<String>,
    /// Run --container-command as a sandboxed process on the platform's machine instead of the
    /// image in a container engine (admins only, on a platform started with
    /// --allow-host-processes).
    #[arg(long, requires = "container_command")]
    pub container_host_process: bool,
    /// Upload a new version of this model (an id or a full name) instead of a new model.
    #[arg(long, conflicts_with = "model_id")]
    pub parent_model: Option<String>,
    /// The new model's id (default: a generated number).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Aliases of the new version, comma-separated.
    #[arg(long, value_parser = list)]
    pub version_aliases: Option<::std::vec::Vec<String>>,
    /// Labels: key=value,key2=value2.
    #[arg(long, value_parser = labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// A description of the model.
    #[arg(long)]
    pub description: Option<String>,
    /// A description of this version.
    #[arg(long)]
    pub version_description: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The `models:upload` request of `models import`, once any local artifact is uploaded. Pure.
pub fn upload_request(
    args: &ImportArgs,
    parent: &api::LocationName,
    artifact_uri: Option<String>,
) -> Result<api::UploadModelRequest, CliError> {
    let artifact_uri = artifact_uri.or_else(|| args.artifact_uri.clone()).unwrap_or_default();
    if artifact_uri.is_empty() && args.container_image_uri.is_none() {
        return Err(FlagError {
            flag: "artifact",
            message: "give --artifact PATH or --artifact-uri URI for the prebuilt ONNX runtime, \
                      or --container-image-uri for your own server"
                .into(),
        }
        .into());
    }
    let container_spec = args.container_image_uri.as_ref().map(|image| api::ModelContainerSpec {
        image_uri: image.clone(),
        command: args.container_command.clone().unwrap_or_default(),
        args: args.container_args.clone().unwrap_or_default(),
        env: args.container_env_vars.clone().unwrap_or_default(),
        ports: args.container_ports.clone().unwrap_or_default(),
        predict_route: args.container_predict_route.clone().unwrap_or_default(),
        health_route: args.container_health_route.clone().unwrap_or_default(),
        host_process: args.container_host_process,
        ..Default::default()
    });
    let aliases = args.version_aliases.clone().unwrap_or_default();
    for alias in &aliases {
        api::check_alias(alias).map_err(|e| FlagError { flag: "version-aliases", message: e.0 })?;
    }
    if let Some(id) = &args.model_id {
        api::check_new_model_id(id).map_err(|e| FlagError { flag: "model-id", message: e.0 })?;
    }
    let parent_model = match &args.parent_model {
        Some(reference) => {
            let (name, version) = api::parse_model_ref(reference, parent)?;
            if version.is_some() {
                return Err(FlagError {
                    flag: "parent-model",
                    message: format!("`{reference}` names a version: give the model alone"),
                }
                .into());
            }
            Some(name.to_string())
        }
        None => None,
    };
    Ok(api::UploadModelRequest {
        parent_model,
        model_id: args.model_id.clone(),
        model: api::Model {
            display_name: args.display_name.clone(),
            description: args.description.clone().unwrap_or_default(),
            version_description: args.version_description.clone().unwrap_or_default(),
            version_aliases: aliases,
            container_spec,
            artifact_uri,
            labels: args.labels.clone().unwrap_or_default(),
            ..Default::default()
        },
        service_account: None,
    })
}

/// `v1/projects/p/locations/l/models/iris[@v]` of a model reference, version kept. Pure.
pub fn model_path(reference: &str, parent: &api::LocationName) -> Result<String, CliError> {
    let (name, version) = api::parse_model_ref(reference, parent)?;
    Ok(match version {
        Some(v) => format!("v1/{name}@{v}"),
        None => format!("v1/{name}"),
    })
}

/// Like `model_path`, for commands about one version: the version is required.
pub fn version_path(reference: &str, parent: &api::LocationName) -> Result<String, CliError> {
    match api::parse_model_ref(reference, parent)? {
        (name, Some(v)) => Ok(format!("v1/{name}@{v}")),
        (_, None) => Err(CliError::Input(format!("`{reference}` names no version: use MODEL@VERSION"))),
    }
}

pub async fn run(ctx: &Context, command: ModelsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    let parent = &client.parent;
    match command {
        ModelsCommand::Import(args) => {
            // Flags are checked before a possibly long upload.
            upload_request(&args, parent, args.artifact.as_ref().map(|_| "pending".to_string()))?;
            let uploaded = match &args.artifact {
                Some(file) => Some(client.upload_artifact(file).await?.artifact_uri),
                None => None,
            };
            let req = upload_request(&args, parent, uploaded)?;
            let op: api::Operation = client.post(&client.path("models:upload"), &req).await?;
            if let Some(op) = finish(ctx, &client, op, &args.wait).await? {
                let uploaded: api::UploadModelResponse = response(&op)?;
                ctx.print(&output::render(ctx.format, &uploaded, output::uploaded)?)?;
            }
            Ok(())
        }
        ModelsCommand::List(list) => {
            let models = list_all(&client, &client.path("models"), &list, |r: api::ListModelsResponse| {
                (r.models, r.next_page_token)
            })
            .await?;
            ctx.print(&output::render(ctx.format, &models, |m| output::models(m))?)
        }
        ModelsCommand::Describe { model } => {
            let found: api::Model = client.get(&model_path(&model, parent)?, &[]).await?;
            describe(ctx, &found)
        }
        ModelsCommand::ListVersions { model, list } => {
            let (name, _) = api::parse_model_ref(&model, parent)?;
            let path = format!("v1/{name}:listVersions");
            let versions =
                list_all(&client, &path, &list, |r: api::ListModelsResponse| (r.models, r.next_page_token))
                    .await?;
            ctx.print(&output::render(ctx.format, &versions, |m| output::model_versions(m))?)
        }
        ModelsCommand::Delete { model, wait } => {
            let (name, version) = api::parse_model_ref(&model, parent)?;
            if version.is_some() {
                return Err(CliError::Input(format!(
                    "`{model}` names a version: use `models delete-version {model}`"
                )));
            }
            let op: api::Operation = client.delete(&format!("v1/{name}")).await?;
            if let Some(op) = finish(ctx, &client, op, &wait).await? {
                done(ctx, &op, &format!("Deleted model {name}."))?;
            }
            Ok(())
        }
        ModelsCommand::DeleteVersion { model_version, wait } => {
            let path = version_path(&model_version, parent)?;
            let op: api::Operation = client.delete(&format!("{path}:deleteVersion")).await?;
            if let Some(op) = finish(ctx, &client, op, &wait).await? {
                done(ctx, &op, &format!("Deleted version {}.", path.trim_start_matches("v1/")))?;
            }
            Ok(())
        }
        ModelsCommand::SetAliases { model_version, add_aliases, remove_aliases } => {
            let path = version_path(&model_version, parent)?;
            let aliases =
                flags::merge_aliases(&add_aliases.unwrap_or_default(), &remove_aliases.unwrap_or_default())?;
            let req = api::MergeVersionAliasesRequest { version_aliases: aliases };
            let model: api::Model = client.post(&format!("{path}:mergeVersionAliases"), &req).await?;
            ctx.print(&output::render(ctx.format, &model, |m| {
                output::model_versions(std::slice::from_ref(m))
            })?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parent() -> api::LocationName {
        api::LocationName::new("default", "local").unwrap()
    }

    fn import(args: &[&str]) -> Result<ImportArgs, clap::Error> {
        let cli = crate::Cli::try_parse_from(["platform-cli", "models", "import"].iter().chain(args))?;
        match cli.command {
            crate::Command::Models(ModelsCommand::Import(a)) => Ok(*a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn an_onnx_file_is_served_by_the_prebuilt_runtime() {
        let args = import(&["--display-name", "mlp", "--model-id", "mlp", "--artifact", "mlp.onnx"]).unwrap();
        let req = upload_request(&args, &parent(), Some("artifacts/abc".into())).unwrap();
        assert_eq!(req.model_id.as_deref(), Some("mlp"));
        assert_eq!(req.model.artifact_uri, "artifacts/abc");
        assert_eq!(req.model.container_spec, None, "no container: the prebuilt runtime");
    }

    #[test]
    fn container_flags_build_the_container_spec() {
        let args = import(&[
            "--display-name=srv",
            "--container-image-uri=registry/server:1.0",
            "--container-command=python,serve.py",
            "--container-args=^:^--a=1,2:--b",
            "--container-env-vars=A=1,B=2",
            "--container-ports=9000",
            "--container-predict-route=/predict",
            "--container-health-route=/health",
            "--container-host-process",
            "--labels=team=ml",
            "--version-aliases=candidate,staging",
            "--parent-model=srv",
        ])
        .unwrap();
        let req = upload_request(&args, &parent(), None).unwrap();
        let spec = req.model.container_spec.as_ref().unwrap();
        assert_eq!(spec.image_uri, "registry/server:1.0");
        assert_eq!(spec.command, ["python", "serve.py"]);
        assert_eq!(spec.args, ["--a=1,2", "--b"]);
        assert_eq!(spec.env[1], api::EnvVar { name: "B".into(), value: "2".into() });
        assert_eq!(spec.ports, [api::Port { container_port: 9000 }]);
        assert_eq!(spec.predict_route, "/predict");
        assert!(spec.host_process);
        assert_eq!(req.model.labels["team"], "ml");
        assert_eq!(req.model.version_aliases, ["candidate", "staging"]);
        assert_eq!(req.parent_model.as_deref(), Some("projects/default/locations/local/models/srv"));
    }

    #[test]
    fn bad_import_flags_are_refused_before_anything_is_sent() {
        let no_source = import(&["--display-name", "x"]).unwrap();
        assert!(
            upload_request(&no_source, &parent(), None)
                .unwrap_err()
                .to_string()
                .starts_with("--artifact: give")
        );
        let env_without_image =
            import(&["--display-name=x", "--artifact-uri=s3://b/m", "--container-env-vars=A=1"]);
        assert!(env_without_image.unwrap_err().to_string().contains("--container-image-uri"));
        let bad_env = import(&["--display-name=x", "--container-image-uri=i", "--container-env-vars=A"]);
        assert!(bad_env.unwrap_err().to_string().contains("`A` is not KEY=VALUE"));
        assert!(import(&["--display-name=x", "--artifact=a", "--artifact-uri=b"]).is_err());
        assert!(import(&["--display-name=x", "--model-id=a", "--parent-model=b"]).is_err());
        let bad_id = import(&["--display-name=x", "--artifact-uri=u", "--model-id=2fast"]).unwrap();
        assert!(
            upload_request(&bad_id, &parent(), None).unwrap_err().to_string().contains("modelId `2fast`")
        );
        let bad_alias = import(&["--display-name=x", "--artifact-uri=u", "--version-aliases=1"]).unwrap();
        assert!(upload_request(&bad_alias, &parent(), None).is_err());
        let versioned_parent =
            import(&["--display-name=x", "--artifact-uri=u", "--parent-model=m@2"]).unwrap();
        assert!(
            upload_request(&versioned_parent, &parent(), None)
                .unwrap_err()
                .to_string()
                .contains("names a version")
        );
    }

    #[test]
    fn model_references_become_paths() {
        assert_eq!(model_path("mlp", &parent()).unwrap(), "v1/projects/default/locations/local/models/mlp");
        assert_eq!(
            model_path("mlp@golden", &parent()).unwrap(),
            "v1/projects/default/locations/local/models/mlp@golden"
        );
        assert_eq!(
            model_path("projects/p/locations/eu/models/mlp@2", &parent()).unwrap(),
            "v1/projects/p/locations/eu/models/mlp@2"
        );
        assert!(model_path("../etc", &parent()).is_err());
        assert!(version_path("mlp", &parent()).unwrap_err().to_string().contains("MODEL@VERSION"));
        assert_eq!(
            version_path("mlp@3", &parent()).unwrap(),
            "v1/projects/default/locations/local/models/mlp@3"
        );
    }
}
