//! What the platform tells about itself: Prometheus metrics.

pub mod metrics;

pub use metrics::Metrics;
