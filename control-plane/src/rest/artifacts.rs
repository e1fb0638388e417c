//! `POST /v1/projects/{p}/locations/{l}/artifacts?filename=model.onnx`: uploads a model file
//! as the raw request body, streamed into the artifact store, and returns its `artifactUri`.
//! Uploading the same bytes twice keeps one copy.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use serde::Deserialize;

use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;

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
    let loc = request::location(&project, &location)?;
    let stream = super::body::paced(body, app.body_limits.read_timeout);
    Ok(Json(app.registry.upload_artifact(&caller, &loc, query.filename.as_deref(), stream).await?))
}
