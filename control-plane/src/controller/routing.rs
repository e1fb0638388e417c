//! The gateway's routing table, built from the endpoints, their deployed models and what the
//! backend observed of their replicas. Pure but for the replica pool, which keeps each
//! replica's load counter across tables.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::DeploymentStatus;
use crate::endpoints::compute::container_concurrency;
use crate::gateway::route::split_indices;
use crate::gateway::{EndpointRoute, ModelRoute, ModelStats, Replica, RoutingTable};
use crate::store::{DeployedModel, DesiredState, Endpoint, EndpointKey};

/// What the controller observed of a deployed model's replicas in this pass.
#[derive(Debug, Clone)]
pub struct Observed {
    pub status: DeploymentStatus,
    /// Where the gateway sends predictions.
    pub predict_route: String,
    /// The model's name in the replicas' Open Inference Protocol V2 routes, when they speak it.
    pub v2_model: Option<String>,
}

/// Observations by endpoint and deployed model id.
pub type Observations = HashMap<(EndpointKey, String), Observed>;

/// Display names of models by resource name: predictions answer with the model's, as Vertex's
/// `modelDisplayName` does (a deployed model's own display name may differ).
pub type ModelNames = HashMap<String, String>;

/// Every endpoint with the deployed models that have ready replicas and its split.
/// `replicas` holds the replicas of the previous table (their load counters carry over) and is
/// left with those of this one; `stats` gives a deployed model's counters.
pub fn routing_table(
    endpoints: &[Endpoint],
    deployed: &[DeployedModel],
    observed: &Observations,
    model_names: &ModelNames,
    replicas: &mut HashMap<SocketAddr, Arc<Replica>>,
    stats: impl Fn(&str) -> Arc<ModelStats>,
) -> RoutingTable {
    let mut used: HashSet<SocketAddr> = HashSet::new();
    let mut table = RoutingTable::default();
    for e in endpoints {
        let key = e.key();
        let models: Vec<Arc<ModelRoute>> = deployed
            .iter()
            .filter(|d| d.endpoint_key() == key && d.desired_state != DesiredState::Undeploying)
            .filter_map(|d| {
                let seen = observed.get(&(key.clone(), d.deployed_model_id.clone()))?;
                let ready = seen
                    .status
                    .ready_addresses()
                    .into_iter()
                    .map(|a| {
                        used.insert(a);
                        replicas.entry(a).or_insert_with(|| Arc::new(Replica::new(a))).clone()
                    })
                    .collect();
                let model = crate::store::ModelKey::new(&d.project, &d.location, &d.model_id).name();
                Some(Arc::new(ModelRoute {
                    deployed_model_id: d.deployed_model_id.clone(),
                    model_display_name: model_names.get(&model).unwrap_or(&d.display_name).clone(),
                    model,
                    model_version_id: d.version_id.to_string(),
                    predict_route: seen.predict_route.clone(),
                    v2_model: seen.v2_model.clone(),
                    replicas: ready,
                    concurrency: usize::try_from(container_concurrency(&d.spec)).unwrap_or(1).max(1),
                    access_logging: d.spec.enable_access_logging,
                    stats: stats(&d.deployed_model_id),
                }))
            })
            .collect();
        let split: HashMap<String, u32> =
            e.traffic_split.iter().map(|(k, v)| (k.clone(), u32::try_from(*v).unwrap_or(0))).collect();
        let route = EndpointRoute {
            project: e.project.clone(),
            access: e.access,
            prediction_logging: e.prediction_logging,
            timeout: e.inference_timeout.map(api::Duration::get),
            split: split_indices(&models, &split),
            models,
            key: key.clone(),
        };
        table.endpoints.insert(key.name(), Arc::new(route));
    }
    replicas.retain(|a, _| used.contains(a));
    table
}

/// What `table` routes where (endpoints, access, splits, request-response logging, ready
/// replicas), to tell whether a new
/// table changed anything a gateway of another process should know.
pub fn fingerprint(table: &RoutingTable) -> String {
    let mut endpoints: Vec<(&String, &Arc<EndpointRoute>)> = table.endpoints.iter().collect();
    endpoints.sort_by_key(|(name, _)| *name);
    let mut out = String::new();
    for (name, route) in endpoints {
        out.push_str(&format!(
            "{name} {:?} {:?} {:?} {:?}\n",
            route.access, route.split, route.prediction_logging, route.timeout
        ));
        for m in &route.models {
            let replicas: Vec<SocketAddr> = m.replicas.iter().map(|r| r.address).collect();
            let (id, predict, v2) = (&m.deployed_model_id, &m.predict_route, &m.v2_model);
            out.push_str(&format!("  {id} {predict} {v2:?} {replicas:?}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ReplicaState, ReplicaStatus};

    fn endpoint(id: &str, split: &[(&str, i32)]) -> Endpoint {
        Endpoint {
            project: "p".into(),
            location: "l".into(),
            endpoint_id: id.into(),
            traffic_split: split.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    fn deployed(endpoint: &str, id: &str, state: DesiredState) -> DeployedModel {
        DeployedModel {
            project: "p".into(),
            location: "l".into(),
            endpoint_id: endpoint.into(),
            deployed_model_id: id.into(),
            model_id: "m".into(),
            version_id: 1,
            desired_state: state,
            ..Default::default()
        }
    }

    fn observed(ports: &[(u16, bool)]) -> Observed {
        let replicas = ports
            .iter()
            .map(|(port, ready)| ReplicaStatus {
                id: port.to_string(),
                address: SocketAddr::from(([127, 0, 0, 1], *port)),
                ready: *ready,
                restarts: 0,
                last_error: None,
                state: if *ready { ReplicaState::Ready } else { ReplicaState::Starting },
                current: true,
            })
            .collect();
        Observed {
            status: DeploymentStatus { replicas, desired: ports.len() as u32, ..Default::default() },
            predict_route: "/p".into(),
            v2_model: None,
        }
    }

    #[test]
    fn only_ready_replicas_of_live_models_are_routed_and_load_counters_carry_over() {
        let endpoints = [endpoint("e", &[("a", 70), ("b", 30)])];
        let models = [
            deployed("e", "a", DesiredState::Deployed),
            deployed("e", "b", DesiredState::Deploying),
            deployed("e", "c", DesiredState::Undeploying),
        ];
        let key = endpoints[0].key();
        let mut seen = Observations::new();
        seen.insert((key.clone(), "a".into()), observed(&[(9001, true), (9002, false)]));
        seen.insert((key.clone(), "b".into()), observed(&[(9003, true)]));
        seen.insert((key.clone(), "c".into()), observed(&[(9004, true)]));
        let mut pool = HashMap::new();
        let stats = |_: &str| Arc::new(ModelStats::default());
        let table = routing_table(&endpoints, &models, &seen, &ModelNames::new(), &mut pool, stats);
        let route = &table.endpoints[&key.name()];
        let ids: Vec<&str> = route.models.iter().map(|m| m.deployed_model_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(route.models[0].replicas.len(), 1);
        assert_eq!(route.split, vec![(0, 70), (1, 30)]);
        assert_eq!(pool.len(), 2);

        // A replica keeps its counter in the next table; one that went away leaves the pool.
        let _busy = pool[&SocketAddr::from(([127, 0, 0, 1], 9001))].begin();
        seen.remove(&(key.clone(), "b".into()));
        let before = fingerprint(&table);
        let table = routing_table(&endpoints, &models, &seen, &ModelNames::new(), &mut pool, stats);
        assert_eq!(table.endpoints[&key.name()].models[0].replicas[0].outstanding(), 1);
        assert_eq!(pool.len(), 1);
        assert_ne!(fingerprint(&table), before, "a model without replicas is a change to signal");
        let again = routing_table(&endpoints, &models, &seen, &ModelNames::new(), &mut pool, stats);
        assert_eq!(fingerprint(&again), fingerprint(&table), "load is not");
    }

    #[test]
    fn request_response_logging_reaches_the_gateway_and_its_change_is_signalled() {
        let mut endpoints = [endpoint("e", &[])];
        let stats = |_: &str| Arc::new(ModelStats::default());
        let table = |endpoints: &[Endpoint]| {
            routing_table(
                endpoints,
                &[],
                &Observations::new(),
                &ModelNames::new(),
                &mut HashMap::new(),
                stats,
            )
        };
        let before = table(&endpoints);
        let logging = crate::store::PredictionLogging { enabled: true, sampling_rate: 0.5 };
        endpoints[0].prediction_logging = logging;
        let after = table(&endpoints);
        let route = &after.endpoints[&endpoints[0].key().name()];
        assert_eq!((route.prediction_logging, &route.key), (logging, &endpoints[0].key()));
        assert_ne!(fingerprint(&after), fingerprint(&before), "gateways of other processes are told");
    }

    #[test]
    fn predictions_carry_the_models_display_name_not_the_deployed_models() {
        let endpoints = [endpoint("e", &[("a", 100)])];
        let models =
            [DeployedModel { display_name: "canary".into(), ..deployed("e", "a", DesiredState::Deployed) }];
        let mut seen = Observations::new();
        seen.insert((endpoints[0].key(), "a".into()), observed(&[(9001, true)]));
        let names = ModelNames::from([("projects/p/locations/l/models/m".to_string(), "fraud".to_string())]);
        let stats = |_: &str| Arc::new(ModelStats::default());
        let table = routing_table(&endpoints, &models, &seen, &names, &mut HashMap::new(), stats);
        assert_eq!(table.endpoints[&endpoints[0].key().name()].models[0].model_display_name, "fraud");
        let table = routing_table(&endpoints, &models, &seen, &ModelNames::new(), &mut HashMap::new(), stats);
        let route = &table.endpoints[&endpoints[0].key().name()];
        assert_eq!(
            route.models[0].model_display_name, "canary",
            "the deployed model's when the model is unknown"
        );
    }
}
