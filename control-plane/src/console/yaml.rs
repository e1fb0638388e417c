//! The Manifest tab's YAML, highlighted on the server (keys, strings, numbers, comments,
//! document markers), with validation problems shown under the line of the field they name,
//! and unified diffs marked line by line.

/// One line of highlighted YAML: escaped HTML with `<span class="y-…">` around tokens, and the
/// problems that name a field on this line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub number: usize,
    pub html: String,
    pub problems: Vec<String>,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn span(class: &str, text: &str) -> String {
    format!("<span class=\"y-{class}\">{}</span>", escape(text))
}

/// A scalar value's class.
fn value_class(value: &str) -> &'static str {
    let v = value.trim();
    if v.starts_with('"') || v.starts_with('\'') {
        "str"
    } else if v.parse::<f64>().is_ok() || matches!(v, "true" | "false" | "null" | "~") {
        "lit"
    } else {
        "val"
    }
}

/// The highlighted HTML of one line.
fn highlight_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    if trimmed.starts_with('#') {
        return format!("{indent}{}", span("com", trimmed));
    }
    if trimmed == "---" || trimmed == "..." {
        return span("doc", line);
    }
    let (dash, rest) = match trimmed.strip_prefix("- ") {
        Some(rest) => ("- ", rest),
        None if trimmed == "-" => ("-", ""),
        None => ("", trimmed),
    };
    let mut html = escape(indent);
    if !dash.is_empty() {
        html.push_str(&span("dash", dash));
    }
    let quoted_start = rest.starts_with('"') || rest.starts_with('\'');
    match rest.find(": ").or_else(|| rest.strip_suffix(':').map(|k| k.len())) {
        Some(colon) if !quoted_start => {
            let (key, value) = rest.split_at(colon);
            html.push_str(&span("key", key));
            html.push(':');
            let value = value.get(1..).unwrap_or_default();
            if !value.is_empty() {
                let lead = &value[..value.len() - value.trim_start().len()];
                html.push_str(lead);
                html.push_str(&span(value_class(value), value.trim_start()));
            }
        }
        _ if !rest.is_empty() => html.push_str(&span(value_class(rest), rest)),
        _ => {}
    }
    html
}

/// The key a problem's field path ends with: `spec.template.spec.containers[0].image` names
/// `image`; `metadata.labels["app"]` names `app`.
fn last_key(path: &str) -> Option<String> {
    let mut tail = path.rsplit('.').next()?.to_string();
    while let Some(open) = tail.rfind('[') {
        let inner = tail[open + 1..].trim_end_matches(']').trim_matches('"').to_string();
        if inner.parse::<usize>().is_err() && !inner.is_empty() {
            return Some(inner);
        }
        tail.truncate(open);
    }
    (!tail.is_empty()).then_some(tail)
}

/// Highlighted lines of `yaml`, each problem `(field path, message)` under the first line that
/// holds its field's key (or under the first line when none does).
pub fn highlight(yaml: &str, problems: &[(String, String)]) -> Vec<Line> {
    let mut lines: Vec<Line> = yaml
        .lines()
        .enumerate()
        .map(|(i, l)| Line { number: i + 1, html: highlight_line(l), problems: Vec::new() })
        .collect();
    if lines.is_empty() {
        lines.push(Line { number: 1, html: String::new(), problems: Vec::new() });
    }
    for (path, message) in problems {
        let key = last_key(path);
        let at = key
            .and_then(|key| {
                yaml.lines().position(|l| {
                    let t = l.trim_start().trim_start_matches("- ");
                    t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":"))
                })
            })
            .unwrap_or(0);
        let text = if path.is_empty() { message.clone() } else { format!("{path}: {message}") };
        lines[at].problems.push(text);
    }
    lines
}

/// One line of a unified diff with its kind: `add`, `del`, `hunk` or `ctx`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffLine {
    pub kind: &'static str,
    pub text: String,
}

/// A unified diff, line by line.
pub fn diff_lines(diff: &str) -> Vec<DiffLine> {
    diff.lines()
        .map(|l| {
            let kind = if l.starts_with("+++") || l.starts_with("---") || l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            };
            DiffLine { kind, text: l.to_string() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_comments_are_marked_and_escaped() {
        assert_eq!(
            highlight_line("  replicas: 2"),
            "  <span class=\"y-key\">replicas</span>: <span class=\"y-lit\">2</span>"
        );
        assert_eq!(
            highlight_line("- name: \"<b>\""),
            "<span class=\"y-dash\">- </span><span class=\"y-key\">name</span>: <span class=\"y-str\">&quot;&lt;b&gt;&quot;</span>"
        );
        assert_eq!(highlight_line("# note"), "<span class=\"y-com\"># note</span>");
        assert_eq!(highlight_line("---"), "<span class=\"y-doc\">---</span>");
        assert_eq!(highlight_line("spec:"), "<span class=\"y-key\">spec</span>:");
        assert_eq!(
            highlight_line("  - --port"),
            "  <span class=\"y-dash\">- </span><span class=\"y-val\">--port</span>"
        );
    }

    #[test]
    fn problems_sit_under_the_line_of_their_field() {
        let yaml = "kind: Deployment\nspec:\n  template:\n    spec:\n      hostNetwork: true\n";
        let lines = highlight(
            yaml,
            &[
                ("spec.template.spec.hostNetwork".into(), "host networking is not allowed".into()),
                ("".into(), "the document is incomplete".into()),
            ],
        );
        assert_eq!(lines[4].problems, ["spec.template.spec.hostNetwork: host networking is not allowed"]);
        assert_eq!(lines[0].problems, ["the document is incomplete"]);
        assert_eq!(last_key("spec.template.spec.containers[0]").as_deref(), Some("containers"));
        assert_eq!(last_key("metadata.labels[\"app\"]").as_deref(), Some("app"));
    }

    #[test]
    fn diffs_are_marked_by_line() {
        let kinds: Vec<&str> = diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-replicas: 1\n+replicas: 2\n kind: x")
            .iter()
            .map(|l| l.kind)
            .collect();
        assert_eq!(kinds, ["hunk", "hunk", "hunk", "del", "add", "ctx"]);
    }
}
