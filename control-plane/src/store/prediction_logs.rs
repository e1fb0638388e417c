//! Request-response logging (`predictRequestResponseLoggingConfig`): each endpoint's setting,
//! and the sampled `:predict` and `:rawPredict` requests with their responses, kept in the
//! platform's database (table `prediction_logs`), at most a given number per endpoint.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::codec::{from_json, name_of, timestamp};
use super::{EndpointKey, Result, Timestamp};

/// An endpoint's request-response logging: off, or a fraction of its predictions kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictionLogging {
    pub enabled: bool,
    /// 0 to 1.
    pub sampling_rate: f64,
}

/// Which method a logged prediction called.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PredictMethod {
    #[default]
    Predict,
    RawPredict,
    /// The Open Inference Protocol V2's `infer`.
    V2Infer,
}

impl PredictMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PredictMethod::Predict => "predict",
            PredictMethod::RawPredict => "rawPredict",
            PredictMethod::V2Infer => "v2Infer",
        }
    }

    pub fn parse(text: &str) -> Option<PredictMethod> {
        [PredictMethod::Predict, PredictMethod::RawPredict, PredictMethod::V2Infer]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// A request or response body as kept: its first bytes, as text when they are UTF-8, else in
/// base64.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Payload {
    /// The kept bytes: UTF-8 text, or base64 when `base64`.
    pub data: String,
    pub base64: bool,
    /// The size of the whole body.
    pub size_bytes: u64,
    /// Whether `data` holds only the first part of the body.
    pub truncated: bool,
}

/// One sampled prediction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionLog {
    /// Assigned by the store in the order rows are written (ignored on insert): the newest
    /// row has the highest.
    pub id: i64,
    pub endpoint: EndpointKey,
    pub deployed_model_id: String,
    pub method: PredictMethod,
    /// When the request came in.
    pub time: Timestamp,
    /// The HTTP status of the answer.
    pub status: u16,
    pub latency: Duration,
    pub request: Payload,
    pub response: Payload,
}

/// Which logs of an endpoint to read, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PredictionLogQuery {
    pub deployed_model_id: Option<String>,
    /// Only rows older than this id (the last id of the previous page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// The sampled predictions of endpoints.
#[async_trait]
pub trait PredictionLogStore: Send + Sync {
    /// Writes `logs` in one transaction, then deletes all but the newest `keep` rows of each
    /// endpoint written to. Logs of endpoints that no longer exist are dropped.
    async fn insert_prediction_logs(&self, logs: &[PredictionLog], keep: u32) -> Result<()>;
    /// An endpoint's logs, newest first (empty for an endpoint without any, or without the
    /// endpoint).
    async fn list_prediction_logs(
        &self,
        endpoint: &EndpointKey,
        query: &PredictionLogQuery,
    ) -> Result<Vec<PredictionLog>>;
}

/// A `prediction_logs` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct PredictionLogRow {
    id: i64,
    project: String,
    location: String,
    endpoint_id: String,
    deployed_model_id: String,
    method: String,
    time: i64,
    status: i64,
    latency_micros: i64,
    request: String,
    response: String,
}

impl PredictionLogRow {
    pub(crate) fn decode(self) -> Result<PredictionLog> {
        let endpoint = EndpointKey::new(&self.project, &self.location, &self.endpoint_id);
        let row = format!("{}/predictionLogs/{}", endpoint.name(), self.id);
        let status = u16::try_from(self.status).map_err(|e| super::codec::corrupt(&row, "status", e))?;
        let latency = u64::try_from(self.latency_micros)
            .map(Duration::from_micros)
            .map_err(|e| super::codec::corrupt(&row, "latency_micros", e))?;
        Ok(PredictionLog {
            id: self.id,
            method: name_of(&self.method, &row, "method", PredictMethod::parse)?,
            time: timestamp(self.time, &row, "time")?,
            status,
            latency,
            request: from_json(&self.request, &row, "request")?,
            response: from_json(&self.response, &row, "response")?,
            endpoint,
            deployed_model_id: self.deployed_model_id,
        })
    }
}
