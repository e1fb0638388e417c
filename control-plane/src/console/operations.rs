//! The Operations page: the project's long-running operations, newest first.

use askama::Template;
use axum::extract::{Path, State};

use super::ConsoleState;
use super::models::when;
use super::page::{self, Html, Layout, Nav, Page};
use super::session::Visitor;

/// An operation as the list shows it.
pub struct OperationRow {
    pub id: String,
    pub verb: String,
    pub target: String,
    pub state: String,
    pub failed: bool,
    pub detail: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "operations.html")]
struct OperationsPage {
    layout: Layout,
    operations: Vec<OperationRow>,
}

/// `GET .../operations`.
pub async fn list(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let layout = Layout::new(&visitor, &loc, Nav::Operations, "Operations").await;
    let ops = console.operations.list(&visitor.caller, &loc, None, "").await.map_err(page::fail(&layout))?;
    let operations = ops
        .iter()
        .take(200)
        .map(|op| {
            let meta = op.metadata.clone().unwrap_or_default();
            let (state, detail) = match (&op.error, op.done) {
                (Some(e), _) => ("Failed".to_string(), e.message.clone()),
                (None, true) => ("Done".to_string(), String::new()),
                (None, false) => (
                    format!("Running, {}%", meta["progressPercent"].as_u64().unwrap_or(0)),
                    meta["progressMessage"].as_str().unwrap_or_default().to_string(),
                ),
            };
            OperationRow {
                id: op.name.rsplit('/').next().unwrap_or_default().to_string(),
                verb: meta["verb"].as_str().unwrap_or_default().to_string(),
                target: meta["target"].as_str().unwrap_or_default().to_string(),
                failed: op.error.is_some(),
                state,
                detail,
                created: when(meta["genericMetadata"]["createTime"].as_str().unwrap_or_default()),
            }
        })
        .collect();
    Ok(Html::ok(OperationsPage { layout, operations }))
}
