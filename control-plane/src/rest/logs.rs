//! `GET .../endpoints/{endpoint}/logs`: what the replicas of an endpoint's deployed models
//! printed, as Cloud Run's `services logs read` and `logs tail`: the last lines, or followed as
//! they come. Newline-delimited JSON (`application/x-ndjson`), one [`api::LogEntry`] a line.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::endpoints::logs::LogQuery;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only this deployed model's replicas.
    #[serde(default)]
    pub deployed_model_id: Option<String>,
    /// Only this replica.
    #[serde(default)]
    pub replica: Option<String>,
    /// How many of the last lines (default 100, at most 10000).
    #[serde(default)]
    pub tail: Option<usize>,
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
}

/// `GET .../endpoints/{endpoint}/logs[?deployedModelId=ID][&replica=R][&tail=N][&follow=true]`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/logs", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), LogsQuery),
    responses((status = 200, description = "One LogEntry (JSON) a line", content_type = "application/x-ndjson", body = api::LogEntry),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn read(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint)): Path<(String, String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let query = LogQuery {
        deployed_model_id: query.deployed_model_id,
        replica: query.replica,
        tail: query.tail.unwrap_or(100),
        follow: query.follow,
    };
    let lines = app.endpoints.logs(&caller, &name, &query).await?;
    let body = lines.map(|entry| {
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response())
}
