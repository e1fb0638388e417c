//! How an Endpoint is exposed. Every endpoint is served by the gateway, so an endpoint's
//! Ingress routes its host to the gateway's Service; a private endpoint has no Ingress, and a
//! NetworkPolicy lets only the gateway reach its pods.

use std::collections::BTreeMap;

use api::Access;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::config::RenderConfig;
use super::naming::{dns_part, endpoint_object_name, label_value, short_hash};
use super::objects::ingress::{self, TlsRoute};
use super::objects::network_policy;

/// Everything an Endpoint needs to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInput {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub access: Access,
}

/// The rendered objects of one Endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEndpoint {
    /// None for private endpoints: they are not served on the public listener.
    pub ingress: Option<Ingress>,
    /// Only for private endpoints.
    pub network_policy: Option<NetworkPolicy>,
}

impl RenderedEndpoint {
    /// Multi-document YAML of the objects, Ingress first.
    pub fn to_yaml(&self) -> Result<String, super::ManifestError> {
        let mut objects: Vec<&dyn super::ManifestObject> = Vec::new();
        if let Some(ingress) = &self.ingress {
            objects.push(ingress);
        }
        if let Some(policy) = &self.network_policy {
            objects.push(policy);
        }
        super::to_yaml(&objects)
    }
}

/// The public host of an endpoint, from [`super::IngressConfig::host_pattern`].
pub fn endpoint_host(input: &EndpointInput, cfg: &RenderConfig) -> String {
    let part = |s: &str| {
        let p = dns_part(s);
        if p.is_empty() { short_hash(s) } else { p.chars().take(63).collect::<String>() }
    };
    cfg.ingress
        .host_pattern
        .replace("{endpoint}", &part(&input.endpoint_id))
        .replace("{project}", &part(&input.project))
        .replace("{location}", &part(&input.location))
}

fn endpoint_labels(input: &EndpointInput, cfg: &RenderConfig, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (cfg.label("endpoint"), label_value(&input.endpoint_id)),
        ("app.kubernetes.io/name".to_string(), "endpoint".to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), label_value(&cfg.managed_by)),
    ])
}

/// Renders an Endpoint into its Ingress (public and authenticated endpoints) or its
/// NetworkPolicy (private endpoints).
pub fn render_endpoint(input: &EndpointInput, cfg: &RenderConfig) -> RenderedEndpoint {
    let name = endpoint_object_name(&input.endpoint_id);
    let labels = endpoint_labels(input, cfg, &name);
    let annotations = BTreeMap::from([
        (cfg.label("project"), input.project.clone()),
        (cfg.label("location"), input.location.clone()),
    ]);
    let gateway_namespace = cfg.ingress.gateway_namespace.clone().unwrap_or_else(|| cfg.namespace.clone());

    if input.access == Access::Private {
        let metadata = ObjectMeta {
            name: Some(name),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        };
        let gateway =
            network_policy::pods_in_namespace(&gateway_namespace, cfg.ingress.gateway_pod_labels.clone());
        let selected = BTreeMap::from([(cfg.label("endpoint"), label_value(&input.endpoint_id))]);
        let policy = network_policy::admit_only(metadata, selected, Some(vec![gateway]), None);
        return RenderedEndpoint { ingress: None, network_policy: Some(policy) };
    }

    let mut ingress_annotations = annotations;
    if let Some((key, value)) = &cfg.ingress.cert_manager_annotation {
        ingress_annotations.insert(key.clone(), value.clone());
    }
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(gateway_namespace),
        labels: Some(labels),
        annotations: Some(ingress_annotations),
        ..Default::default()
    };
    let route = TlsRoute {
        class_name: cfg.ingress.class_name.clone(),
        host: endpoint_host(input, cfg),
        tls_secret: format!("{name}-tls"),
        service: cfg.ingress.gateway_service.clone(),
        port: cfg.ingress.gateway_port,
    };
    RenderedEndpoint { ingress: Some(ingress::tls(metadata, route)), network_policy: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(access: Access) -> EndpointInput {
        EndpointInput {
            project: "my-project".into(),
            location: "us-central1".into(),
            endpoint_id: "1234567".into(),
            access,
        }
    }

    fn cfg() -> RenderConfig {
        let mut cfg = RenderConfig { namespace: "models".into(), ..RenderConfig::default() };
        cfg.ingress.host_pattern = "{endpoint}-{project}.predict.example.org".into();
        cfg.ingress.gateway_namespace = Some("platform".into());
        cfg
    }

    #[test]
    fn golden_public_endpoint() {
        let r = render_endpoint(&input(Access::Public), &cfg());
        assert!(r.network_policy.is_none());
        crate::manifests::golden("render_endpoint_public.yaml", &r.to_yaml().unwrap());
    }

    #[test]
    fn golden_private_endpoint() {
        let r = render_endpoint(&input(Access::Private), &cfg());
        assert!(r.ingress.is_none(), "a private endpoint is not served on the public listener");
        crate::manifests::golden("render_endpoint_private.yaml", &r.to_yaml().unwrap());
    }

    #[test]
    fn ingress_routes_the_endpoint_host_to_the_gateway_with_tls() {
        let mut cfg = cfg();
        cfg.ingress.class_name = Some("nginx".into());
        cfg.ingress.cert_manager_annotation = Some(("cert-manager.io/issuer".into(), "internal-ca".into()));
        let r = render_endpoint(&input(Access::Authenticated), &cfg);
        let ingress = r.ingress.unwrap();
        assert_eq!(ingress.metadata.namespace.as_deref(), Some("platform"));
        assert_eq!(ingress.metadata.annotations.as_ref().unwrap()["cert-manager.io/issuer"], "internal-ca");
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.hosts.as_deref(), Some(&["1234567-my-project.predict.example.org".to_string()][..]));
        assert_eq!(tls.secret_name.as_deref(), Some("ep-1234567-tls"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("1234567-my-project.predict.example.org"));
        let backend = rule.http.as_ref().unwrap().paths[0].backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "platform-gateway");
        assert_eq!(backend.port.as_ref().unwrap().number, Some(80));

        cfg.ingress.cert_manager_annotation = None;
        let r = render_endpoint(&input(Access::Public), &cfg);
        let annotations = r.ingress.unwrap().metadata.annotations.unwrap();
        assert!(!annotations.keys().any(|k| k.starts_with("cert-manager.io")), "{annotations:?}");
    }

    #[test]
    fn private_endpoint_pods_accept_only_the_gateway() {
        let r = render_endpoint(&input(Access::Private), &cfg());
        let policy = r.network_policy.unwrap();
        assert_eq!(policy.metadata.namespace.as_deref(), Some("models"));
        let spec = policy.spec.unwrap();
        let selected = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(selected, BTreeMap::from([("platform.dev/endpoint".to_string(), "1234567".to_string())]));
        let from = &spec.ingress.unwrap()[0].from.clone().unwrap()[0];
        assert_eq!(
            from.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "platform"
        );
        assert_eq!(
            from.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/component"],
            "gateway"
        );
    }

    #[test]
    fn odd_endpoint_ids_give_dns_names_and_hosts() {
        assert_eq!(endpoint_object_name("fraud"), "ep-fraud");
        let long = endpoint_object_name(&"x".repeat(80));
        assert!(long.len() <= 63 && long.starts_with("ep-x"), "{long}");
        assert_ne!(endpoint_object_name("A_b"), endpoint_object_name("a-b"));
        let host = endpoint_host(
            &EndpointInput { endpoint_id: "My_Endpoint".into(), ..input(Access::Public) },
            &cfg(),
        );
        assert_eq!(host, "my-endpoint-my-project.predict.example.org");
    }
}
