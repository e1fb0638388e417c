//! The model registry's REST methods: `models:upload`, get, list, `:listVersions`, patch,
//! delete, `:deleteVersion`, `:mergeVersionAliases`. Each reads the request and calls the
//! registry service.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::{Value, json};

use super::list::{self, ListQuery};
use super::request::{self, Path, Query, UpdateMask};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::registry::ModelField;

/// `POST /v1/projects/{p}/locations/{l}/models:upload`: a new model, or a new version of
/// `parentModel`. The operation is done when it is returned.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/models:upload", tag = "models",
    params(("project" = String, Path), ("location" = String, Path)),
    request_body = api::UploadModelRequest,
    responses((status = 200, body = api::Operation), (status = 400, body = api::ErrorBody)))]
pub async fn upload(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    body: Result<Json<api::UploadModelRequest>, JsonRejection>,
) -> Result<Json<api::Operation>, ApiError> {
    let loc = request::location(&project, &location)?;
    let req = request::json(body)?;
    Ok(Json(app.registry.upload(&caller, &loc, &req).await?))
}

/// A model named by a `{id}[@version|@alias]` path segment.
fn model(
    project: &str,
    location: &str,
    segment: &str,
) -> Result<(api::ModelName, Option<api::VersionRef>), ApiError> {
    let loc = request::location(project, location)?;
    let (id, version) = api::parse_model_segment(segment)?;
    Ok((loc.model(&id), version))
}

/// `GET .../models/{model}` (also `{model}@{version}` or `@{alias}`) and
/// `GET .../models/{model}:listVersions`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/models/{model}", tag = "models",
    params(("project" = String, Path), ("location" = String, Path),
        ("model" = String, Path, description = "`{id}`, `{id}@{version}`, `{id}@{alias}`, or `{id}:listVersions`"),
        ListQuery),
    responses((status = 200, body = api::Model), (status = 404, body = api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, verb) = request::split_verb(&segment);
    let (model, version) = model(&project, &location, name)?;
    match verb {
        None => Ok(Json(json!(app.registry.get(&caller, &model, version.as_ref()).await?))),
        Some("listVersions") => {
            let versions = app.registry.list_versions(&caller, &model).await?;
            let (models, next_page_token) = list::page(versions, &query)?;
            Ok(Json(json!(api::ListModelsResponse { models, next_page_token })))
        }
        Some(other) => Err(request::unknown_verb(&model.to_string(), other, "GET", &["listVersions"])),
    }
}

/// `GET .../models`: the default version of each model.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/models", tag = "models",
    params(("project" = String, Path), ("location" = String, Path), ListQuery),
    responses((status = 200, body = api::ListModelsResponse), (status = 400, body = api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<api::ListModelsResponse>, ApiError> {
    let loc = request::location(&project, &location)?;
    let all = app.registry.list(&caller, &loc).await?;
    let (models, next_page_token) = list::page(all, &query)?;
    Ok(Json(api::ListModelsResponse { models, next_page_token }))
}

/// `PATCH .../models/{model}?updateMask=...`: display name, description, labels (of the
/// model), version description (of the named or default version). `etag` is checked when given.
#[utoipa::path(patch, path = "/v1/projects/{project}/locations/{location}/models/{model}", tag = "models",
    params(("project" = String, Path), ("location" = String, Path), ("model" = String, Path), UpdateMask),
    request_body = api::Model,
    responses((status = 200, body = api::Model), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn patch(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    Query(mask): Query<UpdateMask>,
    body: Result<Json<api::Model>, JsonRejection>,
) -> Result<Json<api::Model>, ApiError> {
    request::location(&project, &location)?;
    let fields = mask.fields(&[
        ("displayName", ModelField::DisplayName),
        ("description", ModelField::Description),
        ("labels", ModelField::Labels),
        ("versionDescription", ModelField::VersionDescription),
    ])?;
    let body = request::json(body)?;
    let (model, version) = model(&project, &location, &segment)?;
    Ok(Json(app.registry.update(&caller, &model, version.as_ref(), &fields, &body).await?))
}

/// `DELETE .../models/{model}` and `DELETE .../models/{model}@{version}:deleteVersion`.
#[utoipa::path(delete, path = "/v1/projects/{project}/locations/{location}/models/{model}", tag = "models",
    params(("project" = String, Path), ("location" = String, Path),
        ("model" = String, Path, description = "`{id}`, or `{id}@{version}:deleteVersion`")),
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
) -> Result<Json<api::Operation>, ApiError> {
    let (name, verb) = request::split_verb(&segment);
    let (model, version) = model(&project, &location, name)?;
    let op = match (verb, version) {
        (None, None) => app.registry.delete(&caller, &model).await?,
        (None, Some(_)) => {
            return Err(ApiError::invalid(format!(
                "to delete one version, call DELETE {}@{}:deleteVersion",
                model,
                name.split('@').nth(1).unwrap_or_default()
            )));
        }
        (Some("deleteVersion"), Some(v)) => app.registry.delete_version(&caller, &model, &v).await?,
        (Some("deleteVersion"), None) => {
            return Err(ApiError::invalid("name the version to delete: models/{id}@{version}:deleteVersion"));
        }
        (Some(other), _) => {
            return Err(request::unknown_verb(&model.to_string(), other, "DELETE", &["deleteVersion"]));
        }
    };
    Ok(Json(op))
}

/// `POST .../models/{model}@{version}:mergeVersionAliases`: `"-alias"` removes an alias.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/models/{model}", tag = "models",
    params(("project" = String, Path), ("location" = String, Path),
        ("model" = String, Path, description = "`{id}@{version}:mergeVersionAliases`")),
    request_body = api::MergeVersionAliasesRequest,
    responses((status = 200, body = api::Model), (status = 400, body = api::ErrorBody)))]
pub async fn post_verb(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    body: Result<Json<api::MergeVersionAliasesRequest>, JsonRejection>,
) -> Result<Json<api::Model>, ApiError> {
    let (name, verb) = request::split_verb(&segment);
    let (model, version) = model(&project, &location, name)?;
    if verb != Some("mergeVersionAliases") {
        return Err(request::unknown_verb(
            &model.to_string(),
            verb.unwrap_or(""),
            "POST",
            &["mergeVersionAliases"],
        ));
    }
    let Some(version) = version else {
        return Err(ApiError::invalid("name the version: models/{id}@{version}:mergeVersionAliases"));
    };
    let req = request::json(body)?;
    Ok(Json(app.registry.merge_aliases(&caller, &model, &version, &req.version_aliases).await?))
}
