//! The API's OpenAPI document, generated from the handlers and the `api` crate's types
//! (utoipa). Served at `/openapi.yaml`, `/openapi.json` and as a browsable page at `/docs`;
//! `openapi/openapi.yaml` in the repository is this document, and a test fails when it is stale.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "platform",
        description = "Self-hosted model serving in the shape of Vertex AI's aiplatform.v1 REST API: a model registry, endpoints with deployed models and traffic splits, long-running operations and `:predict`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::tokens::create_token, super::tokens::list_tokens, super::tokens::revoke_token,
        super::users::create, super::users::get, super::users::update,
        super::artifacts::upload,
        super::models::upload, super::models::list, super::models::get, super::models::patch,
        super::models::delete, super::models::post_verb,
        super::endpoints::create, super::endpoints::list, super::endpoints::get, super::endpoints::patch,
        super::endpoints::delete, super::endpoints::post_verb,
        super::operations::list, super::operations::get, super::operations::post_verb, super::operations::delete,
        super::manifests::get, super::manifests::get_endpoint, super::manifests::put, super::manifests::list_revisions,
        super::manifests::get_revision, super::manifests::rollback,
    ),
    components(schemas(
        api::PredictRequest, api::PredictResponse, api::UndeployModelRequest, api::MutateDeployedModelRequest,
        api::DeployModelResponse, api::MutateDeployedModelResponse, api::UploadModelResponse,
    )),
    modifiers(&BearerAuth, &ErrorResponses),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "API tokens, users and their roles"),
        (name = "models", description = "The model registry: models, versions, aliases, artifacts"),
        (name = "endpoints", description = "Endpoints, deployed models, traffic splits; `:predict` and `:rawPredict` are POST `{id}:predict`"),
        (name = "operations", description = "Long-running operations"),
        (name = "manifests", description = "The Kubernetes manifests of each deployed model: read, edit, revisions, rollback"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// Every operation can answer with an error body (bad input, auth, conflicts, overload):
/// documented once as each operation's `default` response.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = ResponseBuilder::new()
            .description("An error: `{\"error\": {\"code\", \"message\", \"status\"}}`")
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete]
                .into_iter()
                .flatten()
            {
                op.responses.responses.insert("default".into(), error.clone().into());
            }
        }
    }
}

/// The document as YAML (what `openapi/openapi.yaml` holds).
pub fn to_yaml() -> String {
    ApiDoc::openapi().to_yaml().unwrap_or_else(|e| format!("# cannot render the document: {e}\n"))
}

pub async fn yaml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], to_yaml())
}

pub async fn json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

/// A self-contained page listing every operation with its parameters and bodies (no scripts
/// from elsewhere, so it works on machines without internet).
pub async fn page() -> Html<String> {
    let doc = ApiDoc::openapi();
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>platform API</title><style>\
         body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}\
         code{background:#f3f3f3;padding:1px 4px;border-radius:3px}.op{border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.5em .8em}\
         .m{font-weight:bold;display:inline-block;min-width:4.5em}.get{color:#0a6}.post{color:#06c}.patch{color:#a60}.delete{color:#c33}\
         </style></head><body><h1>platform REST API</h1>",
    );
    out.push_str(&format!(
        "<p>{}</p><p>Machine-readable: <a href=\"/openapi.yaml\">openapi.yaml</a>, <a href=\"/openapi.json\">openapi.json</a>. \
         Authenticate with <code>Authorization: Bearer TOKEN</code> (<code>POST /v1/auth/token</code>).</p>",
        escape(doc.info.description.as_deref().unwrap_or_default())
    ));
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("get", &item.get),
            ("post", &item.post),
            ("patch", &item.patch),
            ("put", &item.put),
            ("delete", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            out.push_str(&format!(
                "<div class=\"op\"><span class=\"m {method}\">{}</span> <code>{}</code>",
                method.to_uppercase(),
                escape(path)
            ));
            if let Some(text) = op.description.as_ref().or(op.summary.as_ref()) {
                out.push_str(&format!("<p>{}</p>", escape(text)));
            }
            let params: Vec<String> = op
                .parameters
                .iter()
                .flatten()
                .map(|p| {
                    let about =
                        p.description.as_deref().map(|d| format!(": {}", escape(d))).unwrap_or_default();
                    format!("<li><code>{}</code>{about}</li>", escape(&p.name))
                })
                .collect();
            if !params.is_empty() {
                out.push_str(&format!("<ul>{}</ul>", params.concat()));
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</body></html>");
    Html(out)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
