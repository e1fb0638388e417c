//! The model's container is described by the API's `ModelContainerSpec` (Vertex AI's REST
//! shape, shared by the server and the CLI); these are the rules rendering applies to it.

pub use api::{
    EnvVar, ExecAction, GrpcAction, HttpGetAction, ModelContainerSpec, Port, Probe, TcpSocketAction,
};

/// Vertex's default container port (`ports` empty).
pub const DEFAULT_PORT: i32 = 8080;

/// The port the server listens on: `ports[0]`, default 8080.
pub fn container_port(spec: &ModelContainerSpec) -> i32 {
    spec.ports.first().map(|p| p.container_port).filter(|p| *p > 0).unwrap_or(DEFAULT_PORT)
}
