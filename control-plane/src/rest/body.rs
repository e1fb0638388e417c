//! Request bodies: every body but an artifact upload's is read whole before routing, within
//! `--max-request-bytes` and `--body-read-timeout`.
//!
//! Reading first means a handler that answers without the body (a bad path, a missing token)
//! never leaves it unread, so keep-alive connections stay usable. A body over the limit is read
//! on and thrown away (up to [`DRAIN_BYTES`]) before the 413 is sent, as nginx's lingering close
//! does: a client still sending would otherwise see its connection reset (HTTP/1.1) or its
//! stream reset (HTTP/2) instead of the answer.

use std::time::Duration;

use api::Code;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::{ApiError, request};
use crate::telemetry::Metrics;

/// How much of a body over the limit is read and discarded before answering 413.
pub const DRAIN_BYTES: usize = 64 << 20;

/// The limits of request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body (Vertex allows 1.5 MB); artifact uploads have their own limit.
    pub max_bytes: usize,
    /// How long a body may take to arrive (for an upload: between two pieces of it).
    pub read_timeout: Duration,
}

/// Why a body was not read.
enum Unread {
    TooLarge,
    Broken(String),
}

/// Reads a body of at most `limit` bytes; a larger one is read on (and dropped) up to
/// [`DRAIN_BYTES`] so that the answer can reach the client.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, Unread> {
    let mut kept = Vec::new();
    let mut over = false;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Unread::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            over = true;
            kept = Vec::new();
        }
        if over {
            if seen > DRAIN_BYTES {
                return Err(Unread::TooLarge);
            }
        } else {
            kept.extend_from_slice(&data);
        }
    }
    if over { Err(Unread::TooLarge) } else { Ok(Bytes::from(kept)) }
}

/// The middleware: reads the body (but for artifact uploads, which stream), and counts every
/// answer in `platform_api_requests_total`.
pub async fn read_whole(
    axum::extract::State((limits, metrics)): axum::extract::State<(BodyLimits, Metrics)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let response = if request.uri().path().ends_with("/artifacts") {
        next.run(request).await
    } else {
        let (parts, body) = request.into_parts();
        match tokio::time::timeout(limits.read_timeout, read_limited(body, limits.max_bytes)).await {
            Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, Body::from(bytes))).await,
            Ok(Err(Unread::TooLarge)) => {
                let mut response = request::too_large(limits.max_bytes).into_response();
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            Ok(Err(Unread::Broken(e))) => {
                ApiError::invalid(format!("cannot read the request body: {e}")).into_response()
            }
            Err(_) => timed_out(limits.read_timeout).into_response(),
        }
    };
    metrics.api_request(method.as_str(), response.status().as_u16());
    response
}

/// A 408 for a body that did not arrive in time.
pub fn timed_out(after: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        Code::DeadlineExceeded,
        format!("the request body did not arrive within {}s (--body-read-timeout)", after.as_secs()),
    )
}

/// An upload's body whose pieces must each arrive within `timeout`.
pub fn paced(
    body: Body,
    timeout: Duration,
) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Send + Unpin + 'static {
    use futures_util::StreamExt;
    let chunks = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(timeout, chunks.next()).await {
            Ok(Some(Ok(data))) => Some((Ok(data), Some(chunks))),
            Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
            Ok(None) => None,
            Err(_) => {
                Some((Err(format!("no data arrived for {}s (--body-read-timeout)", timeout.as_secs())), None))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_and_larger_ones_drained() {
        assert!(matches!(read_limited(Body::from("1234"), 4).await, Ok(b) if b == "1234"));
        assert!(matches!(read_limited(Body::from("12345"), 4).await, Err(Unread::TooLarge)));
        let huge = Body::from(vec![0u8; DRAIN_BYTES + 1]);
        assert!(matches!(read_limited(huge, 4).await, Err(Unread::TooLarge)));
    }
}
