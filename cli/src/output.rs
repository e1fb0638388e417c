//! What commands print: a table for people (`--format table`, the default), or the API's own
//! JSON or YAML for scripts. The tables are built by pure functions of the API's types.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for reading; `describe` commands print YAML.
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the output as {format}: {message}")]
pub struct OutputError {
    format: &'static str,
    message: String,
}

/// Rows under headers, laid out by comfy-table: columns padded to their widest cell (by display
/// width, so wide characters line up), and wrapped to the terminal's width on a terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(mut self, cells: Vec<String>) -> Table {
        self.rows.push(cells);
        self
    }

    /// The table as text: two spaces between columns, no trailing spaces, a final newline.
    pub fn render(&self) -> String {
        self.render_within(console::Term::stdout().size_checked().map(|(_, width)| width))
    }

    /// The table fitted to `width` columns, when there is a limit.
    fn render_within(&self, width: Option<u16>) -> String {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING).set_header(self.headers.iter().copied());
        for row in &self.rows {
            table.add_row(row.iter().map(String::as_str));
        }
        let columns = self.headers.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        for (ix, column) in table.column_iter_mut().enumerate() {
            // Two spaces between columns; none after the last.
            column.set_padding((0, if ix + 1 < columns { 2 } else { 0 }));
        }
        if let Some(width) = width {
            table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic).set_width(width);
        }
        let mut out: String = table.lines().map(|line| line.trim_end().to_string() + "\n").collect();
        if out.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// `text` with every control character but newline and tab written as an escape (`\u{1b}`), so
/// that what the server returns (display names, messages, manifests) cannot move the cursor,
/// recolour or rewrite the terminal.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| if is_unsafe(c) { c.escape_unicode().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `value` as pretty JSON or as YAML.
pub fn serialize<T: Serialize>(format: Format, value: &T) -> Result<String, OutputError> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| OutputError { format: "JSON", message: e.to_string() }),
        Format::Yaml | Format::Table => {
            serde_norway::to_string(value).map_err(|e| OutputError { format: "YAML", message: e.to_string() })
        }
    }
}

/// The text to print: `table(value)` for the table format, else the value itself.
pub fn render<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> Table,
) -> Result<String, OutputError> {
    match format {
        Format::Table => Ok(table(value).render()),
        _ => serialize(format, value),
    }
}

/// The last segment of a resource name: the id.
pub fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

pub fn models(models: &[api::Model]) -> Table {
    models.iter().fold(
        Table::new(&["MODEL_ID", "DISPLAY_NAME", "VERSION_ID", "ALIASES", "CREATE_TIME"]),
        |t, m| {
            t.row(vec![
                id_of(&m.name).to_string(),
                m.display_name.clone(),
                m.version_id.clone(),
                m.version_aliases.join(","),
                m.create_time.clone(),
            ])
        },
    )
}

pub fn model_versions(models: &[api::Model]) -> Table {
    models.iter().fold(
        Table::new(&["MODEL_ID", "VERSION_ID", "ALIASES", "DEPLOYED", "VERSION_CREATE_TIME"]),
        |t, m| {
            t.row(vec![
                id_of(&m.name).split('@').next().unwrap_or_default().to_string(),
                m.version_id.clone(),
                m.version_aliases.join(","),
                m.deployed_models.len().to_string(),
                m.version_create_time.clone(),
            ])
        },
    )
}

pub fn uploaded(r: &api::UploadModelResponse) -> Table {
    Table::new(&["MODEL_ID", "VERSION_ID", "MODEL"]).row(vec![
        id_of(&r.model).to_string(),
        r.model_version_id.clone(),
        r.model.clone(),
    ])
}

/// `123=50,456=50`.
pub fn traffic(split: &std::collections::BTreeMap<String, i32>) -> String {
    split.iter().map(|(id, p)| format!("{id}={p}")).collect::<Vec<_>>().join(",")
}

pub fn endpoints(endpoints: &[api::Endpoint]) -> Table {
    endpoints.iter().fold(
        Table::new(&["ENDPOINT_ID", "DISPLAY_NAME", "DEPLOYED_MODELS", "TRAFFIC_SPLIT", "CREATE_TIME"]),
        |t, e| {
            t.row(vec![
                id_of(&e.name).to_string(),
                e.display_name.clone(),
                e.deployed_models.len().to_string(),
                traffic(&e.traffic_split),
                e.create_time.clone(),
            ])
        },
    )
}

pub fn deployed_models(models: &[api::DeployedModel]) -> Table {
    models.iter().fold(
        Table::new(&["DEPLOYED_MODEL_ID", "DISPLAY_NAME", "MODEL", "VERSION_ID", "MACHINE_TYPE", "REPLICAS"]),
        |t, d| {
            let resources = d.dedicated_resources.as_ref();
            let replicas = match (resources, &d.status) {
                (Some(r), Some(s)) => {
                    format!("{}/{}..{}", s.available_replica_count, r.min_replica_count, r.max_replica_count)
                }
                (Some(r), None) => format!("{}..{}", r.min_replica_count, r.max_replica_count),
                _ => String::new(),
            };
            t.row(vec![
                d.id.clone(),
                d.display_name.clone(),
                id_of(&d.model).to_string(),
                d.model_version_id.clone(),
                resources.map(|r| r.machine_spec.machine_type.clone()).unwrap_or_default(),
                replicas,
            ])
        },
    )
}

/// Sampled predictions, newest first: the bodies cut to their first 60 characters on one line.
pub fn prediction_logs(logs: &[api::PredictionLog]) -> Table {
    let short = |p: &api::LoggedPayload| {
        let (text, kind) = if p.b64.is_empty() { (&p.text, "") } else { (&p.b64, "base64:") };
        let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(60).collect();
        let cut = if p.truncated || text.chars().count() > 60 { "..." } else { "" };
        format!("{kind}{line}{cut}")
    };
    logs.iter().fold(
        Table::new(&["TIME", "DEPLOYED_MODEL_ID", "METHOD", "STATUS", "LATENCY", "REQUEST", "RESPONSE"]),
        |t, l| {
            t.row(vec![
                l.time.clone(),
                l.deployed_model_id.clone(),
                l.method.clone(),
                l.status.to_string(),
                l.latency.clone(),
                short(&l.request),
                short(&l.response),
            ])
        },
    )
}

pub fn revisions(revisions: &[api::Revision]) -> Table {
    revisions.iter().fold(Table::new(&["REVISION", "SOURCE", "CREATE_TIME"]), |t, r| {
        t.row(vec![r.revision.to_string(), r.source.clone(), r.create_time.clone()])
    })
}

pub fn operations(ops: &[api::Operation]) -> Table {
    ops.iter().fold(Table::new(&["OPERATION_ID", "TYPE", "DONE", "ERROR"]), |t, op| {
        let kind = op
            .metadata
            .as_ref()
            .and_then(|m| m.get("@type"))
            .and_then(|v| v.as_str())
            .map(|t| t.trim_start_matches(api::TYPE_PREFIX).trim_end_matches("OperationMetadata").to_string())
            .unwrap_or_default();
        t.row(vec![
            id_of(&op.name).to_string(),
            kind,
            op.done.to_string(),
            op.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn what_the_server_says_cannot_drive_the_terminal() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(terminal_safe("\u{1b}[2Jgone\r\u{9b}"), "\\u{1b}[2Jgone\\u{d}\\u{9b}");
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let t = Table::new(&["ID", "DISPLAY_NAME"])
            .row(vec!["iris-long-id".into(), "Iris".into()])
            .row(vec!["x".into(), "".into()]);
        assert_eq!(t.render(), "ID            DISPLAY_NAME\niris-long-id  Iris\nx\n");
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n", "an empty list still has headers");
        let wide = Table::new(&["NAME", "N"]).row(vec!["模型".into(), "1".into()]).render();
        assert_eq!(wide, "NAME  N\n模型  1\n", "wide characters count by their display width");
        let narrow = Table::new(&["ID", "DESCRIPTION"])
            .row(vec!["a".into(), "a long description that does not fit".into()])
            .render_within(Some(20));
        assert!(narrow.lines().all(|l| l.chars().count() <= 20), "{narrow}");
    }

    #[test]
    fn models_and_endpoints_show_ids_not_full_names() {
        let m = api::Model {
            name: "projects/default/locations/local/models/iris".into(),
            display_name: "Iris".into(),
            version_id: "2".into(),
            version_aliases: vec!["default".into(), "golden".into()],
            ..Default::default()
        };
        let text = models(std::slice::from_ref(&m)).render();
        assert!(
            text.lines().nth(1).unwrap().starts_with("iris      Iris          2           default,golden"),
            "{text}"
        );
        let versions = model_versions(&[api::Model { name: format!("{}@2", m.name), ..m }]).render();
        assert!(versions.lines().nth(1).unwrap().starts_with("iris      2"), "{versions}");

        let e = api::Endpoint {
            name: "projects/default/locations/local/endpoints/ep".into(),
            display_name: "ep".into(),
            traffic_split: BTreeMap::from([("111".into(), 80), ("222".into(), 20)]),
            ..Default::default()
        };
        let text = endpoints(&[e]).render();
        assert!(text.contains("ep           ep            0                111=80,222=20"), "{text}");
    }

    #[test]
    fn scripts_get_the_api_shapes() {
        let r = api::UploadModelResponse {
            model: "projects/p/locations/l/models/iris".into(),
            model_version_id: "1".into(),
        };
        let json = render(Format::Json, &r, uploaded).unwrap();
        assert!(json.contains("\"modelVersionId\": \"1\""), "{json}");
        let yaml = render(Format::Yaml, &r, uploaded).unwrap();
        assert!(yaml.contains("modelVersionId: '1'") || yaml.contains("modelVersionId: \"1\""), "{yaml}");
        let table = render(Format::Table, &r, uploaded).unwrap();
        assert_eq!(table.lines().nth(1).unwrap(), "iris      1           projects/p/locations/l/models/iris");
    }

    #[test]
    fn revisions_show_their_number_and_source() {
        let r = |n, source: &str| api::Revision {
            revision: n,
            source: source.into(),
            create_time: "2025-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let text = revisions(&[r(1, "rendered"), r(2, "edited")]).render();
        assert_eq!(
            text,
            "REVISION  SOURCE    CREATE_TIME\n1         rendered  2025-01-01T00:00:00Z\n2         edited    2025-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn operations_show_their_kind_and_failure() {
        let op = api::Operation {
            name: "projects/p/locations/l/operations/9".into(),
            metadata: Some(
                serde_json::json!({"@type": format!("{}DeployModelOperationMetadata", api::TYPE_PREFIX)}),
            ),
            done: true,
            error: Some(api::Status {
                code: 9,
                message: "no replica became ready".into(),
                ..Default::default()
            }),
            response: None,
        };
        let text = operations(&[op]).render();
        assert_eq!(text.lines().nth(1).unwrap(), "9             DeployModel  true  no replica became ready");
    }
}
