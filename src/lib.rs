//! plumb's core: configuration, sources, the plan engine, policies, renderers
//! and the commands that wire them to providers. Providers live in their own
//! crates under `providers/` and meet the core only through `plumb-model`.
//! docs/ARCHITECTURE.md walks through the data flow.

pub mod apply;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod mask;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod render;
pub mod source;
pub mod state;
