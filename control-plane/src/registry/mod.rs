//! The model registry's storage side: uploaded artifacts, and which artifact URIs a caller may
//! point a model at.

pub mod artifacts;

pub use artifacts::{ArtifactError, ArtifactStore, Stored};
