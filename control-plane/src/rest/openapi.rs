//! The API's OpenAPI document, generated from the handlers and the `api` crate's types
//! (utoipa). Served at `/openapi.yaml`, `/openapi.json` and browsable at `/docs` (Swagger UI,
//! vendored in the binary, so it works without internet);
//! `openapi/openapi.yaml` in the repository is this document, and a test fails when it is stale.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "platform",
        description = "Self-hosted model serving in the shape of Vertex AI's aiplatform.v1 REST API: a model registry, endpoints with deployed models and traffic splits, long-running operations and `:predict`. For Vertex AI's own clients (the Python SDK, gcloud), every path under `/v1/projects/` is also served under `/v1beta1/projects/`, and the operation paths also under `/ui/projects/` (answering only the fields of `google.longrunning.Operation`, which the SDK's operations client parses strictly) and nested under the model or endpoint an operation acts on (`.../endpoints/{endpoint}/operations/{operation}`, `.../models/{model}/operations[/{operation}]`).",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::tokens::create_token, super::tokens::create_caller_token, super::tokens::list_tokens,
        super::tokens::revoke_token, super::users::create, super::users::list, super::users::get, super::users::update,
        super::artifacts::upload,
        super::models::upload, super::models::list, super::models::get, super::models::patch,
        super::models::delete, super::models::post_verb,
        super::endpoints::create, super::endpoints::list, super::endpoints::get, super::endpoints::patch,
        super::endpoints::delete, super::endpoints::post_verb, super::logs::read, super::prediction_logs::list,
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
        (name = "endpoints", description = "Endpoints, deployed models, traffic splits; `:predict` and `:rawPredict` are POST `{id}:predict`. The Open Inference Protocol V2 is served under each endpoint for deployed models of the prebuilt runtime: `GET {endpoint}/v2`, `GET {endpoint}/v2/health/live|ready`, `GET {endpoint}/v2/models/{model}[/ready]`, `POST {endpoint}/v2/models/{model}/infer`, where `{model}` is a deployed model's id (that deployed model) or the endpoint's id (the traffic split); a custom container is refused with 400. `clientConnectionConfig.inferenceTimeout` (1s..3600s) bounds each prediction, 504 past it."),
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

/// Swagger UI at `/docs`, reading `/openapi.json`.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")).into()
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String) {
        let response =
            super::swagger_ui::<()>().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 10 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn swagger_ui_is_served_from_the_binary_and_reads_the_document() {
        let (status, page) = get("/docs/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("swagger-ui"), "{page}");
        let (status, init) = get("/docs/swagger-initializer.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(init.contains("/openapi.json"), "{init}");
        assert_eq!(
            get("/docs/swagger-ui-bundle.js").await.0,
            StatusCode::OK,
            "no CDN: the scripts are embedded"
        );
    }
}
