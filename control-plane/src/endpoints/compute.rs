//! The compute a DeployedModel asks for, checked: machine type (from the catalog), replica
//! bounds and autoscaling metrics. Pure; the API checks a deploy with it and the controller
//! renders from it.

use api::{AutoscalingMetricSpec, METRIC_CONCURRENCY, METRIC_CPU, METRIC_GPU, METRIC_REQUESTS};

use crate::machine::{Catalog, MachineType};
use crate::store::DeploymentSpec;

/// The most replicas one deployed model may ask for.
pub const MAX_REPLICAS: i32 = 1000;
/// Vertex's default utilisation target.
pub const DEFAULT_TARGET: i32 = 60;
/// Requests one replica is given at once when a deployed model does not say (Cloud Run's default).
pub const DEFAULT_CONTAINER_CONCURRENCY: i32 = 80;
/// The most `containerConcurrency` may be (Cloud Run's limit).
pub const MAX_CONTAINER_CONCURRENCY: i32 = 1000;

/// A deployed model's compute that breaks a rule; the message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComputeError(pub String);

impl api::Coded for ComputeError {
    fn code(&self) -> api::Code {
        api::Code::InvalidArgument
    }
}

/// What a deployed model runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Compute {
    pub machine: MachineType,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Metric name and target, defaults filled in.
    pub autoscaling: Vec<(String, i32)>,
    /// Requests one replica is given at once (`containerConcurrency`).
    pub concurrency: i32,
}

impl Compute {
    /// `base` completed with what was resolved: the machine spec, the replica bounds and the
    /// autoscaling metrics with their defaults (what a deployed model's spec records).
    pub fn dedicated_resources(&self, base: api::DedicatedResources) -> api::DedicatedResources {
        let accelerator = self.machine.accelerator.as_ref();
        api::DedicatedResources {
            machine_spec: api::MachineSpec {
                machine_type: self.machine.name.clone(),
                accelerator_type: accelerator.map(|a| a.accelerator_type.clone()).unwrap_or_default(),
                accelerator_count: accelerator.map(|a| a.count as i32).unwrap_or_default(),
                unmodelled: api::Unmodelled,
            },
            min_replica_count: self.min_replicas as i32,
            max_replica_count: self.max_replicas as i32,
            autoscaling_metric_specs: self
                .autoscaling
                .iter()
                .map(|(m, t)| AutoscalingMetricSpec { metric_name: m.clone(), target: *t })
                .collect(),
            ..base
        }
    }
}

/// Checks and completes the resources of a deployed model.
pub fn resolve(spec: &DeploymentSpec, catalog: &Catalog) -> Result<Compute, ComputeError> {
    let fail = |m: String| Err(ComputeError(m));
    let (machine, min, max, metrics): (MachineType, i32, i32, &[AutoscalingMetricSpec]) =
        match (&spec.dedicated_resources, &spec.automatic_resources) {
            (Some(_), Some(_)) => {
                return fail("give either dedicatedResources or automaticResources, not both".into());
            }
            (Some(d), None) => {
                let machine =
                    catalog.resolve_spec(&d.machine_spec).map_err(|e| ComputeError(e.to_string()))?;
                (machine, d.min_replica_count, d.max_replica_count, &d.autoscaling_metric_specs)
            }
            (None, Some(a)) => {
                (catalog.default_type().clone(), a.min_replica_count.max(1), a.max_replica_count, &[])
            }
            (None, None) => (catalog.default_type().clone(), 1, 1, &[]),
        };
    if min < 0 {
        return fail(format!("minReplicaCount is {min}; it must be 0 (scale to zero when idle) or more"));
    }
    let max = if max == 0 { min.max(1) } else { max };
    if max < min {
        return fail(format!("maxReplicaCount {max} is below minReplicaCount {min}"));
    }
    if max > MAX_REPLICAS {
        return fail(format!("maxReplicaCount {max} is above the limit of {MAX_REPLICAS}"));
    }
    let concurrency = container_concurrency(spec);
    if !(1..=MAX_CONTAINER_CONCURRENCY).contains(&concurrency) {
        return fail(format!(
            "containerConcurrency is {concurrency}; it must be 1 to {MAX_CONTAINER_CONCURRENCY} requests per replica \
             (default {DEFAULT_CONTAINER_CONCURRENCY})"
        ));
    }
    let mut autoscaling = Vec::new();
    for spec in metrics {
        let target = match (spec.target, spec.metric_name.as_str()) {
            // Knative's default: 70% of what a replica may take at once.
            (0, METRIC_CONCURRENCY) => (concurrency * 7 + 9) / 10,
            (0, _) => DEFAULT_TARGET,
            (t, _) => t,
        };
        match spec.metric_name.as_str() {
            METRIC_CPU => {}
            METRIC_GPU if machine.accelerator.is_none() => {
                return fail(format!(
                    "autoscaling on {METRIC_GPU} needs a machine with accelerators; {} has none",
                    machine.name
                ));
            }
            METRIC_GPU => {}
            METRIC_REQUESTS => {}
            METRIC_CONCURRENCY if target > concurrency => {
                return fail(format!(
                    "autoscaling target {target} for {METRIC_CONCURRENCY} is above containerConcurrency {concurrency}: \
                     a replica never has more requests in flight; lower the target or raise containerConcurrency"
                ));
            }
            METRIC_CONCURRENCY => {}
            other => {
                return fail(format!(
                    "autoscaling metric `{other}` is not supported; use {METRIC_CPU}, {METRIC_GPU}, {METRIC_REQUESTS} or {METRIC_CONCURRENCY}"
                ));
            }
        }
        let percent = ![METRIC_REQUESTS, METRIC_CONCURRENCY].contains(&spec.metric_name.as_str());
        if target < 1 || (percent && target > 100) {
            return fail(format!(
                "autoscaling target {target} for {} is out of range ({})",
                spec.metric_name,
                if percent { "1 to 100 percent" } else { "at least 1" }
            ));
        }
        if autoscaling.iter().any(|(name, _)| name == &spec.metric_name) {
            return fail(format!("autoscaling metric {} is given twice", spec.metric_name));
        }
        autoscaling.push((spec.metric_name.clone(), target));
    }
    Ok(Compute { machine, min_replicas: min as u32, max_replicas: max as u32, autoscaling, concurrency })
}

/// Requests one replica of the deployed model is given at once: its `containerConcurrency`, or
/// the default.
pub fn container_concurrency(spec: &DeploymentSpec) -> i32 {
    spec.container_concurrency.unwrap_or(DEFAULT_CONTAINER_CONCURRENCY)
}

/// Refuses autoscaling metrics the backend cannot measure: the GPU duty cycle needs the
/// Kubernetes backend (an HPA on the DCGM exporter's metric); on this machine nothing measures it.
pub fn check_measurable(compute: &Compute, gpu_duty_cycle: bool) -> Result<(), ComputeError> {
    if !gpu_duty_cycle && compute.autoscaling.iter().any(|(m, _)| m == METRIC_GPU) {
        return Err(ComputeError(format!(
            "autoscaling on {METRIC_GPU} (gpu-duty-cycle) needs the kubernetes backend, where a \
             HorizontalPodAutoscaler reads the GPU duty cycle from the DCGM exporter; the local \
             backend cannot measure it. Autoscale on {METRIC_CPU} or {METRIC_REQUESTS} instead"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(machine: &str, min: i32, max: i32, metrics: &[(&str, i32)]) -> DeploymentSpec {
        DeploymentSpec {
            dedicated_resources: Some(api::DedicatedResources {
                machine_spec: api::MachineSpec { machine_type: machine.into(), ..Default::default() },
                min_replica_count: min,
                max_replica_count: max,
                autoscaling_metric_specs: metrics
                    .iter()
                    .map(|(n, t)| AutoscalingMetricSpec { metric_name: n.to_string(), target: *t })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_and_metrics_are_completed_and_checked() {
        let catalog = Catalog::builtin();
        let c = resolve(&dm("e2-small", 2, 0, &[(METRIC_CPU, 0)]), &catalog).unwrap();
        assert_eq!((c.min_replicas, c.max_replicas), (2, 2));
        assert_eq!(c.autoscaling, [(METRIC_CPU.to_string(), 60)]);
        assert_eq!(c.machine.name, "e2-small");
        assert!(resolve(&dm("e2-small", -1, 1, &[]), &catalog).unwrap_err().0.contains("0 (scale to zero"));
        let to_zero = resolve(&dm("e2-small", 0, 0, &[]), &catalog).unwrap();
        assert_eq!((to_zero.min_replicas, to_zero.max_replicas), (0, 1));
        assert!(resolve(&dm("e2-small", 3, 2, &[]), &catalog).unwrap_err().0.contains("below"));
        assert!(resolve(&dm("e2-huge", 1, 1, &[]), &catalog).is_err());
        assert!(
            resolve(&dm("e2-small", 1, 2, &[(METRIC_GPU, 50)]), &catalog)
                .unwrap_err()
                .0
                .contains("accelerators")
        );
        assert!(
            resolve(&dm("e2-small", 1, 2, &[(METRIC_CPU, 150)]), &catalog)
                .unwrap_err()
                .0
                .contains("out of range")
        );
        assert!(
            resolve(&dm("e2-small", 1, 2, &[("memory", 50)]), &catalog)
                .unwrap_err()
                .0
                .contains("not supported")
        );
        let none = resolve(&DeploymentSpec::default(), &catalog).unwrap();
        assert_eq!((none.machine.name.as_str(), none.concurrency), ("n1-standard-2", 80));
        for bad in [0, -1, 1001] {
            let spec = DeploymentSpec { container_concurrency: Some(bad), ..Default::default() };
            assert!(resolve(&spec, &catalog).unwrap_err().0.contains("containerConcurrency"), "{bad}");
        }
        let one = DeploymentSpec { container_concurrency: Some(1), ..Default::default() };
        assert_eq!(resolve(&one, &catalog).unwrap().concurrency, 1);
        // The concurrency target defaults to 70% of containerConcurrency and stays below it.
        let c = resolve(&dm("e2-small", 1, 3, &[(METRIC_CONCURRENCY, 0)]), &catalog).unwrap();
        assert_eq!(c.autoscaling, [(METRIC_CONCURRENCY.to_string(), 56)]);
        let mut over = dm("e2-small", 1, 3, &[(METRIC_CONCURRENCY, 20)]);
        over.container_concurrency = Some(10);
        assert!(resolve(&over, &catalog).unwrap_err().0.contains("above containerConcurrency 10"));
    }

    #[test]
    fn the_gpu_duty_cycle_is_refused_where_nothing_measures_it() {
        let catalog = Catalog::builtin();
        let gpu = resolve(&dm("g2-standard-4", 1, 2, &[(METRIC_GPU, 70)]), &catalog).unwrap();
        assert_eq!(check_measurable(&gpu, true), Ok(()));
        let refused = check_measurable(&gpu, false).unwrap_err().0;
        assert!(refused.contains("kubernetes backend") && refused.contains("cannot measure"), "{refused}");
        let cpu = resolve(&dm("g2-standard-4", 1, 2, &[(METRIC_CPU, 70)]), &catalog).unwrap();
        assert_eq!(check_measurable(&cpu, false), Ok(()));
    }
}
