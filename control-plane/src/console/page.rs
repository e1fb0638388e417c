//! What every page shares: the layout (who is signed in, the project and location, where in
//! the navigation), rendering a template into a response, error pages, and the security
//! headers of every answer.

use api::{Coded, LocationName, Role};
use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::Visitor;

/// A rendered page or an error page: what handlers return.
pub type Page = Result<Response, Response>;

/// The default project and location, where `/console` leads.
pub const DEFAULT_PROJECT: &str = "default";
pub const DEFAULT_LOCATION: &str = "local";

/// Which part of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Models,
    Endpoints,
    Operations,
    Settings,
}

/// The frame of every signed-in page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub user: String,
    pub project: String,
    pub location: String,
    pub csrf: String,
    pub nav: Nav,
    pub flash: Option<String>,
    /// Whether the visitor may change the project's resources (buttons are shown only then;
    /// the services refuse anyway).
    pub can_edit: bool,
}

impl Layout {
    pub async fn new(visitor: &Visitor, loc: &LocationName, nav: Nav, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            user: visitor.caller.username.clone(),
            project: loc.project.clone(),
            location: loc.location.clone(),
            csrf: visitor.csrf.clone(),
            nav,
            flash: visitor.take_flash().await,
            can_edit: visitor.caller.role_on(&loc.project).is_some_and(|r| r.grants(Role::Editor)),
        }
    }

    /// The URL prefix of the project's pages.
    pub fn base(&self) -> String {
        format!("/console/projects/{}/locations/{}", self.project, self.location)
    }

    /// Whether the page belongs to the navigation entry `name` (`models`, `endpoints`,
    /// `operations`, `settings`).
    pub fn current(&self, name: &str) -> bool {
        let mine = match self.nav {
            Nav::Models => "models",
            Nav::Endpoints => "endpoints",
            Nav::Operations => "operations",
            Nav::Settings => "settings",
        };
        mine == name
    }
}

/// Rendering templates into answers.
pub struct Html;

impl Html {
    pub fn ok(page: impl Template) -> Response {
        Html::with_status(StatusCode::OK, page)
    }

    pub fn with_status(status: StatusCode, page: impl Template) -> Response {
        match page.render() {
            Ok(body) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
            Err(e) => internal(format!("cannot render the page: {e}")),
        }
    }
}

/// An error as a page shows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl<E: Coded> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: e.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Option<Layout>,
    title: String,
    message: String,
}

fn title_of(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "Not found".into(),
        StatusCode::FORBIDDEN => "Not allowed".into(),
        StatusCode::BAD_REQUEST => "Check the request".into(),
        s if s.is_server_error() => "Something went wrong".into(),
        s => s.canonical_reason().unwrap_or("Error").into(),
    }
}

/// An error page within the layout (or bare, before there is one).
pub fn error_page(layout: Option<Layout>, failure: Failure) -> Response {
    if failure.status.is_server_error() {
        tracing::error!(status = failure.status.as_u16(), message = %failure.message, "console page failed");
    }
    let page = ErrorPage { layout, title: title_of(failure.status), message: failure.message };
    Html::with_status(failure.status, page)
}

/// A page's error handler: the error within the page's layout.
pub fn fail<E: Into<Failure>>(layout: &Layout) -> impl FnOnce(E) -> Response + '_ {
    move |e| error_page(Some(layout.clone()), e.into())
}

pub fn internal(message: String) -> Response {
    error_page(None, Failure { status: StatusCode::INTERNAL_SERVER_ERROR, message })
}

pub fn forbidden(message: &str) -> Response {
    error_page(None, Failure { status: StatusCode::FORBIDDEN, message: message.to_string() })
}

pub fn too_large() -> Response {
    error_page(
        None,
        Failure {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "The form is larger than this platform accepts.".into(),
        },
    )
}

/// A location from the path, or a 404 page.
pub fn location(project: &str, location: &str) -> Result<LocationName, Response> {
    LocationName::new(project, location).map_err(|e| error_page(None, e.into()))
}

/// `GET /console`: the model registry of the default project, or of the visitor's first one.
pub async fn home(visitor: Visitor) -> Response {
    let project = if visitor.caller.role_on(DEFAULT_PROJECT).is_some() {
        DEFAULT_PROJECT.to_string()
    } else {
        visitor
            .caller
            .roles
            .iter()
            .map(|(p, _)| p.clone())
            .find(|p| p != "*")
            .unwrap_or(DEFAULT_PROJECT.into())
    };
    Redirect::to(&format!("/console/projects/{project}/locations/{DEFAULT_LOCATION}/models")).into_response()
}

/// A console URL that is no page.
pub async fn not_found(visitor: Visitor) -> Response {
    let loc = LocationName { project: DEFAULT_PROJECT.into(), location: DEFAULT_LOCATION.into() };
    let layout = Layout::new(&visitor, &loc, Nav::Models, "Not found").await;
    error_page(
        Some(layout),
        Failure { status: StatusCode::NOT_FOUND, message: "There is no such page in the console.".into() },
    )
}

/// Headers of every console answer: a strict content security policy (scripts and styles
/// only from the console itself), no framing, no sniffing, no referrer to other sites.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}
