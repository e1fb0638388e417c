//! The endpoint service's REST methods: create, get, list, patch, delete, `:deployModel`,
//! `:undeployModel`, `:mutateDeployedModel` (and `:predict`, `:rawPredict` in `predict.rs`).
//! Each reads the request and calls the endpoint service.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::list::{self, ListQuery};
use super::request::{self, Path, Query, UpdateMask};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::endpoints::{EndpointField, MutableField};
use crate::gateway::Call;

/// The custom methods of `POST .../endpoints/{id}:{verb}`.
const VERBS: [&str; 5] = ["deployModel", "undeployModel", "mutateDeployedModel", "predict", "rawPredict"];

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
    let loc = request::location(&project, &location)?;
    let body = request::json(body)?;
    Ok(Json(app.endpoints.create(&caller, &loc, query.endpoint_id.as_deref(), &body).await?))
}

/// An endpoint named in the path of a method without a `:verb`.
fn endpoint(project: &str, location: &str, segment: &str) -> Result<api::EndpointName, ApiError> {
    if let (_, Some(v)) = request::split_verb(segment) {
        return Err(ApiError::not_found(format!(
            "`:{v}` is not a method of this HTTP verb on endpoints; POST supports :{}",
            VERBS.join(", :")
        )));
    }
    request::endpoint(project, location, segment)
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
    let name = endpoint(&project, &location, &segment)?;
    Ok(Json(app.endpoints.get(&caller, &name).await?))
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
    let loc = request::location(&project, &location)?;
    let all = app.endpoints.list(&caller, &loc).await?;
    let (endpoints, next_page_token) = list::page(all, &query)?;
    Ok(Json(api::ListEndpointsResponse { endpoints, next_page_token }))
}

/// `PATCH .../endpoints/{endpoint}?updateMask=...`: display name, description, labels, access,
/// traffic split, request-response logging (`predictRequestResponseLoggingConfig`). The endpoint's `etag`, when given, must be current.
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
    let name = endpoint(&project, &location, &segment)?;
    let fields = mask.fields(&[
        ("displayName", EndpointField::DisplayName),
        ("description", EndpointField::Description),
        ("labels", EndpointField::Labels),
        ("access", EndpointField::Access),
        ("trafficSplit", EndpointField::TrafficSplit),
        ("predictRequestResponseLoggingConfig", EndpointField::PredictionLogging),
        ("clientConnectionConfig", EndpointField::InferenceTimeout),
        ("clientConnectionConfig.inferenceTimeout", EndpointField::InferenceTimeout),
    ])?;
    let body = request::json(body)?;
    Ok(Json(app.endpoints.update(&caller, &name, &fields, &body).await?))
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
    let name = endpoint(&project, &location, &segment)?;
    Ok(Json(app.endpoints.delete(&caller, &name).await?))
}

/// `POST .../endpoints/{endpoint}:{verb}`: deployModel, undeployModel, mutateDeployedModel,
/// predict, rawPredict.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path),
        ("endpoint" = String, Path, description = "`{id}:deployModel`, `{id}:undeployModel` or `{id}:mutateDeployedModel`")),
    request_body = api::DeployModelRequest,
    responses((status = 200, body = api::Operation), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody),
        (status = 429, description = "`:predict`, `:rawPredict`: every replica serves its `containerConcurrency` requests and the deployed model's queue is full; retry after `Retry-After` seconds (a model server's own 429 passes through with its `Retry-After`)", body = api::ErrorBody),
        (status = 503, description = "`:predict`, `:rawPredict`: no ready replica yet; retry after `Retry-After` seconds", body = api::ErrorBody)))]
pub async fn post_verb(
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    axum::Extension(private): axum::Extension<super::PrivateListener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, verb) = request::split_verb(&segment);
    let verb = verb.unwrap_or_default();
    let name = request::endpoint(&project, &location, id)?;
    match verb {
        "predict" | "rawPredict" => {
            let call = if verb == "rawPredict" { Call::RawPredict } else { Call::Predict };
            return super::predict::serve(&app, &name, call, private.0, &headers, body).await;
        }
        "deployModel" | "undeployModel" | "mutateDeployedModel" => {}
        other => return Err(request::unknown_verb(&name.to_string(), other, "POST", &VERBS)),
    }
    let caller = super::caller_from_headers(&app, &headers).await?;
    let op = match verb {
        "deployModel" => app.endpoints.deploy(&caller, &name, &request::json_bytes(&body)?).await?,
        "undeployModel" => app.endpoints.undeploy(&caller, &name, &request::json_bytes(&body)?).await?,
        _ => {
            let req: api::MutateDeployedModelRequest = request::json_bytes(&body)?;
            let fields = UpdateMask { update_mask: req.update_mask.clone() }.fields(&[
                ("dedicatedResources.minReplicaCount", MutableField::MinReplicaCount),
                ("dedicatedResources.maxReplicaCount", MutableField::MaxReplicaCount),
                ("dedicatedResources.autoscalingMetricSpecs", MutableField::AutoscalingMetricSpecs),
                ("dedicatedResources", MutableField::DedicatedResources),
                ("containerConcurrency", MutableField::ContainerConcurrency),
            ])?;
            app.endpoints.mutate(&caller, &name, &fields, &req).await?
        }
    };
    Ok(Json(op).into_response())
}
