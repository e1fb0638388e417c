//! Rendering of an Endpoint: how it is reached from outside the cluster. Every endpoint is
//! served by the gateway, so an endpoint's Ingress routes its host to the gateway's Service; a
//! private endpoint has no Ingress, and a NetworkPolicy lets only the gateway reach its pods.

use std::collections::BTreeMap;

use api::Access;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::render::{RenderConfig, dns_part, label_value, short_hash};

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

/// The name of an endpoint's objects: `ep-{endpoint}`, a DNS-1035 label; long or unusual ids
/// are shortened with a hash of the original so distinct ids stay distinct.
pub fn endpoint_object_name(endpoint_id: &str) -> String {
    let e = dns_part(endpoint_id);
    if e == endpoint_id && !e.is_empty() && e.len() <= 60 {
        return format!("ep-{e}");
    }
    let hash = short_hash(endpoint_id);
    let e: String = e.chars().take(63 - 4 - hash.len()).collect();
    let e = e.trim_end_matches('-');
    if e.is_empty() { format!("ep-{hash}") } else { format!("ep-{e}-{hash}") }
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

    if input.access == Access::Private {
        let gateway_namespace =
            cfg.ingress.gateway_namespace.clone().unwrap_or_else(|| cfg.namespace.clone());
        let policy = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(cfg.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        cfg.label("endpoint"),
                        label_value(&input.endpoint_id),
                    )])),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "kubernetes.io/metadata.name".to_string(),
                                gateway_namespace,
                            )])),
                            match_expressions: None,
                        }),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(cfg.ingress.gateway_pod_labels.clone()),
                            match_expressions: None,
                        }),
                        ip_block: None,
                    }]),
                    ports: None,
                }]),
                egress: None,
            }),
        };
        return RenderedEndpoint { ingress: None, network_policy: Some(policy) };
    }

    let host = endpoint_host(input, cfg);
    let mut ingress_annotations = annotations;
    if let Some((key, value)) = &cfg.ingress.cert_manager_annotation {
        ingress_annotations.insert(key.clone(), value.clone());
    }
    let ingress = Ingress {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(cfg.ingress.gateway_namespace.clone().unwrap_or_else(|| cfg.namespace.clone())),
            labels: Some(labels),
            annotations: Some(ingress_annotations),
            ..Default::default()
        },
        spec: Some(tls_ingress_spec(
            cfg.ingress.class_name.clone(),
            host,
            format!("{name}-tls"),
            cfg.ingress.gateway_service.clone(),
            cfg.ingress.gateway_port,
        )),
        status: None,
    };
    RenderedEndpoint { ingress: Some(ingress), network_policy: None }
}

/// An Ingress that terminates TLS for `host` (certificate in `tls_secret`) and sends every path
/// to `service:port`: the endpoints' and the platform's own API ingress.
pub(crate) fn tls_ingress_spec(
    class_name: Option<String>,
    host: String,
    tls_secret: String,
    service: String,
    port: i32,
) -> IngressSpec {
    IngressSpec {
        ingress_class_name: class_name,
        tls: Some(vec![IngressTLS { hosts: Some(vec![host.clone()]), secret_name: Some(tls_secret) }]),
        rules: Some(vec![IngressRule {
            host: Some(host),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some("/".into()),
                    path_type: "Prefix".into(),
                    backend: IngressBackend {
                        service: Some(IngressServiceBackend {
                            name: service,
                            port: Some(ServiceBackendPort { number: Some(port), name: None }),
                        }),
                        resource: None,
                    },
                }],
            }),
        }]),
        default_backend: None,
    }
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
