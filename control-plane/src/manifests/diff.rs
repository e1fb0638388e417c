//! What applying an edited manifest would change, for `?dryRun=true`.

/// A unified diff of two manifests: what applying `edited` would change.
pub fn diff(current: &str, edited: &str) -> String {
    similar::TextDiff::from_lines(current, edited)
        .unified_diff()
        .context_radius(3)
        .header("current", "edited")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_the_changed_lines() {
        let before = "---\nkind: Deployment\nspec:\n  replicas: 2\n";
        let after = before.replacen("replicas: 2\n", "replicas: 3\n", 1);
        let d = diff(before, &after);
        assert!(d.starts_with("--- current\n+++ edited\n@@"), "{d}");
        assert!(d.contains("\n-  replicas: 2\n+  replicas: 3\n"), "{d}");
        assert_eq!(diff(before, before), "");
    }
}
