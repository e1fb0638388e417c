//! Prometheus metrics of the runtime, served on `GET /metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The runtime's metrics, registered in a registry of their own.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub inference_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new("runtime_requests_total", "Requests answered, by protocol and HTTP status code."),
            &["protocol", "code"],
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "runtime_request_errors_total",
                "Requests answered with an error status, by protocol and code.",
            ),
            &["protocol", "code"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "runtime_request_duration_seconds",
                "Time from request to response, by protocol.",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("static buckets")),
            &["protocol"],
        )
        .expect("static metric definition");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("runtime_batch_size", "Rows per model execution, after dynamic batching.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
        )
        .expect("static metric definition");
        let queue_depth = IntGauge::new("runtime_queue_depth", "Requests waiting for an inference worker.")
            .expect("static metric definition");
        let inference_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "runtime_inference_duration_seconds",
                "Time of one model execution (one batch).",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 20).expect("static buckets")),
        )
        .expect("static metric definition");
        let registry = Registry::new();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(queue_depth.clone()),
            Box::new(inference_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics { registry, requests, errors, latency, batch_size, queue_depth, inference_seconds }
    }

    /// Records one answered request.
    pub fn observe_request(&self, protocol: &str, status: u16, elapsed: Duration) {
        let code = status.to_string();
        self.requests.with_label_values(&[protocol, &code]).inc();
        if status >= 400 {
            self.errors.with_label_values(&[protocol, &code]).inc();
        }
        self.latency.with_label_values(&[protocol]).observe(elapsed.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
