//! The model registry's REST methods: `models:upload`, get, list, `:listVersions`, patch,
//! delete, `:deleteVersion`, `:mergeVersionAliases`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::{Value, json};

use super::list::{self, ListQuery};
use super::request::{self, Path, Query, UpdateMask};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role};
use crate::operations;
use crate::store::{self, DEFAULT_ALIAS, ModelKey};

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
    caller.require(Role::Editor, &project)?;
    let req = request::json(body)?;
    let m = &req.model;
    for (field, set) in [
        ("name", !m.name.is_empty()),
        ("versionId", !m.version_id.is_empty()),
        ("deployedModels", !m.deployed_models.is_empty()),
        ("etag", !m.etag.is_empty()),
    ] {
        if set {
            return Err(ApiError::invalid(format!("model.{field} is output only; leave it out of uploads")));
        }
    }
    request::check_labels(&m.labels)?;
    for alias in &m.version_aliases {
        api::check_alias(alias).map_err(|e| ApiError::invalid(e.to_string()))?;
        if alias == DEFAULT_ALIAS {
            return Err(ApiError::invalid(
                "versionAliases cannot name `default`: the first version holds it; move it with :mergeVersionAliases",
            ));
        }
    }
    check_artifact_uri(&app, &caller, &project, &m.artifact_uri)?;
    let container = check_container(&app, m.container_spec.as_ref(), &m.artifact_uri)?;
    let version = store::ModelVersion {
        version_description: m.version_description.clone(),
        container_spec: container,
        artifact_uri: m.artifact_uri.clone(),
        artifact_sha256: artifact_sha256(&app, &m.artifact_uri).await?,
        predict_schemata: m.predict_schemata.as_ref().map(|p| json!(p)).unwrap_or(Value::Null),
        labels: json!(m.labels),
        aliases: m.version_aliases.clone(),
        ..Default::default()
    };

    let (key, version) = if let Some(parent) = &req.parent_model {
        if req.model_id.is_some() {
            return Err(ApiError::invalid(
                "give either modelId (a new model) or parentModel (a new version)",
            ));
        }
        let (name, v) = api::parse_model_ref(parent, &loc).map_err(|e| ApiError::invalid(e.to_string()))?;
        if v.is_some() || name.parent != loc {
            return Err(ApiError::invalid(format!(
                "parentModel `{parent}` must name a model of {loc}, without a version"
            )));
        }
        let key = ModelKey::new(&project, &location, &name.model_id);
        let version = app.store.add_model_version(&key, &version).await?;
        (key, version)
    } else {
        request::check_display_name(&m.display_name)?;
        let model_id = match &req.model_id {
            Some(id) => {
                api::check_new_model_id(id).map_err(|e| ApiError::invalid(e.to_string()))?;
                id.clone()
            }
            None => request::numeric_id(16),
        };
        let model = store::Model {
            project: project.clone(),
            location: location.clone(),
            model_id,
            display_name: m.display_name.clone(),
            description: m.description.clone(),
            labels: json!(m.labels),
            ..Default::default()
        };
        let (model, version) = app.store.create_model(&model, &version).await?;
        (model.key(), version)
    };
    tracing::info!(model = %key.name(), version = version.version_id, user = %caller.username, "model uploaded");
    let response = operations::typed(
        "UploadModelResponse",
        json!({"model": key.name(), "modelVersionId": version.version_id.to_string()}),
    );
    let op = operations::new(&project, &location, "uploadModel", &key.name(), Value::Null, Some(response));
    Ok(Json(operations::to_api(&app.store.insert_operation(&op).await?)))
}

/// Who may reference which artifact: uploads (this store), `s3://`, `https://`, and `file://`
/// for admins only (it reads the platform's own disk).
fn check_artifact_uri(app: &super::App, caller: &Caller, project: &str, uri: &str) -> Result<(), ApiError> {
    if uri.is_empty() || app.artifacts.holds(uri) {
        return Ok(());
    }
    if uri.starts_with("s3://") || uri.starts_with("https://") || uri.starts_with("http://") {
        return Ok(());
    }
    if uri.starts_with("file://") || uri.starts_with('/') {
        return if caller.is_admin_of(project) {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                format!(
                    "artifactUri `{uri}` reads the platform's own disk, which only admins may do; upload the file (POST .../artifacts) instead"
                ),
            ))
        };
    }
    Err(ApiError::invalid(format!(
        "artifactUri `{uri}` is not supported: use an uploaded artifact, s3://, https:// or (admins) file://"
    )))
}

/// The digest of an uploaded artifact, when the URI names one.
async fn artifact_sha256(app: &super::App, uri: &str) -> Result<Option<String>, ApiError> {
    if uri.is_empty() || !app.artifacts.holds(uri) {
        return Ok(None);
    }
    let id = uri[app.artifacts.uri_prefix().len()..].split('/').next().unwrap_or_default();
    match app.store.get_artifact(id).await {
        Ok(a) => Ok(Some(a.sha256)),
        Err(e) if e.is_not_found() => Err(ApiError::invalid(format!(
            "artifactUri `{uri}` is not an uploaded artifact; upload it first (POST .../artifacts)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Checks the container spec; the stored form is `{}` for the prebuilt runtime.
fn check_container(
    app: &super::App,
    spec: Option<&api::ModelContainerSpec>,
    artifact_uri: &str,
) -> Result<Value, ApiError> {
    let runtime = spec.is_none_or(|s| app.render.is_runtime_image(&s.image_uri) || s.image_uri.is_empty());
    if let Some(s) = spec {
        if s.image_uri.is_empty() {
            return Err(ApiError::invalid(
                "containerSpec.imageUri is required; omit containerSpec to use the prebuilt ONNX runtime",
            ));
        }
        if let Some(t) = &s.deployment_timeout {
            crate::controller::parse_timeout(t).map_err(ApiError::invalid)?;
        }
        for p in s.ports.iter().chain(&s.grpc_ports) {
            if !(1..=65535).contains(&p.container_port) {
                return Err(ApiError::invalid(format!(
                    "containerSpec port {} is out of range 1-65535",
                    p.container_port
                )));
            }
        }
        for route in [&s.predict_route, &s.health_route] {
            if !route.is_empty() && !route.starts_with('/') {
                return Err(ApiError::invalid(format!("containerSpec route `{route}` must start with `/`")));
            }
        }
        for e in &s.env {
            if e.name.is_empty() || e.name.contains('=') {
                return Err(ApiError::invalid(format!("containerSpec env name `{}` is invalid", e.name)));
            }
        }
    }
    if runtime && artifact_uri.is_empty() {
        return Err(ApiError::invalid(
            "artifactUri is required for the prebuilt ONNX runtime: upload the .onnx file (POST .../artifacts) and pass its artifactUri",
        ));
    }
    Ok(spec.map(|s| json!(s)).unwrap_or(Value::Null))
}

/// The API's view of a model version.
pub fn to_api(
    model: &store::Model,
    version: &store::ModelVersion,
    deployed: Vec<api::DeployedModelRef>,
) -> api::Model {
    let labels: BTreeMap<String, String> = serde_json::from_value(model.labels.clone()).unwrap_or_default();
    api::Model {
        name: model.key().name(),
        display_name: model.display_name.clone(),
        description: model.description.clone(),
        version_id: version.version_id.to_string(),
        version_aliases: version.aliases.clone(),
        version_description: version.version_description.clone(),
        version_create_time: version.create_time.to_string(),
        version_update_time: version.update_time.to_string(),
        create_time: model.create_time.to_string(),
        update_time: model.update_time.to_string(),
        predict_schemata: serde_json::from_value(version.predict_schemata.clone())
            .ok()
            .filter(|p: &api::PredictSchemata| p != &api::PredictSchemata::default()),
        container_spec: container_spec(version),
        artifact_uri: version.artifact_uri.clone(),
        labels,
        etag: model.etag.clone(),
        deployed_models: deployed,
        supported_deployment_resources_types: vec!["DEDICATED_RESOURCES".into()],
    }
}

/// The version's container, `None` for the prebuilt runtime.
pub fn container_spec(version: &store::ModelVersion) -> Option<api::ModelContainerSpec> {
    match &version.container_spec {
        Value::Object(o) if o.is_empty() => None,
        Value::Null => None,
        v => serde_json::from_value(v.clone()).ok(),
    }
}

/// Model id and version from a `{id}[@version|@alias]` path segment; the default version when
/// none is named.
pub async fn resolve(
    app: &super::App,
    key: &ModelKey,
    version: Option<&api::VersionRef>,
) -> Result<(store::Model, store::ModelVersion), ApiError> {
    let model = app.store.get_model(key).await?;
    let version_id = match version {
        Some(api::VersionRef::Id(id)) => *id,
        Some(api::VersionRef::Alias(alias)) => app.store.resolve_alias(key, alias).await?,
        None => app.store.resolve_alias(key, DEFAULT_ALIAS).await?,
    };
    let version = app.store.get_model_version(key, version_id).await?;
    Ok((model, version))
}

async fn deployments_of(app: &super::App, key: &ModelKey) -> Result<Vec<store::DeployedModel>, ApiError> {
    Ok(app
        .store
        .list_all_deployed_models()
        .await?
        .into_iter()
        .filter(|d| d.project == key.project && d.location == key.location && d.model_id == key.model_id)
        .filter(|d| d.desired_state != "undeploying")
        .collect())
}

fn refs(deployed: &[store::DeployedModel], version_id: i64) -> Vec<api::DeployedModelRef> {
    deployed
        .iter()
        .filter(|d| d.version_id == version_id)
        .map(|d| api::DeployedModelRef {
            endpoint: d.endpoint_key().name(),
            deployed_model_id: d.deployed_model_id.clone(),
        })
        .collect()
}

fn parse_segment(segment: &str) -> Result<(String, Option<api::VersionRef>), ApiError> {
    api::parse_model_segment(segment).map_err(|e| ApiError::invalid(e.to_string()))
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
    request::location(&project, &location)?;
    caller.require(Role::Viewer, &project)?;
    let (name, verb) = request::split_verb(&segment);
    let (id, version) = parse_segment(name)?;
    let key = ModelKey::new(&project, &location, &id);
    match verb {
        None => {
            let (model, version) = resolve(&app, &key, version.as_ref()).await?;
            let deployed = deployments_of(&app, &key).await?;
            Ok(Json(json!(to_api(&model, &version, refs(&deployed, version.version_id)))))
        }
        Some("listVersions") => {
            let model = app.store.get_model(&key).await?;
            let deployed = deployments_of(&app, &key).await?;
            let versions: Vec<api::Model> = app
                .store
                .list_model_versions(&key)
                .await?
                .iter()
                .map(|v| to_api(&model, v, refs(&deployed, v.version_id)))
                .collect();
            let (models, next_page_token) = list::page(versions, &query)?;
            Ok(Json(json!(api::ListModelsResponse { models, next_page_token })))
        }
        Some(other) => Err(request::unknown_verb(&key.name(), other, "GET", &["listVersions"])),
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
    request::location(&project, &location)?;
    caller.require(Role::Viewer, &project)?;
    let deployed = app.store.list_all_deployed_models().await?;
    let mut all = Vec::new();
    for model in app.store.list_models(&project, &location).await? {
        let key = model.key();
        let version_id = app.store.resolve_alias(&key, DEFAULT_ALIAS).await?;
        let version = app.store.get_model_version(&key, version_id).await?;
        let mine: Vec<store::DeployedModel> = deployed
            .iter()
            .filter(|d| d.model_id == model.model_id && d.project == project && d.location == location)
            .filter(|d| d.desired_state != "undeploying")
            .cloned()
            .collect();
        all.push(to_api(&model, &version, refs(&mine, version_id)));
    }
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
    caller.require(Role::Editor, &project)?;
    let fields = mask.fields(&["displayName", "description", "labels", "versionDescription"])?;
    let body = request::json(body)?;
    let (id, version) = parse_segment(&segment)?;
    let key = ModelKey::new(&project, &location, &id);
    let (mut model, mut version) = resolve(&app, &key, version.as_ref()).await?;
    let etag = Some(body.etag.as_str()).filter(|e| !e.is_empty());
    let mut model_changed = false;
    for f in &fields {
        match f.as_str() {
            "displayName" => {
                request::check_display_name(&body.display_name)?;
                model.display_name = body.display_name.clone();
                model_changed = true;
            }
            "description" => {
                model.description = body.description.clone();
                model_changed = true;
            }
            "labels" => {
                request::check_labels(&body.labels)?;
                model.labels = json!(body.labels);
                model_changed = true;
            }
            _ => {
                version.version_description = body.version_description.clone();
                version = app.store.update_model_version(&version).await?;
            }
        }
    }
    if model_changed {
        model = app.store.update_model(&model, etag).await?;
    }
    let deployed = deployments_of(&app, &key).await?;
    Ok(Json(to_api(&model, &version, refs(&deployed, version.version_id))))
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
    request::location(&project, &location)?;
    caller.require(Role::Editor, &project)?;
    let (name, verb) = request::split_verb(&segment);
    let (id, version) = parse_segment(name)?;
    let key = ModelKey::new(&project, &location, &id);
    let target = match (verb, version) {
        (None, None) => {
            app.store.delete_model(&key).await?;
            key.name()
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(format!(
                "to delete one version, call DELETE {}:deleteVersion",
                key.name() + "@" + name.split('@').nth(1).unwrap_or_default()
            )));
        }
        (Some("deleteVersion"), Some(v)) => {
            let (_, version) = resolve(&app, &key, Some(&v)).await?;
            app.store.delete_model_version(&key, version.version_id).await?;
            format!("{}@{}", key.name(), version.version_id)
        }
        (Some("deleteVersion"), None) => {
            return Err(ApiError::invalid("name the version to delete: models/{id}@{version}:deleteVersion"));
        }
        (Some(other), _) => {
            return Err(request::unknown_verb(&key.name(), other, "DELETE", &["deleteVersion"]));
        }
    };
    tracing::info!(%target, user = %caller.username, "deleted");
    let op = operations::new(&project, &location, "delete", &target, Value::Null, Some(operations::empty()));
    Ok(Json(operations::to_api(&app.store.insert_operation(&op).await?)))
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
    request::location(&project, &location)?;
    caller.require(Role::Editor, &project)?;
    let (name, verb) = request::split_verb(&segment);
    let (id, version) = parse_segment(name)?;
    let key = ModelKey::new(&project, &location, &id);
    if verb != Some("mergeVersionAliases") {
        return Err(request::unknown_verb(&key.name(), verb.unwrap_or(""), "POST", &["mergeVersionAliases"]));
    }
    let Some(version) = version else {
        return Err(ApiError::invalid("name the version: models/{id}@{version}:mergeVersionAliases"));
    };
    let req = request::json(body)?;
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for alias in &req.version_aliases {
        let (list, bare) = match alias.strip_prefix('-') {
            Some(bare) => (&mut remove, bare),
            None => (&mut add, alias.as_str()),
        };
        if bare != DEFAULT_ALIAS {
            api::check_alias(bare).map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        list.push(bare.to_string());
    }
    let (model, current) = resolve(&app, &key, Some(&version)).await?;
    let version = app.store.merge_version_aliases(&key, current.version_id, &add, &remove).await?;
    let deployed = deployments_of(&app, &key).await?;
    Ok(Json(to_api(&model, &version, refs(&deployed, version.version_id))))
}
