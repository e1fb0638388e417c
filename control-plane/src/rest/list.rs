//! List requests as Vertex takes them: `filter` (a subset of AIP-160), `orderBy`,
//! `pageSize` and `pageToken`. Pure, so the rules are tested without a server.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;

/// Query parameters of every list method.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// For example `display_name="iris" AND labels.team="ml"`; also `!=` and `labels.team:*`.
    #[serde(default)]
    pub filter: String,
    /// Default 100, at most 1000.
    #[serde(default)]
    pub page_size: Option<i64>,
    /// `nextPageToken` of the previous page.
    #[serde(default)]
    pub page_token: String,
    /// Comma-separated fields, each optionally followed by `desc`: `display_name`,
    /// `create_time`, `update_time`.
    #[serde(default)]
    pub order_by: String,
}

/// What list methods can filter and sort on.
pub trait Listable {
    fn display_name(&self) -> &str;
    fn labels(&self) -> &BTreeMap<String, String>;
    fn create_time(&self) -> &str;
    fn update_time(&self) -> &str;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    DisplayName,
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Equals(String),
    NotEquals(String),
    Present,
}

/// A parsed `filter`: clauses that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(Vec<(Field, Test)>);

const FILTER_HELP: &str = "use clauses like display_name=\"iris\", labels.team=\"ml\", labels.team!=\"x\" or labels.team:*, joined by AND";

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, ApiError> {
        let mut clauses = Vec::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter(clauses));
        }
        for raw in split_and(text) {
            let raw = raw.trim();
            let (name, test) = if let Some((name, value)) = raw.split_once("!=") {
                (name, Test::NotEquals(unquote(value)?))
            } else if let Some((name, value)) = raw.split_once('=') {
                (name, Test::Equals(unquote(value)?))
            } else if let Some((name, "*")) = raw.split_once(':').map(|(n, v)| (n, v.trim())) {
                (name, Test::Present)
            } else {
                return Err(ApiError::invalid(format!(
                    "filter clause `{raw}` is not understood: {FILTER_HELP}"
                )));
            };
            let field = match name.trim() {
                "display_name" | "displayName" => Field::DisplayName,
                other => match other.strip_prefix("labels.") {
                    Some(key) if !key.is_empty() => Field::Label(key.to_string()),
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "filter field `{other}` is not supported: {FILTER_HELP}"
                        )));
                    }
                },
            };
            if field == Field::DisplayName && test == Test::Present {
                return Err(ApiError::invalid(format!("`display_name:*` is always true: {FILTER_HELP}")));
            }
            clauses.push((field, test));
        }
        Ok(Filter(clauses))
    }

    pub fn matches(&self, item: &impl Listable) -> bool {
        self.0.iter().all(|(field, test)| {
            let value = match field {
                Field::DisplayName => Some(item.display_name()),
                Field::Label(key) => item.labels().get(key).map(String::as_str),
            };
            match test {
                Test::Equals(v) => value == Some(v.as_str()),
                Test::NotEquals(v) => value != Some(v.as_str()),
                Test::Present => value.is_some(),
            }
        })
    }
}

/// Splits on the keyword `AND` outside quotes.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b' ' if !quoted && text[i..].starts_with(" AND ") => {
                parts.push(&text[start..i]);
                i += 5;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    match v.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(format!("filter value {v} lacks its closing quote"))),
        None if v.is_empty() => {
            Err(ApiError::invalid(format!("a filter clause has no value: {FILTER_HELP}")))
        }
        None => Ok(v.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    DisplayName,
    CreateTime,
    UpdateTime,
}

/// A parsed `orderBy`. Empty: creation order (how the store lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderBy(Vec<(Key, bool)>);

impl OrderBy {
    pub fn parse(text: &str) -> Result<OrderBy, ApiError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let key = match words.next().unwrap_or_default() {
                "display_name" | "displayName" => Key::DisplayName,
                "create_time" | "createTime" => Key::CreateTime,
                "update_time" | "updateTime" => Key::UpdateTime,
                other => {
                    return Err(ApiError::invalid(format!(
                        "orderBy field `{other}` is not supported: use display_name, create_time or update_time, each optionally followed by desc"
                    )));
                }
            };
            let desc = match (words.next(), words.next()) {
                (None, _) | (Some("asc"), None) => false,
                (Some("desc"), None) => true,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "orderBy `{part}` is not understood: write a field, optionally followed by asc or desc"
                    )));
                }
            };
            keys.push((key, desc));
        }
        Ok(OrderBy(keys))
    }

    pub fn compare(&self, a: &impl Listable, b: &impl Listable) -> Ordering {
        for (key, desc) in &self.0 {
            let ord = match key {
                Key::DisplayName => a.display_name().cmp(b.display_name()),
                Key::CreateTime => a.create_time().cmp(b.create_time()),
                Key::UpdateTime => a.update_time().cmp(b.update_time()),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Filters, sorts and pages `items` (in creation order); returns the page and the next page
/// token (empty on the last page). The token is the offset of the next page, tied to the
/// filter and order so that a token is not reused with other ones.
pub fn page<T: Listable>(items: Vec<T>, query: &ListQuery) -> Result<(Vec<T>, String), ApiError> {
    let filter = Filter::parse(&query.filter)?;
    let order = OrderBy::parse(&query.order_by)?;
    let size = page_size(query)?;
    let fingerprint = crate::manifests::short_hash(&format!("{}|{}", query.filter, query.order_by));
    let offset = if query.page_token.is_empty() {
        0
    } else {
        query
            .page_token
            .split_once('.')
            .filter(|(_, f)| *f == fingerprint)
            .and_then(|(n, _)| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    "pageToken is not valid for this request: pass the nextPageToken of the previous page, with the same filter and orderBy",
                )
            })?
    };
    let mut items: Vec<T> = items.into_iter().filter(|i| filter.matches(i)).collect();
    items.sort_by(|a, b| order.compare(a, b));
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = offset + page.len();
    let token = if next < total { format!("{next}.{fingerprint}") } else { String::new() };
    Ok((page, token))
}

/// Pages `items` in the order given (operations, whose filter the service applies), with the
/// offset of the next page as its token.
pub fn page_in_order<T>(items: Vec<T>, query: &ListQuery) -> Result<(Vec<T>, String), ApiError> {
    let size = page_size(query)?;
    let offset = if query.page_token.is_empty() {
        0
    } else {
        query.page_token.parse::<usize>().map_err(|_| ApiError::invalid("pageToken is not valid"))?
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = offset + page.len();
    Ok((page, if next < total { next.to_string() } else { String::new() }))
}

fn page_size(query: &ListQuery) -> Result<usize, ApiError> {
    match query.page_size {
        None | Some(0) => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n < 0 => Err(ApiError::invalid(format!("pageSize {n} is negative"))),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE)),
    }
}

/// Models and endpoints are listed by the same fields.
macro_rules! listable {
    ($($t:ty),*) => {$(
        impl Listable for $t {
            fn display_name(&self) -> &str {
                &self.display_name
            }
            fn labels(&self) -> &BTreeMap<String, String> {
                &self.labels
            }
            fn create_time(&self) -> &str {
                &self.create_time
            }
            fn update_time(&self) -> &str {
                &self.update_time
            }
        }
    )*};
}

listable!(api::Model, api::Endpoint);

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, team: Option<&str>, t: &str) -> api::Model {
        api::Model {
            display_name: name.into(),
            labels: team.map(|t| BTreeMap::from([("team".to_string(), t.to_string())])).unwrap_or_default(),
            create_time: t.into(),
            update_time: t.into(),
            ..Default::default()
        }
    }

    fn names(models: &[api::Model]) -> Vec<&str> {
        models.iter().map(|m| m.display_name.as_str()).collect()
    }

    fn sample() -> Vec<api::Model> {
        vec![model("b", Some("ml"), "1"), model("a", None, "2"), model("c", Some("bi"), "3")]
    }

    fn query(filter: &str, order: &str, size: i64, token: &str) -> ListQuery {
        ListQuery {
            filter: filter.into(),
            page_size: Some(size),
            page_token: token.into(),
            order_by: order.into(),
        }
    }

    #[test]
    fn filters_on_display_name_and_labels() {
        let (p, _) = page(sample(), &query(r#"labels.team="ml""#, "", 0, "")).unwrap();
        assert_eq!(names(&p), ["b"]);
        let (p, _) = page(sample(), &query("labels.team:*", "", 0, "")).unwrap();
        assert_eq!(names(&p), ["b", "c"]);
        let (p, _) = page(sample(), &query(r#"labels.team!="ml" AND display_name!="a""#, "", 0, "")).unwrap();
        assert_eq!(names(&p), ["c"]);
        let (p, _) = page(sample(), &query(r#"display_name="a AND b""#, "", 0, "")).unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn bad_filters_and_orders_say_what_works() {
        let e = page(sample(), &query("owner=x", "", 0, "")).unwrap_err();
        assert!(e.message.contains("`owner` is not supported"), "{}", e.message);
        let e = page(sample(), &query(r#"display_name="x"#, "", 0, "")).unwrap_err();
        assert!(e.message.contains("closing quote"), "{}", e.message);
        let e = page(sample(), &query("", "size desc", 0, "")).unwrap_err();
        assert!(e.message.contains("`size` is not supported"), "{}", e.message);
        let e = page(sample(), &query("", "", -1, "")).unwrap_err();
        assert!(e.message.contains("negative"));
    }

    #[test]
    fn pages_follow_the_order_and_tokens_are_bound_to_the_query() {
        let (p1, t1) = page(sample(), &query("", "display_name desc", 2, "")).unwrap();
        assert_eq!(names(&p1), ["c", "b"]);
        assert!(!t1.is_empty());
        let (p2, t2) = page(sample(), &query("", "display_name desc", 2, &t1)).unwrap();
        assert_eq!(names(&p2), ["a"]);
        assert!(t2.is_empty());
        assert!(page(sample(), &query("", "create_time", 2, &t1)).is_err());
        assert!(page(sample(), &query("", "", 2, "garbage")).is_err());
    }
}
