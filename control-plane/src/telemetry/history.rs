//! The last hour of each endpoint, in memory: requests, errors, latency percentiles and ready
//! replicas in 10-second buckets, for the console's charts. Bounded: a ring of buckets per
//! endpoint (new buckets overwrite the oldest) and only endpoints that still exist. The
//! gateway records predictions, the controller replica counts; nothing reads the database.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The width of one bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// How many buckets are kept: one hour.
pub const BUCKETS: usize = 360;
/// Upper bounds of the latency histogram, in microseconds: 100 us doubling up to ~105 s;
/// slower requests fall in a last, open bucket.
const LATENCY_BOUNDS: usize = 21;

fn latency_bound_micros(i: usize) -> u64 {
    100u64 << i
}

/// One bucket of one endpoint.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Which bucket this is (seconds since the epoch / bucket width); stale when older.
    index: u64,
    requests: u64,
    errors: u64,
    latency: [u32; LATENCY_BOUNDS + 1],
    /// The ready replicas last seen in this bucket.
    replicas: Option<u32>,
}

/// One point of a chart: a bucket's start and what happened in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The bucket's start, seconds since the Unix epoch.
    pub at: u64,
    pub requests_per_second: f64,
    pub errors: u64,
    /// Latency percentiles in milliseconds (the upper bound of the histogram bucket holding
    /// them); `None` without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub replicas: Option<u32>,
}

/// The recent history of every endpoint.
#[derive(Debug, Default)]
pub struct History {
    endpoints: Mutex<HashMap<String, Vec<Bucket>>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl History {
    /// Counts one prediction answered with `status` after `took`.
    pub fn prediction(&self, endpoint: &str, status: u16, took: Duration) {
        self.prediction_at(endpoint, status, took, now_secs());
    }

    /// Notes how many replicas of an endpoint are ready.
    pub fn replicas(&self, endpoint: &str, ready: u32) {
        self.replicas_at(endpoint, ready, now_secs());
    }

    /// The last hour of an endpoint, oldest first, one point per bucket (empty buckets too).
    pub fn window(&self, endpoint: &str) -> Vec<Point> {
        self.window_at(endpoint, now_secs())
    }

    /// Forgets endpoints not in `keep` (deleted ones).
    pub fn retain(&self, keep: &HashSet<String>) {
        self.lock().retain(|name, _| keep.contains(name));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Bucket>>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bucket of `secs` for `endpoint`, emptied first when it held an older one.
    fn with_bucket(&self, endpoint: &str, secs: u64, f: impl FnOnce(&mut Bucket)) {
        let index = secs / BUCKET.as_secs();
        let mut endpoints = self.lock();
        let ring = endpoints.entry(endpoint.to_string()).or_insert_with(|| vec![Bucket::default(); BUCKETS]);
        let bucket = &mut ring[(index % BUCKETS as u64) as usize];
        if bucket.index != index {
            *bucket = Bucket { index, ..Bucket::default() };
        }
        f(bucket);
    }

    pub(crate) fn prediction_at(&self, endpoint: &str, status: u16, took: Duration, secs: u64) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let slot = (0..LATENCY_BOUNDS).find(|&i| micros <= latency_bound_micros(i)).unwrap_or(LATENCY_BOUNDS);
        self.with_bucket(endpoint, secs, |b| {
            b.requests += 1;
            if status >= 500 || status == 429 {
                b.errors += 1;
            }
            b.latency[slot] = b.latency[slot].saturating_add(1);
        });
    }

    pub(crate) fn replicas_at(&self, endpoint: &str, ready: u32, secs: u64) {
        self.with_bucket(endpoint, secs, |b| b.replicas = Some(ready));
    }

    pub(crate) fn window_at(&self, endpoint: &str, secs: u64) -> Vec<Point> {
        let width = BUCKET.as_secs();
        let last = secs / width;
        let first = (last + 1).saturating_sub(BUCKETS as u64);
        let endpoints = self.lock();
        let ring = endpoints.get(endpoint);
        (first..=last)
            .map(|index| {
                let bucket = ring
                    .map(|r| &r[(index % BUCKETS as u64) as usize])
                    .filter(|b| b.index == index)
                    .cloned()
                    .unwrap_or_default();
                Point {
                    at: index * width,
                    requests_per_second: bucket.requests as f64 / width as f64,
                    errors: bucket.errors,
                    p50_ms: percentile(&bucket.latency, 0.50),
                    p99_ms: percentile(&bucket.latency, 0.99),
                    replicas: bucket.replicas,
                }
            })
            .collect()
    }
}

/// The upper bound (ms) of the histogram bucket holding quantile `q`.
fn percentile(histogram: &[u32; LATENCY_BOUNDS + 1], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in histogram.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            let bound = latency_bound_micros(i.min(LATENCY_BOUNDS - 1)) << u32::from(i == LATENCY_BOUNDS);
            return Some(bound as f64 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn predictions_fall_in_ten_second_buckets_with_percentiles() {
        let h = History::default();
        for _ in 0..98 {
            h.prediction_at("e", 200, Duration::from_micros(150), T0);
        }
        h.prediction_at("e", 503, Duration::from_millis(30), T0 + 1);
        h.prediction_at("e", 200, Duration::from_millis(30), T0 + 2);
        h.prediction_at("e", 200, Duration::from_millis(1), T0 + 10);
        h.replicas_at("e", 2, T0 + 10);
        let w = h.window_at("e", T0 + 15);
        assert_eq!(w.len(), BUCKETS);
        let (prev, last) = (&w[BUCKETS - 2], &w[BUCKETS - 1]);
        assert_eq!(prev.at, T0 / 10 * 10);
        assert!((prev.requests_per_second - 10.0).abs() < 1e-9, "{prev:?}");
        assert_eq!(prev.errors, 1);
        assert_eq!(prev.p50_ms, Some(0.2), "150 us lies in the (100, 200] us bucket");
        assert_eq!(prev.p99_ms, Some(51.2), "30 ms lies in the (25.6, 51.2] ms bucket");
        assert_eq!((last.requests_per_second, last.replicas), (0.1, Some(2)));
        assert_eq!(w[0].p50_ms, None);
        assert!(h.window_at("other", T0).iter().all(|p| p.requests_per_second == 0.0));
    }

    #[test]
    fn the_ring_keeps_one_hour_and_forgets_deleted_endpoints() {
        let h = History::default();
        h.prediction_at("e", 200, Duration::from_millis(1), T0);
        let hour_later = T0 + 3600;
        assert!(
            h.window_at("e", hour_later).iter().all(|p| p.requests_per_second == 0.0),
            "out of the window"
        );
        h.prediction_at("e", 200, Duration::from_millis(1), hour_later);
        let w = h.window_at("e", hour_later);
        assert_eq!(w.iter().filter(|p| p.requests_per_second > 0.0).count(), 1, "the old bucket was reused");
        h.retain(&HashSet::new());
        assert!(h.lock().is_empty());
        h.prediction_at("slow", 200, Duration::from_secs(500), T0);
        assert!(h.window_at("slow", T0).last().unwrap().p99_ms.unwrap() > 100_000.0);
    }
}
