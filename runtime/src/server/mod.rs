//! The HTTP server: Vertex predict and health routes, the Open Inference Protocol V2 routes
//! and `/metrics`. It listens at once (so liveness probes pass while a model downloads) and
//! answers 503 until the model is loaded and warmed up.

mod error;
mod handlers;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::batching::{BatchConfig, Batcher};
use crate::config::{Engine, RuntimeConfig};
use crate::metrics::Metrics;
use crate::model::{EngineChoice, Model, ModelOptions, OnnxruntimeOptions};
pub use error::{Protocol, ServeError};

/// The loaded model and its queue, set once when the model is ready.
struct Serving {
    model: Arc<Model>,
    batcher: Batcher,
}

/// State shared by every handler.
pub struct AppState {
    config: RuntimeConfig,
    metrics: Metrics,
    serving: OnceLock<Serving>,
}

impl AppState {
    fn serving(&self) -> Result<&Serving, ServeError> {
        self.serving.get().ok_or(ServeError::NotReady)
    }
}

/// Routes owned by the runtime, which the configured predict and health routes may not shadow.
const RESERVED: &[&str] = &["/metrics", "/v2"];

/// Checks the configured routes before they reach the router, which would panic on them.
fn check_route(what: &str, route: &str) -> anyhow::Result<()> {
    anyhow::ensure!(route.starts_with('/'), "the {what} route `{route}` must start with `/`");
    anyhow::ensure!(
        !route.contains(['{', '}', '*']),
        "the {what} route `{route}` may not contain `{{`, `}}` or `*`"
    );
    anyhow::ensure!(
        !RESERVED.iter().any(|r| route == *r || route.starts_with(&format!("{r}/"))),
        "the {what} route `{route}` collides with the runtime's own routes (/metrics, /v2/...)"
    );
    Ok(())
}

fn router(state: Arc<AppState>) -> anyhow::Result<Router> {
    let cfg = &state.config;
    check_route("predict", &cfg.predict_route)?;
    check_route("health", &cfg.health_route)?;
    let mut app = Router::new();
    if cfg.predict_route == cfg.health_route {
        app = app.route(&cfg.predict_route, post(handlers::vertex_predict).get(handlers::health));
    } else {
        app = app
            .route(&cfg.predict_route, post(handlers::vertex_predict))
            .route(&cfg.health_route, get(handlers::health));
    }
    Ok(app
        .route("/metrics", get(handlers::metrics))
        .route("/v2", get(handlers::v2_server_metadata))
        .route("/v2/health/live", get(handlers::v2_live))
        .route("/v2/health/ready", get(handlers::v2_ready))
        .route("/v2/models/{name}", get(handlers::v2_model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(handlers::v2_model_metadata_version))
        .route("/v2/models/{name}/ready", get(handlers::v2_model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(handlers::v2_model_ready_version))
        .route("/v2/models/{name}/infer", post(handlers::v2_infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(handlers::v2_infer_version))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(state))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Serves `config.model` until `shutdown` resolves. Fails if the port cannot be bound or the
/// model cannot be fetched, loaded or warmed up.
pub async fn serve(
    config: RuntimeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state =
        Arc::new(AppState { config: config.clone(), metrics: Metrics::new(), serving: OnceLock::new() });
    let app = router(state.clone())?;
    let addr = (config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    tracing::info!(address = %listener.local_addr()?, model = %config.model, "listening");
    let server = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future());

    let load = load_model(&config, &state.metrics);
    tokio::pin!(load);
    let mut server = server;
    tokio::select! {
        loaded = &mut load => {
            let (model, single_run) = loaded?;
            let model = Arc::new(model);
            let batch = BatchConfig {
                max_batch: config.max_batch_size.max(1),
                timeout: config.batch_timeout,
                workers: config.workers(),
                max_queue: config.max_queue,
                inline: single_run <= crate::batching::INLINE_MAX,
            };
            let batcher = Batcher::start(model.clone(), batch, state.metrics.clone());
            let _ = state.serving.set(Serving { model: model.clone(), batcher });
            let provider = model.execution_provider();
            state.metrics.set_engine(model.engine_name(), provider, config.accelerator().unwrap_or_default());
            tracing::info!(engine = model.engine_name(), execution_provider = provider, inputs = ?model.inputs(), outputs = ?model.outputs(), mode = ?model.batch_mode(), ?single_run, "model ready");
            let max_batch = config.max_batch_size.max(1);
            tokio::task::spawn_blocking(move || model.precompile(max_batch));
        }
        done = &mut server => {
            // Shut down before the model was ready.
            return done.context("server task failed")?.context("server failed");
        }
    }
    server.await.context("server task failed")?.context("server failed")
}

/// The model, ready to serve, and how long one warm batch-1 inference takes.
async fn load_model(
    config: &RuntimeConfig,
    metrics: &Metrics,
) -> anyhow::Result<(Model, std::time::Duration)> {
    let path = crate::source::fetch(&config.model, &config.cache_dir(), &config.fetch_policy())
        .await
        .with_context(|| format!("cannot fetch the model {}", config.model))?;
    let options = ModelOptions {
        max_plan_batch: config.max_batch_size.max(64),
        engine: match config.engine {
            Engine::Tract => EngineChoice::Tract,
            Engine::Onnxruntime => EngineChoice::Onnxruntime,
            Engine::Auto => EngineChoice::Auto,
        },
        shape_cache_size: config.shape_cache_size as usize,
        shape_cache_metrics: metrics.shape_cache.clone(),
        onnxruntime: OnnxruntimeOptions {
            library: config.onnxruntime_lib.clone(),
            sessions: config.workers(),
            accelerator: config.accelerator().map(str::to_string),
        },
    };
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let model = Model::load(&path, options)?;
        let single_run = model.warm_up()?;
        Ok::<_, crate::model::LoadError>((model, single_run))
    })
    .await
    .context("model loading panicked")?
    .with_context(|| format!("cannot load the model {shown}"))
}
