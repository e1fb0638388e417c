//! Prometheus metrics of the runtime, served on `GET /metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The counters of tract's plan cache (one plan per distinct input shape). Cloning shares them.
#[derive(Clone)]
pub struct ShapeCacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub evictions: IntCounter,
    pub plans: IntGauge,
}

impl Default for ShapeCacheMetrics {
    /// Counters registered nowhere, for models loaded outside a server (tests, benchmarks).
    fn default() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        ShapeCacheMetrics {
            hits: counter(
                "runtime_shape_cache_hits_total",
                "Runs whose input shapes had a compiled plan in the cache (tract engine).",
            ),
            misses: counter(
                "runtime_shape_cache_misses_total",
                "Runs that compiled a plan for their input shapes (tract engine).",
            ),
            evictions: counter(
                "runtime_shape_cache_evictions_total",
                "Plans evicted from the full cache, least recently used first (tract engine).",
            ),
            plans: IntGauge::new(
                "runtime_shape_cache_plans",
                "Compiled plans in the shape cache (tract engine).",
            )
            .expect("static metric definition"),
        }
    }
}

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
    pub shape_cache: ShapeCacheMetrics,
    engine: IntGaugeVec,
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
        let shape_cache = ShapeCacheMetrics::default();
        let engine = IntGaugeVec::new(
            Opts::new(
                "runtime_engine_info",
                "1 for the engine serving the model (tract or onnxruntime), its execution provider and accelerator.",
            ),
            &["engine", "execution_provider", "accelerator"],
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
            Box::new(shape_cache.hits.clone()),
            Box::new(shape_cache.misses.clone()),
            Box::new(shape_cache.evictions.clone()),
            Box::new(shape_cache.plans.clone()),
            Box::new(engine.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            errors,
            latency,
            batch_size,
            queue_depth,
            inference_seconds,
            shape_cache,
            engine,
        }
    }

    /// Records which engine serves the model, on which execution provider (`cpu`, `cuda`), for
    /// which accelerator (empty for none).
    pub fn set_engine(&self, engine: &str, provider: &str, accelerator: &str) {
        self.engine.with_label_values(&[engine, provider, accelerator]).set(1);
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
