//! `POST /v1/projects/{p}/locations/{l}/artifacts?filename=model.onnx`: uploads a model file
//! as the raw request body, streamed into the artifact store, and returns its `artifactUri`.
//! Uploading the same bytes twice keeps one copy.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role};
use crate::registry::artifacts::{ArtifactError, clean_filename};
use crate::store;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name in the store; default `model.onnx` (what the prebuilt runtime loads).
    #[serde(default)]
    pub filename: Option<String>,
}

#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/artifacts", tag = "models",
    params(("project" = String, Path), ("location" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 200, body = api::Artifact), (status = 400, body = api::ErrorBody), (status = 413, body = api::ErrorBody)))]
pub async fn upload(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Result<Json<api::Artifact>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Editor, &project)?;
    let filename = clean_filename(query.filename.as_deref()).map_err(ApiError::invalid)?;
    let id = crate::auth::token::new_token_id();
    let stored = app
        .artifacts
        .put(&id, &filename, body.into_data_stream(), app.settings.max_artifact_bytes)
        .await
        .map_err(|e| match e {
            ArtifactError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED", e.to_string())
            }
            ArtifactError::Empty | ArtifactError::Interrupted(_) => ApiError::invalid(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        })?;
    if let Some(existing) = app.store.find_artifact_by_sha256(&stored.sha256).await?
        && app.artifacts.holds(&existing.uri)
        && existing.uri.ends_with(&format!("/{filename}"))
    {
        app.artifacts.delete(&stored.uri).await.map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(Json(api::Artifact {
            artifact_uri: existing.uri,
            sha256: existing.sha256,
            size_bytes: existing.size_bytes,
            deduplicated: true,
        }));
    }
    let size = i64::try_from(stored.size_bytes).unwrap_or(i64::MAX);
    let record = store::Artifact {
        id,
        sha256: stored.sha256.clone(),
        size_bytes: size,
        uri: stored.uri.clone(),
        ..Default::default()
    };
    app.store.insert_artifact(&record).await?;
    tracing::info!(uri = %stored.uri, sha256 = %stored.sha256, size, user = %caller.username, "artifact uploaded");
    Ok(Json(api::Artifact {
        artifact_uri: stored.uri,
        sha256: stored.sha256,
        size_bytes: size,
        deduplicated: false,
    }))
}
