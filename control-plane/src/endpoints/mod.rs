//! Endpoints, deployed models and traffic: the rules of the Vertex endpoint service.

pub mod resources;
pub mod traffic;
