//! The endpoint service's REST methods: create, get, list, patch, delete, `:deployModel`,
//! `:undeployModel`, `:mutateDeployedModel` (and `:predict`, `:rawPredict` in `predict.rs`).
//! Changes to what runs are recorded as desired state with an operation; the controller makes
//! them true and finishes the operation.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::list::{self, ListQuery};
use super::request::{self, Path, Query, UpdateMask};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role};
use crate::endpoints::{resources, traffic};
use crate::operations;
use crate::store::{self, EndpointKey, ModelKey};

fn split_of(endpoint: &store::Endpoint) -> BTreeMap<String, i32> {
    serde_json::from_value(endpoint.traffic_split.clone()).unwrap_or_default()
}

/// The endpoint's access mode.
pub fn access_of(endpoint: &store::Endpoint) -> api::Access {
    match endpoint.access.as_str() {
        "public" => api::Access::Public,
        "private" => api::Access::Private,
        _ => api::Access::Authenticated,
    }
}

fn access_text(access: api::Access) -> &'static str {
    match access {
        api::Access::Authenticated => "authenticated",
        api::Access::Public => "public",
        api::Access::Private => "private",
    }
}

/// The API's view of a deployed model.
pub fn deployed_to_api(dm: &store::DeployedModel) -> api::DeployedModel {
    let mut out: api::DeployedModel = serde_json::from_value(dm.spec.clone()).unwrap_or_default();
    out.id = dm.deployed_model_id.clone();
    out.model = ModelKey::new(&dm.project, &dm.location, &dm.model_id).name();
    out.model_version_id = dm.version_id.to_string();
    out.display_name = dm.display_name.clone();
    out.create_time = dm.create_time.to_string();
    let mut status: api::DeployedModelStatus = serde_json::from_value(dm.status.clone()).unwrap_or_default();
    if status.message.is_empty() {
        status.message = match dm.desired_state.as_str() {
            "deploying" => "deploying".into(),
            "undeploying" => "undeploying".into(),
            "failed" => "failed".into(),
            _ => String::new(),
        };
    }
    out.status = Some(status);
    out
}

/// The API's view of an endpoint with its deployed models.
pub fn to_api(app: &super::App, e: &store::Endpoint, deployed: &[store::DeployedModel]) -> api::Endpoint {
    let name = e.key().name();
    api::Endpoint {
        predict_uri: format!("{}/v1/{name}:predict", app.settings.public_url),
        name,
        display_name: e.display_name.clone(),
        description: e.description.clone(),
        deployed_models: deployed
            .iter()
            .filter(|d| d.desired_state != "undeploying")
            .map(deployed_to_api)
            .collect(),
        traffic_split: split_of(e),
        etag: e.etag.clone(),
        labels: serde_json::from_value(e.labels.clone()).unwrap_or_default(),
        create_time: e.create_time.to_string(),
        update_time: e.update_time.to_string(),
        access: access_of(e),
    }
}

async fn load(app: &super::App, key: &EndpointKey) -> Result<api::Endpoint, ApiError> {
    let e = app.store.get_endpoint(key).await?;
    let deployed = app.store.list_deployed_models(key).await?;
    Ok(to_api(app, &e, &deployed))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// The new endpoint's id; generated (numeric) when omitted.
    #[serde(default)]
    pub endpoint_id: Option<String>,
}

/// `POST .../endpoints[?endpointId=ID]`.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/endpoints", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), CreateQuery),
    request_body = api::Endpoint,
    responses((status = 200, body = api::Operation), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<CreateQuery>,
    body: Result<Json<api::Endpoint>, JsonRejection>,
) -> Result<Json<api::Operation>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Editor, &project)?;
    let body = request::json(body)?;
    request::check_display_name(&body.display_name)?;
    request::check_labels(&body.labels)?;
    if !body.deployed_models.is_empty() || !body.traffic_split.is_empty() {
        return Err(ApiError::invalid(
            "a new endpoint has no deployed models or traffic split; create it, then call :deployModel",
        ));
    }
    let endpoint_id = match query.endpoint_id {
        Some(id) => {
            api::check_new_endpoint_id(&id).map_err(|e| ApiError::invalid(e.to_string()))?;
            id
        }
        None => request::numeric_id(9),
    };
    let record = store::Endpoint {
        project: project.clone(),
        location: location.clone(),
        endpoint_id,
        display_name: body.display_name.clone(),
        description: body.description.clone(),
        labels: json!(body.labels),
        access: access_text(body.access).into(),
        traffic_split: json!({}),
        ..Default::default()
    };
    let created = app.store.create_endpoint(&record).await?;
    app.controller.wake();
    tracing::info!(endpoint = %created.key().name(), user = %caller.username, "endpoint created");
    let response = operations::typed("Endpoint", json!(to_api(&app, &created, &[])));
    let op = operations::new(
        &project,
        &location,
        "createEndpoint",
        &created.key().name(),
        Value::Null,
        Some(response),
    );
    Ok(Json(operations::to_api(&app.store.insert_operation(&op).await?)))
}

/// `GET .../endpoints/{endpoint}`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, body = api::Endpoint), (status = 404, body = api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
) -> Result<Json<api::Endpoint>, ApiError> {
    let key = endpoint_key(&project, &location, &segment, None)?;
    caller.require(Role::Viewer, &project)?;
    Ok(Json(load(&app, &key).await?))
}

fn endpoint_key(
    project: &str,
    location: &str,
    id: &str,
    verb: Option<&str>,
) -> Result<EndpointKey, ApiError> {
    let loc = request::location(project, location)?;
    if let (_, Some(v)) = request::split_verb(id)
        && verb.is_none()
    {
        return Err(ApiError::not_found(format!(
            "`:{v}` is not a method of this HTTP verb on endpoints; POST supports :deployModel, :undeployModel, :mutateDeployedModel, :predict, :rawPredict"
        )));
    }
    let name = api::EndpointName::new(loc, id).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(EndpointKey::new(project, location, name.endpoint_id))
}

/// `GET .../endpoints`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ListQuery),
    responses((status = 200, body = api::ListEndpointsResponse), (status = 400, body = api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<api::ListEndpointsResponse>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Viewer, &project)?;
    let deployed = app.store.list_all_deployed_models().await?;
    let all = app
        .store
        .list_endpoints(&project, &location)
        .await?
        .iter()
        .map(|e| {
            let mine: Vec<store::DeployedModel> =
                deployed.iter().filter(|d| d.endpoint_key() == e.key()).cloned().collect();
            to_api(&app, e, &mine)
        })
        .collect();
    let (endpoints, next_page_token) = list::page(all, &query)?;
    Ok(Json(api::ListEndpointsResponse { endpoints, next_page_token }))
}

/// `PATCH .../endpoints/{endpoint}?updateMask=...`: display name, description, labels, access,
/// traffic split. The endpoint's `etag`, when given, must be current.
#[utoipa::path(patch, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), UpdateMask),
    request_body = api::Endpoint,
    responses((status = 200, body = api::Endpoint), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn patch(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    Query(mask): Query<UpdateMask>,
    body: Result<Json<api::Endpoint>, JsonRejection>,
) -> Result<Json<api::Endpoint>, ApiError> {
    let key = endpoint_key(&project, &location, &segment, None)?;
    caller.require(Role::Editor, &project)?;
    let fields = mask.fields(&["displayName", "description", "labels", "access", "trafficSplit"])?;
    let body = request::json(body)?;
    let mut endpoint = app.store.get_endpoint(&key).await?;
    let mut etag = Some(body.etag.clone()).filter(|e| !e.is_empty());
    let mut changed = false;
    for f in &fields {
        match f.as_str() {
            "displayName" => {
                request::check_display_name(&body.display_name)?;
                endpoint.display_name = body.display_name.clone();
                changed = true;
            }
            "description" => {
                endpoint.description = body.description.clone();
                changed = true;
            }
            "labels" => {
                request::check_labels(&body.labels)?;
                endpoint.labels = json!(body.labels);
                changed = true;
            }
            "access" => {
                endpoint.access = access_text(body.access).into();
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        app.store.update_endpoint(&endpoint, etag.as_deref()).await?;
        etag = None;
    }
    if fields.iter().any(|f| f == "trafficSplit") {
        let deployed = app.store.list_deployed_models(&key).await?;
        let ids: Vec<&str> = deployed
            .iter()
            .filter(|d| d.desired_state != "undeploying")
            .map(|d| d.deployed_model_id.as_str())
            .collect();
        traffic::validate(&body.traffic_split, &ids).map_err(|e| ApiError::invalid(e.0))?;
        app.store.set_traffic_split(&key, &json!(body.traffic_split), etag.as_deref()).await?;
    }
    // Answer once the gateway routes by the change (the controller publishes within a pass).
    let published = app.gateway.next_publish(std::time::Duration::from_secs(5));
    app.controller.wake();
    published.await;
    Ok(Json(load(&app, &key).await?))
}

/// `DELETE .../endpoints/{endpoint}`: refused while models are deployed on it.
#[utoipa::path(delete, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
) -> Result<Json<api::Operation>, ApiError> {
    let key = endpoint_key(&project, &location, &segment, None)?;
    caller.require(Role::Editor, &project)?;
    app.store.delete_endpoint(&key).await?;
    app.controller.wake();
    tracing::info!(endpoint = %key.name(), user = %caller.username, "endpoint deleted");
    let op =
        operations::new(&project, &location, "delete", &key.name(), Value::Null, Some(operations::empty()));
    Ok(Json(operations::to_api(&app.store.insert_operation(&op).await?)))
}

/// `POST .../endpoints/{endpoint}:{verb}`: deployModel, undeployModel, mutateDeployedModel,
/// predict, rawPredict.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path),
        ("endpoint" = String, Path, description = "`{id}:deployModel`, `{id}:undeployModel` or `{id}:mutateDeployedModel`")),
    request_body = api::DeployModelRequest,
    responses((status = 200, body = api::Operation), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn post_verb(
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    axum::Extension(private): axum::Extension<super::PrivateListener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, verb) = request::split_verb(&segment);
    let verb = verb.unwrap_or_default();
    let key = endpoint_key(&project, &location, id, Some(verb))?;
    match verb {
        "predict" | "rawPredict" => {
            return super::predict::serve(&app, &key, verb == "rawPredict", private.0, &headers, body).await;
        }
        "deployModel" | "undeployModel" | "mutateDeployedModel" => {}
        other => {
            return Err(request::unknown_verb(
                &key.name(),
                other,
                "POST",
                &["deployModel", "undeployModel", "mutateDeployedModel", "predict", "rawPredict"],
            ));
        }
    }
    let caller = super::caller_from_headers(&app, &headers).await?;
    caller.require(Role::Editor, &project)?;
    let parse = |body: &Bytes| -> Result<Value, ApiError> {
        if body.is_empty() {
            return Err(ApiError::invalid("the request needs a JSON body"));
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("the request body is not JSON: {e}")))
    };
    let value = parse(&body)?;
    let invalid = |e: serde_json::Error| ApiError::invalid(format!("the request body is not valid: {e}"));
    let op = match verb {
        "deployModel" => deploy(&app, &caller, &key, serde_json::from_value(value).map_err(invalid)?).await?,
        "undeployModel" => undeploy(&app, &key, serde_json::from_value(value).map_err(invalid)?).await?,
        _ => mutate(&app, &key, serde_json::from_value(value).map_err(invalid)?).await?,
    };
    app.controller.wake();
    Ok(Json(operations::to_api(&op)).into_response())
}

async fn deploy(
    app: &super::App,
    caller: &Caller,
    key: &EndpointKey,
    req: api::DeployModelRequest,
) -> Result<store::Operation, ApiError> {
    let endpoint = app.store.get_endpoint(key).await?;
    let dm = &req.deployed_model;
    if dm.model.is_empty() {
        return Err(ApiError::invalid(
            "deployedModel.model is required: the model's name or id, optionally with @version or @alias",
        ));
    }
    let loc = request::location(&key.project, &key.location)?;
    let (model_name, version) =
        api::parse_model_ref(&dm.model, &loc).map_err(|e| ApiError::invalid(e.to_string()))?;
    if model_name.parent != loc {
        return Err(ApiError::invalid(format!("deployedModel.model must be a model of {loc}")));
    }
    let model_key = ModelKey::new(&key.project, &key.location, &model_name.model_id);
    let (model, version) = super::models::resolve(app, &model_key, version.as_ref()).await?;
    let compute = resources::resolve(dm, &app.catalog).map_err(ApiError::invalid)?;
    let deployed_model_id = if dm.id.is_empty() {
        request::numeric_id(18)
    } else {
        api::check_deployed_model_id(&dm.id).map_err(|e| ApiError::invalid(e.to_string()))?;
        dm.id.clone()
    };
    let existing = app.store.list_deployed_models(key).await?;
    if existing.iter().any(|d| d.deployed_model_id == deployed_model_id) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("deployed model {deployed_model_id} already exists on {}", key.name()),
        ));
    }
    let live: Vec<&str> = existing
        .iter()
        .filter(|d| d.desired_state != "undeploying")
        .map(|d| d.deployed_model_id.as_str())
        .collect();
    let split = traffic::after_deploy(&split_of(&endpoint), &req.traffic_split, &deployed_model_id, &live)
        .map_err(|e| ApiError::invalid(e.0))?;
    let spec = api::DeployedModel {
        dedicated_resources: Some(api::DedicatedResources {
            machine_spec: api::MachineSpec {
                machine_type: compute.machine.name.clone(),
                accelerator_type: compute
                    .machine
                    .accelerator
                    .as_ref()
                    .map(|a| a.accelerator_type.clone())
                    .unwrap_or_default(),
                accelerator_count: compute
                    .machine
                    .accelerator
                    .as_ref()
                    .map(|a| a.count as i32)
                    .unwrap_or_default(),
            },
            min_replica_count: compute.min_replicas as i32,
            max_replica_count: compute.max_replicas as i32,
            autoscaling_metric_specs: compute
                .autoscaling
                .iter()
                .map(|(m, t)| api::AutoscalingMetricSpec { metric_name: m.clone(), target: *t })
                .collect(),
            ..dm.dedicated_resources.clone().unwrap_or_default()
        }),
        service_account: dm.service_account.clone(),
        enable_access_logging: dm.enable_access_logging,
        disable_container_logging: dm.disable_container_logging,
        ..Default::default()
    };
    let record = store::DeployedModel {
        project: key.project.clone(),
        location: key.location.clone(),
        endpoint_id: key.endpoint_id.clone(),
        deployed_model_id: deployed_model_id.clone(),
        model_id: model.model_id.clone(),
        version_id: version.version_id,
        display_name: if dm.display_name.is_empty() {
            model.display_name.clone()
        } else {
            dm.display_name.clone()
        },
        spec: json!(spec),
        desired_state: "deploying".into(),
        status: json!({}),
        ..Default::default()
    };
    let (_, stored) = app.store.deploy(key, &record, Some(&json!(split))).await?;
    tracing::info!(endpoint = %key.name(), deployed_model = %deployed_model_id, model = %model.key().name(),
        version = version.version_id, user = %caller.username, "deploy requested");
    let op = operations::new(
        &key.project,
        &key.location,
        "deployModel",
        &key.name(),
        json!({"deployedModelId": stored.deployed_model_id, "previousTrafficSplit": split_of(&endpoint)}),
        None,
    );
    Ok(app.store.insert_operation(&op).await?)
}

async fn undeploy(
    app: &super::App,
    key: &EndpointKey,
    req: api::UndeployModelRequest,
) -> Result<store::Operation, ApiError> {
    api::check_deployed_model_id(&req.deployed_model_id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let endpoint = app.store.get_endpoint(key).await?;
    let deployed = app.store.list_deployed_models(key).await?;
    let live: Vec<&str> = deployed
        .iter()
        .filter(|d| d.desired_state != "undeploying")
        .map(|d| d.deployed_model_id.as_str())
        .collect();
    if !live.contains(&req.deployed_model_id.as_str()) {
        return Err(ApiError::not_found(format!(
            "deployed model {} is not deployed on {}",
            req.deployed_model_id,
            key.name()
        )));
    }
    let split =
        traffic::after_undeploy(&split_of(&endpoint), &req.traffic_split, &req.deployed_model_id, &live)
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", e.0))?;
    app.store.undeploy(key, &req.deployed_model_id, Some(&json!(split))).await?;
    let op = operations::new(
        &key.project,
        &key.location,
        "undeployModel",
        &key.name(),
        json!({"deployedModelId": req.deployed_model_id}),
        None,
    );
    Ok(app.store.insert_operation(&op).await?)
}

async fn mutate(
    app: &super::App,
    key: &EndpointKey,
    req: api::MutateDeployedModelRequest,
) -> Result<store::Operation, ApiError> {
    let allowed = [
        "dedicatedResources.minReplicaCount",
        "dedicatedResources.maxReplicaCount",
        "dedicatedResources.autoscalingMetricSpecs",
        "dedicatedResources",
    ];
    let fields = UpdateMask { update_mask: req.update_mask.clone() }.fields(&allowed)?;
    let id = &req.deployed_model.id;
    api::check_deployed_model_id(id).map_err(|e| ApiError::invalid(format!("deployedModel.id: {e}")))?;
    let current = app.store.get_deployed_model(key, id).await?;
    if current.desired_state == "undeploying" {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!("deployed model {id} is being undeployed"),
        ));
    }
    let mut spec: api::DeployedModel = serde_json::from_value(current.spec.clone()).unwrap_or_default();
    let given = req.deployed_model.dedicated_resources.clone().unwrap_or_default();
    let mut resources = spec.dedicated_resources.clone().unwrap_or_default();
    for f in &fields {
        match f.as_str() {
            "dedicatedResources.minReplicaCount" => resources.min_replica_count = given.min_replica_count,
            "dedicatedResources.maxReplicaCount" => resources.max_replica_count = given.max_replica_count,
            "dedicatedResources.autoscalingMetricSpecs" => {
                resources.autoscaling_metric_specs = given.autoscaling_metric_specs.clone()
            }
            _ => {
                if given.machine_spec != resources.machine_spec {
                    return Err(ApiError::invalid(
                        "the machine type cannot be mutated; deploy the model again with the new machine type",
                    ));
                }
                resources.min_replica_count = given.min_replica_count;
                resources.max_replica_count = given.max_replica_count;
                resources.autoscaling_metric_specs = given.autoscaling_metric_specs.clone();
            }
        }
    }
    spec.dedicated_resources = Some(resources);
    let compute = resources::resolve(&spec, &app.catalog).map_err(ApiError::invalid)?;
    if let Some(r) = spec.dedicated_resources.as_mut() {
        r.max_replica_count = compute.max_replicas as i32;
        r.autoscaling_metric_specs = compute
            .autoscaling
            .iter()
            .map(|(m, t)| api::AutoscalingMetricSpec { metric_name: m.clone(), target: *t })
            .collect();
    }
    let updated = app.store.update_deployed_model_spec(key, id, &json!(spec)).await?;
    // A mutation renders afresh, replacing manifests a person edited.
    let latest = app.store.latest_revision(key, id).await?;
    if latest.is_some_and(|r| r.source != "rendered") {
        let version = app
            .store
            .get_model_version(
                &ModelKey::new(&key.project, &key.location, &updated.model_id),
                updated.version_id,
            )
            .await?;
        let rendering = crate::endpoints::desired::render(&updated, &version, &app.catalog, &app.render)
            .map_err(ApiError::invalid)?;
        let revision = store::Revision {
            project: key.project.clone(),
            location: key.location.clone(),
            endpoint_id: key.endpoint_id.clone(),
            deployed_model_id: id.clone(),
            manifests: rendering.manifests,
            source: "rendered".into(),
            ..Default::default()
        };
        app.store.insert_revision(&revision).await?;
    }
    let op = operations::new(
        &key.project,
        &key.location,
        "mutateDeployedModel",
        &key.name(),
        json!({"deployedModelId": id}),
        None,
    );
    Ok(app.store.insert_operation(&op).await?)
}
