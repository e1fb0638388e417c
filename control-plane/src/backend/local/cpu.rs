//! The CPU that replica processes use, from the cumulative counters of `/proc/{pid}/stat`, for
//! autoscaling on CPU as a HorizontalPodAutoscaler would with metrics-server.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::backend::CPU_WINDOW;

/// Samples of each replica process's CPU counter, by deployment and pid.
#[derive(Debug, Default)]
pub(super) struct CpuMeter {
    history: HashMap<String, HashMap<u32, VecDeque<(Instant, u64)>>>,
}

impl CpuMeter {
    /// Records the CPU counters (clock ticks) of the ready replica processes of `deployment` at
    /// `now`, forgets processes no longer among them, and returns the mean cores each used over
    /// the last [`CPU_WINDOW`] (at least a second of history is needed; `None` before).
    pub(super) fn record(
        &mut self,
        deployment: &str,
        now: Instant,
        counters: &[(u32, u64)],
        ticks_per_second: f64,
    ) -> Option<f64> {
        let processes = self.history.entry(deployment.to_string()).or_default();
        processes.retain(|pid, _| counters.iter().any(|(p, _)| p == pid));
        let mut rates = Vec::new();
        for &(pid, ticks) in counters {
            let samples = processes.entry(pid).or_default();
            // A counter that went back is a new process with a reused pid.
            if samples.back().is_some_and(|(_, last)| *last > ticks) {
                samples.clear();
            }
            samples.push_back((now, ticks));
            while samples.len() > 2
                && samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= CPU_WINDOW)
            {
                samples.pop_front();
            }
            if let Some(&(since, first)) = samples.front() {
                let seconds = now.duration_since(since).as_secs_f64();
                if seconds >= 1.0 {
                    rates.push((ticks - first) as f64 / ticks_per_second / seconds);
                }
            }
        }
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }

    /// Drops what is known of a deleted deployment.
    pub(super) fn forget(&mut self, deployment: &str) {
        self.history.remove(deployment);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mean_cores_per_process_over_the_window() {
        let (mut meter, t0) = (CpuMeter::default(), Instant::now());
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(meter.record("d", at(0), &[(10, 0), (11, 500)], 100.0), None, "no history yet");
        // pid 10 used 1 core for 2 s, pid 11 half a core.
        let mean = meter.record("d", at(2), &[(10, 200), (11, 600)], 100.0).unwrap();
        assert!((mean - 0.75).abs() < 1e-9, "{mean}");
        // Later samples measure over the last window only: pid 10 idle from 2 s to 40 s.
        for s in (4..=40).step_by(2) {
            meter.record("d", at(s), &[(10, 200), (11, 600 + (s - 2) * 50)], 100.0);
        }
        let mean = meter.record("d", at(42), &[(10, 200), (11, 2600)], 100.0).unwrap();
        assert!((mean - 0.25).abs() < 1e-9, "idle pid 10 and half-busy pid 11 over the window: {mean}");
        // A pid whose counter went back is a new process: it needs a second of history again.
        let mean = meter.record("d", at(43), &[(10, 5), (11, 2650)], 100.0).unwrap();
        assert!((mean - 0.5).abs() < 1e-9, "only pid 11 is measured: {mean}");
        // Gone processes and deleted deployments are forgotten.
        assert_eq!(meter.record("d", at(44), &[(12, 0)], 100.0), None);
        meter.forget("d");
        assert!(meter.history.is_empty());
    }
}
