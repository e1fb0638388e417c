//! Online prediction pages: the endpoint list, Create endpoint (and deploy a model on it),
//! an endpoint's page (deployed models with live status, traffic split, undeploy, sample
//! requests, "Try it", charts, replicas) and deploying another model on an endpoint.

use std::collections::BTreeMap;
use std::time::Instant;

use api::{Access, EndpointName, LocationName};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::ConsoleState;
use super::charts::{self, Chart};
use super::models::{redirect, when};
use super::page::{self, Failure, Html, Layout, Nav, Page};
use super::session::Visitor;
use super::snippets::{self, Snippets};
use crate::endpoints::{EndpointField, Replica};
use crate::gateway::{Call, Credentials, PredictRequest};

fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

fn access_label(access: Access) -> &'static str {
    match access {
        Access::Authenticated => "Authenticated (token with the predictor role)",
        Access::Public => "Public (anyone)",
        Access::Private => "Private (private listener only)",
    }
}

/// An endpoint as the list shows it.
pub struct EndpointRow {
    pub id: String,
    pub display_name: String,
    pub models: usize,
    pub status: String,
    pub access: &'static str,
    pub created: String,
}

/// A word for an endpoint's state.
fn endpoint_status(e: &api::Endpoint) -> String {
    if e.deployed_models.is_empty() {
        return "No model deployed".into();
    }
    let deploying =
        e.deployed_models.iter().any(|d| d.status.as_ref().is_some_and(|s| !s.message.is_empty()));
    if deploying { "Deploying".into() } else { "Ready".into() }
}

#[derive(Template)]
#[template(path = "endpoints.html")]
struct ListPage {
    layout: Layout,
    endpoints: Vec<EndpointRow>,
}

/// `GET .../endpoints`.
pub async fn list(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let layout = Layout::new(&visitor, &loc, Nav::Endpoints, "Online prediction").await;
    let endpoints = console.endpoints.list(&visitor.caller, &loc).await.map_err(page::fail(&layout))?;
    let endpoints = endpoints
        .iter()
        .map(|e| EndpointRow {
            id: id_of(&e.name),
            display_name: e.display_name.clone(),
            models: e.deployed_models.len(),
            status: endpoint_status(e),
            access: access_label(e.access),
            created: when(&e.create_time),
        })
        .collect();
    Ok(Html::ok(ListPage { layout, endpoints }))
}

/// A machine type in the create form's list.
pub struct MachineOption {
    pub name: String,
    pub label: String,
}

/// What the create and deploy forms hold (shown again after an error).
#[derive(Debug, Clone, Deserialize)]
pub struct DeployForm {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub access: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub machine_type: String,
    #[serde(default)]
    pub accelerator_type: String,
    #[serde(default)]
    pub accelerator_count: String,
    #[serde(default)]
    pub min_replicas: String,
    #[serde(default)]
    pub max_replicas: String,
    #[serde(default)]
    pub metric: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub traffic: String,
    #[serde(default)]
    pub container_concurrency: String,
    #[serde(default)]
    pub access_logging: Option<String>,
}

impl Default for DeployForm {
    fn default() -> Self {
        DeployForm {
            display_name: String::new(),
            endpoint_id: String::new(),
            access: "AUTHENTICATED".into(),
            model: String::new(),
            version: String::new(),
            machine_type: String::new(),
            accelerator_type: String::new(),
            accelerator_count: "0".into(),
            min_replicas: "1".into(),
            max_replicas: "1".into(),
            metric: String::new(),
            target: "60".into(),
            traffic: "100".into(),
            container_concurrency: String::new(),
            access_logging: None,
        }
    }
}

fn number(text: &str, what: &str) -> Result<i32, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(0);
    }
    t.parse().map_err(|_| format!("{what}: `{t}` is not a whole number"))
}

impl DeployForm {
    pub fn access(&self) -> Result<Access, String> {
        serde_json::from_value(serde_json::Value::String(self.access.clone()))
            .map_err(|_| format!("access `{}` is not AUTHENTICATED, PUBLIC or PRIVATE", self.access))
    }

    /// The API's deploy request for this form (`existing`: the ids already on the endpoint,
    /// which share what the new model does not take).
    pub fn to_request(&self, existing: &[String]) -> Result<api::DeployModelRequest, String> {
        if self.model.trim().is_empty() {
            return Err("choose the model to deploy".into());
        }
        let version = self.version.trim();
        let model = if version.is_empty() {
            self.model.trim().to_string()
        } else {
            format!("{}@{version}", self.model.trim())
        };
        let metrics = match self.metric.trim() {
            "" => vec![],
            name => vec![api::AutoscalingMetricSpec {
                metric_name: name.to_string(),
                target: number(&self.target, "target")?,
            }],
        };
        let resources = api::DedicatedResources {
            machine_spec: api::MachineSpec {
                machine_type: self.machine_type.trim().to_string(),
                accelerator_type: self.accelerator_type.trim().to_string(),
                accelerator_count: number(&self.accelerator_count, "accelerator count")?,
                ..Default::default()
            },
            min_replica_count: number(&self.min_replicas, "minimum replicas")?,
            max_replica_count: number(&self.max_replicas, "maximum replicas")?,
            autoscaling_metric_specs: metrics,
            ..Default::default()
        };
        let percent = match self.traffic.trim() {
            "" => 100,
            t => t.parse::<i32>().map_err(|_| format!("traffic: `{t}` is not a percentage"))?,
        };
        if !(0..=100).contains(&percent) {
            return Err(format!("traffic: {percent}% is not between 0 and 100"));
        }
        let mut split = BTreeMap::new();
        if !existing.is_empty() {
            split.insert("0".to_string(), percent);
            let rest = 100 - percent;
            for (i, id) in existing.iter().enumerate() {
                // The remainder goes to the existing models, the first taking what does not divide.
                let share = rest / existing.len() as i32 + i32::from(i == 0) * (rest % existing.len() as i32);
                split.insert(id.clone(), share);
            }
        }
        Ok(api::DeployModelRequest {
            deployed_model: api::DeployedModel {
                model,
                display_name: self.display_name.trim().to_string(),
                dedicated_resources: Some(resources),
                enable_access_logging: self.access_logging.is_some(),
                // Empty: the platform's default; the API checks the range and says why.
                container_concurrency: match self.container_concurrency.trim() {
                    "" => None,
                    _ => Some(number(&self.container_concurrency, "concurrent requests per replica")?),
                },
                ..Default::default()
            },
            traffic_split: split,
        })
    }
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    layout: Layout,
    /// None: create an endpoint too; Some: deploy on this endpoint.
    endpoint: Option<(String, String)>,
    form: DeployForm,
    models: Vec<(String, String)>,
    machines: Vec<MachineOption>,
    accelerators: Vec<String>,
    error: Option<String>,
    metrics: Vec<(&'static str, &'static str)>,
}

const METRICS: [(&str, &str); 4] = [
    (api::METRIC_REQUESTS, "Requests per minute per replica"),
    (api::METRIC_CONCURRENCY, "Requests in flight per replica"),
    (api::METRIC_CPU, "CPU utilisation (%)"),
    (api::METRIC_GPU, "GPU duty cycle (%)"),
];

async fn deploy_page_with(
    console: &ConsoleState,
    visitor: &Visitor,
    loc: &LocationName,
    endpoint: Option<&api::Endpoint>,
    form: DeployForm,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let title = match endpoint {
        Some(e) => format!("Deploy a model on {}", e.display_name),
        None => "Create an endpoint".to_string(),
    };
    let layout = Layout::new(visitor, loc, Nav::Endpoints, title).await;
    let models = console
        .registry
        .list(&visitor.caller, loc)
        .await
        .map_err(page::fail(&layout))?
        .into_iter()
        .map(|m| (id_of(&m.name), format!("{} ({})", m.display_name, id_of(&m.name))))
        .collect();
    let default = console.catalog.default_type().name.clone();
    let machines = console
        .catalog
        .iter()
        .map(|m| {
            let gpu = m
                .accelerator
                .as_ref()
                .map(|a| format!(", {}x {}", a.count, a.accelerator_type))
                .unwrap_or_default();
            let memory = m.memory_bytes as f64 / f64::from(1u32 << 30);
            let default_mark = if m.name == default { " (default)" } else { "" };
            MachineOption {
                name: m.name.clone(),
                label: format!(
                    "{}{default_mark}: {} vCPU, {memory:.1} GiB{gpu}, about {}",
                    m.name,
                    m.cpu_quantity(),
                    console.prices.describe(m)
                ),
            }
        })
        .collect();
    let mut accelerators: Vec<String> =
        console.catalog.iter().flat_map(|m| m.attachable_accelerators.iter().cloned()).collect();
    accelerators.sort();
    accelerators.dedup();
    let endpoint = endpoint.map(|e| (id_of(&e.name), e.display_name.clone()));
    let page = DeployPage {
        layout,
        endpoint,
        form,
        models,
        machines,
        accelerators,
        error,
        metrics: METRICS.to_vec(),
    };
    Ok(Html::with_status(status, page))
}

#[derive(Deserialize, Default)]
pub struct CreateQuery {
    #[serde(default)]
    model: String,
    #[serde(default)]
    version: String,
}

/// `GET .../endpoints/new` (`?model=&version=` from a model's "Deploy to endpoint").
pub async fn create_page(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<CreateQuery>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let form = DeployForm { model: q.model, version: q.version, ..Default::default() };
    deploy_page_with(&console, &visitor, &loc, None, form, None, StatusCode::OK).await
}

/// `POST .../endpoints`: creates the endpoint and, when a model is chosen, deploys it; then
/// the endpoint's page shows the deploy's progress.
pub async fn create(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<DeployForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let again = |form: DeployForm, message: String, status: StatusCode| {
        let (console, visitor, loc) = (&console, &visitor, &loc);
        async move { deploy_page_with(console, visitor, loc, None, form, Some(message), status).await }
    };
    let access = match form.access() {
        Ok(a) => a,
        Err(m) => return again(form, m, StatusCode::BAD_REQUEST).await,
    };
    let deploy = if form.model.trim().is_empty() {
        None
    } else {
        // The endpoint's name is not the deployed model's; that one defaults to the model's.
        match (DeployForm { display_name: String::new(), ..form.clone() }).to_request(&[]) {
            Ok(r) => Some(r),
            Err(m) => return again(form, m, StatusCode::BAD_REQUEST).await,
        }
    };
    let body =
        api::Endpoint { display_name: form.display_name.trim().to_string(), access, ..Default::default() };
    let id = Some(form.endpoint_id.trim()).filter(|id| !id.is_empty());
    let op = match console.endpoints.create(&visitor.caller, &loc, id, &body).await {
        Ok(op) => op,
        Err(e) => {
            let f = Failure::from(e);
            return again(form, f.message, f.status).await;
        }
    };
    let name = op.response.as_ref().and_then(|r| r["name"].as_str()).unwrap_or_default().to_string();
    let endpoint_id = id_of(&name);
    let target = format!("/console/projects/{project}/locations/{location}/endpoints/{endpoint_id}");
    if let Some(deploy) = deploy {
        let name = loc.endpoint(&endpoint_id);
        if let Err(e) = console.endpoints.deploy(&visitor.caller, &name, &deploy).await {
            visitor.flash(format!("The endpoint was created, but the model was not deployed: {e}")).await;
            return Ok(redirect(&headers, &target));
        }
        visitor.flash("The endpoint was created and the model is being deployed.").await;
    } else {
        visitor.flash("The endpoint was created.").await;
    }
    Ok(redirect(&headers, &target))
}

fn endpoint_name(loc: &LocationName, id: &str) -> Result<EndpointName, Response> {
    EndpointName::new(loc.clone(), id).map_err(|e| page::error_page(None, e.into()))
}

/// `GET .../endpoints/{endpoint}/deploy`.
pub async fn deploy_page(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    Query(q): Query<CreateQuery>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let endpoint =
        console.endpoints.get(&visitor.caller, &name).await.map_err(|e| page::error_page(None, e.into()))?;
    let traffic = if endpoint.deployed_models.is_empty() { "100" } else { "0" };
    let form =
        DeployForm { model: q.model, version: q.version, traffic: traffic.into(), ..Default::default() };
    deploy_page_with(&console, &visitor, &loc, Some(&endpoint), form, None, StatusCode::OK).await
}

/// `POST .../endpoints/{endpoint}/deploy`.
pub async fn deploy(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<DeployForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let endpoint =
        console.endpoints.get(&visitor.caller, &name).await.map_err(|e| page::error_page(None, e.into()))?;
    let existing: Vec<String> =
        endpoint.traffic_split.iter().filter(|(_, p)| **p > 0).map(|(id, _)| id.clone()).collect();
    let result = match form.to_request(&existing) {
        Ok(req) => console.endpoints.deploy(&visitor.caller, &name, &req).await.map_err(Failure::from),
        Err(message) => Err(Failure { status: StatusCode::BAD_REQUEST, message }),
    };
    match result {
        Ok(_) => {
            visitor.flash("The model is being deployed.").await;
            Ok(redirect(
                &headers,
                &format!("/console/projects/{project}/locations/{location}/endpoints/{id}"),
            ))
        }
        Err(f) => {
            deploy_page_with(&console, &visitor, &loc, Some(&endpoint), form, Some(f.message), f.status).await
        }
    }
}

/// A deployed model as the endpoint page shows it.
pub struct DeployedRow {
    pub id: String,
    pub display_name: String,
    pub model_id: String,
    pub version: String,
    pub machine: String,
    pub price: String,
    pub replicas: String,
    pub ready: i32,
    pub min: i32,
    pub state: String,
    pub traffic: i32,
    /// `containerConcurrency`.
    pub concurrency: i32,
    /// The autoscaler's last decision: current and desired replicas, why, when.
    pub autoscaling: Option<api::AutoscalingStatus>,
    pub replica_list: Vec<ReplicaRow>,
}

/// One replica row.
pub struct ReplicaRow {
    pub id: String,
    pub state: String,
    pub restarts: u32,
    pub current: bool,
    pub last_exit: String,
    pub log_tail: String,
}

fn replica_row(r: Replica) -> ReplicaRow {
    let last_exit =
        r.status.last_error.as_deref().and_then(|e| e.lines().next()).unwrap_or_default().to_string();
    ReplicaRow {
        id: r.status.id,
        state: r.status.state.to_string(),
        restarts: r.status.restarts,
        current: r.status.current,
        last_exit,
        log_tail: r.log_tail.unwrap_or_default(),
    }
}

/// The live state of an endpoint: its deployed models with replicas and the latest deploy.
pub struct Live {
    pub deployed: Vec<DeployedRow>,
    /// A deploy in progress: percent and message.
    pub progress: Option<(u32, String)>,
    /// The latest deploy failed: why.
    pub failure: Option<String>,
    /// Whether the page should keep polling.
    pub busy: bool,
}

async fn live(
    console: &ConsoleState,
    visitor: &Visitor,
    name: &EndpointName,
    endpoint: &api::Endpoint,
) -> Live {
    let mut deployed = Vec::new();
    for d in &endpoint.deployed_models {
        let res = d.dedicated_resources.clone().unwrap_or_default();
        let machine = console.catalog.resolve_spec(&res.machine_spec).ok();
        let status = d.status.clone().unwrap_or_default();
        let replica_list = console
            .endpoints
            .replicas(&visitor.caller, name, &d.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(replica_row)
            .collect();
        deployed.push(DeployedRow {
            id: d.id.clone(),
            display_name: d.display_name.clone(),
            model_id: id_of(&d.model),
            version: d.model_version_id.clone(),
            machine: machine
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| res.machine_spec.machine_type.clone()),
            price: machine.as_ref().map(|m| console.prices.describe(m)).unwrap_or_default(),
            replicas: format!("{} to {}", res.min_replica_count, res.max_replica_count),
            ready: status.available_replica_count,
            min: res.min_replica_count,
            state: if status.message.is_empty() { "Deployed".into() } else { capitalised(&status.message) },
            traffic: endpoint.traffic_split.get(&d.id).copied().unwrap_or(0),
            concurrency: d.container_concurrency.unwrap_or_default(),
            autoscaling: d.autoscaling_status.clone(),
            replica_list,
        });
    }
    let ops = console.operations.list(&visitor.caller, &name.parent, None, "").await.unwrap_or_default();
    let target = name.to_string();
    let latest_deploy = ops.iter().find(|o| {
        o.metadata.as_ref().is_some_and(|m| {
            m["target"] == target.as_str()
                && m["@type"].as_str().is_some_and(|t| t.ends_with("DeployModelOperationMetadata"))
        })
    });
    let mut progress = None;
    let mut failure = None;
    if let Some(op) = latest_deploy {
        let meta = op.metadata.clone().unwrap_or_default();
        if !op.done {
            let percent = meta["progressPercent"].as_u64().unwrap_or(0) as u32;
            let message =
                meta["progressMessage"].as_str().unwrap_or("waiting for the controller").to_string();
            progress = Some((percent, message));
        } else if let Some(error) = &op.error {
            failure = Some(error.message.clone());
        }
    }
    let busy = progress.is_some() || deployed.iter().any(|d| d.state != "Deployed");
    Live { deployed, progress, failure, busy }
}

fn back_to_endpoint(project: &str, location: &str, id: &str) -> Response {
    let target = format!("/console/projects/{project}/locations/{location}/endpoints/{id}");
    axum::response::IntoResponse::into_response(axum::response::Redirect::to(&target))
}

fn capitalised(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage {
    layout: Layout,
    id: String,
    endpoint: api::Endpoint,
    access: &'static str,
    live: Live,
    snippets: Snippets,
    charts: Vec<Chart>,
    instances: String,
    result: Option<Prediction>,
}

#[derive(Template)]
#[template(path = "endpoint_status.html")]
struct StatusFragment {
    layout: Layout,
    id: String,
    live: Live,
}

#[derive(Template)]
#[template(path = "endpoint_charts.html")]
struct ChartsFragment {
    layout: Layout,
    id: String,
    charts: Vec<Chart>,
}

/// The answer of a "Try it" request.
pub struct Prediction {
    pub status: u16,
    pub millis: String,
    pub deployed_model: String,
    pub body: String,
    pub ok: bool,
}

#[derive(Template)]
#[template(path = "prediction.html")]
struct PredictionFragment {
    result: Prediction,
}

const EXAMPLE_INSTANCES: &str = "{\"instances\": [[1.0, 2.0, 3.0, 4.0]]}";

async fn endpoint_page(
    console: &ConsoleState,
    visitor: &Visitor,
    loc: &LocationName,
    id: &str,
    instances: String,
    result: Option<Prediction>,
) -> Page {
    let name = endpoint_name(loc, id)?;
    let mut layout = Layout::new(visitor, loc, Nav::Endpoints, "Endpoint").await;
    let endpoint = console.endpoints.get(&visitor.caller, &name).await.map_err(page::fail(&layout))?;
    layout.title = endpoint.display_name.clone();
    let live = live(console, visitor, &name, &endpoint).await;
    let snippets = snippets::for_endpoint(
        &endpoint.predict_uri,
        &name.endpoint_id,
        &loc.project,
        &loc.location,
        endpoint.access == Access::Public,
    );
    let charts = charts::endpoint_charts(&console.history.window(&name.to_string()));
    let access = access_label(endpoint.access);
    let page = EndpointPage {
        layout,
        id: name.endpoint_id.clone(),
        endpoint,
        access,
        live,
        snippets,
        charts,
        instances,
        result,
    };
    Ok(Html::ok(page))
}

/// `GET .../endpoints/{endpoint}`.
pub async fn detail(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    endpoint_page(&console, &visitor, &loc, &id, EXAMPLE_INSTANCES.into(), None).await
}

/// `GET .../endpoints/{endpoint}/status`: the live part of the page (htmx polls it).
pub async fn status(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let layout = Layout::new(&visitor, &loc, Nav::Endpoints, "Endpoint").await;
    let endpoint = console.endpoints.get(&visitor.caller, &name).await.map_err(page::fail(&layout))?;
    let live = live(&console, &visitor, &name, &endpoint).await;
    Ok(Html::ok(StatusFragment { layout, id, live }))
}

/// `GET .../endpoints/{endpoint}/charts`: the charts (htmx refreshes them).
pub async fn charts(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let layout = Layout::new(&visitor, &loc, Nav::Endpoints, "Endpoint").await;
    console.endpoints.get(&visitor.caller, &name).await.map_err(page::fail(&layout))?;
    let charts = charts::endpoint_charts(&console.history.window(&name.to_string()));
    Ok(Html::ok(ChartsFragment { layout, id, charts }))
}

#[derive(Deserialize)]
pub struct TrafficForm {
    #[serde(flatten)]
    fields: BTreeMap<String, String>,
}

/// `POST .../endpoints/{endpoint}/traffic`: fields `traffic_{deployedModelId}` in percent.
pub async fn traffic(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    Form(form): Form<TrafficForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let mut split = BTreeMap::new();
    let mut problem = None;
    for (key, value) in &form.fields {
        if let Some(dm) = key.strip_prefix("traffic_") {
            match value.trim().parse::<i32>() {
                Ok(p) => {
                    split.insert(dm.to_string(), p);
                }
                Err(_) => problem = Some(format!("`{value}` is not a percentage")),
            }
        }
    }
    let result = match problem {
        Some(p) => Err(p),
        None => {
            let body = api::Endpoint { traffic_split: split, ..Default::default() };
            console
                .endpoints
                .update(&visitor.caller, &name, &[EndpointField::TrafficSplit], &body)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => visitor.flash("The traffic split was saved.").await,
        Err(e) => visitor.flash(format!("The traffic split was not changed: {e}")).await,
    }
    Ok(back_to_endpoint(&project, &location, &id))
}

#[derive(Deserialize)]
pub struct UndeployForm {
    deployed_model_id: String,
}

/// `POST .../endpoints/{endpoint}/undeploy`: its traffic goes to the others.
pub async fn undeploy(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    Form(form): Form<UndeployForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let result = async {
        let endpoint = console.endpoints.get(&visitor.caller, &name).await?;
        let split =
            crate::endpoints::traffic::redistribute_without(&endpoint.traffic_split, &form.deployed_model_id);
        let req = api::UndeployModelRequest {
            deployed_model_id: form.deployed_model_id.clone(),
            traffic_split: split,
        };
        console.endpoints.undeploy(&visitor.caller, &name, &req).await
    };
    match result.await {
        Ok(_) => {
            visitor.flash(format!("Deployed model {} is being undeployed.", form.deployed_model_id)).await
        }
        Err(e) => visitor.flash(format!("The model was not undeployed: {e}")).await,
    }
    Ok(back_to_endpoint(&project, &location, &id))
}

#[derive(Deserialize)]
pub struct PredictForm {
    instances: String,
}

/// `POST .../endpoints/{endpoint}:predict` from "Try it": through the gateway, as the
/// signed-in user, with the endpoint's access rules; shows the answer and its latency.
pub async fn predict(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<PredictForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = endpoint_name(&loc, &id)?;
    let endpoint = name.to_string();
    let started = Instant::now();
    let answer = console
        .gateway
        .serve(
            &console.accounts,
            PredictRequest {
                endpoint: &endpoint,
                call: Call::Predict,
                private_listener: false,
                credentials: Credentials::Caller(&visitor.caller),
                content_type: Some("application/json"),
                inference_header_length: None,
                body: Bytes::from(form.instances.clone()),
            },
        )
        .await;
    let millis = format!("{:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    let result = match answer {
        Ok(f) => {
            let body = serde_json::from_slice::<serde_json::Value>(&f.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&f.body).into_owned());
            Prediction {
                status: f.status,
                millis,
                deployed_model: f.deployed_model_id,
                ok: (200..300).contains(&f.status),
                body,
            }
        }
        Err(e) => {
            let f = Failure::from(e);
            Prediction {
                status: f.status.as_u16(),
                millis,
                deployed_model: String::new(),
                ok: false,
                body: f.message,
            }
        }
    };
    if headers.contains_key("hx-request") {
        return Ok(Html::ok(PredictionFragment { result }));
    }
    endpoint_page(&console, &visitor, &loc, &id, form.instances, Some(result)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_form_becomes_a_deploy_request() {
        let form = DeployForm {
            model: "mlp".into(),
            version: "2".into(),
            machine_type: "e2-small".into(),
            min_replicas: "1".into(),
            max_replicas: "3".into(),
            metric: api::METRIC_CPU.into(),
            target: "70".into(),
            traffic: "25".into(),
            ..Default::default()
        };
        let req = form.to_request(&["111".into(), "222".into()]).unwrap();
        assert_eq!(req.deployed_model.model, "mlp@2");
        let res = req.deployed_model.dedicated_resources.unwrap();
        assert_eq!((res.min_replica_count, res.max_replica_count), (1, 3));
        assert_eq!(res.autoscaling_metric_specs[0].target, 70);
        assert_eq!(req.traffic_split.values().sum::<i32>(), 100);
        assert_eq!(req.traffic_split["0"], 25);
        assert_eq!(req.traffic_split["111"], 38);
        assert!(form.to_request(&[]).unwrap().traffic_split.is_empty(), "the first model takes all");
        assert!(DeployForm { model: String::new(), ..form.clone() }.to_request(&[]).is_err());
        assert!(DeployForm { traffic: "120".into(), ..form.clone() }.to_request(&[]).is_err());
        assert!(
            DeployForm { min_replicas: "one".into(), ..form.clone() }
                .to_request(&[])
                .unwrap_err()
                .contains("minimum")
        );
        assert_eq!(req.deployed_model.container_concurrency, None, "empty: the default");
        let four =
            DeployForm { container_concurrency: " 4 ".into(), ..form.clone() }.to_request(&[]).unwrap();
        assert_eq!(four.deployed_model.container_concurrency, Some(4));
        let words = DeployForm { container_concurrency: "many".into(), ..form.clone() }.to_request(&[]);
        assert!(words.unwrap_err().contains("concurrent requests per replica"));
        assert_eq!(DeployForm::default().access(), Ok(Access::Authenticated));
        assert!(DeployForm { access: "OPEN".into(), ..form }.access().is_err());
    }
}
