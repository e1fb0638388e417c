//! Pieces every handler uses: resource names from the path, JSON bodies, Vertex's `:verb`
//! suffixes, `updateMask`, and extractors whose rejections are the API's JSON errors.

use api::Code;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiError;

/// The project and location of a request path, checked.
pub fn location(project: &str, location: &str) -> Result<api::LocationName, ApiError> {
    Ok(api::LocationName::new(project, location)?)
}

/// An endpoint named in a path (the id without a `:verb`).
pub fn endpoint(project: &str, location: &str, id: &str) -> Result<api::EndpointName, ApiError> {
    Ok(api::EndpointName::new(self::location(project, location)?, id)?)
}

/// A JSON body, or a 400 that says what is wrong with it (415 without a JSON content type).
pub fn json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(e) if e.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            "send the body as JSON with `Content-Type: application/json`",
        )),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(0)),
        Err(e) => Err(ApiError::invalid(format!("the request body is not valid: {}", e.body_text()))),
    }
}

/// A JSON body read from bytes (for handlers that route by `:verb` before they know the type).
pub fn json_bytes<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("the request needs a JSON body"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not JSON: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))
}

/// A 413 for a body over `--max-request-bytes` (`limit`, when known).
pub fn too_large(limit: usize) -> ApiError {
    let size = if limit > 0 { format!(" of {limit} bytes") } else { String::new() };
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::ResourceExhausted,
        format!(
            "the request body is larger than the limit{size} (--max-request-bytes); send fewer instances per request"
        ),
    )
}

/// `"abc:deployModel"` -> (`"abc"`, `Some("deployModel")`).
pub fn split_verb(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once(':') {
        Some((name, verb)) => (name, Some(verb)),
        None => (segment, None),
    }
}

/// A 404 for a `:verb` this resource does not have.
pub fn unknown_verb(resource: &str, verb: &str, method: &str, known: &[&str]) -> ApiError {
    ApiError::not_found(format!(
        "{method} {resource}:{verb} is not a method; {method} supports: {}",
        if known.is_empty() { "no custom methods".to_string() } else { known.join(", ") }
    ))
}

/// `?updateMask=a,b` of PATCH methods.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UpdateMask {
    /// Comma-separated field names, e.g. `displayName,labels`. Required.
    #[serde(default)]
    pub update_mask: String,
}

impl UpdateMask {
    /// The named fields, each one of `allowed` (named camelCase or snake_case), as the value
    /// `allowed` pairs it with.
    pub fn fields<F: Copy>(&self, allowed: &[(&str, F)]) -> Result<Vec<F>, ApiError> {
        let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
        let fields: Vec<String> = self
            .update_mask
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(snake_to_camel)
            .collect();
        if fields.is_empty() {
            return Err(ApiError::invalid(format!(
                "updateMask is required: name the fields to change, from {}",
                names.join(", ")
            )));
        }
        fields
            .iter()
            .map(|f| {
                allowed.iter().find(|(name, _)| name == f).map(|(_, field)| *field).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "updateMask field `{f}` cannot be changed; changeable: {}",
                        names.join(", ")
                    ))
                })
            })
            .collect()
    }
}

fn snake_to_camel(field: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The client's address, when the listener knows it (login throttling).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let connect = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddress(connect.map(|c| c.0.ip())))
    }
}

/// `axum::extract::Query` whose rejection is the API's JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(format!("invalid query parameters: {}", e.body_text())))
    }
}

/// `axum::extract::Path` whose rejection is the API's JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_masks_take_both_spellings_and_refuse_the_rest() {
        let allowed = [("displayName", 1), ("labels", 2)];
        let m = UpdateMask { update_mask: "display_name, labels".into() };
        assert_eq!(m.fields(&allowed).unwrap(), [1, 2]);
        let e = UpdateMask { update_mask: "name".into() }.fields(&allowed[..1]).unwrap_err();
        assert!(e.message.contains("`name` cannot be changed"));
        assert!(UpdateMask::default().fields(&allowed[1..]).unwrap_err().message.contains("required"));
        assert_eq!(split_verb("ep:predict"), ("ep", Some("predict")));
        assert_eq!(split_verb("ep"), ("ep", None));
    }
}
