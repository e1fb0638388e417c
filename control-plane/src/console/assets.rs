//! The console's static files, embedded in the binary from `web-ui/static/`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type and bytes of each file.
const FILES: &[(&str, &str, &[u8])] = &[
    ("console.css", "text/css; charset=utf-8", include_bytes!("../../../web-ui/static/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../../../web-ui/static/console.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_bytes!("../../../web-ui/static/htmx.min.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../../web-ui/static/favicon.svg")),
];

/// `GET /console/static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
