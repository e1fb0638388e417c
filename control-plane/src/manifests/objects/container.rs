//! Parts of a container: its HTTP port, guaranteed resources and environment entries.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, ResourceRequirements,
    SecretEnvSource, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The name of the port every rendered container serves HTTP on.
pub const HTTP_PORT_NAME: &str = "http";

/// The container's HTTP port, named `http`.
pub fn http_port(port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(HTTP_PORT_NAME.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// CPU, memory and any extra resources, requested and limited alike (the Guaranteed QoS class:
/// a replica gets what its machine type says, no more and no less).
pub fn guaranteed(cpu: &str, memory: &str, extra: BTreeMap<String, String>) -> ResourceRequirements {
    let mut resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
    ]);
    resources.extend(extra.into_iter().map(|(k, v)| (k, Quantity(v))));
    ResourceRequirements { requests: Some(resources.clone()), limits: Some(resources), claims: None }
}

/// `name=value`.
pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

/// `name` from one key of a Secret.
pub fn env_from_secret_key(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

/// `name` from a field of the pod (`metadata.namespace`, `spec.serviceAccountName`).
pub fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), api_version: None }),
            ..Default::default()
        }),
    }
}

/// Every key of a Secret as environment.
pub fn secret_env(secret: &str, optional: bool) -> EnvFromSource {
    EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: secret.into(), optional: Some(optional) }),
        ..Default::default()
    }
}
