//! Pieces every handler uses: resource names from the path, JSON bodies, Vertex's `:verb`
//! suffixes, `updateMask`, and generated ids.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiError;

/// The project and location of a request path, checked.
pub fn location(project: &str, location: &str) -> Result<api::LocationName, ApiError> {
    api::LocationName::new(project, location).map_err(|e| ApiError::invalid(e.to_string()))
}

/// A JSON body, or a 400 that says what is wrong with it (415 without a JSON content type).
pub fn json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(e) if e.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            "send the body as JSON with `Content-Type: application/json`",
        )),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(0)),
        Err(e) => Err(ApiError::invalid(format!("the request body is not valid: {}", e.body_text()))),
    }
}

/// A 413 for a body over `--max-request-bytes` (`limit`, when known).
pub fn too_large(limit: usize) -> ApiError {
    let size = if limit > 0 { format!(" of {limit} bytes") } else { String::new() };
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RESOURCE_EXHAUSTED",
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
    /// The named fields, each checked against `allowed` (camelCase or snake_case).
    pub fn fields(&self, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
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
                allowed.join(", ")
            )));
        }
        for f in &fields {
            if !allowed.contains(&f.as_str()) {
                return Err(ApiError::invalid(format!(
                    "updateMask field `{f}` cannot be changed; changeable: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(fields)
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

/// A random decimal id of `digits` digits (no leading zero), as Vertex generates them.
pub fn numeric_id(digits: u32) -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let digits = digits.clamp(1, 18);
    let low = 10u64.pow(digits - 1);
    let span = 9 * low;
    (low + OsRng.next_u64() % span).to_string()
}

/// `displayName`: required, at most 128 characters.
pub fn check_display_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("displayName is required"));
    }
    if name.chars().count() > 128 {
        return Err(ApiError::invalid("displayName is longer than 128 characters"));
    }
    Ok(())
}

/// Labels checked by the API's rules.
pub fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    api::check_labels(labels).map_err(|e| ApiError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_masks_take_both_spellings_and_refuse_the_rest() {
        let m = UpdateMask { update_mask: "display_name, labels".into() };
        assert_eq!(m.fields(&["displayName", "labels"]).unwrap(), ["displayName", "labels"]);
        let e = UpdateMask { update_mask: "name".into() }.fields(&["displayName"]).unwrap_err();
        assert!(e.message.contains("`name` cannot be changed"));
        assert!(UpdateMask::default().fields(&["labels"]).unwrap_err().message.contains("required"));
    }

    #[test]
    fn numeric_ids_have_their_length() {
        for _ in 0..100 {
            let id = numeric_id(18);
            assert_eq!(id.len(), 18);
            assert!(!id.starts_with('0'));
        }
        assert_eq!(split_verb("ep:predict"), ("ep", Some("predict")));
        assert_eq!(split_verb("ep"), ("ep", None));
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
