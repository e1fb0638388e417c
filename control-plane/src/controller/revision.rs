//! Which manifests run for a deployed model: its rendering, or the newest revision when a person
//! edited it (or rolled back) and the edit still fits. Pure.

use std::time::Duration;

use super::autoscale::Bounds;
use crate::endpoints::rendering::{self, Rendering};
use crate::manifests::{self, RenderConfig, Rendered};
use crate::store::{Revision, RevisionSource};

/// What the controller runs for a deployed model, with what it needs to judge and scale it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub objects: Rendered,
    pub bounds: Bounds,
    /// CPU each replica is given by its machine type, the base of CPU utilization.
    pub cpu_millis: u64,
    /// How long a deploy may take.
    pub timeout: Duration,
    /// Where the gateway sends predictions.
    pub predict_route: String,
    /// The model's name in the replicas' Open Inference Protocol V2 routes, when they speak it.
    pub v2_model: Option<String>,
    /// Why the edited revision is not what runs, if so.
    pub problem: Option<String>,
}

/// The plan for a deployed model from its rendering and newest revision, and whether the
/// rendering must be stored as a new revision (it changed since the newest one, or there is
/// none).
pub fn plan(
    rendering: &Rendering,
    latest: Option<&Revision>,
    default_timeout: Duration,
    config: &RenderConfig,
) -> (Plan, bool) {
    let target = |metric: &str| {
        rendering
            .compute
            .autoscaling
            .iter()
            .find(|(m, _)| m == metric)
            .and_then(|(_, t)| u32::try_from(*t).ok())
    };
    let mut bounds = Bounds {
        min: rendering.compute.min_replicas,
        max: rendering.compute.max_replicas,
        target_rpm: target(api::METRIC_REQUESTS),
        target_concurrency: target(api::METRIC_CONCURRENCY),
        target_cpu: target(api::METRIC_CPU),
    };
    let mut objects = rendering.rendered.clone();
    let mut problem = None;
    let mut store_rendered = false;
    match latest {
        Some(r) if r.source != RevisionSource::Rendered => {
            match manifests::validate_deployed_model(&r.manifests, &rendering.rendered) {
                Ok(edited) => {
                    // Edited replicas are a fixed count; the autoscaler keeps out.
                    if let Some(n) =
                        rendering::replicas(&edited).filter(|n| Some(*n) != rendering::replicas(&objects))
                    {
                        bounds = Bounds {
                            min: n,
                            max: n,
                            target_rpm: None,
                            target_concurrency: None,
                            target_cpu: None,
                        };
                    }
                    objects = edited;
                }
                Err(problems) => {
                    problem = Some(format!(
                        "revision {} no longer fits this deployed model; running the rendered manifests: {problems}",
                        r.revision
                    ));
                }
            }
        }
        Some(r) if r.manifests == rendering.manifests => {}
        _ => store_rendered = true,
    }
    let plan = Plan {
        predict_route: rendering::predict_route(&objects).unwrap_or_default(),
        v2_model: rendering::v2_model(&objects, config),
        objects,
        bounds,
        cpu_millis: rendering.compute.machine.cpu_millis,
        timeout: rendering.input.container.deployment_timeout.map_or(default_timeout, api::Duration::get),
        problem,
    };
    (plan, store_rendered)
}
