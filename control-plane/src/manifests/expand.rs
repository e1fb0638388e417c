//! Kubernetes `$(VAR)` expansion of container env, command and args.
//!
//! The rendered manifests keep `$(VAR)` references as written: on Kubernetes the kubelet expands
//! them when it starts the container, and the local backend does the same with these functions.
//! Rules (as in the kubelet): `$(NAME)` becomes NAME's value when NAME is defined and is left as
//! written when it is not; `$$` is an escaped `$`; any other `$` is kept. Each env value sees
//! only the variables defined before it in the list; command and args see the whole env.

use std::collections::HashMap;

/// Expands `$(VAR)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            None => {
                // A trailing `$` is kept.
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands a container's env list in order, the way the kubelet does: each value sees the
/// variables defined before it (and `base`, for example service variables). Later definitions
/// of a name replace earlier ones; the result keeps first-definition order.
pub fn expand_env<'a>(
    base: &HashMap<String, String>,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (name, value) in env {
        let expanded = expand(value, |n| defined.get(n).or_else(|| base.get(n)).cloned());
        if defined.insert(name.to_string(), expanded).is_none() {
            order.push(name.to_string());
        }
    }
    order
        .into_iter()
        .map(|name| {
            let value = defined.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    #[test]
    fn kubernetes_expansion_rules() {
        assert_eq!(expand("x$(A)y", vars), "xalphay");
        assert_eq!(expand("$(A)$(PORT)", vars), "alpha8080");
        assert_eq!(expand("$(MISSING)", vars), "$(MISSING)");
        assert_eq!(expand("$$(A)", vars), "$(A)");
        assert_eq!(expand("$$$(A)", vars), "$alpha");
        assert_eq!(expand("cost $5", vars), "cost $5");
        assert_eq!(expand("end$", vars), "end$");
        assert_eq!(expand("$(A", vars), "$(A");
        assert_eq!(expand("$(A$(PORT)", vars), "$(A$(PORT)");
        assert_eq!(expand("é$é$(A)", vars), "é$éalpha");
        assert_eq!(expand("$()", vars), "$()");
    }

    #[test]
    fn env_sees_only_earlier_variables() {
        let base = HashMap::from([("BASE".to_string(), "b".to_string())]);
        let env = [("X", "1"), ("Y", "$(X)-$(Z)-$(BASE)"), ("Z", "3"), ("X", "again $(X)")];
        let out = expand_env(&base, env);
        assert_eq!(
            out,
            vec![
                ("X".to_string(), "again 1".to_string()),
                ("Y".to_string(), "1-$(Z)-b".to_string()),
                ("Z".to_string(), "3".to_string()),
            ]
        );
    }
}
