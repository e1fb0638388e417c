//! The manifests API: what runs for each deployed model, as Kubernetes YAML the user can read,
//! download, edit and apply, with every change kept as a revision.
//!
//! - `GET .../endpoints/{e}/deployedModels/{d}/manifests`: the current revision (YAML; a JSON
//!   array of objects with `Accept: application/json`); `GET .../endpoints/{e}/manifests`: all of
//!   the endpoint's.
//! - `PUT` the same path with edited YAML: validated (schema, ownership, security policy)
//!   against what the platform renders, stored as a new revision and applied; `?dryRun=true`
//!   returns the diff and warnings only.
//! - `GET .../revisions`, `GET .../revisions/{n}`, `POST .../revisions/{n}:rollback`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;

type DmPath = Path<(String, String, String, String)>;

/// YAML, or a JSON array of the documents when the caller asks for JSON.
fn manifests_response(
    headers: &HeaderMap,
    yaml: String,
    revision: Option<i64>,
) -> Result<Response, ApiError> {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let mut response = if wants_json {
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(&yaml) {
            let value = Value::deserialize(doc).map_err(|e| {
                ApiError::of(api::Code::DataLoss, format!("the stored manifests are not YAML: {e}"))
            })?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        axum::Json(docs).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response()
    };
    if let Some(n) = revision
        && let Ok(v) = n.to_string().parse()
    {
        response.headers_mut().insert("x-platform-revision", v);
    }
    Ok(response)
}

/// `GET .../endpoints/{endpoint}/deployedModels/{deployedModel}/manifests`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed_model}/manifests",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), ("deployed_model" = String, Path)),
    responses((status = 200, description = "Multi-document YAML (a JSON array with `Accept: application/json`)", content_type = "application/yaml", body = String)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint, id)): DmPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let revision = app.endpoints.manifests(&caller, &name, &id).await?;
    manifests_response(&headers, revision.manifests, Some(revision.revision))
}

/// `GET .../endpoints/{endpoint}/manifests`: every deployed model's, and the endpoint's own.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/manifests",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, description = "Multi-document YAML", content_type = "application/yaml", body = String)))]
pub async fn get_endpoint(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let yaml = app.endpoints.endpoint_manifests(&caller, &name).await?;
    manifests_response(&headers, yaml, None)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Validate and show the diff and warnings without storing or applying anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// `PUT .../deployedModels/{deployedModel}/manifests[?dryRun=true]` with edited YAML.
#[utoipa::path(put, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed_model}/manifests",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), ("deployed_model" = String, Path), PutQuery),
    request_body(content = String, content_type = "application/yaml", description = "The edited multi-document YAML"),
    responses((status = 200, body = api::ApplyManifestsResponse), (status = 400, body = api::ErrorBody)))]
pub async fn put(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint, id)): DmPath,
    Query(query): Query<PutQuery>,
    body: Bytes,
) -> Result<axum::Json<api::ApplyManifestsResponse>, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let edited =
        std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the manifests are not UTF-8 text"))?;
    Ok(axum::Json(app.endpoints.apply_manifests(&caller, &name, &id, edited, query.dry_run).await?))
}

/// `GET .../deployedModels/{deployedModel}/revisions`: oldest first.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed_model}/revisions",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), ("deployed_model" = String, Path)),
    responses((status = 200, body = api::ListRevisionsResponse)))]
pub async fn list_revisions(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint, id)): DmPath,
) -> Result<axum::Json<api::ListRevisionsResponse>, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let revisions = app.endpoints.revisions(&caller, &name, &id).await?;
    Ok(axum::Json(api::ListRevisionsResponse { revisions }))
}

fn revision_number(segment: &str) -> Result<i64, ApiError> {
    segment.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::invalid(format!("revision `{segment}` is not a revision number (1, 2, ...)"))
    })
}

/// `GET .../revisions/{revision}`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed_model}/revisions/{revision}",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), ("deployed_model" = String, Path), ("revision" = String, Path)),
    responses((status = 200, body = api::Revision)))]
pub async fn get_revision(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint, id, revision)): Path<(String, String, String, String, String)>,
) -> Result<axum::Json<api::Revision>, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    Ok(axum::Json(app.endpoints.revision(&caller, &name, &id, revision_number(&revision)?).await?))
}

/// `POST .../revisions/{revision}:rollback`: a new revision with that one's manifests.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed_model}/revisions/{revision}",
    tag = "manifests",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), ("deployed_model" = String, Path),
        ("revision" = String, Path, description = "`{n}:rollback`")),
    responses((status = 200, body = api::Revision)))]
pub async fn rollback(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint, id, segment)): Path<(String, String, String, String, String)>,
) -> Result<axum::Json<api::Revision>, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let (number, verb) = request::split_verb(&segment);
    if verb != Some("rollback") {
        return Err(request::unknown_verb(&segment, verb.unwrap_or(""), "POST", &["rollback"]));
    }
    Ok(axum::Json(app.endpoints.rollback(&caller, &name, &id, revision_number(number)?).await?))
}
