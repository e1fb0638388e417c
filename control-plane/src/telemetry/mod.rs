//! What the platform tells about itself: Prometheus metrics, and the last hour of each
//! endpoint for the console's charts.

pub mod history;
pub mod metrics;

pub use history::History;
pub use metrics::Metrics;
