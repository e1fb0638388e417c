//! An Ingress that terminates TLS for one host and sends every path to one Service.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Where an Ingress sends its traffic, and how it is served.
pub struct TlsRoute {
    /// `spec.ingressClassName`; the cluster's default class when None.
    pub class_name: Option<String>,
    pub host: String,
    /// The Secret that holds (or, with cert-manager, will hold) the certificate.
    pub tls_secret: String,
    pub service: String,
    pub port: i32,
}

/// The TLS Ingress of `route` (the endpoints' and the platform's own API ingress).
pub fn tls(metadata: ObjectMeta, route: TlsRoute) -> Ingress {
    let TlsRoute { class_name, host, tls_secret, service, port } = route;
    Ingress {
        metadata,
        spec: Some(IngressSpec {
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
        }),
        status: None,
    }
}
