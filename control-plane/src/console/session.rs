//! Signing in and out, who is visiting, and the CSRF check.
//!
//! A session holds the user's id, when they signed in and a random CSRF token. Every page
//! that needs a user takes a [`Visitor`]; without a valid session it redirects to the sign-in
//! page, which comes back to the page after signing in. Sessions end after
//! [`SessionLimits::idle`] without a request (the cookie's and the record's expiry move with
//! every request) and [`SessionLimits::absolute`] after signing in, whatever happens.
//!
//! CSRF: a state-changing request (anything but GET and HEAD) is refused with 403 when the
//! browser says it comes from another site (`Sec-Fetch-Site: cross-site`, or an `Origin`
//! that is not this host), and when it does not carry the session's token, as the
//! `csrf_token` form field or the `X-CSRF-Token` header (htmx sends it). Cookies are
//! `SameSite=Strict` as well.

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use super::page::{self, Html};
use super::{ConsoleState, SessionLimits};
use crate::auth::sessions::SessionRecords;
use crate::auth::{AuthError, Caller};

const USER: &str = crate::auth::sessions::USER_KEY;
const SIGNED_IN_AT: &str = "signed_in_at";
const CSRF: &str = "csrf";
const FLASH: &str = "flash";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The header that carries the CSRF token (htmx requests).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The session cookie's name.
pub const COOKIE: &str = "platform_session";

/// The session layer: cookies HttpOnly, Secure, SameSite=Strict, path `/`, expiring after
/// `limits.idle` without a request.
pub fn layer(records: SessionRecords, limits: SessionLimits) -> SessionManagerLayer<SessionRecords> {
    let idle = time::Duration::try_from(limits.idle).unwrap_or(time::Duration::HOUR);
    SessionManagerLayer::new(records)
        .with_name(COOKIE)
        .with_http_only(true)
        .with_secure(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle))
        .with_always_save(true)
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A signed-in visitor: the caller the services check, and their session.
pub struct Visitor {
    pub caller: Caller,
    pub csrf: String,
    pub session: Session,
}

impl Visitor {
    /// A message for the next page (after a redirect).
    pub async fn flash(&self, message: impl Into<String>) {
        let _ = self.session.insert(FLASH, message.into()).await;
    }

    /// The message left for this page, once.
    pub async fn take_flash(&self) -> Option<String> {
        self.session.remove::<String>(FLASH).await.ok().flatten()
    }
}

/// Where a visitor without a session goes: the sign-in page, coming back here after it.
fn to_sign_in(parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    let target = if next.is_empty() || !safe_next(&next) {
        "/console/login".to_string()
    } else {
        let query: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("next", &next).finish();
        format!("/console/login?{query}")
    };
    if parts.headers.contains_key("hx-request") {
        // htmx follows this header with a full page load.
        return (StatusCode::OK, [("hx-redirect", target)]).into_response();
    }
    Redirect::to(&target).into_response()
}

/// Only pages of the console are places to come back to (no open redirect).
fn safe_next(next: &str) -> bool {
    next.starts_with("/console") && !next.starts_with("//") && !next.contains('\\')
}

impl FromRequestParts<ConsoleState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &ConsoleState) -> Result<Visitor, Response> {
        let session =
            Session::from_request_parts(parts, console).await.map_err(IntoResponse::into_response)?;
        let user: Option<i64> = session.get(USER).await.ok().flatten();
        let signed_in_at: Option<i64> = session.get(SIGNED_IN_AT).await.ok().flatten();
        let csrf: Option<String> = session.get(CSRF).await.ok().flatten();
        let (Some(user), Some(at), Some(csrf)) = (user, signed_in_at, csrf) else {
            return Err(to_sign_in(parts));
        };
        let max_age = i64::try_from(console.sessions.absolute.as_secs()).unwrap_or(i64::MAX);
        if now_secs().saturating_sub(at) >= max_age {
            let _ = session.flush().await;
            return Err(to_sign_in(parts));
        }
        match console.accounts.session_caller(user).await {
            Ok(caller) => Ok(Visitor { caller, csrf, session }),
            Err(AuthError::InvalidToken(_)) => {
                let _ = session.flush().await;
                Err(to_sign_in(parts))
            }
            Err(e) => Err(page::error_page(None, e.into())),
        }
    }
}

/// The session's CSRF token, created on first use.
async fn csrf_token(session: &Session) -> Result<String, Response> {
    if let Ok(Some(token)) = session.get::<String>(CSRF).await {
        return Ok(token);
    }
    let token = crate::auth::token::new_token_id();
    session.insert(CSRF, &token).await.map_err(|e| page::internal(e.to_string()))?;
    Ok(token)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    signed_out: bool,
}

/// `GET /console/login`.
pub async fn login_page(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let csrf = match csrf_token(&session).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let notice = q.signed_out.then(|| "You are signed out.".to_string());
    let next = if safe_next(&q.next) { q.next } else { String::new() };
    Html::ok(LoginPage { csrf, next, username: String::new(), error: None, notice })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /console/login`: checks the password, starts a fresh session (a new id, so that an
/// id planted before signing in is worthless) and goes where the visitor was going.
pub async fn login(
    State(console): State<ConsoleState>,
    session: Session,
    extensions: axum::http::Extensions,
    axum::extract::Form(form): axum::extract::Form<LoginForm>,
) -> Response {
    let next = if safe_next(&form.next) { form.next.clone() } else { "/console".to_string() };
    // Failed sign-ins are throttled per username and per address, as token requests are.
    let client = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    match console.accounts.check_password(form.username.trim(), &form.password, client).await {
        Ok(user) => {
            let started = async {
                session.cycle_id().await?;
                session.clear().await;
                session.insert(USER, user.id).await?;
                session.insert(SIGNED_IN_AT, now_secs()).await?;
                session.insert(CSRF, crate::auth::token::new_token_id()).await
            };
            if let Err(e) = started.await {
                return page::internal(e.to_string());
            }
            tracing::info!(user = %user.username, "signed in to the console");
            Redirect::to(&next).into_response()
        }
        Err(e) => {
            let failure = page::Failure::from(e);
            let csrf = csrf_token(&session).await.unwrap_or_default();
            let page = LoginPage {
                csrf,
                next: form.next,
                username: form.username,
                error: Some(failure.message),
                notice: None,
            };
            Html::with_status(failure.status, page)
        }
    }
}

/// `POST /console/logout`: forgets the session.
pub async fn logout(session: Session) -> Response {
    let _ = session.flush().await;
    Redirect::to("/console/login?signed_out=true").into_response()
}

/// Whether the browser says the request comes from another site.
/// `authority`: the request's host and port (HTTP/2 has no Host header).
fn cross_site(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    match (text(header::ORIGIN), text(header::HOST).or(authority)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The CSRF check of every state-changing request (see the module docs). Multipart uploads
/// stream: their handler checks the token, which must be the form's first field; the
/// expected token travels as a request extension.
pub async fn csrf_guard(session: Session, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    if cross_site(request.headers(), request.uri().authority().map(|a| a.as_str())) {
        return page::forbidden(
            "This request came from another site and was refused (cross-site request forgery protection).",
        );
    }
    let Ok(Some(expected)) = session.get::<String>(CSRF).await else {
        return page::forbidden("Your session has expired. Reload the page and try again.");
    };
    let header = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(given) = header {
        return if constant_time_eq(&given, &expected) { next.run(request).await } else { refused() };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.starts_with("multipart/form-data") {
        let mut request = request;
        request.extensions_mut().insert(ExpectedCsrf(expected));
        return next.run(request).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return refused();
    }
    let (parts, body) = request.into_parts();
    let limit = parts.extensions.get::<BodyLimit>().map_or(usize::MAX, |l| l.0);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return page::too_large(),
    };
    let given = form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    match given {
        Some(given) if constant_time_eq(&given, &expected) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
        }
        _ => refused(),
    }
}

/// The largest form body the CSRF check reads (set by the console's router).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The CSRF token a multipart form must carry in its first field.
#[derive(Debug, Clone)]
pub struct ExpectedCsrf(pub String);

impl ExpectedCsrf {
    /// Whether `given` (the form's first field) is the session's token.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(given, &self.0)
    }
}

fn refused() -> Response {
    page::forbidden(
        "The form is missing its security token or the token is stale. Reload the page and try again.",
    )
}

/// Equality that takes as long for every string of a length.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_places_to_come_back_to() {
        assert!(safe_next("/console/projects/default/locations/local/models?q=a"));
        for bad in ["https://evil.example/", "//evil.example/console", "/v1/users", "/console\\..", ""] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(!cross_site(&headers(&[("host", "localhost:8443")]), None));
        assert!(!cross_site(
            &headers(&[("host", "localhost:8443"), ("origin", "https://localhost:8443")]),
            None
        ));
        assert!(!cross_site(&headers(&[("origin", "https://localhost:8443")]), Some("localhost:8443")));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")]), None));
        assert!(cross_site(
            &headers(&[("host", "localhost:8443"), ("origin", "https://evil.example")]),
            None
        ));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")]), None));
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "a")]), None));
        assert!(
            constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd") && !constant_time_eq("a", "ab")
        );
    }
}
