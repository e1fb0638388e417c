//! The Manifest tab of a deployed model: the YAML that runs, highlighted; download; edit with
//! a dry run that shows the diff and an apply that makes a revision, with validation problems
//! under the lines they name; the revisions, a diff between any two, and rollback.

use api::{EndpointName, LocationName};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::ConsoleState;
use super::models::when;
use super::page::{self, Html, Layout, Nav, Page};
use super::session::Visitor;
use super::yaml::{self, DiffLine, Line};
use crate::endpoints::EndpointError;

/// A revision as the list shows it.
pub struct RevisionRow {
    pub number: i64,
    pub source: String,
    pub created: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "manifests.html")]
struct ManifestPage {
    layout: Layout,
    endpoint_id: String,
    endpoint_name: String,
    deployed: String,
    current: i64,
    lines: Vec<Line>,
    edited: String,
    revisions: Vec<RevisionRow>,
    /// The outcome of a dry run or an apply.
    outcome: Option<String>,
    diff: Vec<DiffLine>,
    warnings: Vec<String>,
    error: Option<String>,
    compare: Option<(i64, i64)>,
}

#[derive(Deserialize, Default)]
pub struct TabQuery {
    from: Option<i64>,
    to: Option<i64>,
}

struct Outcome {
    edited: Option<String>,
    message: Option<String>,
    diff: String,
    warnings: Vec<String>,
    error: Option<String>,
    problems: Vec<(String, String)>,
    status: StatusCode,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            edited: None,
            message: None,
            diff: String::new(),
            warnings: vec![],
            error: None,
            problems: vec![],
            status: StatusCode::OK,
        }
    }
}

fn names(project: &str, location: &str, endpoint: &str) -> Result<(LocationName, EndpointName), Response> {
    let loc = page::location(project, location)?;
    let name = EndpointName::new(loc.clone(), endpoint).map_err(|e| page::error_page(None, e.into()))?;
    Ok((loc, name))
}

async fn render(
    console: &ConsoleState,
    visitor: &Visitor,
    loc: &LocationName,
    name: &EndpointName,
    deployed: &str,
    compare: (Option<i64>, Option<i64>),
    outcome: Outcome,
) -> Page {
    let layout = Layout::new(visitor, loc, Nav::Endpoints, "Manifests").await;
    let endpoint = console.endpoints.get(&visitor.caller, name).await.map_err(page::fail(&layout))?;
    let current =
        console.endpoints.manifests(&visitor.caller, name, deployed).await.map_err(page::fail(&layout))?;
    let revisions =
        console.endpoints.revisions(&visitor.caller, name, deployed).await.map_err(page::fail(&layout))?;
    let edited = outcome.edited.clone().unwrap_or_else(|| current.manifests.clone());
    let lines = yaml::highlight(&edited, &outcome.problems);
    let mut diff = outcome.diff.clone();
    let compare = match compare {
        (Some(from), Some(to)) => {
            let a = console
                .endpoints
                .revision(&visitor.caller, name, deployed, from)
                .await
                .map_err(page::fail(&layout))?;
            let b = console
                .endpoints
                .revision(&visitor.caller, name, deployed, to)
                .await
                .map_err(page::fail(&layout))?;
            diff = crate::manifests::diff(&a.manifests, &b.manifests);
            if diff.is_empty() {
                diff = format!("  (revisions {from} and {to} are the same)");
            }
            Some((from, to))
        }
        _ => None,
    };
    let rows = revisions
        .iter()
        .rev()
        .map(|r| RevisionRow {
            number: r.revision,
            source: r.source.clone(),
            created: when(&r.create_time),
            current: r.revision == current.revision,
        })
        .collect();
    let page = ManifestPage {
        layout,
        endpoint_id: name.endpoint_id.clone(),
        endpoint_name: endpoint.display_name,
        deployed: deployed.to_string(),
        current: current.revision,
        lines,
        edited,
        revisions: rows,
        outcome: outcome.message,
        diff: yaml::diff_lines(&diff),
        warnings: outcome.warnings,
        error: outcome.error,
        compare,
    };
    Ok(Html::with_status(outcome.status, page))
}

/// `GET .../deployedModels/{id}/manifests` (`?from=&to=`: a diff between two revisions).
pub async fn tab(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, endpoint, deployed)): Path<(String, String, String, String)>,
    Query(q): Query<TabQuery>,
) -> Page {
    let (loc, name) = names(&project, &location, &endpoint)?;
    render(&console, &visitor, &loc, &name, &deployed, (q.from, q.to), Outcome::default()).await
}

/// `GET .../deployedModels/{id}/manifests.yaml`: the current revision as a file.
pub async fn download(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, endpoint, deployed)): Path<(String, String, String, String)>,
) -> Page {
    let (_, name) = names(&project, &location, &endpoint)?;
    let current = console
        .endpoints
        .manifests(&visitor.caller, &name, &deployed)
        .await
        .map_err(|e| page::error_page(None, e.into()))?;
    let disposition = format!("attachment; filename=\"{endpoint}-{deployed}-r{}.yaml\"", current.revision);
    Ok((
        [(header::CONTENT_TYPE, "application/yaml".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        current.manifests,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ApplyForm {
    manifests: String,
    /// `dry_run` or `apply`.
    action: String,
}

/// `POST .../deployedModels/{id}/manifests`: a dry run (the diff) or an apply (a revision).
pub async fn apply(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, endpoint, deployed)): Path<(String, String, String, String)>,
    Form(form): Form<ApplyForm>,
) -> Page {
    let (loc, name) = names(&project, &location, &endpoint)?;
    let dry_run = form.action != "apply";
    let edited = form.manifests.replace("\r\n", "\n");
    let outcome = match console
        .endpoints
        .apply_manifests(&visitor.caller, &name, &deployed, &edited, dry_run)
        .await
    {
        Ok(answer) => {
            let message = match (&answer.revision, dry_run) {
                (_, true) if answer.diff.is_empty() => "Dry run: nothing would change.".to_string(),
                (_, true) => "Dry run: the edit is valid; this is what would change.".to_string(),
                (Some(r), false) => format!("Applied as revision {}.", r.revision),
                (None, false) => "Nothing changed: the manifests are those running.".to_string(),
            };
            if !dry_run {
                visitor.flash(message).await;
                let target = format!(
                    "/console/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed}/manifests"
                );
                return Ok(Redirect::to(&target).into_response());
            }
            Outcome {
                edited: Some(edited),
                message: Some(message),
                diff: answer.diff,
                warnings: answer.warnings,
                ..Default::default()
            }
        }
        Err(EndpointError::Manifests(problems)) => {
            let count = problems.0.len();
            Outcome {
                edited: Some(edited),
                error: Some(format!(
                    "The manifests are not accepted ({count} {}); see the marked lines.",
                    if count == 1 { "problem" } else { "problems" }
                )),
                problems: problems.0.iter().map(|p| (p.path.clone(), p.message.clone())).collect(),
                status: StatusCode::BAD_REQUEST,
                ..Default::default()
            }
        }
        Err(e) => {
            let failure = page::Failure::from(e);
            Outcome {
                edited: Some(edited),
                error: Some(failure.message),
                status: failure.status,
                ..Default::default()
            }
        }
    };
    render(&console, &visitor, &loc, &name, &deployed, (None, None), outcome).await
}

/// `POST .../revisions/{n}/rollback`: a new revision with revision n's manifests.
pub async fn rollback(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, endpoint, deployed, revision)): Path<(String, String, String, String, i64)>,
) -> Page {
    let (_, name) = names(&project, &location, &endpoint)?;
    match console.endpoints.rollback(&visitor.caller, &name, &deployed, revision).await {
        Ok(r) => {
            visitor.flash(format!("Rolled back to revision {revision} as revision {}.", r.revision)).await
        }
        Err(e) => visitor.flash(format!("The rollback was refused: {e}")).await,
    }
    let target = format!(
        "/console/projects/{project}/locations/{location}/endpoints/{endpoint}/deployedModels/{deployed}/manifests"
    );
    Ok(Redirect::to(&target).into_response())
}
