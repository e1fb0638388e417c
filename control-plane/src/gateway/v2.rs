//! The Open Inference Protocol V2 through the gateway, under an endpoint's resource name:
//! `{endpoint}/v2/...`, so that a V2 client given `{host}/v1/{endpoint}` as its URL works
//! unchanged (with the endpoint's access mode and the predictor role, as `:predict`).
//!
//! `{model}` in `v2/models/{model}/...` is a deployed model's id, which pins that deployed
//! model (whatever its share of the traffic), or the endpoint's own id, which follows the
//! traffic split as `:predict` does. Only the prebuilt runtime is known to speak V2: a deployed
//! model that runs a custom container is refused with a message, never forwarded.
//!
//! Server health and metadata are answered by the gateway from its routing snapshot; model
//! metadata and inference go to a replica. Inference bodies pass through untouched both ways,
//! with their content type and the binary tensor extension's `Inference-Header-Content-Length`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{EndpointRoute, Forwarded, Gateway, GatewayError, ModelRoute, Outgoing, Upstream};

/// The binary tensor data extension's header: the length of the JSON part of the body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A V2 call on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Call<'a> {
    /// `GET v2/health/live`: the gateway serves the endpoint.
    Live,
    /// `GET v2/health/ready`: every deployed model in the traffic split has a ready replica.
    Ready,
    /// `GET v2`: server metadata.
    Server,
    /// `GET v2/models/{model}`: model metadata, from a replica.
    Model(&'a str),
    /// `GET v2/models/{model}/ready`: the deployed models `{model}` reaches have ready replicas.
    ModelReady(&'a str),
    /// `POST v2/models/{model}/infer`.
    Infer(&'a str),
}

impl Gateway {
    /// Serves a V2 call of an authorized caller; `out` carries an inference's body.
    pub(super) async fn v2(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
        call: V2Call<'_>,
        out: Outgoing<'_>,
    ) -> Result<Forwarded, GatewayError> {
        match call {
            V2Call::Live => Ok(Forwarded::local(&json!({"live": true}))),
            V2Call::Server => Ok(Forwarded::local(&json!({
                "name": name,
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": ["binary_tensor_data"],
            }))),
            V2Call::Ready => {
                let id = endpoint_id(name);
                all_ready(&reached(name, &route, id)?)?;
                Ok(Forwarded::local(&json!({"ready": true})))
            }
            V2Call::ModelReady(model) => {
                all_ready(&reached(name, &route, model)?)?;
                Ok(Forwarded::local(&json!({"name": model, "ready": true})))
            }
            V2Call::Model(model) => {
                reached(name, &route, model)?;
                let out = Outgoing {
                    upstream: Upstream::V2Metadata,
                    content_type: None,
                    inference_header_length: None,
                    body: Default::default(),
                };
                let mut answer = self.send(name, route, pinned(name, model), out).await?.read().await?;
                name_model(&mut answer, model);
                Ok(answer)
            }
            V2Call::Infer(model) => {
                reached(name, &route, model)?;
                let out = Outgoing { upstream: Upstream::V2Infer, ..out };
                self.send(name, route, pinned(name, model), out).await?.read().await
            }
        }
    }
}

/// The id at the end of an endpoint's resource name.
fn endpoint_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

/// The deployed model `model` pins, or `None` when it names the endpoint (the traffic split).
fn pinned<'a>(name: &str, model: &'a str) -> Option<&'a str> {
    (model != endpoint_id(name)).then_some(model)
}

/// The deployed models a V2 call on `model` may reach, each of which must speak V2: the one it
/// names, or those that receive traffic when it names the endpoint.
fn reached<'r>(
    name: &str,
    route: &'r EndpointRoute,
    model: &str,
) -> Result<Vec<&'r Arc<ModelRoute>>, GatewayError> {
    let models: Vec<&Arc<ModelRoute>> = match pinned(name, model) {
        Some(id) => {
            let found = route.models.iter().find(|m| m.deployed_model_id == id);
            vec![found.ok_or_else(|| GatewayError::UnknownModel {
                endpoint: name.to_string(),
                model: model.to_string(),
                id: endpoint_id(name).to_string(),
            })?]
        }
        None => route.split.iter().filter_map(|(ix, _)| route.models.get(*ix)).collect(),
    };
    if models.is_empty() {
        return Err(GatewayError::NoTraffic(name.to_string()));
    }
    if let Some(custom) = models.iter().find(|m| m.v2_model.is_none()) {
        return Err(GatewayError::NotV2(custom.deployed_model_id.clone()));
    }
    Ok(models)
}

/// Whether each of `models` has a ready replica now.
fn all_ready(models: &[&Arc<ModelRoute>]) -> Result<(), GatewayError> {
    match models.iter().find(|m| m.replicas.is_empty()) {
        Some(m) => Err(GatewayError::NoReadyReplica(m.deployed_model_id.clone())),
        None => Ok(()),
    }
}

/// Model metadata names the model as the caller did, not as the replica serves it.
fn name_model(answer: &mut Forwarded, model: &str) {
    if answer.status != 200 {
        return;
    }
    if let Ok(mut metadata) = serde_json::from_slice::<Value>(&answer.body)
        && let Some(object) = metadata.as_object_mut()
    {
        object.insert("name".into(), Value::from(model));
        answer.body = metadata.to_string().into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Replica;
    use api::Coded;

    const NAME: &str = "projects/p/locations/l/endpoints/e";

    fn model(id: &str, v2: bool, ready: bool) -> Arc<ModelRoute> {
        let replica = Arc::new(Replica::new(std::net::SocketAddr::from(([127, 0, 0, 1], 9000))));
        Arc::new(ModelRoute {
            deployed_model_id: id.into(),
            model: String::new(),
            model_version_id: "1".into(),
            model_display_name: String::new(),
            predict_route: "/predict".into(),
            v2_model: v2.then(|| "model".into()),
            replicas: if ready { vec![replica] } else { vec![] },
            concurrency: 8,
            access_logging: false,
            stats: Default::default(),
        })
    }

    fn route(models: Vec<Arc<ModelRoute>>, split: Vec<(usize, u32)>) -> EndpointRoute {
        EndpointRoute {
            key: crate::store::EndpointKey::new("p", "l", "e"),
            project: "p".into(),
            access: api::Access::Public,
            models,
            split,
            timeout: None,
            prediction_logging: Default::default(),
        }
    }

    #[test]
    fn the_model_in_the_path_pins_a_deployed_model_or_names_the_endpoint_for_the_split() {
        let r = route(
            vec![model("1", true, true), model("2", true, false), model("3", false, true)],
            vec![(0, 100)],
        );
        let ids =
            |m: Vec<&Arc<ModelRoute>>| m.iter().map(|m| m.deployed_model_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(reached(NAME, &r, "e").unwrap()), ["1"], "the endpoint's id: the split");
        assert_eq!(ids(reached(NAME, &r, "2").unwrap()), ["2"], "a deployed model's id pins it");
        assert_eq!(pinned(NAME, "e"), None);
        assert_eq!(pinned(NAME, "2"), Some("2"));
        let unknown = reached(NAME, &r, "nope").unwrap_err();
        assert_eq!(unknown.http_status(), 404);
        assert!(unknown.to_string().contains("`e` to follow the traffic split"), "{unknown}");
        let custom = reached(NAME, &r, "3").unwrap_err();
        assert_eq!(custom.http_status(), 400, "{custom}");
        assert!(custom.to_string().contains("custom container"), "{custom}");
        let mixed = route(vec![model("1", true, true), model("3", false, true)], vec![(0, 50), (1, 50)]);
        assert!(matches!(reached(NAME, &mixed, "e"), Err(GatewayError::NotV2(id)) if id == "3"));
        assert!(matches!(reached(NAME, &route(vec![], vec![]), "e"), Err(GatewayError::NoTraffic(_))));
        assert!(all_ready(&reached(NAME, &r, "1").unwrap()).is_ok());
        let not_ready = all_ready(&reached(NAME, &r, "2").unwrap()).unwrap_err();
        assert_eq!(not_ready.http_status(), 503);
    }

    #[test]
    fn metadata_names_the_model_as_the_caller_did() {
        let mut answer = Forwarded::local(&json!({"name": "model", "inputs": []}));
        name_model(&mut answer, "42");
        let metadata: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(metadata, json!({"name": "42", "inputs": []}));
    }
}
