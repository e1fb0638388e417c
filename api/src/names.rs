//! Resource names (`projects/{p}/locations/{l}/models/{m}@{version}`, ...) and the rules for
//! the ids inside them. Parsing is strict so that bad names fail with a message, not a 500.

use std::fmt;

/// A name or id that breaks the rules, with what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

impl crate::Coded for NameError {
    fn code(&self) -> crate::Code {
        crate::Code::InvalidArgument
    }
}

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

fn lower_digit_dash(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// A project id: 1 to 63 lowercase letters, digits and hyphens, starting with a letter or digit.
pub fn check_project(p: &str) -> Result<(), NameError> {
    if p.is_empty() || p.len() > 63 || !all(p, lower_digit_dash) || p.starts_with('-') {
        return Err(NameError(format!(
            "project `{p}` is invalid: use 1 to 63 lowercase letters, digits and hyphens"
        )));
    }
    Ok(())
}

/// A location: 1 to 63 lowercase letters, digits and hyphens.
pub fn check_location(l: &str) -> Result<(), NameError> {
    if l.is_empty() || l.len() > 63 || !all(l, lower_digit_dash) {
        return Err(NameError(format!(
            "location `{l}` is invalid: use 1 to 63 lowercase letters, digits and hyphens"
        )));
    }
    Ok(())
}

/// A model id chosen by the user (`modelId` on upload): up to 63 characters of `[a-z0-9_-]`,
/// not starting with a digit or a hyphen. Generated ids are numeric.
pub fn check_new_model_id(id: &str) -> Result<(), NameError> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if id.len() > 63 || !first_ok || !all(id, |c| lower_digit_dash(c) || c == '_') {
        return Err(NameError(format!(
            "modelId `{id}` is invalid: use up to 63 characters of [a-z0-9_-], starting with a letter or `_`"
        )));
    }
    Ok(())
}

fn check_model_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > 63 || !all(id, |c| lower_digit_dash(c) || c == '_') {
        return Err(NameError(format!(
            "model id `{id}` is invalid: ids use up to 63 characters of [a-z0-9_-]"
        )));
    }
    Ok(())
}

/// An endpoint id chosen by the user (`endpointId` on create): a letter first, up to 63 of
/// `[a-z0-9-]`, ending in a letter or digit; or up to 9 digits without a leading zero.
pub fn check_new_endpoint_id(id: &str) -> Result<(), NameError> {
    let numeric = !id.is_empty() && id.len() <= 9 && all(id, |c| c.is_ascii_digit()) && !id.starts_with('0');
    let named = id.len() <= 63
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id.chars().last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && all(id, lower_digit_dash);
    if numeric || named {
        Ok(())
    } else {
        Err(NameError(format!(
            "endpointId `{id}` is invalid: use a letter followed by up to 62 of [a-z0-9-] ending in a letter or digit, or up to 9 digits"
        )))
    }
}

fn check_endpoint_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > 63 || !all(id, lower_digit_dash) {
        return Err(NameError(format!("endpoint id `{id}` is invalid: ids use up to 63 of [a-z0-9-]")));
    }
    Ok(())
}

/// A deployed model id: 1 to 19 digits.
pub fn check_deployed_model_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > 19 || !all(id, |c| c.is_ascii_digit()) {
        return Err(NameError(format!("deployed model id `{id}` is invalid: use 1 to 19 digits")));
    }
    Ok(())
}

/// A version alias: `[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]`, which cannot look like a version id.
pub fn check_alias(alias: &str) -> Result<(), NameError> {
    let ok = alias.len() >= 2
        && alias.len() <= 128
        && alias.starts_with(|c: char| c.is_ascii_lowercase())
        && alias.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && all(alias, |c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NameError(format!(
            "alias `{alias}` is invalid: use [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9] (2 to 128 characters)"
        )))
    }
}

/// `displayName`: required, at most 128 characters of text (no control characters).
pub fn check_display_name(name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError("displayName is required".into()));
    }
    if name.chars().count() > 128 {
        return Err(NameError("displayName is longer than 128 characters".into()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError(format!(
            "displayName holds the control character {}; use printable text",
            c.escape_unicode()
        )));
    }
    Ok(())
}

/// A description (`field` names it in the message): text where only newlines and tabs may be
/// control characters, so that it cannot forge what a terminal or a page shows.
pub fn check_description(field: &str, text: &str) -> Result<(), NameError> {
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return Err(NameError(format!(
            "{field} holds the control character {}; use printable text (newlines and tabs are fine)",
            c.escape_unicode()
        )));
    }
    Ok(())
}

/// Label keys and values: at most 64 lowercase letters, digits, `_` and `-`; keys start with a letter.
pub fn check_labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<(), NameError> {
    let ok_chars = |s: &str| {
        s.len() <= 64 && all(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for (k, v) in labels {
        if !ok_chars(k) || !k.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(NameError(format!(
                "label key `{k}` is invalid: use up to 64 lowercase letters, digits, `_` and `-`, starting with a letter"
            )));
        }
        if !ok_chars(v) {
            return Err(NameError(format!(
                "label value `{v}` (key `{k}`) is invalid: use up to 64 lowercase letters, digits, `_` and `-`"
            )));
        }
    }
    Ok(())
}

/// `projects/{project}/locations/{location}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocationName {
    pub project: String,
    pub location: String,
}

impl LocationName {
    pub fn new(project: &str, location: &str) -> Result<LocationName, NameError> {
        check_project(project)?;
        check_location(location)?;
        Ok(LocationName { project: project.to_string(), location: location.to_string() })
    }

    pub fn model(&self, model_id: &str) -> ModelName {
        ModelName { parent: self.clone(), model_id: model_id.to_string() }
    }

    pub fn endpoint(&self, endpoint_id: &str) -> EndpointName {
        EndpointName { parent: self.clone(), endpoint_id: endpoint_id.to_string() }
    }
}

impl fmt::Display for LocationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/locations/{}", self.project, self.location)
    }
}

/// `projects/{p}/locations/{l}/models/{model}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName {
    pub parent: LocationName,
    pub model_id: String,
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/models/{}", self.parent, self.model_id)
    }
}

/// Which version of a model a name selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRef {
    /// `@3`
    Id(i64),
    /// `@golden`; `@default` is the default version.
    Alias(String),
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Id(id) => write!(f, "{id}"),
            VersionRef::Alias(a) => write!(f, "{a}"),
        }
    }
}

/// A model id with an optional `@version` or `@alias`, as written in a path segment
/// (`iris`, `iris@2`, `iris@golden`; `@-` means the model itself).
pub fn parse_model_segment(segment: &str) -> Result<(String, Option<VersionRef>), NameError> {
    let (id, version) = match segment.split_once('@') {
        None => (segment, None),
        Some((id, "-")) => (id, None),
        Some((id, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => {
            let n = v.parse().map_err(|_| NameError(format!("version `{v}` is out of range")))?;
            (id, Some(VersionRef::Id(n)))
        }
        Some((id, alias)) => {
            check_alias(alias).or_else(|e| if alias == "default" { Ok(()) } else { Err(e) })?;
            (id, Some(VersionRef::Alias(alias.to_string())))
        }
    };
    check_model_id(id)?;
    Ok((id.to_string(), version))
}

/// A model resource name with its optional version, in full or relative to `parent`
/// (`projects/p/locations/l/models/iris@2`, or `iris@2`).
pub fn parse_model_ref(
    name: &str,
    parent: &LocationName,
) -> Result<(ModelName, Option<VersionRef>), NameError> {
    let parts: Vec<&str> = name.split('/').collect();
    let (location, segment) = match parts.as_slice() {
        [segment] => (parent.clone(), *segment),
        ["models", segment] => (parent.clone(), *segment),
        ["projects", p, "locations", l, "models", segment] => (LocationName::new(p, l)?, *segment),
        _ => {
            return Err(NameError(format!(
                "`{name}` is not a model name: use projects/{{project}}/locations/{{location}}/models/{{id}}[@version] or an id"
            )));
        }
    };
    let (id, version) = parse_model_segment(segment)?;
    Ok((location.model(&id), version))
}

/// `projects/{p}/locations/{l}/endpoints/{endpoint}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointName {
    pub parent: LocationName,
    pub endpoint_id: String,
}

impl EndpointName {
    /// Checks the id of an endpoint named in a path.
    pub fn new(parent: LocationName, endpoint_id: &str) -> Result<EndpointName, NameError> {
        check_endpoint_id(endpoint_id)?;
        Ok(parent.endpoint(endpoint_id))
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/endpoints/{}", self.parent, self.endpoint_id)
    }
}

/// An endpoint name in full or as a bare id relative to `parent`.
pub fn parse_endpoint_ref(name: &str, parent: &LocationName) -> Result<EndpointName, NameError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [id] => EndpointName::new(parent.clone(), id),
        ["projects", p, "locations", l, "endpoints", id] => EndpointName::new(LocationName::new(p, l)?, id),
        _ => Err(NameError(format!(
            "`{name}` is not an endpoint name: use projects/{{project}}/locations/{{location}}/endpoints/{{id}} or an id"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> LocationName {
        LocationName::new("default", "local").unwrap()
    }

    #[test]
    fn ids_follow_the_vertex_rules() {
        assert!(check_new_model_id("iris_v2-a").is_ok());
        assert!(check_new_model_id("2iris").is_err());
        assert!(check_new_model_id("-iris").is_err());
        assert!(check_new_model_id("Iris").is_err());
        assert!(check_new_endpoint_id("iris-ep").is_ok());
        assert!(check_new_endpoint_id("123456789").is_ok());
        assert!(check_new_endpoint_id("0123").is_err());
        assert!(check_new_endpoint_id("1234567890").is_err());
        assert!(check_new_endpoint_id("iris-").is_err());
        assert!(check_alias("golden").is_ok());
        assert!(check_alias("v2Beta-1").is_ok());
        assert!(check_alias("2x").is_err());
        assert!(check_alias("x").is_err());
        assert!(check_deployed_model_id("1234567890").is_ok());
        assert!(check_deployed_model_id("12a").is_err());
        let good = [("team".to_string(), "ml-ops_1".to_string())];
        assert!(check_labels(good.iter().map(|(k, v)| (k, v))).is_ok());
        assert!(check_display_name("Iris \u{1b}[31mv2").unwrap_err().0.contains("\\u{1b}"));
        assert!(check_display_name("Iris v2 ✓").is_ok());
        assert!(check_description("description", "two\nlines\tand a tab").is_ok());
        assert!(
            check_description("description", "bell\u{7}").unwrap_err().0.starts_with("description holds")
        );
        let bad = [("Team".to_string(), "x".to_string())];
        assert!(check_labels(bad.iter().map(|(k, v)| (k, v))).is_err());
    }

    #[test]
    fn model_refs_carry_versions_and_aliases() {
        let (name, v) = parse_model_ref("projects/p1/locations/eu/models/iris@2", &loc()).unwrap();
        assert_eq!(name.to_string(), "projects/p1/locations/eu/models/iris");
        assert_eq!(v, Some(VersionRef::Id(2)));
        let (name, v) = parse_model_ref("iris@golden", &loc()).unwrap();
        assert_eq!(name.to_string(), "projects/default/locations/local/models/iris");
        assert_eq!(v, Some(VersionRef::Alias("golden".into())));
        assert_eq!(
            parse_model_ref("iris@default", &loc()).unwrap().1,
            Some(VersionRef::Alias("default".into()))
        );
        assert_eq!(parse_model_ref("iris@-", &loc()).unwrap().1, None);
        assert!(parse_model_ref("iris@", &loc()).is_err());
        assert!(parse_model_ref("projects/p/models/iris", &loc()).is_err());
        assert!(parse_model_ref("IRIS", &loc()).is_err());
    }

    #[test]
    fn endpoint_refs_resolve_against_the_parent() {
        assert_eq!(
            parse_endpoint_ref("ep1", &loc()).unwrap().to_string(),
            "projects/default/locations/local/endpoints/ep1"
        );
        assert!(parse_endpoint_ref("projects/x/locations/y/endpoints/Bad", &loc()).is_err());
    }
}
