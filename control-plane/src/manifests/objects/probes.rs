//! Probes: Vertex's probe shape as a Kubernetes probe, and plain HTTP and TCP probes.

use k8s_openapi::api::core::v1::{ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::manifests::spec::Probe as VertexProbe;

/// `GET path` on `port`; timing left to the caller.
pub fn http_get(path: &str, port: IntOrString) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port, ..Default::default() }),
        ..Default::default()
    }
}

/// A TCP connect to `port`; timing left to the caller.
pub fn tcp_socket(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
        ..Default::default()
    }
}

/// A Vertex probe as a Kubernetes probe; ports default to the container port.
pub fn from_vertex(p: &VertexProbe, container_port: i32) -> Probe {
    Probe {
        exec: p.exec.as_ref().map(|e| ExecAction { command: Some(e.command.clone()) }),
        http_get: p.http_get.as_ref().map(|h| HTTPGetAction {
            path: some_text(&h.path),
            port: IntOrString::Int(h.port.filter(|p| *p > 0).unwrap_or(container_port)),
            host: some_text(&h.host),
            scheme: some_text(&h.scheme),
            http_headers: if h.http_headers.is_empty() {
                None
            } else {
                Some(
                    h.http_headers
                        .iter()
                        .map(|x| HTTPHeader { name: x.name.clone(), value: x.value.clone() })
                        .collect(),
                )
            },
        }),
        grpc: p.grpc.as_ref().map(|g| GRPCAction {
            port: if g.port > 0 { g.port } else { container_port },
            service: some_text(&g.service),
        }),
        tcp_socket: p.tcp_socket.as_ref().map(|t| TCPSocketAction {
            port: IntOrString::Int(if t.port > 0 { t.port } else { container_port }),
            host: some_text(&t.host),
        }),
        period_seconds: p.period_seconds,
        timeout_seconds: p.timeout_seconds,
        failure_threshold: p.failure_threshold,
        success_threshold: p.success_threshold,
        initial_delay_seconds: p.initial_delay_seconds,
        termination_grace_period_seconds: None,
    }
}

fn some_text(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_string()) }
}
