//! "Sample request" snippets of an endpoint page: curl, `platform-cli` and Python, with the
//! endpoint's real URL.

/// The three snippets for an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippets {
    pub curl: String,
    pub cli: String,
    pub python: String,
}

/// Snippets that call `predict_uri` (the endpoint's full `:predict` URL); `public`: no token
/// needed.
pub fn for_endpoint(
    predict_uri: &str,
    endpoint_id: &str,
    project: &str,
    location: &str,
    public: bool,
) -> Snippets {
    let auth_header = if public { "" } else { " \\\n  -H \"Authorization: Bearer $PLATFORM_TOKEN\"" };
    let curl = format!(
        "curl --cacert platform-data/tls/ca.pem{auth_header} \\\n  -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"instances\": [[1.0, 2.0, 3.0, 4.0]]}}' \\\n  {predict_uri}"
    );
    let cli = format!(
        "echo '{{\"instances\": [[1.0, 2.0, 3.0, 4.0]]}}' > request.json\n\
         platform-cli endpoints predict {endpoint_id} --project {project} --region {location} \\\n  --json-request request.json"
    );
    let headers = if public {
        String::new()
    } else {
        "\n    headers={\"Authorization\": f\"Bearer {os.environ['PLATFORM_TOKEN']}\"},".to_string()
    };
    let python = format!(
        "import os\nimport requests\n\nresponse = requests.post(\n    \"{predict_uri}\",{headers}\n    \
         json={{\"instances\": [[1.0, 2.0, 3.0, 4.0]]}},\n    verify=\"platform-data/tls/ca.pem\",\n)\n\
         print(response.json()[\"predictions\"])"
    );
    Snippets { curl, cli, python }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_name_the_real_url_and_a_token_only_when_needed() {
        let uri = "https://localhost:8443/v1/projects/default/locations/local/endpoints/mlp:predict";
        let s = for_endpoint(uri, "mlp", "default", "local", false);
        assert!(s.curl.contains(uri) && s.curl.contains("Bearer $PLATFORM_TOKEN"), "{}", s.curl);
        assert!(s.cli.contains("platform-cli endpoints predict mlp --project default --region local"));
        assert!(s.python.contains(uri) && s.python.contains("PLATFORM_TOKEN"));
        let public = for_endpoint(uri, "mlp", "default", "local", true);
        assert!(!public.curl.contains("Bearer") && !public.python.contains("PLATFORM_TOKEN"));
    }
}
