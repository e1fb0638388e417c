//! The data plane: `:predict`, `:rawPredict` and the Open Inference Protocol V2 ([`v2`]). Decides who may call an endpoint (its access
//! mode and the caller's role), reads the routing snapshot (never the database), picks a
//! deployed model by traffic split and a replica by load, forwards over pooled keep-alive
//! connections, adds which deployed model answered, and counts every prediction.
//!
//! Overload: each replica is given at most its deployed model's `containerConcurrency`
//! requests at once; more wait in a bounded queue per deployed model, and past it the caller
//! gets 429 with `Retry-After` (memory stays bounded). A replica that refuses the connection, or
//! drops it before answering (it died), is left out for a moment and the request goes once to
//! another ready replica.
//!
//! Deadline: from when a request is routed to a deployed model, the endpoint's inference
//! timeout (`clientConnectionConfig.inferenceTimeout`, or `--predict-timeout`) bounds the wait
//! in the queue and the replica's answer together; past it the caller gets 504. A request held
//! for a cold start is bounded apart (`--cold-start-timeout`, then 503).
//!
//! Request-response logging: a sample of the predictions that reached a deployed model, with
//! their bodies, goes to a writer task off the request path ([`prediction_logs`]).

pub mod prediction_logs;
pub mod route;
pub mod traffic;
pub mod v2;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::{Access, Code, Role};
use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::Value;

use route::{Admission, InFlight};
pub use route::{EndpointRoute, ModelRoute, ModelStats, Replica, RoutingTable};
pub use v2::V2Call;

use crate::auth::{Accounts, AuthError, Caller};
use crate::store::{PredictMethod, Timestamp};
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
    #[error(
        "deployed model {0} did not answer within {1}, the endpoint's inference timeout (clientConnectionConfig.inferenceTimeout; --predict-timeout when the endpoint sets none)"
    )]
    Timeout(String, api::Duration),
    #[error(
        "endpoint {endpoint} has no deployed model `{model}`: name a deployed model's id to call that deployed model, or the endpoint's id `{id}` to follow the traffic split"
    )]
    UnknownModel { endpoint: String, model: String, id: String },
    #[error(
        "deployed model {0} runs a custom container, to which the gateway does not route the Open Inference Protocol V2 (only the prebuilt runtime is known to speak it); call it with :predict or :rawPredict"
    )]
    NotV2(String),
    #[error("deployed model {0} failed: {1}")]
    Upstream(String, String),
    #[error("deployed model {0} could not be reached: {1}")]
    Unreachable(String, String),
    #[error("deployed model {0} closed the connection before it answered: {1}")]
    Broken(String, String),
    #[error(
        "deployed model {0} is at capacity: each replica serves its containerConcurrency requests at once, and the queue is full; retry after the Retry-After delay, or raise maxReplicaCount or containerConcurrency"
    )]
    Overloaded(String),
    #[error("endpoint {0} is private: it is served only on the private listener (--private-listen)")]
    Private(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl api::Coded for GatewayError {
    fn code(&self) -> Code {
        match self {
            GatewayError::UnknownEndpoint(_)
            | GatewayError::Private(_)
            | GatewayError::UnknownModel { .. } => Code::NotFound,
            GatewayError::BadRequest(_) => Code::InvalidArgument,
            GatewayError::NotV2(_) => Code::FailedPrecondition,
            GatewayError::NoTraffic(_) => Code::FailedPrecondition,
            GatewayError::NoReadyReplica(_)
            | GatewayError::Upstream(..)
            | GatewayError::Unreachable(..)
            | GatewayError::Broken(..) => Code::Unavailable,
            GatewayError::Overloaded(_) => Code::ResourceExhausted,
            GatewayError::Timeout(..) => Code::DeadlineExceeded,
            GatewayError::Auth(e) => e.code(),
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            GatewayError::NoTraffic(_) => 503,
            GatewayError::Upstream(..) | GatewayError::Unreachable(..) | GatewayError::Broken(..) => 502,
            GatewayError::Overloaded(_) => 429,
            _ => self.code().http_status(),
        }
    }

    fn retry_after(&self) -> Option<u32> {
        matches!(self, GatewayError::NoReadyReplica(_) | GatewayError::Overloaded(_)).then_some(1)
    }
}

impl GatewayError {
    /// The deployed model the request had reached, if it had.
    fn deployed_model(&self) -> Option<&str> {
        match self {
            GatewayError::NoReadyReplica(id)
            | GatewayError::Timeout(id, _)
            | GatewayError::Upstream(id, _)
            | GatewayError::Unreachable(id, _)
            | GatewayError::Broken(id, _)
            | GatewayError::Overloaded(id)
            | GatewayError::NotV2(id) => Some(id),
            _ => None,
        }
    }
}

/// How long a replica that refused or dropped a connection is left out of routing, unless the
/// controller sees it fail and pass its readiness probe sooner (about one probe period).
const REFUSED_EJECTION: Duration = Duration::from_secs(5);

/// What a caller asks of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    /// `:predict`: `{"instances": [...]}`, answered with which deployed model answered.
    Predict,
    /// `:rawPredict`: body and content type pass through unchanged.
    RawPredict,
    /// The Open Inference Protocol V2 under the endpoint.
    V2(V2Call<'a>),
}

impl Call<'_> {
    /// Which prediction the call is, counted in the metrics, the access log and request-response
    /// logging; `None` for health and metadata calls.
    fn prediction_method(&self) -> Option<PredictMethod> {
        match self {
            Call::Predict => Some(PredictMethod::Predict),
            Call::RawPredict => Some(PredictMethod::RawPredict),
            Call::V2(V2Call::Infer(_)) => Some(PredictMethod::V2Infer),
            Call::V2(_) => None,
        }
    }
}

/// One request to an endpoint's data plane as it reached the platform.
#[derive(Debug)]
pub struct PredictRequest<'a> {
    /// The endpoint's resource name.
    pub endpoint: &'a str,
    pub call: Call<'a>,
    /// Whether the request came in on the private listener.
    pub private_listener: bool,
    /// Who is calling.
    pub credentials: Credentials<'a>,
    pub content_type: Option<&'a str>,
    /// `Inference-Header-Content-Length` (V2 binary tensor data), passed on.
    pub inference_header_length: Option<&'a str>,
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
    /// How long a request routed to a deployed model may wait for a slot and the replica's
    /// answer, when its endpoint sets no `clientConnectionConfig.inferenceTimeout`.
    pub timeout: Duration,
    /// How long a request may wait for a replica of a deployed model that has none ready
    /// (scaled to zero, or starting); zero answers 503 at once.
    pub cold_start_timeout: Duration,
    /// How many requests may wait per deployed model while its replicas are at their
    /// concurrency limit (more are answered 429), and how many may be held while it has no
    /// ready replica (more are answered 503).
    pub max_queued: usize,
}

/// An answer from a replica, ready to return to the caller.
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    /// The replica's `Retry-After`, passed on (a runtime's own 429 or 503).
    pub retry_after: Option<String>,
    /// The replica's `Inference-Header-Content-Length` (V2 binary tensor data), passed on.
    pub inference_header_length: Option<String>,
    pub body: Bytes,
    /// Empty when the gateway answered itself.
    pub deployed_model_id: String,
}

impl Forwarded {
    /// An answer of the gateway itself (V2 health and server metadata).
    fn local(body: &Value) -> Forwarded {
        Forwarded {
            status: 200,
            content_type: Some("application/json".into()),
            retry_after: None,
            inference_header_length: None,
            body: Bytes::from(body.to_string()),
            deployed_model_id: String::new(),
        }
    }
}

/// When a request routed to a deployed model must have its answer, and the timeout it came from.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    timeout: Duration,
}

impl Deadline {
    fn missed(&self, model: &ModelRoute) -> GatewayError {
        GatewayError::Timeout(model.deployed_model_id.clone(), self.timeout.into())
    }
}

/// What is sent to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// `POST` to the container's predict route.
    Predict,
    /// `POST /v2/models/{name}/infer`.
    V2Infer,
    /// `GET /v2/models/{name}`.
    V2Metadata,
}

impl Upstream {
    /// The method and path on a replica of `model`.
    fn target(self, model: &ModelRoute) -> Result<(reqwest::Method, String), GatewayError> {
        let v2_name =
            || model.v2_model.as_deref().ok_or_else(|| GatewayError::NotV2(model.deployed_model_id.clone()));
        Ok(match self {
            Upstream::Predict => (reqwest::Method::POST, model.predict_route.clone()),
            Upstream::V2Infer => (reqwest::Method::POST, format!("/v2/models/{}/infer", v2_name()?)),
            Upstream::V2Metadata => (reqwest::Method::GET, format!("/v2/models/{}", v2_name()?)),
        })
    }
}

/// A request on its way to a replica.
#[derive(Debug, Clone)]
struct Outgoing<'a> {
    upstream: Upstream,
    content_type: Option<&'a str>,
    inference_header_length: Option<&'a str>,
    body: Bytes,
}

/// An answer on its way back from a replica: its slot stays taken until the body is read.
struct Sent {
    model: Arc<ModelRoute>,
    response: reqwest::Response,
    deadline: Deadline,
    _slot: Slot,
}

impl Sent {
    /// Reads the whole answer.
    async fn read(self) -> Result<Forwarded, GatewayError> {
        let status = self.response.status().as_u16();
        let content_type = header_text(&self.response, reqwest::header::CONTENT_TYPE);
        let retry_after = header_text(&self.response, reqwest::header::RETRY_AFTER);
        let inference_header_length = header_text(&self.response, v2::HEADER_LENGTH);
        let body = tokio::time::timeout_at(self.deadline.at, self.response.bytes())
            .await
            .map_err(|_| self.deadline.missed(&self.model))?
            .map_err(|e| GatewayError::Upstream(self.model.deployed_model_id.clone(), e.to_string()))?;
        Ok(Forwarded {
            status,
            content_type,
            retry_after,
            inference_header_length,
            body,
            deployed_model_id: self.model.deployed_model_id.clone(),
        })
    }
}

/// A request's place on a replica: counted in flight there and in its deployed model's stats;
/// when it ends, a queued request of the deployed model may take it.
struct Slot {
    in_flight: InFlight,
    stats: Arc<ModelStats>,
}

impl Slot {
    fn new(in_flight: InFlight, stats: Arc<ModelStats>) -> Slot {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Slot { in_flight, stats }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.freed.notify_one();
    }
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
    /// Where sampled predictions go (request-response logging); none keeps nothing.
    prediction_logs: Option<prediction_logs::Sink>,
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
            prediction_logs: None,
        }
    }

    /// Sends the predictions that request-response logging samples to `sink`.
    pub fn log_predictions_to(mut self, sink: prediction_logs::Sink) -> Gateway {
        self.prediction_logs = Some(sink);
        self
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

    /// Picks the deployed model: `pinned`, or by traffic split. When it has no ready replica,
    /// waits up to the cold-start timeout for one, asking the autoscaler for it.
    async fn select(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
        pinned: Option<&str>,
    ) -> Result<Arc<ModelRoute>, GatewayError> {
        let model = match pinned {
            Some(id) => route.models.iter().find(|m| m.deployed_model_id == id),
            None => route::pick_model(&route.split, rand::random_range(0..100))
                .and_then(|ix| route.models.get(ix)),
        };
        let model = model.ok_or_else(|| GatewayError::NoTraffic(name.to_string()))?;
        if !model.replicas.is_empty() {
            return Ok(model.clone());
        }
        let id = model.deployed_model_id.clone();
        if self.config.cold_start_timeout.is_zero() {
            return Err(GatewayError::NoReadyReplica(id));
        }
        let stats = model.stats.clone();
        let ahead = stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Decrement(&stats.waiting);
        self.demand.notify_one();
        // Held requests are bounded in number as in time.
        if usize::try_from(ahead).unwrap_or(usize::MAX) >= self.config.max_queued {
            return Err(GatewayError::NoReadyReplica(id));
        }
        let mut published = self.published.subscribe();
        let deadline = tokio::time::Instant::now() + self.config.cold_start_timeout;
        loop {
            if tokio::time::timeout_at(deadline, published.changed()).await.is_err() {
                return Err(GatewayError::NoReadyReplica(id));
            }
            let model = self.current_model(name, &id)?;
            if !model.replicas.is_empty() {
                return Ok(model);
            }
        }
    }

    /// A deployed model of an endpoint in the current snapshot.
    fn current_model(&self, name: &str, id: &str) -> Result<Arc<ModelRoute>, GatewayError> {
        self.endpoint(name)?
            .models
            .iter()
            .find(|m| m.deployed_model_id == id)
            .cloned()
            .ok_or_else(|| GatewayError::NoTraffic(name.to_string()))
    }

    /// A slot on a replica of `model` below its concurrency limit: at once, or after waiting in
    /// the deployed model's queue (bounded in length, and in time by the request's deadline)
    /// for a request to finish or for more replicas.
    async fn admit(
        &self,
        name: &str,
        model: Arc<ModelRoute>,
        deadline: Deadline,
    ) -> Result<(Arc<ModelRoute>, Slot), GatewayError> {
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let try_admit = |model: &ModelRoute| match route::admit(
            &model.replicas,
            start,
            model.concurrency,
            std::time::Instant::now(),
        ) {
            Admission::Go(in_flight) => Ok(Some(Slot::new(in_flight, model.stats.clone()))),
            Admission::Full => Ok(None),
            Admission::NoReplica => Err(GatewayError::NoReadyReplica(model.deployed_model_id.clone())),
        };
        if let Some(slot) = try_admit(&model)? {
            return Ok((model, slot));
        }
        let id = model.deployed_model_id.clone();
        let stats = model.stats.clone();
        let ahead = stats.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Decrement(&stats.queued);
        if usize::try_from(ahead).unwrap_or(usize::MAX) >= self.config.max_queued {
            return Err(GatewayError::Overloaded(id));
        }
        let mut published = self.published.subscribe();
        let mut model = model;
        loop {
            let freed = stats.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = try_admit(&model)? {
                return Ok((model, slot));
            }
            let woken = tokio::time::timeout_at(deadline.at, async {
                tokio::select! {
                    _ = freed => {}
                    _ = published.changed() => {}
                }
            });
            if woken.await.is_err() {
                return Err(deadline.missed(&model));
            }
            // More replicas may have become ready.
            model = self.current_model(name, &id)?;
        }
    }

    /// Sends a request to a replica of a deployed model, `pinned` or picked by the traffic
    /// split. When the replica refuses the connection (nothing was sent), or the connection
    /// breaks before any answer came (the replica died: `kill -9`, a crash, the OOM killer), it
    /// is left out for a moment and the request goes once to another ready replica. A
    /// prediction has no side effects, so sending it again is safe; once only, so that a
    /// request that crashes replicas takes down at most two.
    async fn send(
        &self,
        name: &str,
        route: Arc<EndpointRoute>,
        pinned: Option<&str>,
        out: Outgoing<'_>,
    ) -> Result<Sent, GatewayError> {
        let timeout = route.timeout.unwrap_or(self.config.timeout);
        let model = self.select(name, route, pinned).await?;
        let deadline = Deadline { at: tokio::time::Instant::now() + timeout, timeout };
        let (model, slot) = self.admit(name, model, deadline).await?;
        model.stats.requests.fetch_add(1, Ordering::Relaxed);
        match self.forward(&model, &slot, &out, deadline).await {
            Err(GatewayError::Unreachable(id, why) | GatewayError::Broken(id, why)) => {
                slot.in_flight.replica().eject(std::time::Instant::now(), REFUSED_EJECTION);
                tracing::warn!(deployed_model = %id, replica = %slot.in_flight.replica().address, error = %why,
                    "replica refused or dropped the connection; retrying on another");
                drop(slot);
                let (model, slot) = self.admit(name, model, deadline).await?;
                let response = self.forward(&model, &slot, &out, deadline).await?;
                Ok(Sent { model, response, deadline, _slot: slot })
            }
            Ok(response) => Ok(Sent { model, response, deadline, _slot: slot }),
            Err(e) => Err(e),
        }
    }

    async fn forward(
        &self,
        model: &ModelRoute,
        slot: &Slot,
        out: &Outgoing<'_>,
        deadline: Deadline,
    ) -> Result<reqwest::Response, GatewayError> {
        let (method, path) = out.upstream.target(model)?;
        let url = format!("http://{}{path}", slot.in_flight.replica().address);
        let mut request = self.client.request(method, url).body(out.body.clone());
        if let Some(content_type) = out.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(length) = out.inference_header_length {
            request = request.header(v2::HEADER_LENGTH, length);
        }
        let id = || model.deployed_model_id.clone();
        tokio::time::timeout_at(deadline.at, request.send())
            .await
            .map_err(|_| deadline.missed(model))?
            .map_err(|e| {
                if e.is_connect() {
                    GatewayError::Unreachable(id(), e.to_string())
                } else if connection_broke(&e) {
                    GatewayError::Broken(id(), e.to_string())
                } else {
                    GatewayError::Upstream(id(), e.to_string())
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
        let time = Timestamp::now();
        let endpoint = req.endpoint;
        let endpoint_id = endpoint.rsplit('/').next().unwrap_or_default();
        let method = req.call.prediction_method();
        let request_body = req.body.clone();
        let result = self.authorized(accounts, req).await;
        let Some(method) = method else {
            return result;
        };
        let (code, deployed_model) = match &result {
            Ok(f) => (f.status, f.deployed_model_id.as_str()),
            Err(e) => (api::Coded::http_status(e), ""),
        };
        let took = started.elapsed();
        self.metrics.prediction(endpoint_id, deployed_model, code, took);
        if !matches!(&result, Err(GatewayError::UnknownEndpoint(_))) {
            self.metrics.history.prediction(endpoint, code, took);
        }
        let reached = match &result {
            Ok(f) => Some(f.deployed_model_id.as_str()),
            Err(e) => e.deployed_model(),
        };
        if let Some(id) = reached
            && let Some(route) = self.snapshot().endpoints.get(endpoint).cloned()
        {
            if route.models.iter().any(|m| m.deployed_model_id == id && m.access_logging) {
                let response_bytes = result.as_ref().map(|f| f.body.len()).unwrap_or(0);
                access_log(endpoint, id, code, took, request_body.len(), response_bytes);
            }
            if let Some(sink) = &self.prediction_logs
                && prediction_logs::sampled(&route.prediction_logging, rand::random::<f64>())
            {
                let response = match &result {
                    Ok(f) => prediction_logs::Captured::of(&f.body),
                    Err(e) => prediction_logs::Captured::of(&error_body(e)),
                };
                let sample = prediction_logs::Sample {
                    endpoint: route.key.clone(),
                    deployed_model_id: id.to_string(),
                    method,
                    time,
                    status: code,
                    latency: took,
                    request: prediction_logs::Captured::of(&request_body),
                    response,
                };
                // Never wait for the writer: a full queue drops the sample.
                if sink.try_send(sample).is_err() {
                    self.metrics.prediction_logs_dropped(1);
                }
            }
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
        match req.call {
            Call::Predict => self.predict(req.endpoint, route, req.body).await,
            Call::RawPredict => {
                let out = Outgoing {
                    upstream: Upstream::Predict,
                    content_type: Some(req.content_type.unwrap_or("application/octet-stream")),
                    inference_header_length: None,
                    body: req.body,
                };
                // The container's answer, unchanged.
                self.send(req.endpoint, route, None, out).await?.read().await
            }
            Call::V2(call) => {
                let out = Outgoing {
                    upstream: Upstream::V2Infer,
                    content_type: req.content_type,
                    inference_header_length: req.inference_header_length,
                    body: req.body,
                };
                self.v2(req.endpoint, route, call, out).await
            }
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
        let out = Outgoing {
            upstream: Upstream::Predict,
            content_type: Some("application/json"),
            inference_header_length: None,
            body,
        };
        let sent = self.send(name, route, None, out).await?;
        let model = sent.model.clone();
        let answer = sent.read().await?;
        if !(200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let (status, retry_after, bytes) = (answer.status, answer.retry_after, answer.body);
        if let Some(body) = append_model_fields(&bytes, &model) {
            return Ok(Forwarded {
                status,
                content_type: Some("application/json".into()),
                retry_after,
                inference_header_length: None,
                body: Bytes::from(body),
                deployed_model_id: model.deployed_model_id.clone(),
            });
        }
        // Not a plain object, or one that has the keys already: parsed whole, so that the keys
        // are replaced and the errors say what is wrong.
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
            retry_after,
            inference_header_length: None,
            body,
            deployed_model_id: model.deployed_model_id.clone(),
        })
    }
}

#[async_trait::async_trait]
impl crate::backend::Drain for Gateway {
    /// Leaves the replica at `address` out of routing (for the grace period and a little more,
    /// by when the controller's tables no longer have it) and waits until its requests in flight
    /// are answered, or the grace period ends.
    async fn drain(&self, address: std::net::SocketAddr, grace: Duration) {
        let now = std::time::Instant::now();
        let replicas: Vec<Arc<Replica>> = self
            .snapshot()
            .endpoints
            .values()
            .flat_map(|e| e.models.iter())
            .flat_map(|m| m.replicas.iter())
            .filter(|r| r.address == address)
            .cloned()
            .collect();
        for r in &replicas {
            r.eject(now, grace + REFUSED_EJECTION);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while replicas.iter().any(|r| r.outstanding() > 0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        if !replicas.is_empty() {
            tracing::debug!(replica = %address, waited = ?now.elapsed(), "drained");
        }
    }
}

/// How often a drain looks whether the replica's requests are answered.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Decrements a counter when dropped.
struct Decrement<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One access-log line (`enableAccessLogging`): who answered, how and how fast; never the
/// payload. Target `platform::access`, so that it can be filtered or routed on its own.
fn access_log(
    endpoint: &str,
    deployed_model: &str,
    status: u16,
    took: Duration,
    request_bytes: usize,
    response_bytes: usize,
) {
    tracing::info!(
        target: "platform::access",
        endpoint,
        deployed_model,
        status,
        latency_ms = took.as_secs_f64() * 1000.0,
        request_bytes,
        response_bytes,
        "prediction"
    );
}

/// Whether a request failed because its connection closed or was reset before an answer came:
/// the replica went away (a pooled keep-alive connection to a replica that was just killed, or
/// the replica died while working on the request).
fn connection_broke(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The error body a caller gets for `e`, as request-response logging keeps it.
fn error_body(e: &GatewayError) -> Vec<u8> {
    use api::Coded;
    let body = api::ErrorBody {
        error: api::Status {
            code: i32::from(e.http_status()),
            message: e.to_string(),
            status: e.code().name().to_string(),
            details: Vec::new(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn header_text(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The keys `:predict` adds to a container's answer.
const ADDED_KEYS: [&str; 4] = ["deployedModelId", "model", "modelVersionId", "modelDisplayName"];

/// A container's answer with the deployed model's fields added at the end of its top-level
/// object, without parsing the predictions into values and printing them again: the answer is
/// checked to be one JSON object and scanned for its keys only. `None` when it is not a JSON
/// object or already has one of the added keys (the caller then rewrites it whole).
fn append_model_fields(body: &[u8], model: &ModelRoute) -> Option<Vec<u8>> {
    let keys: TopLevelKeys = serde_json::from_slice(body).ok()?;
    if keys.added {
        return None;
    }
    let end = body.iter().rposition(|b| *b == b'}')?;
    let mut out = Vec::with_capacity(body.len() + 160);
    out.extend_from_slice(&body[..end]);
    for (i, (key, value)) in ADDED_KEYS
        .iter()
        .zip([&model.deployed_model_id, &model.model, &model.model_version_id, &model.model_display_name])
        .enumerate()
    {
        if i > 0 || keys.any {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        serde_json::to_writer(&mut out, value.as_str()).ok()?;
    }
    out.push(b'}');
    Some(out)
}

/// What [`append_model_fields`] needs to know of a JSON object: whether it has any key, and
/// whether it has one of [`ADDED_KEYS`]. Deserializing it checks the whole answer is JSON.
struct TopLevelKeys {
    any: bool,
    added: bool,
}

impl<'de> serde::Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevelKeys, A::Error> {
                let mut keys = TopLevelKeys { any: false, added: false };
                while let Some(IsAdded(added)) = map.next_key()? {
                    keys.any = true;
                    keys.added |= added;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(keys)
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A key, read without keeping it: whether it is one of [`ADDED_KEYS`].
struct IsAdded(bool);

impl<'de> serde::Deserialize<'de> for IsAdded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = IsAdded;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<IsAdded, E> {
                Ok(IsAdded(ADDED_KEYS.contains(&key)))
            }
        }
        d.deserialize_str(Key)
    }
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

    #[test]
    fn the_deployed_model_is_added_to_an_answer_without_rewriting_it() {
        let model = ModelRoute {
            deployed_model_id: "7".into(),
            model: "projects/p/locations/l/models/m".into(),
            model_version_id: "1".into(),
            model_display_name: "m \"q\"".into(),
            predict_route: "/".into(),
            v2_model: None,
            replicas: Vec::new(),
            concurrency: 1,
            access_logging: false,
            stats: Arc::default(),
        };
        let out = append_model_fields(br#"{"predictions": [[0.1, 2e-7]]} "#, &model).unwrap();
        assert!(out.starts_with(br#"{"predictions": [[0.1, 2e-7]]"#), "the answer is kept as it was");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["predictions"], serde_json::json!([[0.1, 2e-7]]));
        assert_eq!((v["deployedModelId"].as_str(), v["modelVersionId"].as_str()), (Some("7"), Some("1")));
        assert_eq!(v["model"], "projects/p/locations/l/models/m");
        assert_eq!(v["modelDisplayName"], "m \"q\"");
        let empty: Value = serde_json::from_slice(&append_model_fields(b"{}", &model).unwrap()).unwrap();
        assert_eq!(empty["deployedModelId"], "7");
        // Answers that have the keys already, or are no JSON object, are left to the full rewrite.
        assert!(append_model_fields(br#"{"predictions": [], "model": "x"}"#, &model).is_none());
        assert!(append_model_fields(b"[1]", &model).is_none());
        assert!(append_model_fields(br#"{"a": 1"#, &model).is_none());
        assert!(append_model_fields(br#"{"a": 1} x"#, &model).is_none());
    }

    use std::net::SocketAddr;
    use std::sync::Mutex;

    use api::Coded;
    use axum::http::{HeaderMap, StatusCode};

    const ENDPOINT: &str = "projects/p/locations/l/endpoints/e";

    /// A model server: `/slow` answers once the test lets it through `gate`; `/busy` is a
    /// runtime at its own limit (429 with `Retry-After: 7`).
    async fn upstream(gate: Arc<tokio::sync::Semaphore>) -> SocketAddr {
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::post(move || async move {
                    let _ = gate.acquire().await.map(|p| p.forget());
                    axum::Json(serde_json::json!({"predictions": [1]}))
                }),
            )
            .route(
                "/busy",
                axum::routing::post(|| async {
                    let headers = HeaderMap::from_iter([
                        (axum::http::header::RETRY_AFTER, "7".parse().unwrap()),
                        (axum::http::header::CONTENT_TYPE, "application/json".parse().unwrap()),
                    ]);
                    (StatusCode::TOO_MANY_REQUESTS, headers, r#"{"error": "busy"}"#)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A gateway with one public endpoint of one deployed model (with `enableAccessLogging`
    /// when `access_logging`: only the test that captures the log turns it on, as `tracing`
    /// caches whether a call site is wanted at its first use).
    fn gateway(
        max_queued: usize,
        route: &str,
        concurrency: usize,
        replicas: &[SocketAddr],
        access_logging: bool,
    ) -> Gateway {
        let g = Gateway::new(
            GatewayConfig {
                timeout: Duration::from_secs(20),
                cold_start_timeout: Duration::from_secs(20),
                max_queued,
            },
            Metrics::new(),
        );
        let model = ModelRoute {
            deployed_model_id: "7".into(),
            model: "projects/p/locations/l/models/m".into(),
            model_version_id: "1".into(),
            model_display_name: "m".into(),
            predict_route: route.into(),
            v2_model: Some("model".into()),
            replicas: replicas.iter().map(|a| Arc::new(Replica::new(*a))).collect(),
            concurrency,
            access_logging,
            stats: g.stats("7"),
        };
        let endpoint = EndpointRoute {
            key: crate::store::EndpointKey::new("p", "l", "e"),
            project: "p".into(),
            access: Access::Public,
            prediction_logging: Default::default(),
            models: vec![Arc::new(model)],
            split: vec![(0, 100)],
            timeout: None,
        };
        g.publish(RoutingTable { endpoints: [(ENDPOINT.to_string(), Arc::new(endpoint))].into() });
        g
    }

    async fn accounts() -> Arc<Accounts> {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        Arc::new(Accounts::new(
            store,
            crate::auth::token::TokenKeys::from_secret(&[7; 32]),
            Duration::from_secs(60),
        ))
    }

    async fn predict(g: &Gateway, accounts: &Accounts) -> Result<Forwarded, GatewayError> {
        let req = PredictRequest {
            endpoint: ENDPOINT,
            call: Call::Predict,
            private_listener: false,
            credentials: Credentials::Header(None),
            content_type: Some("application/json"),
            inference_header_length: None,
            body: Bytes::from_static(br#"{"instances": [[1]]}"#),
        };
        g.serve(accounts, req).await
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Captures what `tracing` writes, as JSON lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn past_the_concurrency_limit_and_the_queue_callers_get_429_with_retry_after() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let addr = upstream(gate.clone()).await;
        let g = Arc::new(gateway(1, "/slow", 1, &[addr], true));
        let accounts = accounts().await;
        let stats = g.stats("7");
        let spawn = || {
            let (g, accounts) = (g.clone(), accounts.clone());
            tokio::spawn(async move { predict(&g, &accounts).await })
        };
        // One request on the replica (its limit), one in the queue: the next is refused at once.
        let first = spawn();
        until("the first request on the replica", || stats.in_flight.load(Ordering::Relaxed) == 1).await;
        let second = spawn();
        until("the second request in the queue", || stats.queued.load(Ordering::Relaxed) == 1).await;
        let refused = predict(&g, &accounts).await.unwrap_err();
        assert!(matches!(refused, GatewayError::Overloaded(_)), "{refused}");
        assert_eq!((refused.http_status(), refused.retry_after()), (429, Some(1)));
        assert!(refused.to_string().contains("containerConcurrency"), "{refused}");
        // Both held requests are answered once the replica is free.
        gate.add_permits(2);
        for held in [first, second] {
            let answer = held.await.unwrap().unwrap();
            assert_eq!(answer.status, 200);
        }
        assert_eq!((stats.queued.load(Ordering::Relaxed), stats.in_flight.load(Ordering::Relaxed)), (0, 0));

        // A runtime's own 429 keeps its Retry-After and content type on the way out.
        let busy = gateway(1, "/busy", 1, &[addr], true);
        let answer = predict(&busy, &accounts).await.unwrap();
        assert_eq!((answer.status, answer.retry_after.as_deref()), (429, Some("7")));
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));

        // enableAccessLogging: one line per prediction, without the payload.
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["target"] == "platform::access")
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        let statuses: Vec<i64> = lines.iter().filter_map(|l| l["fields"]["status"].as_i64()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
        let ok = lines.iter().find(|l| l["fields"]["status"] == 200).unwrap();
        assert_eq!(ok["fields"]["endpoint"], ENDPOINT);
        assert_eq!(ok["fields"]["deployed_model"], "7");
        assert_eq!(ok["fields"]["request_bytes"], 20);
        assert!(ok["fields"]["response_bytes"].as_u64().unwrap() > 0 && ok["fields"]["latency_ms"].is_f64());
        assert!(!text.contains("instances"), "no payload in the access log: {text}");
    }

    #[tokio::test]
    async fn sampled_predictions_go_to_the_writer_and_a_full_queue_drops_them_without_waiting() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let addr = upstream(gate).await;
        let (sink, mut samples) = tokio::sync::mpsc::channel(1);
        let g = gateway(10, "/slow", 10, &[addr], false).log_predictions_to(sink);
        let mut route = (*g.endpoint(ENDPOINT).unwrap()).clone();
        route.prediction_logging = crate::store::PredictionLogging { enabled: true, sampling_rate: 1.0 };
        g.publish(RoutingTable { endpoints: [(ENDPOINT.to_string(), Arc::new(route))].into() });
        let accounts = accounts().await;
        for _ in 0..2 {
            assert_eq!(predict(&g, &accounts).await.unwrap().status, 200);
        }
        let kept = samples.try_recv().expect("the first prediction is kept");
        assert_eq!((kept.deployed_model_id.as_str(), kept.status), ("7", 200));
        assert_eq!(kept.endpoint, crate::store::EndpointKey::new("p", "l", "e"));
        assert!(samples.try_recv().is_err(), "the second found the queue full");
        assert!(g.metrics.render().contains("platform_prediction_logs_dropped_total 1"), "and was counted");
    }

    #[tokio::test]
    async fn the_endpoints_inference_timeout_bounds_the_queue_and_the_answer_with_504() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let addr = upstream(gate.clone()).await;
        let g = Arc::new(gateway(1, "/slow", 1, &[addr], false));
        let mut route = (*g.endpoint(ENDPOINT).unwrap()).clone();
        route.timeout = Some(Duration::from_millis(300));
        g.publish(RoutingTable { endpoints: [(ENDPOINT.to_string(), Arc::new(route))].into() });
        let accounts = accounts().await;
        let stats = g.stats("7");
        // One request on the replica, which does not answer; one queued behind it.
        let first = {
            let (g, accounts) = (g.clone(), accounts.clone());
            tokio::spawn(async move { predict(&g, &accounts).await })
        };
        until("the first request on the replica", || stats.in_flight.load(Ordering::Relaxed) == 1).await;
        let queued = predict(&g, &accounts).await.unwrap_err();
        let first = first.await.unwrap().unwrap_err();
        for err in [first, queued] {
            assert!(matches!(err, GatewayError::Timeout(..)), "{err}");
            assert_eq!((err.http_status(), err.code()), (504, Code::DeadlineExceeded));
            assert!(err.to_string().contains("within 0.3s"), "{err}");
        }
        assert_eq!((stats.queued.load(Ordering::Relaxed), stats.in_flight.load(Ordering::Relaxed)), (0, 0));
        gate.add_permits(10);
    }

    #[tokio::test]
    async fn a_replica_being_stopped_takes_no_new_requests_and_is_let_go_when_its_own_are_answered() {
        use crate::backend::Drain;
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let addr = upstream(gate.clone()).await;
        let g = Arc::new(gateway(10, "/slow", 10, &[addr], false));
        let accounts = accounts().await;
        let held = {
            let (g, accounts) = (g.clone(), accounts.clone());
            tokio::spawn(async move { predict(&g, &accounts).await })
        };
        let stats = g.stats("7");
        until("the request on the replica", || stats.in_flight.load(Ordering::Relaxed) == 1).await;
        let drained = {
            let g = g.clone();
            tokio::spawn(async move { g.drain(addr, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!drained.is_finished(), "the drain waits for the request in flight");
        let err = predict(&g, &accounts).await.unwrap_err();
        assert_eq!(err.http_status(), 503, "no new request goes to a draining replica: {err}");
        gate.add_permits(1);
        assert_eq!(held.await.unwrap().unwrap().status, 200, "the request in flight is answered");
        drained.await.unwrap();
        // A request that does not finish holds the drain for the grace period only.
        let g = Arc::new(gateway(10, "/slow", 10, &[addr], false));
        let _stuck = {
            let (g, accounts) = (g.clone(), accounts.clone());
            tokio::spawn(async move { predict(&g, &accounts).await })
        };
        until("the stuck request", || g.stats("7").in_flight.load(Ordering::Relaxed) == 1).await;
        tokio::time::timeout(Duration::from_secs(10), g.drain(addr, Duration::from_millis(200)))
            .await
            .expect("the drain ends with the grace period");
    }

    #[tokio::test]
    async fn requests_held_for_a_cold_start_are_bounded_and_served_once_a_replica_is_ready() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let addr = upstream(gate).await;
        let g = Arc::new(gateway(1, "/slow", 10, &[], false));
        let accounts = accounts().await;
        let held = {
            let (g, accounts) = (g.clone(), accounts.clone());
            tokio::spawn(async move { predict(&g, &accounts).await })
        };
        let stats = g.stats("7");
        until("the request held for a replica", || stats.waiting.load(Ordering::Relaxed) == 1).await;
        let err = predict(&g, &accounts).await.unwrap_err();
        assert_eq!((err.http_status(), err.retry_after()), (503, Some(1)), "past the bound: {err}");
        // The controller publishes a ready replica: the held request goes to it.
        let mut route = (*g.endpoint(ENDPOINT).unwrap()).clone();
        let mut model = (*route.models[0]).clone();
        model.replicas = vec![Arc::new(Replica::new(addr))];
        route.models = vec![Arc::new(model)];
        g.publish(RoutingTable { endpoints: [(ENDPOINT.to_string(), Arc::new(route))].into() });
        assert_eq!(held.await.unwrap().unwrap().status, 200);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_on_another_replica_which_then_takes_the_traffic() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let live = upstream(gate).await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let g = gateway(10, "/slow", 10, &[dead, live], false);
        let accounts = accounts().await;
        for _ in 0..4 {
            assert_eq!(predict(&g, &accounts).await.unwrap().status, 200);
        }
        let route = g.endpoint(ENDPOINT).unwrap();
        let replicas = &route.models[0].replicas;
        let now = std::time::Instant::now();
        assert!(replicas[0].is_ejected(now) && !replicas[1].is_ejected(now));
        // With no replica left to take it, the caller is told to come back.
        let g = gateway(10, "/slow", 10, &[dead], false);
        for _ in 0..2 {
            let err = predict(&g, &accounts).await.unwrap_err();
            assert_eq!((err.http_status(), err.retry_after()), (503, Some(1)), "{err}");
        }
    }

    #[tokio::test]
    async fn a_connection_that_breaks_before_the_answer_is_retried_on_another_replica() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let live = upstream(gate).await;
        // A replica that dies with the request: it reads it and closes the connection unanswered.
        let dying = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dying_addr = dying.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while let Ok((mut stream, _)) = dying.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
            }
        });
        let g = gateway(10, "/slow", 10, &[dying_addr, live], false);
        let accounts = accounts().await;
        for _ in 0..4 {
            assert_eq!(predict(&g, &accounts).await.unwrap().status, 200);
        }
        let route = g.endpoint(ENDPOINT).unwrap();
        assert!(route.models[0].replicas[0].is_ejected(std::time::Instant::now()));
        // With no replica left to take it, the caller is told to come back.
        let g = gateway(10, "/slow", 10, &[dying_addr], false);
        let err = predict(&g, &accounts).await.unwrap_err();
        assert_eq!((err.http_status(), err.retry_after()), (503, Some(1)), "{err}");
    }
}
