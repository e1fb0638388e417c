//! Request-response logging (`predictRequestResponseLoggingConfig`): the gateway keeps a
//! sample of the `:predict` and `:rawPredict` calls that reached a deployed model, with their
//! bodies cut at [`MAX_BODY_BYTES`], and hands them to a writer task through a bounded channel.
//! The request path never waits for it: when the channel is full, the sample is dropped and
//! counted (`platform_prediction_logs_dropped_total`). The writer stores them in the platform's
//! database, keeping the newest `--prediction-log-retention` per endpoint.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use crate::store::{EndpointKey, Payload, PredictMethod, PredictionLog, PredictionLogging, Store, Timestamp};
use crate::telemetry::Metrics;

/// Most bytes of a request or response body kept; the rest is cut and the body marked truncated.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Samples waiting for the writer; more are dropped. With bodies cut at 64 KiB, the queue holds
/// at most 32 MiB.
pub const QUEUE: usize = 256;

/// Most samples written in one transaction.
const BATCH: usize = 64;

/// Whether a prediction is kept, for a uniform `roll` in `[0, 1)`.
pub fn sampled(logging: &PredictionLogging, roll: f64) -> bool {
    logging.enabled && roll < logging.sampling_rate
}

/// The first bytes of a body (a copy, so that the whole body is not held) and its size.
#[derive(Debug, Clone)]
pub struct Captured {
    head: Bytes,
    size: usize,
}

impl Captured {
    pub fn of(body: &[u8]) -> Captured {
        Captured { head: Bytes::copy_from_slice(&body[..body.len().min(MAX_BODY_BYTES)]), size: body.len() }
    }

    /// As stored: UTF-8 text (a character cut at the end is left out), else base64.
    fn payload(&self) -> Payload {
        let truncated = self.size > self.head.len();
        let text = match std::str::from_utf8(&self.head) {
            Ok(text) => Some(text),
            // Valid but for a character that the cut split.
            Err(e) if truncated && e.error_len().is_none() => {
                std::str::from_utf8(&self.head[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        let (data, base64) = match text {
            Some(text) => (text.to_string(), false),
            None => (base64::engine::general_purpose::STANDARD.encode(&self.head), true),
        };
        Payload { data, base64, size_bytes: u64::try_from(self.size).unwrap_or(u64::MAX), truncated }
    }
}

/// A kept prediction on its way to the writer.
#[derive(Debug, Clone)]
pub struct Sample {
    pub endpoint: EndpointKey,
    pub deployed_model_id: String,
    pub method: PredictMethod,
    pub time: Timestamp,
    pub status: u16,
    pub latency: Duration,
    pub request: Captured,
    pub response: Captured,
}

impl Sample {
    fn into_log(self) -> PredictionLog {
        PredictionLog {
            id: 0,
            request: self.request.payload(),
            response: self.response.payload(),
            endpoint: self.endpoint,
            deployed_model_id: self.deployed_model_id,
            method: self.method,
            time: self.time,
            status: self.status,
            latency: self.latency,
        }
    }
}

/// Where the gateway puts samples.
pub type Sink = tokio::sync::mpsc::Sender<Sample>;

/// A bounded channel from the gateway to [`write`].
pub fn channel() -> (Sink, tokio::sync::mpsc::Receiver<Sample>) {
    tokio::sync::mpsc::channel(QUEUE)
}

/// Writes samples as they come, in batches, keeping the newest `keep` per endpoint, until every
/// sender is gone. A batch the database refuses is dropped and counted.
pub async fn write(
    mut samples: tokio::sync::mpsc::Receiver<Sample>,
    store: Arc<dyn Store>,
    keep: u32,
    metrics: Metrics,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while samples.recv_many(&mut batch, BATCH).await > 0 {
        let logs: Vec<PredictionLog> = batch.drain(..).map(Sample::into_log).collect();
        if let Err(e) = store.insert_prediction_logs(&logs, keep).await {
            tracing::warn!(error = %e, count = logs.len(), "cannot write prediction logs; they are dropped");
            metrics.prediction_logs_dropped(logs.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_rate_decides_and_a_disabled_config_keeps_nothing() {
        let on = |rate| PredictionLogging { enabled: true, sampling_rate: rate };
        assert!(sampled(&on(1.0), 0.0) && sampled(&on(1.0), 0.999_999));
        assert!(!sampled(&on(0.0), 0.0), "rate 0 keeps nothing");
        assert!(sampled(&on(0.25), 0.2) && !sampled(&on(0.25), 0.25) && !sampled(&on(0.25), 0.9));
        assert!(!sampled(&PredictionLogging { enabled: false, sampling_rate: 1.0 }, 0.0));
        let kept = (0..1000).filter(|i| sampled(&on(0.1), f64::from(*i) / 1000.0)).count();
        assert_eq!(kept, 100);
    }

    #[test]
    fn bodies_are_cut_at_64_kib_as_text_or_base64() {
        let small = Captured::of(br#"{"instances": [[1]]}"#).payload();
        assert_eq!(
            small,
            Payload {
                data: r#"{"instances": [[1]]}"#.into(),
                base64: false,
                size_bytes: 20,
                truncated: false
            }
        );
        let big = Captured::of(&vec![b'a'; MAX_BODY_BYTES + 10]).payload();
        assert!(
            big.truncated && big.data.len() == MAX_BODY_BYTES && big.size_bytes == MAX_BODY_BYTES as u64 + 10
        );
        // A cut through a character keeps the text before it.
        let mut text = vec![b'a'; MAX_BODY_BYTES - 1];
        text.extend("é and more".as_bytes());
        let cut = Captured::of(&text).payload();
        assert!(!cut.base64 && cut.truncated && cut.data.len() == MAX_BODY_BYTES - 1);
        let binary = Captured::of(&[0xff, 0x00, 0x01]).payload();
        assert_eq!((binary.data.as_str(), binary.base64, binary.truncated), ("/wAB", true, false));
    }
}
