//! Endpoints, deployed models and traffic: the rules of the Vertex endpoint service.

pub mod desired;
pub mod resources;
pub mod traffic;
