//! Model Registry pages: the list with search and labels, Import (an uploaded ONNX file, an
//! artifact URI, or a custom container; a new model or a new version), and a model's page with
//! its versions, aliases and "Deploy to endpoint".

use std::collections::BTreeMap;

use api::{LocationName, ModelName, VersionRef};
use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::ConsoleState;
use super::page::{self, Failure, Html, Layout, Nav, Page};
use super::session::{CSRF_FIELD, ExpectedCsrf, Visitor};

/// A model as the list shows it.
pub struct ModelRow {
    pub id: String,
    pub display_name: String,
    pub version: String,
    pub aliases: String,
    pub labels: Vec<String>,
    pub deployments: usize,
    pub created: String,
}

fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

/// `2024-05-01T10:20:30.123456Z` as `2024-05-01 10:20 UTC`.
pub fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

fn labels_of(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[derive(Template)]
#[template(path = "models.html")]
struct ListPage {
    layout: Layout,
    models: Vec<ModelRow>,
    q: String,
    label: String,
    total: usize,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    label: String,
}

/// Whether a model matches the search text (name or id) and the `key=value` label filter.
pub fn matches(model: &api::Model, q: &str, label: &str) -> bool {
    let q = q.trim().to_lowercase();
    let text_ok = q.is_empty()
        || model.display_name.to_lowercase().contains(&q)
        || id_of(&model.name).to_lowercase().contains(&q);
    let label = label.trim();
    let label_ok = label.is_empty()
        || match label.split_once('=') {
            Some((k, v)) => model.labels.get(k.trim()).is_some_and(|have| have == v.trim()),
            None => model.labels.contains_key(label),
        };
    text_ok && label_ok
}

/// `GET .../models`.
pub async fn list(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let layout = Layout::new(&visitor, &loc, Nav::Models, "Model Registry").await;
    let all = console.registry.list(&visitor.caller, &loc).await.map_err(page::fail(&layout))?;
    let total = all.len();
    let models = all
        .iter()
        .filter(|m| matches(m, &query.q, &query.label))
        .map(|m| ModelRow {
            id: id_of(&m.name),
            display_name: m.display_name.clone(),
            version: m.version_id.clone(),
            aliases: m.version_aliases.join(", "),
            labels: labels_of(&m.labels),
            deployments: m.deployed_models.len(),
            created: when(&m.create_time),
        })
        .collect();
    Ok(Html::ok(ListPage { layout, models, q: query.q, label: query.label, total }))
}

/// What the import form holds (kept to show it again after an error).
#[derive(Debug, Default, Clone)]
pub struct ImportForm {
    pub display_name: String,
    pub model_id: String,
    pub parent_model: String,
    pub description: String,
    pub version_aliases: String,
    pub labels: String,
    /// `upload`, `uri` or `container`.
    pub source: String,
    pub artifact_uri: String,
    pub image_uri: String,
    pub command: String,
    pub args: String,
    pub env: String,
    pub port: String,
    pub predict_route: String,
    pub health_route: String,
}

impl ImportForm {
    fn set(&mut self, name: &str, value: String) {
        let field = match name {
            "display_name" => &mut self.display_name,
            "model_id" => &mut self.model_id,
            "parent_model" => &mut self.parent_model,
            "description" => &mut self.description,
            "version_aliases" => &mut self.version_aliases,
            "labels" => &mut self.labels,
            "source" => &mut self.source,
            "artifact_uri" => &mut self.artifact_uri,
            "image_uri" => &mut self.image_uri,
            "command" => &mut self.command,
            "args" => &mut self.args,
            "env" => &mut self.env,
            "port" => &mut self.port,
            "predict_route" => &mut self.predict_route,
            "health_route" => &mut self.health_route,
            _ => return,
        };
        *field = value;
    }

    pub fn is(&self, source: &str) -> bool {
        self.source == source || (self.source.is_empty() && source == "upload")
    }

    /// The API's upload request for this form (the artifact URI of an uploaded file given).
    pub fn to_request(&self, uploaded_uri: Option<String>) -> Result<api::UploadModelRequest, String> {
        let labels = parse_pairs(&self.labels, ',', "labels")?;
        let aliases: Vec<String> = self
            .version_aliases
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        let container_spec = if self.is("container") {
            let port = match self.port.trim() {
                "" => vec![],
                p => vec![api::Port {
                    container_port: p.parse().map_err(|_| format!("port `{p}` is not a port number"))?,
                }],
            };
            Some(api::ModelContainerSpec {
                image_uri: self.image_uri.trim().to_string(),
                command: words(&self.command),
                args: words(&self.args),
                env: parse_pairs(&self.env, '\n', "environment")?
                    .into_iter()
                    .map(|(name, value)| api::EnvVar { name, value })
                    .collect(),
                ports: port,
                predict_route: self.predict_route.trim().to_string(),
                health_route: self.health_route.trim().to_string(),
                ..Default::default()
            })
        } else {
            None
        };
        let artifact_uri = match (self.is("upload"), uploaded_uri) {
            (true, Some(uri)) => uri,
            (true, None) => return Err("choose the model file to upload (an .onnx file)".into()),
            (false, _) => self.artifact_uri.trim().to_string(),
        };
        let parent = self.parent_model.trim();
        Ok(api::UploadModelRequest {
            parent_model: (!parent.is_empty()).then(|| parent.to_string()),
            model_id: Some(self.model_id.trim().to_string()).filter(|id| !id.is_empty() && parent.is_empty()),
            model: api::Model {
                display_name: self.display_name.trim().to_string(),
                description: self.description.trim().to_string(),
                version_aliases: aliases,
                labels,
                artifact_uri,
                container_spec,
                ..Default::default()
            },
            service_account: None,
        })
    }
}

/// Words separated by spaces or new lines.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// `key=value` pairs separated by `sep`.
fn parse_pairs(text: &str, sep: char, what: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(format!("{what}: `{pair}` is not KEY=VALUE")),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    layout: Layout,
    form: ImportForm,
    models: Vec<(String, String)>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ImportQuery {
    #[serde(default)]
    parent: String,
}

async fn import_page_with(
    console: &ConsoleState,
    visitor: &Visitor,
    loc: &LocationName,
    form: ImportForm,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let layout = Layout::new(visitor, loc, Nav::Models, "Import a model").await;
    let models = console
        .registry
        .list(&visitor.caller, loc)
        .await
        .map_err(page::fail(&layout))?
        .into_iter()
        .map(|m| (m.name.clone(), format!("{} ({})", m.display_name, id_of(&m.name))))
        .collect();
    Ok(Html::with_status(status, ImportPage { layout, form, models, error }))
}

/// `GET .../models/new`.
pub async fn import_page(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<ImportQuery>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let form = ImportForm { parent_model: q.parent, source: "upload".into(), ..Default::default() };
    import_page_with(&console, &visitor, &loc, form, None, StatusCode::OK).await
}

/// `POST .../models` (multipart): the CSRF token first, the fields, the file last (streamed
/// into the artifact store as it arrives).
pub async fn import(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location)): Path<(String, String)>,
    headers: HeaderMap,
    expected: Option<axum::Extension<ExpectedCsrf>>,
    mut multipart: Multipart,
) -> Page {
    let loc = page::location(&project, &location)?;
    let mut form = ImportForm::default();
    let mut uploaded = None;
    let mut first = true;
    let bad = |e: String| Failure { status: StatusCode::BAD_REQUEST, message: e };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(page::error_page(None, bad(format!("cannot read the form: {e}")))),
        };
        let name = field.name().unwrap_or_default().to_string();
        if first {
            first = false;
            let token =
                if name == CSRF_FIELD { field.text().await.unwrap_or_default() } else { String::new() };
            let ok = match &expected {
                Some(axum::Extension(expected)) => expected.matches(&token),
                None => true, // The header carried it (checked before the handler).
            };
            if !ok {
                return Err(page::forbidden(
                    "The form is missing its security token. Reload the page and try again.",
                ));
            }
            continue;
        }
        if name == "file" {
            let filename = field.file_name().map(str::to_string).filter(|f| !f.is_empty());
            if form.is("upload") && filename.is_some() {
                let stream = Box::pin(field);
                match console
                    .registry
                    .upload_artifact(&visitor.caller, &loc, filename.as_deref(), stream)
                    .await
                {
                    Ok(artifact) => uploaded = Some(artifact.artifact_uri),
                    Err(e) => {
                        let message = e.to_string();
                        return import_page_with(
                            &console,
                            &visitor,
                            &loc,
                            form,
                            Some(message),
                            Failure::from(e).status,
                        )
                        .await;
                    }
                }
            }
            continue;
        }
        let value = field.text().await.unwrap_or_default();
        form.set(&name, value);
    }
    let request = match form.to_request(uploaded) {
        Ok(r) => r,
        Err(message) => {
            return import_page_with(&console, &visitor, &loc, form, Some(message), StatusCode::BAD_REQUEST)
                .await;
        }
    };
    match console.registry.upload(&visitor.caller, &loc, &request).await {
        Ok(op) => {
            let model = op.response.as_ref().and_then(|r| r["model"].as_str()).map(id_of).unwrap_or_default();
            let version =
                op.response.as_ref().and_then(|r| r["modelVersionId"].as_str()).unwrap_or("1").to_string();
            visitor.flash(format!("Imported version {version} of model {model}.")).await;
            let target =
                format!("/console/projects/{}/locations/{}/models/{model}", loc.project, loc.location);
            Ok(redirect(&headers, &target))
        }
        Err(e) => {
            let message = e.to_string();
            import_page_with(&console, &visitor, &loc, form, Some(message), Failure::from(e).status).await
        }
    }
}

/// A redirect after a POST; htmx requests get `HX-Redirect` (a full page load) instead.
pub fn redirect(headers: &HeaderMap, target: &str) -> Response {
    if headers.contains_key("hx-request") {
        ([("hx-redirect", target.to_string())], "").into_response()
    } else {
        Redirect::to(target).into_response()
    }
}

/// A version as the model page shows it.
pub struct VersionRow {
    pub id: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub source: String,
    pub created: String,
    pub deployments: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    layout: Layout,
    id: String,
    model: api::Model,
    versions: Vec<VersionRow>,
    labels: Vec<String>,
}

fn model_name(loc: &LocationName, id: &str) -> Result<ModelName, Response> {
    let (id, _) = api::parse_model_segment(id).map_err(|e| page::error_page(None, e.into()))?;
    Ok(loc.model(&id))
}

/// `GET .../models/{model}`.
pub async fn detail(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = model_name(&loc, &id)?;
    let mut layout = Layout::new(&visitor, &loc, Nav::Models, "Model").await;
    let model = console.registry.get(&visitor.caller, &name, None).await.map_err(page::fail(&layout))?;
    let versions =
        console.registry.list_versions(&visitor.caller, &name).await.map_err(page::fail(&layout))?;
    layout.title = model.display_name.clone();
    let versions = versions
        .iter()
        .rev()
        .map(|v| VersionRow {
            id: v.version_id.clone(),
            aliases: v.version_aliases.clone(),
            description: v.version_description.clone(),
            source: match &v.container_spec {
                Some(c) => format!("container {}", c.image_uri),
                None => format!("ONNX runtime, {}", v.artifact_uri),
            },
            created: when(&v.version_create_time),
            deployments: v
                .deployed_models
                .iter()
                .map(|d| (id_of(&d.endpoint), d.deployed_model_id.clone()))
                .collect(),
        })
        .collect();
    let labels = labels_of(&model.labels);
    Ok(Html::ok(ModelPage { layout, id: name.model_id.clone(), model, versions, labels }))
}

#[derive(Deserialize)]
pub struct AliasForm {
    version: String,
    aliases: String,
}

/// `POST .../models/{model}/aliases`: `golden, -staging` adds `golden` and removes `staging`.
pub async fn aliases(
    State(console): State<ConsoleState>,
    visitor: Visitor,
    Path((project, location, id)): Path<(String, String, String)>,
    axum::extract::Form(form): axum::extract::Form<AliasForm>,
) -> Page {
    let loc = page::location(&project, &location)?;
    let name = model_name(&loc, &id)?;
    let target = format!("/console/projects/{project}/locations/{location}/models/{}", name.model_id);
    let version = form.version.trim().parse::<i64>().map(VersionRef::Id).map_err(|_| {
        page::error_page(
            None,
            Failure { status: StatusCode::BAD_REQUEST, message: "choose a version".into() },
        )
    })?;
    let aliases: Vec<String> =
        form.aliases.split([',', ' ']).map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    match console.registry.merge_aliases(&visitor.caller, &name, &version, &aliases).await {
        Ok(v) => {
            visitor
                .flash(format!("Version {} now has aliases: {}.", v.version_id, v.version_aliases.join(", ")))
                .await
        }
        Err(e) => visitor.flash(format!("The aliases were not changed: {e}")).await,
    }
    Ok(Redirect::to(&target).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_form_becomes_an_upload_request() {
        let form = ImportForm {
            display_name: " mlp ".into(),
            model_id: "mlp".into(),
            version_aliases: "stable, , canary".into(),
            labels: "team=ml, env = prod".into(),
            source: "upload".into(),
            ..Default::default()
        };
        assert!(form.to_request(None).unwrap_err().contains("choose the model file"));
        let req = form.to_request(Some("artifacts://x/model.onnx".into())).unwrap();
        assert_eq!(req.model_id.as_deref(), Some("mlp"));
        assert_eq!(req.model.display_name, "mlp");
        assert_eq!(req.model.version_aliases, ["stable", "canary"]);
        assert_eq!(req.model.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(req.model.artifact_uri, "artifacts://x/model.onnx");

        let container = ImportForm {
            display_name: "echo".into(),
            parent_model: "projects/p/locations/l/models/echo".into(),
            model_id: "ignored".into(),
            source: "container".into(),
            image_uri: "registry/echo:1".into(),
            command: "python3 serve.py".into(),
            args: "--port 8080".into(),
            env: "A=1\nB=two words".into(),
            port: "8080".into(),
            predict_route: "/predict".into(),
            ..Default::default()
        };
        let req = container.to_request(None).unwrap();
        assert_eq!(
            (req.model_id, req.parent_model.as_deref()),
            (None, Some("projects/p/locations/l/models/echo"))
        );
        let spec = req.model.container_spec.unwrap();
        assert_eq!(spec.command, ["python3", "serve.py"]);
        assert_eq!(spec.env[1], api::EnvVar { name: "B".into(), value: "two words".into() });
        assert_eq!(spec.ports[0].container_port, 8080);
        let bad = ImportForm { labels: "team".into(), ..container.clone() };
        assert!(bad.to_request(None).unwrap_err().contains("KEY=VALUE"));
        let bad = ImportForm { port: "http".into(), ..container };
        assert!(bad.to_request(None).unwrap_err().contains("port"));
    }

    #[test]
    fn search_matches_names_ids_and_labels() {
        let m = api::Model {
            name: "projects/p/locations/l/models/mlp".into(),
            display_name: "Iris MLP".into(),
            labels: [("team".to_string(), "ml".to_string())].into_iter().collect(),
            ..Default::default()
        };
        assert!(matches(&m, "", ""));
        assert!(matches(&m, "iris", "team=ml"));
        assert!(matches(&m, "MLP", "team"));
        assert!(!matches(&m, "resnet", ""));
        assert!(!matches(&m, "", "team=ops"));
        assert_eq!(when("2024-05-01T10:20:30.123456Z"), "2024-05-01 10:20 UTC");
    }
}
