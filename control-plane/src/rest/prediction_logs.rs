//! `GET .../endpoints/{endpoint}/predictionLogs`: the requests and responses that
//! request-response logging (`predictRequestResponseLoggingConfig`) kept, newest first, a page
//! at a time.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::endpoints::prediction_logs::LogPage;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PredictionLogsQuery {
    /// Default 100, at most 1000.
    #[serde(default)]
    pub page_size: Option<i64>,
    /// `nextPageToken` of the previous page.
    #[serde(default)]
    pub page_token: String,
    /// Only this deployed model's predictions.
    #[serde(default)]
    pub deployed_model_id: Option<String>,
}

/// `GET .../endpoints/{endpoint}/predictionLogs[?pageSize=N][&pageToken=T][&deployedModelId=ID]`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/predictionLogs", tag = "endpoints",
    params(("project" = String, Path), ("location" = String, Path), ("endpoint" = String, Path), PredictionLogsQuery),
    responses((status = 200, body = api::ListPredictionLogsResponse),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, endpoint)): Path<(String, String, String)>,
    Query(query): Query<PredictionLogsQuery>,
) -> Result<Json<api::ListPredictionLogsResponse>, ApiError> {
    let name = request::endpoint(&project, &location, &endpoint)?;
    let page_size = match query.page_size {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| ApiError::invalid(format!("pageSize {n} is negative")))?,
    };
    let page =
        LogPage { deployed_model_id: query.deployed_model_id, page_size, page_token: query.page_token };
    let (prediction_logs, next_page_token) = app.endpoints.prediction_logs(&caller, &name, &page).await?;
    Ok(Json(api::ListPredictionLogsResponse { prediction_logs, next_page_token }))
}
