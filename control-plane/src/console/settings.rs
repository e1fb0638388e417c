//! Settings: the visitor's API tokens (create, shown once; revoke) and, for admins of every
//! project, the users and their roles per project.

use std::collections::BTreeMap;

use api::LocationName;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::ConsoleState;
use super::models::when;
use super::page::{self, DEFAULT_LOCATION, DEFAULT_PROJECT, Html, Layout, Nav, Page};
use super::session::Visitor;

/// A token as the list shows it.
pub struct TokenRow {
    pub id: String,
    pub description: String,
    pub project: String,
    pub created: String,
    pub expires: String,
    pub revoked: String,
}

/// A user as the admin list shows them.
pub struct UserRow {
    pub username: String,
    pub roles: Vec<(String, String)>,
    pub created: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    /// A token just created: shown this once.
    new_token: Option<String>,
    users: Option<Vec<UserRow>>,
    roles: Vec<&'static str>,
    error: Option<String>,
}

async fn render(
    console: &ConsoleState,
    visitor: &Visitor,
    new_token: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let loc = LocationName { project: DEFAULT_PROJECT.into(), location: DEFAULT_LOCATION.into() };
    let layout = Layout::new(visitor, &loc, Nav::Settings, "Settings").await;
    let tokens = console
        .accounts
        .list_tokens(&visitor.caller)
        .await
        .map_err(page::fail(&layout))?
        .tokens
        .into_iter()
        .rev()
        .map(|t| TokenRow {
            id: t.token_id,
            description: t.description,
            project: t.project.unwrap_or_else(|| "all of yours".into()),
            created: when(&t.create_time),
            expires: when(&t.expire_time),
            revoked: if t.revoke_time.is_empty() { String::new() } else { when(&t.revoke_time) },
        })
        .collect();
    let users = if visitor.caller.is_admin_of("*") {
        let users = console.accounts.list_users(&visitor.caller).await.map_err(page::fail(&layout))?;
        Some(
            users
                .into_iter()
                .map(|u| UserRow {
                    username: u.username,
                    roles: u.roles.into_iter().collect(),
                    created: when(&u.create_time),
                })
                .collect(),
        )
    } else {
        None
    };
    let roles = api::Role::ALL.iter().map(|r| r.as_str()).collect();
    Ok(Html::with_status(status, SettingsPage { layout, tokens, new_token, users, roles, error }))
}

/// `GET /console/settings`.
pub async fn page(State(console): State<ConsoleState>, visitor: Visitor) -> Page {
    render(&console, &visitor, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    description: String,
    #[serde(default)]
    project: String,
}

/// `POST /console/settings/tokens`: the new token is on this page only.
pub async fn create_token(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Form(form): Form<TokenForm>,
) -> Page {
    let project = Some(form.project.trim().to_string()).filter(|p| !p.is_empty());
    let req = api::CreateTokenRequest { project, description: form.description.trim().to_string() };
    match console.accounts.create_token(&visitor.caller, &req).await {
        Ok(token) => render(&console, &visitor, Some(token.token), None, StatusCode::OK).await,
        Err(e) => {
            let f = page::Failure::from(e);
            render(&console, &visitor, None, Some(f.message), f.status).await
        }
    }
}

/// `POST /console/settings/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Page {
    match console.accounts.revoke_token(&visitor.caller, &id).await {
        Ok(()) => visitor.flash("The token was revoked.").await,
        Err(e) => visitor.flash(format!("The token was not revoked: {e}")).await,
    }
    Ok(Redirect::to("/console/settings").into_response())
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    role: String,
    /// The user whose role changes.
    #[serde(default)]
    user: String,
}

fn roles_of(form: &UserForm) -> BTreeMap<String, String> {
    let project = form.project.trim();
    if project.is_empty() {
        BTreeMap::new()
    } else {
        [(project.to_string(), form.role.trim().to_string())].into()
    }
}

/// `POST /console/settings/users` (admins): a new user with a role on one project.
pub async fn create_user(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Form(form): Form<UserForm>,
) -> Page {
    let req = api::CreateUserRequest {
        username: form.username.trim().into(),
        password: form.password.clone(),
        roles: roles_of(&form),
    };
    match console.accounts.create_user(&visitor.caller, &req).await {
        Ok(u) => visitor.flash(format!("User {} was created.", u.username)).await,
        Err(e) => visitor.flash(format!("The user was not created: {e}")).await,
    }
    Ok(Redirect::to("/console/settings").into_response())
}

/// `POST /console/settings/roles` (admins): sets (or with no role, removes) a user's role on
/// a project, and a new password when one is given.
pub async fn update_user(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Form(form): Form<UserForm>,
) -> Page {
    let username = form.user.trim().to_string();
    let password = Some(form.password.clone()).filter(|p| !p.is_empty());
    let req = api::UpdateUserRequest { password, roles: roles_of(&form), disabled: None };
    match console.accounts.update_user(&visitor.caller, &username, &req).await {
        Ok(u) => visitor.flash(format!("User {} was updated.", u.username)).await,
        Err(e) => visitor.flash(format!("The user was not changed: {e}")).await,
    }
    Ok(Redirect::to("/console/settings").into_response())
}
