//! The control plane of the platform: REST API, controller and gateway.
//!
//! The module tree is the architecture (see `docs/architecture.md`). Layers, top to bottom;
//! imports point down only:
//! - doors: [`rest`] (the REST API), [`console`] (the web console), [`serve`] (the binary's
//!   wiring), [`config`];
//! - domain services: [`auth`], [`registry`], [`endpoints`], [`operations`], [`controller`],
//!   [`gateway`];
//! - pure rendering: [`manifests`], [`machine`];
//! - I/O below: [`backend`], [`store`]; [`telemetry`] is reached from every layer.

pub mod auth;
pub mod backend;
pub mod config;
pub mod console;
pub mod controller;
pub mod endpoints;
pub mod gateway;
pub mod machine;
pub mod manifests;
pub mod operations;
pub mod registry;
pub mod rest;
pub mod serve;
pub mod store;
pub mod telemetry;
