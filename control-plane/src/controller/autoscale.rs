//! The autoscaler's decisions, pure: from the requests the gateway counted to a replica count.
//!
//! - Scale on request rate when the deployed model has the request-count metric (target:
//!   requests per minute per replica): the rate over a stable window (60 s), or over a short
//!   panic window (6 s) when that asks for at least twice the current replicas.
//! - Scale on concurrency (target: requests in flight per replica, as the gateway counts them
//!   with those queued or held for a replica) the same way, on its mean over the windows, as
//!   Knative's autoscaler. With both, the larger count wins.
//! - Up at once; down only to the highest count recommended during the scale-down delay, so a
//!   short lull does not take replicas away (as the HorizontalPodAutoscaler's stabilization).
//! - With `minReplicaCount` 0: to zero after the scale-down delay without requests; a request
//!   that finds no replica (the gateway holds it) brings one back.
//! - Otherwise on CPU (Vertex's default, 60%) when the backend measures it: as the
//!   HorizontalPodAutoscaler, `ceil(current * used / target)` with a 10% tolerance, where `used`
//!   is the replicas' mean CPU as a percentage of their machine type's. Without a measure (the
//!   Kubernetes backend, where an HPA does this), the count stays where it is, within the bounds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tuning of the autoscaler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    pub stable_window: Duration,
    pub panic_window: Duration,
    pub scale_down_delay: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            scale_down_delay: Duration::from_secs(300),
        }
    }
}

/// What the gateway saw of one deployed model at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    /// Requests forwarded so far (a counter).
    pub requests: u64,
    /// Requests in flight on its replicas.
    pub in_flight: u64,
    /// Requests held because no replica was ready.
    pub waiting: u64,
    /// Mean CPU of the ready replicas over the backend's window, in percent of what their
    /// machine type gives them; `None` when the backend does not measure it.
    pub cpu_percent: Option<f64>,
}

/// The bounds and target of one deployed model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    /// Requests per minute per replica, when scaling on request rate.
    pub target_rpm: Option<u32>,
    /// Requests in flight per replica, when scaling on concurrency.
    pub target_concurrency: Option<u32>,
    /// CPU utilization in percent, when scaling on CPU.
    pub target_cpu: Option<u32>,
}

/// How far from its target CPU may be before the count changes (as the HPA's default).
const CPU_TOLERANCE: f64 = 0.1;

/// A replica count and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: u32,
    pub reason: Reason,
}

/// A request-driven metric the platform measures itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests per minute per replica (`request-counts-per-minute`).
    RequestRate,
    /// Requests in flight per replica (`concurrency`).
    Concurrency,
}

/// Why the autoscaler chose its count; `Display` says it in words for the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The metric's mean over the stable window, per replica at the target.
    Metric { metric: Metric, value: f64, target: u32, window: Duration },
    /// The panic window asked for at least twice the current replicas.
    Panic { metric: Metric, value: f64, target: u32, window: Duration },
    /// CPU as the HorizontalPodAutoscaler scales on it.
    Cpu { used: f64, target: u32, within: bool },
    /// A CPU target, but the backend has no measure yet: the count stays.
    CpuUnmeasured,
    /// Neither a request metric nor a CPU target: `minReplicaCount`.
    NoMetric,
    /// Fewer are wanted, but not for the whole scale-down delay yet.
    ScaleDownDelay { wanted: u32, delay: Duration },
    /// No request, no busy replica for the whole delay: down to the minimum (zero when allowed).
    Idle { after: Duration, min: u32 },
    /// Held at `minReplicaCount`.
    AtMin { wanted: u32, min: u32 },
    /// Capped at `maxReplicaCount`.
    AtMax { wanted: u32, max: u32 },
    /// Requests are waiting or in flight: one replica at least.
    Demand,
    /// One replica stays until the model has been idle for the delay.
    KeptWarm { until_idle: Duration },
    /// Not the platform's to decide: on Kubernetes a HorizontalPodAutoscaler scales on CPU or
    /// the GPU duty cycle (the controller says so; [`Autoscaler::decide`] never does).
    HorizontalPodAutoscaler,
}

impl Metric {
    fn describe(self, value: f64) -> String {
        match self {
            Metric::RequestRate => format!("request-counts-per-minute {value:.0}/min"),
            Metric::Concurrency => format!("concurrency {value:.1}"),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: &Duration| d.as_secs();
        let per = |value: f64, target: u32| (value / f64::from(target)).ceil() as u32;
        match self {
            Reason::Metric { metric, value, target, window } => write!(
                f,
                "{} over {}s, target {target} per replica -> {}",
                metric.describe(*value),
                secs(window),
                per(*value, *target)
            ),
            Reason::Panic { metric, value, target, window } => write!(
                f,
                "panic window: {} over {}s is at least 2x the replicas' target {target} -> {}",
                metric.describe(*value),
                secs(window),
                per(*value, *target)
            ),
            Reason::Cpu { used, target, within: true } => {
                write!(f, "cpu-usage {used:.0}% within 10% of target {target}%: count kept")
            }
            Reason::Cpu { used, target, within: false } => {
                write!(f, "cpu-usage {used:.0}%, target {target}%")
            }
            Reason::CpuUnmeasured => f.write_str("cpu-usage not measured yet: count kept"),
            Reason::NoMetric => f.write_str("no request or CPU metric: held at minReplicaCount"),
            Reason::ScaleDownDelay { wanted, delay } => {
                write!(f, "scale-down delay: {wanted} wanted, not for {}s yet", secs(delay))
            }
            Reason::Idle { after, min: 0 } => write!(f, "scaled to zero after {}s idle", secs(after)),
            Reason::Idle { after, min } => {
                write!(f, "idle for {}s: down to minReplicaCount {min}", secs(after))
            }
            Reason::AtMin { wanted, min } => write!(f, "held at minReplicaCount {min} ({wanted} wanted)"),
            Reason::AtMax { wanted, max } => write!(f, "capped at maxReplicaCount {max} ({wanted} wanted)"),
            Reason::Demand => f.write_str("requests waiting or in flight: one replica at least"),
            Reason::KeptWarm { until_idle } => {
                write!(f, "one replica kept until {}s without requests", secs(until_idle))
            }
            Reason::HorizontalPodAutoscaler => {
                f.write_str("HorizontalPodAutoscaler: Kubernetes scales on CPU or the GPU duty cycle")
            }
        }
    }
}

/// The memory of one deployed model's autoscaler.
#[derive(Debug, Default)]
pub struct Autoscaler {
    samples: VecDeque<(Instant, u64)>,
    /// Requests in flight, queued or held at each observation.
    concurrency: VecDeque<(Instant, u64)>,
    recommendations: VecDeque<(Instant, u32)>,
    last_active: Option<Instant>,
}

impl Autoscaler {
    /// Records an observation and returns the replica count to run now, with why.
    pub fn decide(
        &mut self,
        now: Instant,
        seen: Observation,
        current: u32,
        bounds: Bounds,
        tuning: Tuning,
    ) -> Decision {
        let keep = tuning.stable_window.max(tuning.scale_down_delay);
        self.samples.push_back((now, seen.requests));
        while self.samples.len() > 2
            && self.samples.front().is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            self.samples.pop_front();
        }
        self.concurrency.push_back((now, seen.in_flight + seen.waiting));
        while self.concurrency.front().is_some_and(|(t, _)| now.duration_since(*t) > tuning.stable_window) {
            self.concurrency.pop_front();
        }
        // Busy replicas are activity too, requests or not.
        let busy = bounds
            .target_cpu
            .zip(seen.cpu_percent)
            .is_some_and(|(target, used)| used >= f64::from(target) * (1.0 - CPU_TOLERANCE));
        let active = busy
            || seen.in_flight > 0
            || seen.waiting > 0
            || self.rate_per_minute(now, tuning.panic_window) > 0.0;
        if active || self.last_active.is_none() {
            self.last_active = Some(now);
        }
        let max = bounds.max.max(bounds.min).max(1);
        // The stable window's count, or the panic window's when it asks for twice as many.
        let windowed = |metric: Metric, target: u32, measure: &dyn Fn(Duration) -> f64| {
            let per = |value: f64| (value / f64::from(target)).ceil() as u32;
            let (stable, panic) = (measure(tuning.stable_window), measure(tuning.panic_window));
            let (n, panicking) = (per(stable), per(panic));
            if panicking >= current.saturating_mul(2).max(1) && panicking > n {
                (panicking, Reason::Panic { metric, value: panic, target, window: tuning.panic_window })
            } else {
                (n, Reason::Metric { metric, value: stable, target, window: tuning.stable_window })
            }
        };
        let by_rate = bounds
            .target_rpm
            .filter(|t| *t > 0)
            .map(|t| windowed(Metric::RequestRate, t, &|window| self.rate_per_minute(now, window)));
        let by_concurrency = bounds
            .target_concurrency
            .filter(|t| *t > 0)
            .map(|t| windowed(Metric::Concurrency, t, &|window| self.mean_concurrency(now, window)));
        let by_metric = [by_rate, by_concurrency].into_iter().flatten().max_by_key(|(n, _)| *n);
        let (wanted, reason) = match by_metric {
            Some(chosen) => chosen,
            None => match (bounds.target_cpu, seen.cpu_percent) {
                (Some(target), Some(used)) if target > 0 => {
                    let ratio = used / f64::from(target);
                    let from = current.max(1);
                    let within = (ratio - 1.0).abs() <= CPU_TOLERANCE;
                    let n = if within { from } else { (f64::from(from) * ratio).ceil() as u32 };
                    (n, Reason::Cpu { used, target, within })
                }
                (Some(_), None) => (current, Reason::CpuUnmeasured),
                _ => (bounds.min, Reason::NoMetric),
            },
        };
        let recommended = wanted.clamp(bounds.min, max);
        self.recommendations.push_back((now, recommended));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > tuning.scale_down_delay)
        {
            self.recommendations.pop_front();
        }
        // Traffic needs a replica; a model idle for the whole delay goes down to its minimum
        // (zero when allowed) whatever the slower rate windows still remember.
        let idle_for = self.last_active.map(|t| now.duration_since(t)).unwrap_or_default();
        if !active && idle_for >= tuning.scale_down_delay {
            let reason = Reason::Idle { after: tuning.scale_down_delay, min: bounds.min };
            return Decision { replicas: bounds.min, reason };
        }
        // Down only to the highest recommendation within the delay.
        let stabilized = if recommended >= current {
            recommended
        } else {
            self.recommendations.iter().map(|(_, n)| *n).max().unwrap_or(recommended).min(current)
        };
        let replicas = stabilized.max(1).clamp(bounds.min, max);
        let reason = if replicas > stabilized && stabilized < bounds.min {
            Reason::AtMin { wanted, min: bounds.min }
        } else if replicas > stabilized && active {
            Reason::Demand
        } else if replicas > stabilized {
            Reason::KeptWarm { until_idle: tuning.scale_down_delay }
        } else if replicas < stabilized || wanted > max {
            Reason::AtMax { wanted: wanted.max(stabilized), max }
        } else if stabilized > recommended {
            Reason::ScaleDownDelay { wanted: recommended, delay: tuning.scale_down_delay }
        } else if wanted < bounds.min {
            Reason::AtMin { wanted, min: bounds.min }
        } else {
            reason
        };
        Decision { replicas, reason }
    }

    /// Mean requests in flight (with those queued or held) over the last `window`.
    fn mean_concurrency(&self, now: Instant, window: Duration) -> f64 {
        let inside: Vec<u64> = self
            .concurrency
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= window)
            .map(|(_, n)| *n)
            .collect();
        if inside.is_empty() { 0.0 } else { inside.iter().sum::<u64>() as f64 / inside.len() as f64 }
    }

    /// Requests per minute over the last `window` (from the oldest sample inside it).
    fn rate_per_minute(&self, now: Instant, window: Duration) -> f64 {
        let Some((_, latest)) = self.samples.back() else { return 0.0 };
        let Some((t0, first)) = self.samples.iter().find(|(t, _)| now.duration_since(*t) <= window) else {
            return 0.0;
        };
        let span = now.duration_since(*t0).as_secs_f64().max(1.0);
        latest.saturating_sub(*first) as f64 * 60.0 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> Tuning {
        Tuning {
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            scale_down_delay: Duration::from_secs(120),
        }
    }

    /// Feeds `rpm` requests per minute for `secs` seconds, one observation a second.
    fn run(
        a: &mut Autoscaler,
        t: &mut Instant,
        total: &mut u64,
        rpm: u64,
        secs: u64,
        current: &mut u32,
        b: Bounds,
    ) {
        for _ in 0..secs {
            *t += Duration::from_secs(1);
            *total += rpm / 60;
            *current = a
                .decide(*t, Observation { requests: *total, ..Default::default() }, *current, b, tuning())
                .replicas;
        }
    }

    #[test]
    fn request_rate_sets_replicas_up_at_once_and_down_after_the_delay() {
        let b = Bounds { min: 1, max: 10, target_rpm: Some(600), target_concurrency: None, target_cpu: None };
        let (mut a, mut t, mut total, mut n) = (Autoscaler::default(), Instant::now(), 0, 1);
        run(&mut a, &mut t, &mut total, 600, 60, &mut n, b);
        assert_eq!(n, 1, "600 rpm fits one replica");
        run(&mut a, &mut t, &mut total, 3000, 10, &mut n, b);
        assert!(n >= 4, "a burst scales up within seconds (panic window): {n}");
        run(&mut a, &mut t, &mut total, 3000, 60, &mut n, b);
        assert_eq!(n, 5, "3000 rpm at 600 per replica");
        run(&mut a, &mut t, &mut total, 600, 60, &mut n, b);
        assert_eq!(n, 5, "no scale-down within the delay");
        run(&mut a, &mut t, &mut total, 600, 120, &mut n, b);
        assert_eq!(n, 1, "down after the delay");
        run(&mut a, &mut t, &mut total, 60_000, 60, &mut n, b);
        assert_eq!(n, 10, "never above max");
    }

    #[test]
    fn concurrency_sets_replicas_from_the_requests_in_flight() {
        let b = Bounds { min: 1, max: 8, target_rpm: None, target_concurrency: Some(4), target_cpu: None };
        let (mut a, mut t, mut n) = (Autoscaler::default(), Instant::now(), 1);
        let step = |a: &mut Autoscaler, t: &mut Instant, n: &mut u32, in_flight: u64, secs: u32| {
            for _ in 0..secs {
                *t += Duration::from_secs(1);
                *n = a.decide(*t, Observation { in_flight, ..Default::default() }, *n, b, tuning()).replicas;
            }
        };
        step(&mut a, &mut t, &mut n, 4, 60);
        assert_eq!(n, 1, "4 in flight fit one replica at a target of 4");
        step(&mut a, &mut t, &mut n, 20, 10);
        assert!(n >= 4, "a burst scales up within seconds (panic window): {n}");
        step(&mut a, &mut t, &mut n, 20, 60);
        assert_eq!(n, 5, "20 in flight at 4 per replica");
        step(&mut a, &mut t, &mut n, 12, 60);
        assert_eq!(n, 5, "no scale-down within the delay");
        step(&mut a, &mut t, &mut n, 12, 121);
        assert_eq!(n, 3, "then the stable mean: ceil(12 / 4)");
        // Requests held for a replica count too.
        let held = Observation { waiting: 9, ..Default::default() };
        assert_eq!(Autoscaler::default().decide(t, held, 1, b, tuning()).replicas, 3);
    }

    #[test]
    fn idle_models_with_min_zero_go_to_zero_and_demand_brings_one_back() {
        let b = Bounds { min: 0, max: 3, target_rpm: None, target_concurrency: None, target_cpu: None };
        let (mut a, mut t) = (Autoscaler::default(), Instant::now());
        let mut n = a.decide(t, Observation::default(), 1, b, tuning()).replicas;
        assert_eq!(n, 1, "a new deployment keeps its replica for the delay");
        for _ in 0..119 {
            t += Duration::from_secs(1);
            n = a.decide(t, Observation::default(), n, b, tuning()).replicas;
        }
        assert_eq!(n, 1);
        t += Duration::from_secs(5);
        n = a.decide(t, Observation::default(), n, b, tuning()).replicas;
        assert_eq!(n, 0, "idle past the delay: zero");
        t += Duration::from_secs(1);
        n = a.decide(t, Observation { waiting: 1, ..Default::default() }, n, b, tuning()).replicas;
        assert_eq!(n, 1, "a held request brings a replica");
        let fixed = Bounds { min: 2, max: 2, target_rpm: None, target_concurrency: None, target_cpu: None };
        assert_eq!(Autoscaler::default().decide(t, Observation::default(), 0, fixed, tuning()).replicas, 2);
    }

    #[test]
    fn cpu_scales_like_the_hpa_within_bounds_and_down_after_the_delay() {
        let b = Bounds { min: 1, max: 6, target_rpm: None, target_concurrency: None, target_cpu: Some(60) };
        let (mut a, mut t) = (Autoscaler::default(), Instant::now());
        // Busy replicas: requests keep coming, so the model is active.
        let mut requests = 0;
        let mut step = |a: &mut Autoscaler, t: &mut Instant, current: u32, cpu: Option<f64>| {
            *t += Duration::from_secs(1);
            requests += 10;
            let seen = Observation { requests, cpu_percent: cpu, ..Default::default() };
            a.decide(*t, seen, current, b, tuning()).replicas
        };
        assert_eq!(step(&mut a, &mut t, 1, Some(64.0)), 1, "within 10% of the target: no change");
        assert_eq!(step(&mut a, &mut t, 1, Some(150.0)), 3, "ceil(1 * 150 / 60)");
        assert_eq!(step(&mut a, &mut t, 3, Some(200.0)), 6, "ceil(3 * 200 / 60) = 10, capped at max");
        assert_eq!(step(&mut a, &mut t, 6, None), 6, "no measure: the count stays");
        assert_eq!(step(&mut a, &mut t, 6, Some(20.0)), 6, "no scale-down within the delay");
        let mut n = 6;
        for _ in 0..121 {
            n = step(&mut a, &mut t, n, Some(20.0));
        }
        assert_eq!(n, 2, "after the delay: ceil(6 * 20 / 60)");
        // Busy without requests is not idle: the count holds past the delay.
        let (mut a, mut t) = (Autoscaler::default(), Instant::now());
        for _ in 0..200 {
            t += Duration::from_secs(1);
            let seen = Observation { cpu_percent: Some(60.0), ..Default::default() };
            assert_eq!(a.decide(t, seen, 3, b, tuning()).replicas, 3);
        }
    }

    #[test]
    fn each_decision_says_why_in_words() {
        let rate =
            Bounds { min: 1, max: 10, target_rpm: Some(600), target_concurrency: None, target_cpu: None };
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let seen = |requests: u64| Observation { requests, ..Default::default() };
        let words = |d: &Decision| d.reason.to_string();

        // 1200/min over the stable window at 600 per replica: two.
        let mut a = Autoscaler::default();
        let mut d = a.decide(at(0), seen(0), 1, rate, tuning());
        for s in 1..=60 {
            d = a.decide(at(s), seen(s * 20), d.replicas, rate, tuning());
        }
        assert_eq!(d.replicas, 2);
        assert_eq!(words(&d), "request-counts-per-minute 1200/min over 60s, target 600 per replica -> 2");
        // A sudden burst: the panic window asks for at least twice the current count.
        let burst = a.decide(at(62), seen(60 * 20 + 400), 1, rate, tuning());
        assert!(matches!(burst.reason, Reason::Panic { metric: Metric::RequestRate, .. }), "{burst:?}");
        assert!(words(&burst).starts_with("panic window: request-counts-per-minute"), "{}", words(&burst));
        assert_eq!(burst.replicas, 8);

        // Far above max: capped.
        let rate = Bounds { max: 3, ..rate };
        let mut a = Autoscaler::default();
        a.decide(at(0), seen(0), 3, rate, tuning());
        let capped = a.decide(at(60), seen(60_000), 3, rate, tuning());
        assert_eq!(
            (capped.replicas, words(&capped).as_str()),
            (3, "capped at maxReplicaCount 3 (100 wanted)")
        );
        // Then nearly idle: fewer wanted, but not for the whole delay yet.
        let delayed = a.decide(at(70), seen(60_001), 3, rate, tuning());
        assert_eq!(delayed.replicas, 3);
        assert!(matches!(delayed.reason, Reason::ScaleDownDelay { .. }), "{delayed:?}");
        assert_eq!(words(&delayed), "scale-down delay: 1 wanted, not for 120s yet");

        // No request at all with minReplicaCount 1: the metric asks for none, the minimum holds.
        let mut a = Autoscaler::default();
        let held = a.decide(at(0), seen(0), 1, rate, tuning());
        assert_eq!((held.replicas, words(&held).as_str()), (1, "held at minReplicaCount 1 (0 wanted)"));

        // Concurrency, and scale to zero after the delay.
        let zero = Bounds { min: 0, max: 4, target_rpm: None, target_concurrency: Some(4), target_cpu: None };
        let mut a = Autoscaler::default();
        let busy = a.decide(at(0), Observation { in_flight: 8, ..Default::default() }, 1, zero, tuning());
        assert_eq!(words(&busy), "concurrency 8.0 over 60s, target 4 per replica -> 2");
        assert_eq!(a.decide(at(60), Observation::default(), 1, zero, tuning()).replicas, 1);
        let waiting = a.decide(at(100), Observation::default(), 1, zero, tuning());
        assert_eq!(words(&waiting), "scale-down delay: 0 wanted, not for 120s yet");
        let gone = a.decide(at(200), Observation::default(), 1, zero, tuning());
        assert_eq!((gone.replicas, words(&gone).as_str()), (0, "scaled to zero after 120s idle"));
        let back = a.decide(at(201), Observation { waiting: 1, ..Default::default() }, 0, zero, tuning());
        assert_eq!(back.replicas, 1);
        assert!(words(&back).starts_with("concurrency 0.5 over 60s"), "{}", words(&back));
        // On request rate a held request is demand, whatever the rate.
        let to_zero = Bounds { min: 0, ..rate };
        let demand = Autoscaler::default().decide(
            at(0),
            Observation { waiting: 1, ..Default::default() },
            0,
            to_zero,
            tuning(),
        );
        assert_eq!((demand.replicas, demand.reason), (1, Reason::Demand));
        let warm = Autoscaler::default().decide(at(0), Observation::default(), 0, to_zero, tuning());
        assert_eq!(
            (warm.replicas, words(&warm).as_str()),
            (1, "one replica kept until 120s without requests")
        );

        // CPU, like the HPA; no measure keeps the count; no metric holds the minimum.
        let cpu = Bounds { min: 1, max: 6, target_rpm: None, target_concurrency: None, target_cpu: Some(60) };
        let used = |cpu_percent| Observation { requests: 1, cpu_percent, ..Default::default() };
        let up = Autoscaler::default().decide(at(0), used(Some(150.0)), 1, cpu, tuning());
        assert_eq!((up.replicas, words(&up).as_str()), (3, "cpu-usage 150%, target 60%"));
        let kept = Autoscaler::default().decide(at(0), used(Some(64.0)), 2, cpu, tuning());
        assert_eq!(
            (kept.replicas, words(&kept).as_str()),
            (2, "cpu-usage 64% within 10% of target 60%: count kept")
        );
        let blind = Autoscaler::default().decide(at(0), used(None), 2, cpu, tuning());
        assert_eq!((blind.replicas, blind.reason), (2, Reason::CpuUnmeasured));
        let fixed = Bounds { min: 2, max: 2, target_rpm: None, target_concurrency: None, target_cpu: None };
        let none = Autoscaler::default().decide(at(0), Observation::default(), 0, fixed, tuning());
        assert_eq!(
            (none.replicas, words(&none).as_str()),
            (2, "no request or CPU metric: held at minReplicaCount")
        );
    }
}
