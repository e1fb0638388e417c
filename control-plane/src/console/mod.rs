//! The web console: the platform in a browser, as the Vertex AI console shows Vertex. A door
//! beside [`crate::rest`]: its handlers read a form, call the same services (accounts,
//! registry, endpoints, operations, gateway) and render a page; no rule lives here.
//!
//! Pages are rendered on the server (askama templates from the top-level `web-ui/`, embedded
//! with its static assets in the binary); htmx adds live updates where they help, and every
//! action works without JavaScript. Visitors sign in with a username and password; sessions
//! live in the platform's database (tower-sessions on [`crate::auth::sessions`]), with
//! HttpOnly, Secure, SameSite=Strict cookies, idle and absolute expiry, and a CSRF check on
//! every state-changing request ([`session`]).
//!
//! URLs: `/` and everything under `/console/` (never `/ui/projects/`, where Vertex's SDK polls
//! operations).

// Handlers answer every error with a page, so a response is their error type.
#![allow(clippy::result_large_err)]

mod assets;
pub mod charts;
mod endpoints;
mod manifests;
mod models;
mod operations;
mod page;
pub mod session;
mod settings;
pub mod snippets;
pub mod yaml;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::auth::Accounts;
use crate::auth::sessions::SessionRecords;
use crate::endpoints::Endpoints;
use crate::gateway::Gateway;
use crate::machine::{Catalog, PriceTable};
use crate::operations::Operations;
use crate::registry::Registry;
use crate::telemetry::History;

/// How long a session lasts: idle (no request) and in all (from sign-in).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

/// What the console's handlers call: the services every door calls, and what the pages show.
pub struct Console {
    pub accounts: Arc<Accounts>,
    pub registry: Arc<Registry>,
    pub endpoints: Arc<Endpoints>,
    pub operations: Arc<Operations>,
    pub gateway: Arc<Gateway>,
    pub history: Arc<History>,
    pub catalog: Catalog,
    pub prices: PriceTable,
    /// Where clients reach the platform (for the sample requests).
    pub public_url: String,
    pub sessions: SessionLimits,
    /// Largest form (manifests, a prediction); uploads stream and have the registry's limit.
    pub max_request_bytes: usize,
}

pub type ConsoleState = Arc<Console>;

/// The console's routes, with its session layer over the database's sessions table.
pub fn router(console: ConsoleState, records: SessionRecords) -> Router {
    let loc = "/console/projects/{project}/locations/{location}";
    let max_body = console.max_request_bytes;
    let pages = Router::new()
        .route("/console", get(page::home))
        .route("/console/login", get(session::login_page).post(session::login))
        .route("/console/logout", post(session::logout))
        .route(
            &format!("{loc}/models"),
            get(models::list).post(models::import.layer(DefaultBodyLimit::disable())),
        )
        .route(&format!("{loc}/models/new"), get(models::import_page))
        .route(&format!("{loc}/models/{{model}}"), get(models::detail))
        .route(&format!("{loc}/models/{{model}}/aliases"), post(models::aliases))
        .route(&format!("{loc}/endpoints"), get(endpoints::list).post(endpoints::create))
        .route(&format!("{loc}/endpoints/new"), get(endpoints::create_page))
        .route(&format!("{loc}/endpoints/{{endpoint}}"), get(endpoints::detail))
        .route(&format!("{loc}/endpoints/{{endpoint}}/status"), get(endpoints::status))
        .route(&format!("{loc}/endpoints/{{endpoint}}/charts"), get(endpoints::charts))
        .route(
            &format!("{loc}/endpoints/{{endpoint}}/deploy"),
            get(endpoints::deploy_page).post(endpoints::deploy),
        )
        .route(&format!("{loc}/endpoints/{{endpoint}}/traffic"), post(endpoints::traffic))
        .route(&format!("{loc}/endpoints/{{endpoint}}/undeploy"), post(endpoints::undeploy))
        .route(&format!("{loc}/endpoints/{{endpoint}}/predict"), post(endpoints::predict))
        .route(
            &format!("{loc}/endpoints/{{endpoint}}/deployedModels/{{deployed}}/manifests"),
            get(manifests::tab).post(manifests::apply),
        )
        .route(
            &format!("{loc}/endpoints/{{endpoint}}/deployedModels/{{deployed}}/manifests.yaml"),
            get(manifests::download),
        )
        .route(
            &format!(
                "{loc}/endpoints/{{endpoint}}/deployedModels/{{deployed}}/revisions/{{revision}}/rollback"
            ),
            post(manifests::rollback),
        )
        .route(&format!("{loc}/operations"), get(operations::list))
        .route("/console/settings", get(settings::page))
        .route("/console/settings/tokens", post(settings::create_token))
        .route("/console/settings/tokens/{id}/revoke", post(settings::revoke_token))
        .route("/console/settings/users", post(settings::create_user))
        .route("/console/settings/roles", post(settings::update_user))
        .route("/console/{*rest}", get(page::not_found))
        .layer(axum::middleware::from_fn(session::csrf_guard))
        .layer(axum::Extension(session::BodyLimit(max_body)))
        .layer(session::layer(records, console.sessions))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(page::security_headers))
        .with_state(console);
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/static/{file}", get(assets::serve))
        .merge(pages)
}
