//! `platform serve`: the embedded default in one process: REST API, web console, controller,
//! gateway and the local backend.

pub mod listener;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::auth::sessions::SessionRecords;
use crate::auth::token::TokenKeys;
use crate::auth::{Accounts, first_admin};
use crate::backend::{Backend, Kubernetes, Local, LocalConfig};
use crate::config::{BackendKind, ServeConfig, ServeRole};
use crate::console::{self, Console, SessionLimits};
use crate::controller::leader::{self, Lead, Leadership, Sole};
use crate::controller::{Controller, ControllerConfig, Mode, Wake};
use crate::endpoints::Endpoints;
use crate::gateway::{Gateway, GatewayConfig};
use crate::gateway::{prediction_logs, traffic};
use crate::machine::{Catalog, PriceTable};
use crate::manifests::RenderConfig;
use crate::operations::Operations;
use crate::registry::{ArtifactStore, Registry};
use crate::rest::{self, App};
use crate::store::{AdvisoryLock, Signal, Store};
use crate::telemetry::Metrics;

/// Runs the platform until SIGTERM or Ctrl-C.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    if config.role != ServeRole::All && config.backend == BackendKind::Local {
        anyhow::bail!(
            "--role {} splits the platform across processes, which needs --backend kubernetes; the local backend runs with --role all",
            if config.role == ServeRole::Api { "api" } else { "gateway" }
        );
    }
    // Everything the platform writes (the database and its journal, keys, tokens, replica
    // logs) is readable by its own user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if config.allow_host_processes && config.backend != BackendKind::Local {
        anyhow::bail!(
            "--allow-host-processes is for the local backend: a cluster runs every model in a container"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let store = crate::store::open(&config.database_url())
        .await
        .with_context(|| format!("cannot open the database {}", redact(&config.database_url())))?;
    let keys = TokenKeys::load_or_create(&config.jwt_key_file())
        .with_context(|| format!("cannot read the token key {}", config.jwt_key_file().display()))?;
    let catalog = match &config.machine_types {
        None => Catalog::builtin(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the machine types {}", path.display()))?;
            Catalog::from_yaml(&text)
                .with_context(|| format!("invalid machine types in {}", path.display()))?
        }
    };
    let prices = match &config.machine_prices {
        None => PriceTable::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the machine prices {}", path.display()))?;
            PriceTable::from_yaml(&text)
                .with_context(|| format!("invalid machine prices in {}", path.display()))?
        }
    };
    let artifacts = ArtifactStore::open(&config.artifact_store())
        .await
        .with_context(|| format!("cannot open the artifact store {}", config.artifact_store()))?;
    let metrics = Metrics::new();
    // Request-response logging: every role that serves predictions (a gateway of split roles
    // too) writes its samples to the shared database, off the request path.
    let (prediction_logs, samples) = prediction_logs::channel();
    tokio::spawn(prediction_logs::write(
        samples,
        store.clone(),
        config.prediction_log_retention,
        metrics.clone(),
    ));
    let gateway = Arc::new(
        Gateway::new(
            GatewayConfig {
                timeout: config.predict_timeout,
                cold_start_timeout: config.cold_start_timeout,
                max_queued: config.max_queued_requests,
            },
            metrics.clone(),
        )
        .log_predictions_to(prediction_logs),
    );
    let render = config.render_config()?;
    let identity = leader_identity();
    let mut claim: Arc<dyn Leadership> = Arc::new(Sole);
    if config.database_url().starts_with("postgres") {
        claim = Arc::new(AdvisoryLock::new(&config.database_url(), leader::ADVISORY_LOCK_KEY)?);
    }
    let wake = Wake::default();
    let (backend, render, local): (Arc<dyn Backend>, RenderConfig, Option<Arc<Local>>) = match config.backend
    {
        BackendKind::Local => {
            let mut local = LocalConfig::new(&config.data_dir);
            local.runtime_image = crate::manifests::image_repository(&config.runtime_image).to_string();
            local.cpu_overcommit = config.cpu_overcommit;
            local.allow_host_processes = config.allow_host_processes;
            local.host_process_annotation = render.label(crate::manifests::HOST_PROCESS_ANNOTATION);
            local.container_run_args = config.container_run_args.clone();
            local.drain = Some(crate::backend::Drainer(gateway.clone()));
            local.on_change = Some(crate::backend::OnChange({
                let wake = wake.clone();
                Arc::new(move || wake.wake())
            }));
            local.nvidia_smi = config.nvidia_smi.clone();
            // Keys kept outside the data directory are no replica's business either.
            local.private_paths =
                [Some(config.jwt_key_file()), config.tls_key.clone()].into_iter().flatten().collect();
            local.container_engines = match config.container_engine.as_str() {
                "auto" => vec!["docker".into(), "podman".into()],
                "none" => Vec::new(),
                engine => vec![engine.to_string()],
            };
            let local = Arc::new(Local::new(local).await.context("cannot start the local backend")?);
            (local.clone(), render, Some(local))
        }
        BackendKind::Kubernetes => {
            let k8s = Kubernetes::connect(config.namespace.clone(), render)
                .await
                .context("cannot start the kubernetes backend")?;
            let render = k8s.render_config().clone();
            // Several API replicas on a cluster: the Lease decides which controller acts.
            claim = Arc::new(k8s.lease(leader::LEASE_NAME, &identity, config.leader_lease_duration));
            (Arc::new(k8s), render, None)
        }
    };

    let lead = Lead::new(false);
    let accounts = Arc::new(Accounts::new(store.clone(), keys, config.token_ttl));
    let runtime_image = {
        let render = render.clone();
        Arc::new(move |image: &str| render.is_runtime_image(image)) as Arc<dyn Fn(&str) -> bool + Send + Sync>
    };
    let registry = Arc::new(
        Registry::new(store.clone(), artifacts, config.max_artifact_bytes, runtime_image)
            .allow_host_processes(config.allow_host_processes)
            .fetch_policy(config.fetch_policy()),
    );
    let endpoints = Arc::new(Endpoints::new(
        store.clone(),
        registry.clone(),
        catalog.clone(),
        render.clone(),
        backend.clone(),
        gateway.clone(),
        wake.clone(),
        config.public_url(),
    ));
    let operations = Arc::new(Operations::new(store.clone(), wake.clone()));
    let console = Arc::new(Console {
        accounts: accounts.clone(),
        registry: registry.clone(),
        endpoints: endpoints.clone(),
        operations: operations.clone(),
        gateway: gateway.clone(),
        history: metrics.history.clone(),
        catalog: catalog.clone(),
        prices,
        public_url: config.public_url(),
        sessions: SessionLimits { idle: config.session_idle_timeout, absolute: config.session_max_age },
        max_request_bytes: config.max_request_bytes,
    });
    let app = Arc::new(App {
        accounts: accounts.clone(),
        registry,
        endpoints,
        operations,
        gateway: gateway.clone(),
        metrics: metrics.clone(),
        body_limits: rest::body::BodyLimits {
            max_bytes: config.max_request_bytes,
            read_timeout: config.body_read_timeout,
        },
    });

    let admin_password = std::env::var("PLATFORM_ADMIN_PASSWORD").ok();
    if config.role == ServeRole::Gateway {
        // The API process creates the first admin.
    } else if let Some(admin) = first_admin::create(&*store, &accounts, &config.data_dir, admin_password)
        .await
        .context("cannot create the first admin")?
    {
        println!("Created the first user. Keep these; they are not shown again.");
        println!("  username: {}", admin.username);
        println!("  password: {}", admin.password);
        println!("  API token (also in {}):", config.data_dir.join("admin-token").display());
        println!("  {}", admin.token);
    }

    let controller = Arc::new(
        Controller::new(
            store.clone(),
            backend.clone(),
            gateway.clone(),
            ControllerConfig {
                period: config.reconcile_period,
                deploy_timeout: config.deploy_timeout,
                max_deploy_restarts: config.deploy_max_restarts,
                render,
                catalog,
                mode: match config.role {
                    ServeRole::All => Mode::Full,
                    ServeRole::Api => Mode::Api,
                    ServeRole::Gateway => Mode::RouteOnly,
                },
                autoscale: crate::controller::autoscale::Tuning {
                    scale_down_delay: config.scale_down_delay,
                    ..Default::default()
                },
            },
            wake.clone(),
            metrics,
        )
        .led_by(lead.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if config.role != ServeRole::Gateway {
        tracing::info!(claim = %claim.describe(), "controller leader election");
        let wake = wake.clone();
        tokio::spawn(leader::keep(
            claim,
            lead,
            config.leader_lease_duration / 3,
            move || wake.wake(),
            stopped(stop_rx.clone()),
        ));
    }
    // Split roles: gateways record their traffic for the API's controller and signal a request
    // that waits for a replica; the controller signals routing changes back.
    match config.role {
        ServeRole::Gateway => {
            let period = std::time::Duration::from_secs(1);
            let report = traffic::report(gateway, store.clone(), identity, period, stopped(stop_rx.clone()));
            tokio::spawn(report);
            wake_on(&store, Signal::RoutesChanged, wake).await?;
        }
        ServeRole::Api => wake_on(&store, Signal::Demand, wake).await?,
        ServeRole::All => {}
    }
    let controller_task = tokio::spawn(controller.run(stopped(stop_rx.clone())));
    let sessions = SessionRecords::new(store.clone());
    if config.role != ServeRole::Gateway {
        tokio::spawn(sessions.clone().sweep(stopped(stop_rx.clone())));
    }

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let limits = listener::Limits {
        max_connections: match config.max_connections {
            0 => listener::default_max_connections(),
            n => n,
        },
        idle_timeout: config.idle_timeout,
        header_read_timeout: config.header_read_timeout,
    };
    tracing::info!(max_connections = limits.max_connections, idle_timeout = ?limits.idle_timeout,
        header_read_timeout = ?limits.header_read_timeout, "connection limits");
    // One cap for every listener of the process.
    let guard = listener::Guard::new(limits);
    if let Some(address) = config.private_listen {
        let router = rest::router(app.clone(), true);
        let mut server = axum_server::bind(address).acceptor(guard.clone()).handle(handle.clone());
        limits.configure(&mut server);
        tracing::info!(%address, "serving private endpoints over plain HTTP");
        tokio::spawn(async move {
            if let Err(e) = server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await {
                tracing::error!(%address, error = %e, "the private listener stopped");
            }
        });
    }
    // The console is served with the API (on the public listener only), not by gateways.
    let router = if config.role == ServeRole::Gateway {
        rest::router(app, false)
    } else {
        rest::router(app, false).merge(console::router(console, sessions))
    };
    let served = if config.insecure_http {
        tracing::info!(address = %config.listen, "serving plain HTTP (--insecure-http)");
        let mut server = axum_server::bind(config.listen).acceptor(guard).handle(handle);
        limits.configure(&mut server);
        server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await
    } else {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let host = config.listen.ip().to_string();
                let generated = tls::ensure_self_signed(&config.data_dir.join("tls"), &[host])?;
                tracing::info!(ca = %generated.ca.display(), "using the self-signed certificate; clients trust its CA");
                (generated.cert, generated.key)
            }
        };
        let tls = RustlsConfig::from_pem_file(&cert, &key).await.with_context(|| {
            format!("cannot load the TLS certificate {} and key {}", cert.display(), key.display())
        })?;
        tracing::info!(address = %config.listen, url = %config.public_url(), "serving HTTPS");
        let acceptor = RustlsAcceptor::new(tls).handshake_timeout(limits.header_read_timeout).acceptor(guard);
        let mut server = axum_server::bind(config.listen).acceptor(acceptor).handle(handle);
        limits.configure(&mut server);
        server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await
    };
    let _ = controller_task.await;
    if let Some(local) = local {
        local.shutdown().await;
    }
    store.close().await;
    served.with_context(|| format!("cannot serve on {}", config.listen))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Wakes the controller whenever another process on the database sends `signal`.
async fn wake_on(store: &Arc<dyn Store>, signal: Signal, wake: Wake) -> anyhow::Result<()> {
    let listening = store.listen(signal).await.context("cannot listen for the other processes' signals")?;
    if let Some(mut signals) = listening {
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                wake.wake();
            }
        });
    }
    Ok(())
}

/// Who this process is in the controllers' election: the pod's (or machine's) name, made unique
/// per start.
fn leader_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "platform".into());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
