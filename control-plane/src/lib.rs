//! The control plane of the platform: REST API, web UI, controller and gateway.
//!
//! One module per concern; see `ARCHITECTURE.md` of the project for how they fit.

pub mod api;
pub mod auth;
pub mod backend;
pub mod bootstrap;
pub mod config;
pub mod controller;
pub mod endpoints;
pub mod fsutil;
pub mod gateway;
pub mod install;
pub mod machine;
pub mod manifests;
pub mod metrics;
pub mod operations;
pub mod registry;
pub mod serve;
pub mod store;
pub mod tls;
