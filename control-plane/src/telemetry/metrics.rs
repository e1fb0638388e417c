//! Prometheus metrics of the platform, served on `GET /metrics`: API requests, predictions per
//! endpoint and deployed model with their latency, dropped request-response logs, and ready
//! replicas.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The platform's metrics, in a registry of their own.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    api_requests: IntCounterVec,
    predictions: IntCounterVec,
    predict_latency: HistogramVec,
    prediction_logs_dropped: IntCounter,
    pub ready_replicas: IntGaugeVec,
    /// The last hour of each endpoint, for the console's charts.
    pub history: std::sync::Arc<super::History>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let api_requests = IntCounterVec::new(
            Opts::new(
                "platform_api_requests_total",
                "REST API requests answered, by method and HTTP status.",
            ),
            &["method", "code"],
        )
        .expect("static metric definition");
        let predictions = IntCounterVec::new(
            Opts::new(
                "platform_predict_requests_total",
                "`:predict` and `:rawPredict` requests, by endpoint, deployed model and HTTP status.",
            ),
            &["endpoint", "deployed_model", "code"],
        )
        .expect("static metric definition");
        let predict_latency = HistogramVec::new(
            HistogramOpts::new(
                "platform_predict_duration_seconds",
                "Time from request to response through the gateway, by endpoint.",
            )
            .buckets(prometheus::exponential_buckets(0.000_1, 2.0, 18).expect("static buckets")),
            &["endpoint"],
        )
        .expect("static metric definition");
        let prediction_logs_dropped = IntCounter::new(
            "platform_prediction_logs_dropped_total",
            "Sampled predictions of request-response logging that were not kept: the writer's queue was full, or the database refused them.",
        )
        .expect("static metric definition");
        let ready_replicas = IntGaugeVec::new(
            Opts::new("platform_ready_replicas", "Ready replicas, by endpoint and deployed model."),
            &["endpoint", "deployed_model"],
        )
        .expect("static metric definition");
        let registry = Registry::new();
        for c in [
            Box::new(api_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(predictions.clone()),
            Box::new(predict_latency.clone()),
            Box::new(prediction_logs_dropped.clone()),
            Box::new(ready_replicas.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            api_requests,
            predictions,
            predict_latency,
            prediction_logs_dropped,
            ready_replicas,
            history: Default::default(),
        }
    }

    pub fn api_request(&self, method: &str, code: u16) {
        self.api_requests.with_label_values(&[method, &code.to_string()]).inc();
    }

    pub fn prediction(&self, endpoint: &str, deployed_model: &str, code: u16, took: Duration) {
        self.predictions.with_label_values(&[endpoint, deployed_model, &code.to_string()]).inc();
        self.predict_latency.with_label_values(&[endpoint]).observe(took.as_secs_f64());
    }

    /// Sampled predictions that request-response logging could not keep.
    pub fn prediction_logs_dropped(&self, count: usize) {
        self.prediction_logs_dropped.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
