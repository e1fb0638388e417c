//! `endpoints create | list | describe | update | delete | deploy-model | undeploy-model |
//! mutate-deployed-model | predict | raw-predict`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};

use super::models::labels;
use super::{ListArgs, WaitArgs, describe, done, finish, list_all, read_input, response};
use crate::flags::{self, FlagError, inference_timeout};
use crate::output::{self, Format};
use crate::{CliError, Context};

fn accelerator(s: &str) -> Result<(String, i32), String> {
    flags::accelerator(s).map_err(|e| e.message)
}
fn metric_specs(s: &str) -> Result<Vec<api::AutoscalingMetricSpec>, String> {
    flags::autoscaling_metric_specs(s).map_err(|e| e.message)
}
fn traffic_split(s: &str) -> Result<BTreeMap<String, i32>, String> {
    flags::traffic_split(s).map_err(|e| e.message)
}
pub(crate) fn deployed_model_id(s: &str) -> Result<String, String> {
    api::check_deployed_model_id(s).map(|_| s.to_string()).map_err(|e| e.0)
}
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    flags::key_values("http-headers", s).map_err(|e| e.message)
}

/// Who may call an endpoint's `:predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Access {
    /// Callers need a token with the predictor role on the project.
    Authenticated,
    /// Anyone, like Cloud Run's --allow-unauthenticated.
    Public,
    /// Not served on the public listener.
    Private,
}

impl From<Access> for api::Access {
    fn from(a: Access) -> api::Access {
        match a {
            Access::Authenticated => api::Access::Authenticated,
            Access::Public => api::Access::Public,
            Access::Private => api::Access::Private,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Create an endpoint; prints its id.
    #[command(
        after_help = "Example:\n  platform-cli endpoints create --display-name mlp --endpoint-id mlp --labels team=ml"
    )]
    Create(CreateArgs),
    /// List endpoints.
    #[command(after_help = "Example:\n  platform-cli endpoints list --filter display_name=mlp")]
    List(ListArgs),
    /// Show an endpoint in full, with its deployed models and traffic split.
    #[command(after_help = "Example:\n  platform-cli endpoints describe mlp")]
    Describe { endpoint: String },
    /// Change an endpoint's display name, description, labels or traffic split.
    #[command(after_help = "\
Example:
  platform-cli endpoints update mlp --traffic-split 1234567890=90,2345678901=10")]
    Update(UpdateArgs),
    /// Delete an endpoint (it must have no deployed models).
    #[command(after_help = "Example:\n  platform-cli endpoints delete mlp")]
    Delete {
        /// The endpoint: its id or full name.
        endpoint: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Deploy a model version on an endpoint; waits until it serves, then prints the deployed
    /// model id.
    #[command(after_help = "\
Example:
  platform-cli endpoints deploy-model mlp --model mlp@default --display-name mlp-v1 \\
      --machine-type e2-small --min-replica-count 1 --max-replica-count 3 \\
      --autoscaling-metric-specs cpu-usage=60,request-counts-per-minute=600 --traffic-split 0=100")]
    DeployModel(DeployArgs),
    /// Take a deployed model off an endpoint.
    #[command(after_help = "\
Example:
  platform-cli endpoints undeploy-model mlp --deployed-model-id 1234567890 --traffic-split 2345678901=100")]
    UndeployModel(UndeployArgs),
    /// Change a deployed model's replica bounds or autoscaling without redeploying it.
    #[command(after_help = "\
Example:
  platform-cli endpoints mutate-deployed-model mlp --deployed-model-id 1234567890 --max-replica-count 5")]
    MutateDeployedModel(MutateArgs),
    /// Send `{\"instances\": [...], \"parameters\": {...}}` to :predict; prints the predictions.
    #[command(after_help = "\
Example:
  echo '{\"instances\": [[0.1, 0.2, 0.3]]}' | platform-cli endpoints predict mlp --json-request -")]
    Predict {
        /// The endpoint: its id or full name.
        endpoint: String,
        /// A JSON file with the request, or `-` for stdin.
        #[arg(long)]
        json_request: String,
    },
    /// Show what the replicas of an endpoint's deployed models printed: the last lines, or
    /// followed as they come (as `gcloud run services logs read` / `logs tail`).
    #[command(after_help = "\
Examples:
  platform-cli endpoints logs mlp --limit 50
  platform-cli endpoints logs mlp --deployed-model-id 1234567890 --follow")]
    Logs(LogsArgs),
    /// Show the requests and responses that request-response logging kept
    /// (`--request-response-logging-rate` on create or update), newest first.
    #[command(after_help = "\
Examples:
  platform-cli endpoints prediction-logs mlp --limit 10
  platform-cli endpoints prediction-logs mlp --deployed-model-id 1234567890 --format json")]
    PredictionLogs(PredictionLogsArgs),
    /// Send any body to :rawPredict, which forwards it unchanged to the model's server; prints
    /// the answer's body unchanged.
    #[command(after_help = "\
Example:
  platform-cli endpoints raw-predict mlp --request @body.json --http-headers Content-Type=application/json")]
    RawPredict {
        /// The endpoint: its id or full name.
        endpoint: String,
        /// The body: `@FILE`, `-` for stdin, or the text itself.
        #[arg(long)]
        request: String,
        /// Headers to send: Name=Value,Name2=Value2 (default Content-Type=application/json).
        #[arg(long, value_parser = key_values)]
        http_headers: Option<::std::vec::Vec<(String, String)>>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// Only this deployed model's replicas.
    #[arg(long)]
    pub deployed_model_id: Option<String>,
    /// Only this replica.
    #[arg(long)]
    pub replica: Option<String>,
    /// How many of the last lines to show.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Keep showing new lines until interrupted.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PredictionLogsArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// Only this deployed model's predictions.
    #[arg(long)]
    pub deployed_model_id: Option<String>,
    /// At most this many, the newest.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// The query of one page of `GET .../endpoints/{endpoint}/predictionLogs`. Pure.
pub fn prediction_logs_query(args: &PredictionLogsArgs, page_token: &str) -> Vec<(&'static str, String)> {
    let mut query = vec![("pageSize", args.limit.clamp(1, 1000).to_string())];
    if let Some(id) = &args.deployed_model_id {
        query.push(("deployedModelId", id.clone()));
    }
    if !page_token.is_empty() {
        query.push(("pageToken", page_token.to_string()));
    }
    query
}

/// The query of `GET .../endpoints/{endpoint}/logs`. Pure.
pub fn logs_query(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut query = vec![("tail", args.limit.to_string())];
    if let Some(id) = &args.deployed_model_id {
        query.push(("deployedModelId", id.clone()));
    }
    if let Some(r) = &args.replica {
        query.push(("replica", r.clone()));
    }
    if args.follow {
        query.push(("follow", "true".into()));
    }
    query
}

/// A log line for people: time, replica, text; control characters shown escaped so that a
/// model's output cannot drive the terminal. Pure.
pub fn log_line(e: &api::LogEntry) -> String {
    let text: String = e
        .text
        .chars()
        .flat_map(
            |c| if c.is_control() && c != '\t' { c.escape_default().collect::<Vec<_>>() } else { vec![c] },
        )
        .collect();
    let stream = if e.stream == "platform" { " [platform]" } else { "" };
    format!("{} {}{stream} {text}\n", e.time, e.replica)
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The endpoint's name for people (required, at most 128 characters).
    #[arg(long)]
    pub display_name: String,
    /// A description for people.
    #[arg(long)]
    pub description: Option<String>,
    /// The id to give it (default: a generated number).
    #[arg(long)]
    pub endpoint_id: Option<String>,
    /// Labels: key=value,key2=value2.
    #[arg(long, value_parser = labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Who may call :predict.
    #[arg(long, value_enum)]
    pub access: Option<Access>,
    /// Keep this fraction (0 to 1) of predictions with their requests and responses; read them
    /// with `endpoints prediction-logs`.
    #[arg(long)]
    pub request_response_logging_rate: Option<f64>,
    /// How long a prediction may take (time queued for a replica included) before it is
    /// answered 504: 1s to 3600s; default the platform's --predict-timeout (60s).
    #[arg(long, value_parser = inference_timeout)]
    pub inference_timeout: Option<api::Duration>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// A new display name.
    #[arg(long)]
    pub display_name: Option<String>,
    /// A description for people.
    #[arg(long)]
    pub description: Option<String>,
    /// Replace the labels: key=value,key2=value2.
    #[arg(long, value_parser = labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// DEPLOYED_MODEL_ID=PERCENT,...; the percentages add up to 100.
    #[arg(long, value_parser = traffic_split, conflicts_with = "clear_traffic_split")]
    pub traffic_split: Option<BTreeMap<String, i32>>,
    /// Send no traffic to any deployed model.
    #[arg(long)]
    pub clear_traffic_split: bool,
    /// Keep this fraction (0 to 1) of predictions with their requests and responses; read them
    /// with `endpoints prediction-logs`.
    #[arg(long, conflicts_with = "disable_request_response_logging")]
    pub request_response_logging_rate: Option<f64>,
    /// Stop keeping predictions (those kept stay until the endpoint is deleted).
    #[arg(long)]
    pub disable_request_response_logging: bool,
    /// How long a prediction may take (time queued for a replica included) before it is
    /// answered 504: 1s to 3600s; default the platform's --predict-timeout (60s).
    #[arg(long, value_parser = inference_timeout)]
    pub inference_timeout: Option<api::Duration>,
    /// Go back to the platform's default inference timeout.
    #[arg(long, conflicts_with = "inference_timeout")]
    pub clear_inference_timeout: bool,
}

/// Request-response logging at `rate`.
fn logging_at(rate: f64) -> api::PredictRequestResponseLoggingConfig {
    api::PredictRequestResponseLoggingConfig {
        enabled: true,
        sampling_rate: rate,
        bigquery_destination: None,
    }
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// The model to deploy: MODEL, MODEL@VERSION or MODEL@ALIAS (without one, the default version).
    #[arg(long)]
    pub model: String,
    /// The deployed model's name for people (default: the model's display name).
    #[arg(long)]
    pub display_name: Option<String>,
    /// A machine type of the catalog, such as e2-small or n1-standard-2 (the default).
    #[arg(long)]
    pub machine_type: Option<String>,
    /// type=TYPE[,count=N], such as type=nvidia-l4,count=1.
    #[arg(long, value_parser = accelerator)]
    pub accelerator: Option<(String, i32)>,
    /// Replicas kept running (default 1; 0 scales to zero when idle).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub min_replica_count: Option<i32>,
    /// Replicas at most (default: the minimum, and at least 1).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_replica_count: Option<i32>,
    /// Metrics and targets to autoscale on: cpu-usage=60,gpu-duty-cycle=60,request-counts-per-minute=600,
    /// concurrency=10 (requests in flight per replica).
    #[arg(long, value_parser = metric_specs)]
    pub autoscaling_metric_specs: Option<::std::vec::Vec<api::AutoscalingMetricSpec>>,
    /// The endpoint's new traffic split; `0` is the model being deployed (default 0=100).
    #[arg(long, value_parser = traffic_split)]
    pub traffic_split: Option<BTreeMap<String, i32>>,
    /// The id to give the deployed model (digits; default generated).
    #[arg(long, value_parser = deployed_model_id)]
    pub deployed_model_id: Option<String>,
    /// The service account the replicas run as.
    #[arg(long)]
    pub service_account: Option<String>,
    /// Log every prediction request.
    #[arg(long)]
    pub enable_access_logging: bool,
    /// Do not collect the container's stdout and stderr.
    #[arg(long)]
    pub disable_container_logging: bool,
    /// The most requests one replica is given at once (1 to 1000; default 80). More wait in a
    /// bounded queue; past it callers get 429 with Retry-After.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub container_concurrency: Option<i32>,
    /// Use spot capacity where the backend has it.
    #[arg(long)]
    pub spot: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UndeployArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// The deployed model, by the id `deploy-model` printed.
    #[arg(long, value_parser = deployed_model_id)]
    pub deployed_model_id: String,
    /// The traffic split of the models that stay.
    #[arg(long, value_parser = traffic_split)]
    pub traffic_split: Option<BTreeMap<String, i32>>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    /// The endpoint: its id or full name.
    pub endpoint: String,
    /// The deployed model, by the id `deploy-model` printed.
    #[arg(long, value_parser = deployed_model_id)]
    pub deployed_model_id: String,
    /// New minimum of replicas.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub min_replica_count: Option<i32>,
    /// New maximum of replicas.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_replica_count: Option<i32>,
    /// New autoscaling metrics and targets: cpu-usage=60,request-counts-per-minute=600.
    #[arg(long, value_parser = metric_specs)]
    pub autoscaling_metric_specs: Option<::std::vec::Vec<api::AutoscalingMetricSpec>>,
    /// New most requests one replica is given at once (1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub container_concurrency: Option<i32>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `v1/projects/p/locations/l/endpoints/e` of an endpoint id or name. Pure.
pub fn endpoint_path(reference: &str, parent: &api::LocationName) -> Result<String, CliError> {
    Ok(format!("v1/{}", api::parse_endpoint_ref(reference, parent)?))
}

/// The `:deployModel` request of `deploy-model`. Pure.
pub fn deploy_request(
    args: &DeployArgs,
    parent: &api::LocationName,
) -> Result<api::DeployModelRequest, CliError> {
    let (model, version) = api::parse_model_ref(&args.model, parent)?;
    let model = match version {
        Some(v) => format!("{model}@{v}"),
        None => model.to_string(),
    };
    let min = args.min_replica_count.unwrap_or(1);
    let max = args.max_replica_count.unwrap_or(min.max(1));
    if max < min {
        return Err(FlagError {
            flag: "max-replica-count",
            message: format!("{max} is less than --min-replica-count {min}"),
        }
        .into());
    }
    let (accelerator_type, accelerator_count) = args.accelerator.clone().unwrap_or_default();
    Ok(api::DeployModelRequest {
        deployed_model: api::DeployedModel {
            id: args.deployed_model_id.clone().unwrap_or_default(),
            model,
            display_name: args.display_name.clone().unwrap_or_default(),
            dedicated_resources: Some(api::DedicatedResources {
                machine_spec: api::MachineSpec {
                    machine_type: args.machine_type.clone().unwrap_or_default(),
                    accelerator_type,
                    accelerator_count,
                    unmodelled: api::Unmodelled,
                },
                min_replica_count: min,
                max_replica_count: max,
                required_replica_count: None,
                autoscaling_metric_specs: args.autoscaling_metric_specs.clone().unwrap_or_default(),
                spot: args.spot,
            }),
            service_account: args.service_account.clone().unwrap_or_default(),
            enable_access_logging: args.enable_access_logging,
            disable_container_logging: args.disable_container_logging,
            container_concurrency: args.container_concurrency,
            ..Default::default()
        },
        // Like gcloud: without a split the new model takes all the traffic.
        traffic_split: args.traffic_split.clone().unwrap_or_else(|| BTreeMap::from([("0".to_string(), 100)])),
    })
}

/// The endpoint to PATCH and its update mask, from the current endpoint and the flags. Pure.
pub fn update_request(
    current: api::Endpoint,
    args: &UpdateArgs,
) -> Result<(api::Endpoint, String), CliError> {
    let mut endpoint = api::Endpoint {
        name: current.name,
        display_name: current.display_name,
        etag: current.etag,
        ..Default::default()
    };
    let mut mask = Vec::new();
    if let Some(name) = &args.display_name {
        endpoint.display_name = name.clone();
        mask.push("displayName");
    }
    if let Some(description) = &args.description {
        endpoint.description = description.clone();
        mask.push("description");
    }
    if let Some(labels) = &args.labels {
        endpoint.labels = labels.clone();
        mask.push("labels");
    }
    if let Some(split) = &args.traffic_split {
        if split.contains_key("0") {
            return Err(FlagError {
                flag: "traffic-split",
                message: "`0` means the model being deployed: name deployed model ids here".into(),
            }
            .into());
        }
        endpoint.traffic_split = split.clone();
        mask.push("trafficSplit");
    } else if args.clear_traffic_split {
        mask.push("trafficSplit");
    }
    if let Some(rate) = args.request_response_logging_rate {
        endpoint.predict_request_response_logging_config = Some(logging_at(rate));
        mask.push("predictRequestResponseLoggingConfig");
    } else if args.disable_request_response_logging {
        mask.push("predictRequestResponseLoggingConfig");
    }
    if let Some(timeout) = args.inference_timeout {
        endpoint.client_connection_config =
            Some(api::ClientConnectionConfig { inference_timeout: Some(timeout) });
        mask.push("clientConnectionConfig.inferenceTimeout");
    } else if args.clear_inference_timeout {
        mask.push("clientConnectionConfig.inferenceTimeout");
    }
    if mask.is_empty() {
        return Err(CliError::Input(
            "nothing to update: give --display-name, --description, --labels, --traffic-split, --clear-traffic-split, \
             --request-response-logging-rate, --disable-request-response-logging, --inference-timeout or \
             --clear-inference-timeout"
                .into(),
        ));
    }
    Ok((endpoint, mask.join(",")))
}

/// The `:mutateDeployedModel` request. Pure.
pub fn mutate_request(args: &MutateArgs) -> Result<api::MutateDeployedModelRequest, CliError> {
    let mut resources = api::DedicatedResources::default();
    let mut mask = Vec::new();
    if let Some(min) = args.min_replica_count {
        resources.min_replica_count = min;
        mask.push("dedicatedResources.minReplicaCount");
    }
    if let Some(max) = args.max_replica_count {
        resources.max_replica_count = max;
        mask.push("dedicatedResources.maxReplicaCount");
    }
    if let Some(specs) = &args.autoscaling_metric_specs {
        resources.autoscaling_metric_specs = specs.clone();
        mask.push("dedicatedResources.autoscalingMetricSpecs");
    }
    if args.container_concurrency.is_some() {
        mask.push("containerConcurrency");
    }
    if let (Some(min), Some(max)) = (args.min_replica_count, args.max_replica_count)
        && max < min
    {
        return Err(FlagError {
            flag: "max-replica-count",
            message: format!("{max} is less than --min-replica-count {min}"),
        }
        .into());
    }
    if mask.is_empty() {
        return Err(CliError::Input(
            "nothing to change: give --min-replica-count, --max-replica-count, --autoscaling-metric-specs or \
             --container-concurrency"
                .into(),
        ));
    }
    Ok(api::MutateDeployedModelRequest {
        deployed_model: api::DeployedModel {
            id: args.deployed_model_id.clone(),
            dedicated_resources: Some(resources),
            container_concurrency: args.container_concurrency,
            ..Default::default()
        },
        update_mask: mask.join(","),
    })
}

/// A `:predict` request read from `--json-request`. Pure.
pub fn predict_request(body: &[u8]) -> Result<api::PredictRequest, CliError> {
    serde_json::from_slice(body).map_err(|e| {
        CliError::Input(format!("--json-request: not a request of the form {{\"instances\": [...]}}: {e}"))
    })
}

/// The body of `raw-predict --request`: `@FILE`, `-` (stdin) or the text itself.
fn raw_body(request: &str) -> Result<Vec<u8>, CliError> {
    match request.strip_prefix('@') {
        Some(file) => read_input("--request", file),
        None if request == "-" => read_input("--request", "-"),
        None => Ok(request.as_bytes().to_vec()),
    }
}

pub async fn run(ctx: &Context, command: EndpointsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    let parent = &client.parent;
    match command {
        EndpointsCommand::Create(args) => {
            if let Some(id) = &args.endpoint_id {
                api::check_new_endpoint_id(id)
                    .map_err(|e| FlagError { flag: "endpoint-id", message: e.0 })?;
            }
            let endpoint = api::Endpoint {
                display_name: args.display_name,
                description: args.description.unwrap_or_default(),
                labels: args.labels.unwrap_or_default(),
                access: args.access.map(Into::into).unwrap_or_default(),
                predict_request_response_logging_config: args.request_response_logging_rate.map(logging_at),
                client_connection_config: args
                    .inference_timeout
                    .map(|t| api::ClientConnectionConfig { inference_timeout: Some(t) }),
                ..Default::default()
            };
            let query: Vec<(&str, String)> =
                args.endpoint_id.iter().map(|id| ("endpointId", id.clone())).collect();
            let op: api::Operation = client.post_with(&client.path("endpoints"), &query, &endpoint).await?;
            if let Some(op) = finish(ctx, &client, op, &args.wait).await? {
                let created: api::Endpoint = response(&op)?;
                ctx.print(&output::render(ctx.format, &created, |e| {
                    output::endpoints(std::slice::from_ref(e))
                })?)?;
            }
            Ok(())
        }
        EndpointsCommand::List(list) => {
            let endpoints =
                list_all(&client, &client.path("endpoints"), &list, |r: api::ListEndpointsResponse| {
                    (r.endpoints, r.next_page_token)
                })
                .await?;
            ctx.print(&output::render(ctx.format, &endpoints, |e| output::endpoints(e))?)
        }
        EndpointsCommand::Describe { endpoint } => {
            let found: api::Endpoint = client.get(&endpoint_path(&endpoint, parent)?, &[]).await?;
            describe(ctx, &found)
        }
        EndpointsCommand::Update(args) => {
            let path = endpoint_path(&args.endpoint, parent)?;
            let current: api::Endpoint = client.get(&path, &[]).await?;
            let (endpoint, mask) = update_request(current, &args)?;
            let updated: api::Endpoint = client.patch(&path, &[("updateMask", mask)], &endpoint).await?;
            ctx.print(&output::render(ctx.format, &updated, |e| output::endpoints(std::slice::from_ref(e)))?)
        }
        EndpointsCommand::Delete { endpoint, wait } => {
            let path = endpoint_path(&endpoint, parent)?;
            let op: api::Operation = client.delete(&path).await?;
            if let Some(op) = finish(ctx, &client, op, &wait).await? {
                done(ctx, &op, &format!("Deleted endpoint {}.", path.trim_start_matches("v1/")))?;
            }
            Ok(())
        }
        EndpointsCommand::DeployModel(args) => {
            let path = endpoint_path(&args.endpoint, parent)?;
            let req = deploy_request(&args, parent)?;
            let op: api::Operation = client.post(&format!("{path}:deployModel"), &req).await?;
            if let Some(op) = finish(ctx, &client, op, &args.wait).await? {
                let deployed: api::DeployModelResponse = response(&op)?;
                ctx.print(&output::render(ctx.format, &deployed, |d| {
                    output::deployed_models(std::slice::from_ref(&d.deployed_model))
                })?)?;
            }
            Ok(())
        }
        EndpointsCommand::UndeployModel(args) => {
            let path = endpoint_path(&args.endpoint, parent)?;
            let req = api::UndeployModelRequest {
                deployed_model_id: args.deployed_model_id.clone(),
                traffic_split: args.traffic_split.clone().unwrap_or_default(),
            };
            let op: api::Operation = client.post(&format!("{path}:undeployModel"), &req).await?;
            if let Some(op) = finish(ctx, &client, op, &args.wait).await? {
                done(ctx, &op, &format!("Undeployed {} from {}.", args.deployed_model_id, args.endpoint))?;
            }
            Ok(())
        }
        EndpointsCommand::MutateDeployedModel(args) => {
            let path = endpoint_path(&args.endpoint, parent)?;
            let req = mutate_request(&args)?;
            let op: api::Operation = client.post(&format!("{path}:mutateDeployedModel"), &req).await?;
            if let Some(op) = finish(ctx, &client, op, &args.wait).await? {
                let mutated: api::MutateDeployedModelResponse = response(&op)?;
                ctx.print(&output::render(ctx.format, &mutated, |m| {
                    output::deployed_models(std::slice::from_ref(&m.deployed_model))
                })?)?;
            }
            Ok(())
        }
        EndpointsCommand::Predict { endpoint, json_request } => {
            let path = endpoint_path(&endpoint, parent)?;
            let req = predict_request(&read_input("--json-request", &json_request)?)?;
            let answer: api::PredictResponse = client.post(&format!("{path}:predict"), &req).await?;
            match ctx.format {
                // One prediction a line, as compact JSON.
                Format::Table => {
                    let lines: Vec<String> =
                        answer.predictions.iter().map(|p| p.to_string() + "\n").collect();
                    ctx.print(&lines.concat())
                }
                format => ctx.print(&output::serialize(format, &answer)?),
            }
        }
        EndpointsCommand::Logs(args) => {
            let path = endpoint_path(&args.endpoint, parent)?;
            let format = ctx.format;
            client
                .get_lines(&format!("{path}/logs"), &logs_query(&args), |entry: api::LogEntry| {
                    let text = match format {
                        Format::Table => log_line(&entry),
                        _ => serde_json::to_string(&entry).unwrap_or_default() + "\n",
                    };
                    ctx.print(&text).map_err(|e| crate::client::ClientError::Decode {
                        url: String::new(),
                        message: e.to_string(),
                    })
                })
                .await?;
            Ok(())
        }
        EndpointsCommand::PredictionLogs(args) => {
            let path = format!("{}/predictionLogs", endpoint_path(&args.endpoint, parent)?);
            let mut logs = Vec::new();
            let mut token = String::new();
            while logs.len() < args.limit {
                let page: api::ListPredictionLogsResponse =
                    client.get(&path, &prediction_logs_query(&args, &token)).await?;
                logs.extend(page.prediction_logs);
                if page.next_page_token.is_empty() || page.next_page_token == token {
                    break;
                }
                token = page.next_page_token;
            }
            logs.truncate(args.limit);
            ctx.print(&output::render(ctx.format, &logs, |l| output::prediction_logs(l))?)
        }
        EndpointsCommand::RawPredict { endpoint, request, http_headers } => {
            let path = endpoint_path(&endpoint, parent)?;
            let mut headers = http_headers.unwrap_or_default();
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            let (_, body) = client.raw(&format!("{path}:rawPredict"), &headers, raw_body(&request)?).await?;
            let text = String::from_utf8_lossy(&body);
            ctx.print(&text)?;
            if !text.ends_with('\n') && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                ctx.print("\n")?;
            }
            Ok(())
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

    fn command(args: &[&str]) -> Result<EndpointsCommand, clap::Error> {
        let cli = crate::Cli::try_parse_from(["platform-cli", "endpoints"].iter().chain(args))?;
        match cli.command {
            crate::Command::Endpoints(c) => Ok(c),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn deploy(args: &[&str]) -> Result<DeployArgs, clap::Error> {
        match command(&[&["deploy-model"], args].concat())? {
            EndpointsCommand::DeployModel(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn deploy_flags_make_the_vertex_request() {
        let args = deploy(&[
            "ep",
            "--model=mlp@golden",
            "--display-name=mlp-v1",
            "--machine-type=g2-standard-4",
            "--accelerator=type=nvidia-l4,count=1",
            "--min-replica-count=1",
            "--max-replica-count=3",
            "--autoscaling-metric-specs=cpu-usage=60,request-counts-per-minute=600",
            "--traffic-split=0=20,1234=80",
        ])
        .unwrap();
        let req = deploy_request(&args, &parent()).unwrap();
        let dm = &req.deployed_model;
        assert_eq!(dm.model, "projects/default/locations/local/models/mlp@golden");
        let res = dm.dedicated_resources.as_ref().unwrap();
        assert_eq!(res.machine_spec.accelerator_type, "NVIDIA_L4");
        assert_eq!((res.min_replica_count, res.max_replica_count), (1, 3));
        assert_eq!(res.autoscaling_metric_specs[1].metric_name, api::METRIC_REQUESTS);
        assert_eq!(req.traffic_split, BTreeMap::from([("0".into(), 20), ("1234".into(), 80)]));
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["deployedModel"]["dedicatedResources"]["machineSpec"]["acceleratorCount"], 1);
    }

    #[test]
    fn deploy_defaults_follow_gcloud() {
        let req = deploy_request(&deploy(&["ep", "--model", "mlp"]).unwrap(), &parent()).unwrap();
        assert_eq!(req.traffic_split, BTreeMap::from([("0".into(), 100)]), "the new model takes all traffic");
        let res = req.deployed_model.dedicated_resources.unwrap();
        assert_eq!((res.min_replica_count, res.max_replica_count), (1, 1));
        assert_eq!(req.deployed_model.model, "projects/default/locations/local/models/mlp");
        let to_zero =
            deploy_request(&deploy(&["ep", "--model=m", "--min-replica-count=0"]).unwrap(), &parent());
        let res = to_zero.unwrap().deployed_model.dedicated_resources.unwrap();
        assert_eq!((res.min_replica_count, res.max_replica_count), (0, 1));
    }

    #[test]
    fn bad_deploy_flags_are_refused() {
        let e = deploy(&["ep", "--model=m", "--traffic-split=0=50"]).unwrap_err().to_string();
        assert!(e.contains("the percentages add up to 50, not 100"), "{e}");
        assert!(deploy(&["ep", "--model=m", "--accelerator=count=1"]).is_err());
        assert!(deploy(&["ep", "--model=m", "--min-replica-count=-1"]).is_err());
        assert!(deploy(&["ep", "--model=m", "--deployed-model-id=abc"]).is_err());
        assert!(deploy(&["ep"]).unwrap_err().to_string().contains("--model"));
        let inverted =
            deploy(&["ep", "--model=m", "--min-replica-count=3", "--max-replica-count=2"]).unwrap();
        assert!(deploy_request(&inverted, &parent()).unwrap_err().to_string().contains("less than"));
        let bad_model = deploy(&["ep", "--model=Not A Model"]).unwrap();
        assert!(deploy_request(&bad_model, &parent()).is_err());
    }

    #[test]
    fn updates_send_only_what_changes_with_the_etag() {
        let current = api::Endpoint {
            name: "projects/default/locations/local/endpoints/ep".into(),
            display_name: "ep".into(),
            etag: "e1".into(),
            description: "kept".into(),
            ..Default::default()
        };
        let args = match command(&["update", "ep", "--traffic-split=111=90,222=10"]).unwrap() {
            EndpointsCommand::Update(a) => a,
            other => panic!("{other:?}"),
        };
        let (body, mask) = update_request(current.clone(), &args).unwrap();
        assert_eq!(mask, "trafficSplit");
        assert_eq!(body.etag, "e1");
        assert_eq!(body.traffic_split["111"], 90);
        let args = match command(&["update", "ep", "--traffic-split=0=100"]).unwrap() {
            EndpointsCommand::Update(a) => a,
            other => panic!("{other:?}"),
        };
        assert!(update_request(current.clone(), &args).is_err(), "0 only means something on deploy");
        let args = match command(&["update", "ep", "--clear-traffic-split", "--display-name=x"]).unwrap() {
            EndpointsCommand::Update(a) => a,
            other => panic!("{other:?}"),
        };
        let (body, mask) = update_request(current.clone(), &args).unwrap();
        assert_eq!(mask, "displayName,trafficSplit");
        assert!(body.traffic_split.is_empty());
        let args = match command(&["update", "ep"]).unwrap() {
            EndpointsCommand::Update(a) => a,
            other => panic!("{other:?}"),
        };
        assert!(update_request(current, &args).unwrap_err().to_string().starts_with("nothing to update"));
    }

    #[test]
    fn request_response_logging_is_set_or_turned_off_and_its_logs_are_paged() {
        let update = |args: &[&str]| match command(&[&["update", "ep"], args].concat()).unwrap() {
            EndpointsCommand::Update(a) => update_request(api::Endpoint::default(), &a).unwrap(),
            other => panic!("{other:?}"),
        };
        let (body, mask) = update(&["--request-response-logging-rate", "0.5"]);
        assert_eq!(mask, "predictRequestResponseLoggingConfig");
        let config = body.predict_request_response_logging_config.unwrap();
        assert!(config.enabled && config.sampling_rate == 0.5);
        let (body, mask) = update(&["--disable-request-response-logging"]);
        assert_eq!(mask, "predictRequestResponseLoggingConfig");
        assert!(body.predict_request_response_logging_config.is_none());
        assert!(
            command(&[
                "update",
                "ep",
                "--request-response-logging-rate=1",
                "--disable-request-response-logging"
            ])
            .is_err()
        );
        let args = match command(&["prediction-logs", "ep", "--deployed-model-id", "12", "--limit", "5000"])
            .unwrap()
        {
            EndpointsCommand::PredictionLogs(a) => a,
            other => panic!("{other:?}"),
        };
        let query = prediction_logs_query(&args, "41");
        assert_eq!(
            query,
            [("pageSize", "1000".to_string()), ("deployedModelId", "12".into()), ("pageToken", "41".into())]
        );
    }

    #[test]
    fn mutations_name_their_fields() {
        let args = match command(&[
            "mutate-deployed-model",
            "ep",
            "--deployed-model-id=12",
            "--max-replica-count=5",
        ])
        .unwrap()
        {
            EndpointsCommand::MutateDeployedModel(a) => a,
            other => panic!("{other:?}"),
        };
        let req = mutate_request(&args).unwrap();
        assert_eq!(req.update_mask, "dedicatedResources.maxReplicaCount");
        assert_eq!(req.deployed_model.id, "12");
        let args = match command(&[
            "mutate-deployed-model",
            "ep",
            "--deployed-model-id=12",
            "--container-concurrency=4",
        ])
        .unwrap()
        {
            EndpointsCommand::MutateDeployedModel(a) => a,
            other => panic!("{other:?}"),
        };
        let req = mutate_request(&args).unwrap();
        assert_eq!(
            (req.update_mask.as_str(), req.deployed_model.container_concurrency),
            ("containerConcurrency", Some(4))
        );
        assert!(
            command(&[
                "mutate-deployed-model",
                "ep",
                "--deployed-model-id=12",
                "--container-concurrency=1001"
            ])
            .is_err()
        );
    }

    #[test]
    fn logs_flags_become_the_query_and_lines_cannot_drive_the_terminal() {
        let args = match command(&["logs", "mlp", "--deployed-model-id", "12", "--follow", "--limit", "5"])
            .unwrap()
        {
            EndpointsCommand::Logs(a) => a,
            other => panic!("{other:?}"),
        };
        let query = logs_query(&args);
        assert!(query.contains(&("tail", "5".into())) && query.contains(&("deployedModelId", "12".into())));
        assert!(query.contains(&("follow", "true".into())));
        let e = api::LogEntry {
            time: "2024-05-01T12:00:00.000000Z".into(),
            deployed_model_id: "12".into(),
            replica: "r0".into(),
            stream: "stdout".into(),
            text: "hi \u{1b}[2J".into(),
        };
        assert_eq!(log_line(&e), "2024-05-01T12:00:00.000000Z r0 hi \\u{1b}[2J\n");
    }

    #[test]
    fn predict_requests_need_instances() {
        let req = predict_request(br#"{"instances": [[1.0, 2.0]], "parameters": {"k": 1}}"#).unwrap();
        assert_eq!(req.instances.len(), 1);
        let e = predict_request(br#"{"inputs": []}"#).unwrap_err().to_string();
        assert!(e.contains("missing field `instances`"), "{e}");
        assert!(predict_request(b"not json").is_err());
    }

    #[test]
    fn endpoint_references_become_paths() {
        assert_eq!(
            endpoint_path("ep", &parent()).unwrap(),
            "v1/projects/default/locations/local/endpoints/ep"
        );
        assert!(endpoint_path("ep/../x", &parent()).is_err());
    }
}
