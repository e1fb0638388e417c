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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::request::{self, Path, Query};
use super::{ApiError, App, AppState};
use crate::auth::{Caller, Role};
use crate::endpoints::desired;
use crate::manifests::{self, EndpointInput};
use crate::store::{self, EndpointKey, ModelKey};

type DmPath = Path<(String, String, String, String)>;

fn key(project: &str, location: &str, endpoint: &str) -> Result<EndpointKey, ApiError> {
    let loc = request::location(project, location)?;
    let name = api::EndpointName::new(loc, endpoint).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(EndpointKey::new(project, location, name.endpoint_id))
}

async fn live_deployed_model(
    app: &App,
    key: &EndpointKey,
    id: &str,
) -> Result<store::DeployedModel, ApiError> {
    api::check_deployed_model_id(id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let dm = app.store.get_deployed_model(key, id).await?;
    if dm.desired_state == "undeploying" {
        return Err(ApiError::not_found(format!("deployed model {id} is being undeployed")));
    }
    Ok(dm)
}

async fn current(app: &App, key: &EndpointKey, id: &str) -> Result<store::Revision, ApiError> {
    app.store.latest_revision(key, id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("deployed model {id} has no manifests yet; it is being deployed, retry shortly"),
        )
        .retry_after(1)
    })
}

fn to_api(r: &store::Revision, with_manifests: bool) -> api::Revision {
    api::Revision {
        name: format!(
            "{}/deployedModels/{}/revisions/{}",
            EndpointKey::new(&r.project, &r.location, &r.endpoint_id).name(),
            r.deployed_model_id,
            r.revision
        ),
        revision: r.revision,
        source: r.source.clone(),
        create_time: r.create_time.to_string(),
        manifests: if with_manifests { r.manifests.clone() } else { String::new() },
    }
}

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
            let value =
                Value::deserialize(doc).map_err(|e| ApiError::internal(format!("stored manifests: {e}")))?;
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Viewer, &project)?;
    live_deployed_model(&app, &key, &id).await?;
    let revision = current(&app, &key, &id).await?;
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Viewer, &project)?;
    let record = app.store.get_endpoint(&key).await?;
    let mut yaml = String::new();
    for dm in app.store.list_deployed_models(&key).await? {
        if dm.desired_state == "undeploying" {
            continue;
        }
        if let Some(r) = app.store.latest_revision(&key, &dm.deployed_model_id).await? {
            yaml.push_str(&r.manifests);
        }
    }
    let input = EndpointInput {
        project: project.clone(),
        location: location.clone(),
        endpoint_id: key.endpoint_id.clone(),
        access: super::endpoints::access_of(&record),
    };
    let own = manifests::render_endpoint(&input, &app.render)
        .to_yaml()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    yaml.push_str(&own);
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Editor, &project)?;
    let dm = live_deployed_model(&app, &key, &id).await?;
    let edited =
        std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the manifests are not UTF-8 text"))?;
    if edited.trim().is_empty() {
        return Err(ApiError::invalid("send the edited manifests (multi-document YAML) as the request body"));
    }
    let version =
        app.store.get_model_version(&ModelKey::new(&project, &location, &dm.model_id), dm.version_id).await?;
    let rendering = desired::render(&dm, &version, &app.catalog, &app.render).map_err(ApiError::invalid)?;
    let objects = manifests::validate_deployed_model(edited, &rendering.rendered).map_err(problems_error)?;
    let canonical = objects.to_yaml().map_err(|e| ApiError::internal(e.to_string()))?;
    let before = current(&app, &key, &id).await?;
    let diff = manifests::diff(&before.manifests, &canonical);
    let warnings = app.backend.check(&objects).await.map_err(|e| ApiError::invalid(e.to_string()))?;
    if query.dry_run || before.manifests == canonical {
        return Ok(axum::Json(api::ApplyManifestsResponse {
            revision: None,
            diff,
            warnings,
            dry_run: query.dry_run,
        }));
    }
    let stored = app.store.insert_revision(&new_revision(&dm, canonical, "edited")).await?;
    app.controller.wake();
    tracing::info!(deployed_model = %id, revision = stored.revision, user = %caller.username, "manifests edited");
    Ok(axum::Json(api::ApplyManifestsResponse {
        revision: Some(to_api(&stored, false)),
        diff,
        warnings,
        dry_run: false,
    }))
}

fn new_revision(dm: &store::DeployedModel, manifests: String, source: &str) -> store::Revision {
    store::Revision {
        project: dm.project.clone(),
        location: dm.location.clone(),
        endpoint_id: dm.endpoint_id.clone(),
        deployed_model_id: dm.deployed_model_id.clone(),
        manifests,
        source: source.into(),
        ..Default::default()
    }
}

/// A 400 that lists every problem, each also as a field violation.
fn problems_error(problems: manifests::Problems) -> ApiError {
    #[derive(Serialize)]
    struct Violation<'a> {
        field: &'a str,
        description: &'a str,
    }
    let violations: Vec<Violation> =
        problems.0.iter().map(|p| Violation { field: &p.path, description: &p.message }).collect();
    let details =
        json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations});
    let count = match problems.0.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    ApiError::invalid(format!("the manifests are not accepted ({count}):\n{problems}"))
        .with_details(vec![details])
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Viewer, &project)?;
    live_deployed_model(&app, &key, &id).await?;
    let revisions = app.store.list_revisions(&key, &id).await?.iter().map(|r| to_api(r, false)).collect();
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Viewer, &project)?;
    live_deployed_model(&app, &key, &id).await?;
    let r = app.store.get_revision(&key, &id, revision_number(&revision)?).await?;
    Ok(axum::Json(to_api(&r, true)))
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
    let key = key(&project, &location, &endpoint)?;
    caller.require(Role::Editor, &project)?;
    let (number, verb) = request::split_verb(&segment);
    if verb != Some("rollback") {
        return Err(request::unknown_verb(&segment, verb.unwrap_or(""), "POST", &["rollback"]));
    }
    let dm = live_deployed_model(&app, &key, &id).await?;
    let old = app.store.get_revision(&key, &id, revision_number(number)?).await?;
    // Still acceptable for this deployed model (the rules or the model may have changed since).
    let version =
        app.store.get_model_version(&ModelKey::new(&project, &location, &dm.model_id), dm.version_id).await?;
    let rendering = desired::render(&dm, &version, &app.catalog, &app.render).map_err(ApiError::invalid)?;
    manifests::validate_deployed_model(&old.manifests, &rendering.rendered).map_err(problems_error)?;
    let stored = app.store.insert_revision(&new_revision(&dm, old.manifests, "rollback")).await?;
    app.controller.wake();
    tracing::info!(deployed_model = %id, to = old.revision, revision = stored.revision, user = %caller.username, "rollback");
    Ok(axum::Json(to_api(&stored, false)))
}
