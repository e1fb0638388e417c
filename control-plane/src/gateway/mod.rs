//! The data plane: `:predict` and `:rawPredict`. Decides who may call an endpoint (its access
//! mode and the caller's role), reads the routing snapshot (never the database), picks a
//! deployed model by traffic split and a replica by load, forwards over pooled keep-alive
//! connections, adds which deployed model answered, and counts every prediction.

pub mod route;
pub mod traffic;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::{Access, Code, Role};
use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::Value;

pub use route::{EndpointRoute, ModelRoute, ModelStats, Replica, RoutingTable};

use crate::auth::{Accounts, AuthError, Caller};
use crate::telemetry::Metrics;

/// Why a prediction could not be served.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("endpoint `{0}` not found")]
    UnknownEndpoint(String),
    #[error(
        "endpoint `{0}` has no deployed model that receives traffic; deploy a model or set its traffic split"
    )]
    NoTraffic(String),
    #[error("deployed model {0} has no ready replica yet; retry shortly")]
    NoReadyReplica(String),
    #[error("the request body is not a predict request: {0}; expected {{\"instances\": [...]}}")]
    BadRequest(String),
    #[error("deployed model {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("deployed model {0} failed: {1}")]
    Upstream(String, String),
    #[error("endpoint {0} is private: it is served only on the private listener (--private-listen)")]
    Private(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl api::Coded for GatewayError {
    fn code(&self) -> Code {
        match self {
            GatewayError::UnknownEndpoint(_) | GatewayError::Private(_) => Code::NotFound,
            GatewayError::BadRequest(_) => Code::InvalidArgument,
            GatewayError::NoTraffic(_) => Code::FailedPrecondition,
            GatewayError::NoReadyReplica(_) | GatewayError::Upstream(..) => Code::Unavailable,
            GatewayError::Timeout(..) => Code::DeadlineExceeded,
            GatewayError::Auth(e) => e.code(),
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            GatewayError::NoTraffic(_) => 503,
            GatewayError::Upstream(..) => 502,
            _ => self.code().http_status(),
        }
    }

    fn retry_after(&self) -> Option<u32> {
        matches!(self, GatewayError::NoReadyReplica(_)).then_some(1)
    }
}

/// One prediction request as it reached the platform.
#[derive(Debug)]
pub struct PredictRequest<'a> {
    /// The endpoint's resource name.
    pub endpoint: &'a str,
    /// `:rawPredict`: body and content type pass through unchanged.
    pub raw: bool,
    /// Whether the request came in on the private listener.
    pub private_listener: bool,
    /// Who is calling.
    pub credentials: Credentials<'a>,
    pub content_type: Option<&'a str>,
    pub body: Bytes,
}

/// Who is calling: the REST door passes the `Authorization` header, the console its signed-in
/// user. Either way the endpoint's access mode and the predictor role decide.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// The `Authorization` header, if any.
    Header(Option<&'a str>),
    /// A caller the door authenticated already.
    Caller(&'a Caller),
}

/// Settings of the data plane.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a replica may take to answer.
    pub timeout: Duration,
    /// How long a request may wait for a replica of a deployed model that has none ready
    /// (scaled to zero, or starting); zero answers 503 at once.
    pub cold_start_timeout: Duration,
}

/// An answer from a replica, ready to return to the caller.
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub deployed_model_id: String,
}

/// The gateway: the current routing snapshot and a pooled HTTP client.
pub struct Gateway {
    table: ArcSwap<RoutingTable>,
    client: reqwest::Client,
    config: GatewayConfig,
    metrics: Metrics,
    rotation: AtomicUsize,
    stats: std::sync::Mutex<std::collections::HashMap<String, Arc<ModelStats>>>,
    /// Signalled when a request waits for a replica: the autoscaler should look now.
    demand: tokio::sync::Notify,
    /// Bumped on every publish, so that waiting requests look again.
    published: tokio::sync::watch::Sender<u64>,
}

impl Gateway {
    pub fn new(config: GatewayConfig, metrics: Metrics) -> Gateway {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Gateway {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            client,
            config,
            metrics,
            rotation: AtomicUsize::new(0),
            stats: Default::default(),
            demand: tokio::sync::Notify::new(),
            published: tokio::sync::watch::channel(0).0,
        }
    }

    /// Swaps in a new routing snapshot.
    pub fn publish(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
        self.published.send_modify(|n| *n += 1);
    }

    /// The counters of a deployed model (created on first use), and forgets those of deployed
    /// models not in `keep`.
    pub fn stats(&self, deployed_model_id: &str) -> Arc<ModelStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.entry(deployed_model_id.to_string()).or_default().clone()
    }

    /// Forgets the counters of deployed models that are gone.
    pub fn retain_stats(&self, keep: &std::collections::HashSet<String>) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.retain(|id, _| keep.contains(id));
    }

    /// Resolves (or gives up after `timeout`) once a routing snapshot built entirely after this
    /// call is published: after a change of traffic split or access, so that the caller's next
    /// request sees it. The second publish from now is the first whose pass surely began later.
    pub fn next_publish(&self, timeout: Duration) -> impl std::future::Future<Output = ()> + use<> {
        let mut published = self.published.subscribe();
        published.mark_unchanged();
        async move {
            let _ = tokio::time::timeout(timeout, async {
                for _ in 0..2 {
                    if published.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
        }
    }

    /// Resolves when a request is waiting for a replica.
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// The route of an endpoint, by resource name.
    pub fn endpoint(&self, name: &str) -> Result<Arc<EndpointRoute>, GatewayError> {
        self.snapshot()
            .endpoints
            .get(name)
            .cloned()
            .ok_or_else(|| GatewayError::UnknownEndpoint(name.to_string()))
    }

    /// Picks the deployed model (traffic split) and its least loaded ready replica. When the
    /// model has no ready replica, waits up to the cold-start timeout for one, asking the
    /// autoscaler for it.
    async fn select(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
    ) -> Result<(Arc<EndpointRoute>, usize, Arc<Replica>), GatewayError> {
        let roll = rand::random_range(0..100);
        let ix =
            route::pick_model(&route.split, roll).ok_or_else(|| GatewayError::NoTraffic(name.to_string()))?;
        let model = route.models.get(ix).ok_or_else(|| GatewayError::NoTraffic(name.to_string()))?;
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        if let Some(replica) = route::pick_replica(&model.replicas, start).cloned() {
            return Ok((route.clone(), ix, replica));
        }
        let id = model.deployed_model_id.clone();
        if self.config.cold_start_timeout.is_zero() {
            return Err(GatewayError::NoReadyReplica(id));
        }
        let stats = model.stats.clone();
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Decrement(&stats.waiting);
        self.demand.notify_one();
        let mut published = self.published.subscribe();
        let deadline = tokio::time::Instant::now() + self.config.cold_start_timeout;
        loop {
            if tokio::time::timeout_at(deadline, published.changed()).await.is_err() {
                return Err(GatewayError::NoReadyReplica(id));
            }
            let current = self.endpoint(name)?;
            if let Some((ix, model)) =
                current.models.iter().enumerate().find(|(_, m)| m.deployed_model_id == id)
            {
                if let Some(replica) = route::pick_replica(&model.replicas, start).cloned() {
                    return Ok((current.clone(), ix, replica));
                }
            } else {
                return Err(GatewayError::NoTraffic(name.to_string()));
            }
        }
    }

    async fn forward(
        &self,
        model: &ModelRoute,
        replica: &Arc<Replica>,
        content_type: &str,
        body: Bytes,
    ) -> Result<reqwest::Response, GatewayError> {
        let _in_flight = replica.begin();
        model.stats.requests.fetch_add(1, Ordering::Relaxed);
        model.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = Decrement(&model.stats.in_flight);
        let url = format!("http://{}{}", replica.address, model.predict_route);
        self.client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(self.config.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    GatewayError::Timeout(model.deployed_model_id.clone(), self.config.timeout)
                } else {
                    GatewayError::Upstream(model.deployed_model_id.clone(), e.to_string())
                }
            })
    }

    /// Serves one prediction: checks who may call the endpoint, forwards, and counts it in the
    /// metrics.
    pub async fn serve(
        &self,
        accounts: &Accounts,
        req: PredictRequest<'_>,
    ) -> Result<Forwarded, GatewayError> {
        let started = Instant::now();
        let endpoint = req.endpoint.to_string();
        let endpoint_id = endpoint.rsplit('/').next().unwrap_or_default();
        let result = self.authorized(accounts, req).await;
        let (code, deployed_model) = match &result {
            Ok(f) => (f.status, f.deployed_model_id.as_str()),
            Err(e) => (api::Coded::http_status(e), ""),
        };
        let took = started.elapsed();
        self.metrics.prediction(endpoint_id, deployed_model, code, took);
        if !matches!(&result, Err(GatewayError::UnknownEndpoint(_))) {
            self.metrics.history.prediction(&endpoint, code, took);
        }
        result
    }

    async fn authorized(
        &self,
        accounts: &Accounts,
        req: PredictRequest<'_>,
    ) -> Result<Forwarded, GatewayError> {
        let route = self.endpoint(req.endpoint)?;
        match route.access {
            Access::Public => {}
            Access::Private if !req.private_listener => {
                return Err(GatewayError::Private(req.endpoint.to_string()));
            }
            Access::Private | Access::Authenticated => match req.credentials {
                Credentials::Header(header) => {
                    accounts.authenticate_header(header).await?.require(Role::Predictor, &route.project)?
                }
                Credentials::Caller(caller) => caller.require(Role::Predictor, &route.project)?,
            },
        }
        if req.raw {
            let content_type = req.content_type.unwrap_or("application/octet-stream");
            self.raw_predict(req.endpoint, route, content_type, req.body).await
        } else {
            self.predict(req.endpoint, route, req.body).await
        }
    }

    /// `:predict`: forwards `{"instances": [...]}` and adds `deployedModelId`, `model`,
    /// `modelVersionId` and `modelDisplayName` to the container's answer.
    async fn predict(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
        body: Bytes,
    ) -> Result<Forwarded, GatewayError> {
        check_predict_body(&body)?;
        let (route, ix, replica) = self.select(name, route).await?;
        let model = route.models.get(ix).ok_or_else(|| GatewayError::NoTraffic(name.to_string()))?;
        let response = self.forward(model, &replica, "application/json", body).await?;
        let status = response.status().as_u16();
        let content_type = header_text(&response, reqwest::header::CONTENT_TYPE);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GatewayError::Upstream(model.deployed_model_id.clone(), e.to_string()))?;
        if !(200..300).contains(&status) {
            return Ok(Forwarded {
                status,
                content_type,
                body: bytes,
                deployed_model_id: model.deployed_model_id.clone(),
            });
        }
        let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::Upstream(
                model.deployed_model_id.clone(),
                format!("the container's answer is not JSON: {e}"),
            )
        })?;
        let Some(object) = answer.as_object_mut() else {
            return Err(GatewayError::Upstream(
                model.deployed_model_id.clone(),
                "the container's answer is not a JSON object with `predictions`".into(),
            ));
        };
        object.insert("deployedModelId".into(), Value::from(model.deployed_model_id.as_str()));
        object.insert("model".into(), Value::from(model.model.as_str()));
        object.insert("modelVersionId".into(), Value::from(model.model_version_id.as_str()));
        object.insert("modelDisplayName".into(), Value::from(model.model_display_name.as_str()));
        let body = serde_json::to_vec(&answer)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Upstream(model.deployed_model_id.clone(), e.to_string()))?;
        Ok(Forwarded {
            status,
            content_type: Some("application/json".into()),
            body,
            deployed_model_id: model.deployed_model_id.clone(),
        })
    }

    /// `:rawPredict`: forwards the body and its content type unchanged, and returns the
    /// container's answer unchanged.
    async fn raw_predict(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
        content_type: &str,
        body: Bytes,
    ) -> Result<Forwarded, GatewayError> {
        let (route, ix, replica) = self.select(name, route).await?;
        let model = route.models.get(ix).ok_or_else(|| GatewayError::NoTraffic(name.to_string()))?;
        let response = self.forward(model, &replica, content_type, body).await?;
        let status = response.status().as_u16();
        let content_type = header_text(&response, reqwest::header::CONTENT_TYPE);
        let body = response
            .bytes()
            .await
            .map_err(|e| GatewayError::Upstream(model.deployed_model_id.clone(), e.to_string()))?;
        Ok(Forwarded { status, content_type, body, deployed_model_id: model.deployed_model_id.clone() })
    }
}

/// Decrements a counter when dropped.
struct Decrement<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A predict body must be a JSON object with an `instances` array.
fn check_predict_body(body: &[u8]) -> Result<(), GatewayError> {
    #[derive(serde::Deserialize)]
    struct Shape {
        instances: Vec<serde::de::IgnoredAny>,
    }
    let shape: Shape = serde_json::from_slice(body).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    if shape.instances.is_empty() {
        return Err(GatewayError::BadRequest("`instances` is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_bodies_need_instances() {
        assert!(check_predict_body(br#"{"instances": [[1]]}"#).is_ok());
        assert!(check_predict_body(br#"{"instances": []}"#).unwrap_err().to_string().contains("empty"));
        assert!(check_predict_body(br#"{"inputs": []}"#).unwrap_err().to_string().contains("instances"));
        assert!(check_predict_body(b"nope").is_err());
    }
}
