//! plumb's core: configuration, sources, the plan engine, policies, renderers
//! and the commands that wire them to providers. Providers live in their own
//! crates under `providers/` and meet the core only through `plumb-model`.
//! docs/ARCHITECTURE.md walks through the data flow.

pub mod alert;
pub mod apply;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod fsutil;
pub mod fuzzing;
pub mod history;
pub mod mask;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod render;
pub mod schedule;
pub mod serve;
pub mod source;
pub mod state;

/// Installs rustls' `ring` crypto provider for the whole process. The kube,
/// reqwest and octocrab clients each pull rustls in with a different default
/// provider; with two compiled in, the first TLS client would panic ("Could
/// not automatically determine the process-level CryptoProvider"). Called
/// first thing in `main`; calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
