//! Request-response logging (`predictRequestResponseLoggingConfig`): the rules of the setting,
//! and reading back what the gateway kept. The gateway samples and writes
//! ([`crate::gateway::prediction_logs`]); the logs live in the platform's database.

use api::{EndpointName, Role};

use super::{EndpointError, Endpoints, Result};
use crate::auth::Caller;
use crate::store::{EndpointKey, PredictionLog, PredictionLogQuery, PredictionLogging};

/// Most logs one page holds; the default page.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// The stored setting of an endpoint from the API's, refusing what the platform cannot do.
pub fn logging(config: Option<&api::PredictRequestResponseLoggingConfig>) -> Result<PredictionLogging> {
    let Some(config) = config else { return Ok(PredictionLogging::default()) };
    let rate = config.sampling_rate;
    if !(0.0..=1.0).contains(&rate) {
        return Err(EndpointError::Invalid(format!(
            "predictRequestResponseLoggingConfig.samplingRate is {rate}: give a fraction from 0 to 1 \
             (1 keeps every request, 0.1 one in ten, 0 none)"
        )));
    }
    if config.bigquery_destination.as_ref().is_some_and(|d| !d.output_uri.is_empty()) {
        return Err(EndpointError::Invalid(
            "predictRequestResponseLoggingConfig.bigqueryDestination is not supported: this platform cannot \
             write to BigQuery; sampled requests and responses are kept in the platform's database, read them \
             with GET .../endpoints/{id}/predictionLogs or `platform-cli endpoints prediction-logs ENDPOINT`; \
             leave bigqueryDestination out"
                .into(),
        ));
    }
    Ok(PredictionLogging { enabled: config.enabled, sampling_rate: rate })
}

/// The API's view of the stored setting: none when it is at its default (off, rate 0).
pub fn view(logging: &PredictionLogging) -> Option<api::PredictRequestResponseLoggingConfig> {
    (*logging != PredictionLogging::default()).then_some(api::PredictRequestResponseLoggingConfig {
        enabled: logging.enabled,
        sampling_rate: logging.sampling_rate,
        bigquery_destination: None,
    })
}

/// A logged prediction as the API shows it.
pub fn entry(log: &PredictionLog) -> api::PredictionLog {
    let payload = |p: &crate::store::Payload| api::LoggedPayload {
        text: if p.base64 { String::new() } else { p.data.clone() },
        b64: if p.base64 { p.data.clone() } else { String::new() },
        size_bytes: i64::try_from(p.size_bytes).unwrap_or(i64::MAX),
        truncated: p.truncated,
    };
    api::PredictionLog {
        time: log.time.to_string(),
        deployed_model_id: log.deployed_model_id.clone(),
        method: log.method.as_str().to_string(),
        status: i32::from(log.status),
        latency: format!("{:.6}s", log.latency.as_secs_f64()),
        request: payload(&log.request),
        response: payload(&log.response),
    }
}

/// One page of an endpoint's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub deployed_model_id: Option<String>,
    /// 0 for the default.
    pub page_size: u32,
    /// The previous page's `nextPageToken`; empty for the first page.
    pub page_token: String,
}

impl Endpoints {
    /// The sampled predictions of an endpoint, newest first (viewers may read them), and the
    /// token of the next page (empty on the last).
    pub async fn prediction_logs(
        &self,
        caller: &Caller,
        name: &EndpointName,
        page: &LogPage,
    ) -> Result<(Vec<api::PredictionLog>, String)> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = EndpointKey::of(name);
        self.store.get_endpoint(&key).await?;
        let before = match page.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().map_err(|_| {
                EndpointError::Invalid(
                    "pageToken is not valid: pass the nextPageToken of the previous page".into(),
                )
            })?),
        };
        let size = match page.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let query =
            PredictionLogQuery { deployed_model_id: page.deployed_model_id.clone(), before, limit: size + 1 };
        let mut logs = self.store.list_prediction_logs(&key, &query).await?;
        let more = logs.len() > size as usize;
        logs.truncate(size as usize);
        let next = match logs.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        Ok((logs.iter().map(entry).collect(), next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: f64, bigquery: &str) -> api::PredictRequestResponseLoggingConfig {
        api::PredictRequestResponseLoggingConfig {
            enabled: true,
            sampling_rate: rate,
            bigquery_destination: Some(api::BigQueryDestination { output_uri: bigquery.into() }),
        }
    }

    #[test]
    fn sampling_rates_outside_0_to_1_and_bigquery_tables_are_refused() {
        for rate in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let err = logging(Some(&config(rate, ""))).unwrap_err().to_string();
            assert!(err.contains("samplingRate") && err.contains("from 0 to 1"), "{err}");
        }
        let err = logging(Some(&config(1.0, "bq://p.d.t"))).unwrap_err().to_string();
        assert!(err.contains("cannot write to BigQuery") && err.contains("predictionLogs"), "{err}");
        assert_eq!(
            logging(Some(&config(0.25, ""))).unwrap(),
            PredictionLogging { enabled: true, sampling_rate: 0.25 }
        );
        assert_eq!(logging(None).unwrap(), PredictionLogging::default());
    }

    #[test]
    fn the_default_setting_is_not_shown() {
        assert_eq!(view(&PredictionLogging::default()), None);
        let shown = view(&PredictionLogging { enabled: true, sampling_rate: 1.0 }).unwrap();
        assert!(shown.enabled && shown.sampling_rate == 1.0 && shown.bigquery_destination.is_none());
    }
}
